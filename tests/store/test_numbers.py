from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recorderd.store.numbers import normalise_number


@pytest.mark.parametrize(
    ("text", "region", "canonical"),
    [
        ("07700 900123", "GB", "+447700900123"),
        ("+44 (7700) 900-123", "GB", "+447700900123"),
        ("00447700900123", "GB", "+447700900123"),
        ("sip:07700900123@trunk.example;user=phone", "GB", "+447700900123"),
        ("<sips:+447700900123@trunk:5061;transport=tls>", "GB", "+447700900123"),
        ("tel:+44-7700-900123;phone-context=+44", "GB", "+447700900123"),
        ("07700900123@trunk", "GB", "+447700900123"),
        ("0116 496 0000", "GB", "+441164960000"),
        ("(415) 555-0100", "US", "+14155550100"),
        ("011 44 7700 900123", "US", "+447700900123"),  # the US international prefix
        ("201", "GB", "201"),  # extensions stay as dialled, never "+44201"
        ("1000", "GB", "1000"),
        ("sip:2502@192.168.105.105", "GB", "2502"),
        ("+1000", "GB", "1000"),  # impossible with its +: the digits
        ("alice", "GB", ""),
        ("sip:reception@pbx", "GB", ""),
        ("*21#", "GB", ""),
        ("", "GB", ""),
    ],
)
def test_normalise_number(text: str, region: str, canonical: str) -> None:
    assert normalise_number(text, region) == canonical


@given(st.text(max_size=64))
def test_normalise_number_never_raises(text: str) -> None:
    result = normalise_number(text)
    assert result == "" or result.lstrip("+").isdigit()
