from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from recorderd.store import bech32
from tests.store.helpers import new_keypair

# BIP 173 "Test vectors" (Bech32, not Bech32m).
VALID = [
    "A12UEL5L",
    "a12uel5l",
    "an83characterlonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1tt5tgs",
    "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw",
    "11" + "q" * 82 + "c8247j",
    "split1checkupstagehandshakeupstreamerranterredcaperred2y9e3w",
    "?1ezyfcl",
]
INVALID = [
    ("\x201nwldj5", "bech32: character out of range"),
    ("\x7f1axkwrx", "bech32: character out of range"),
    ("pzry9x0s0muk", "bech32: no separator or checksum"),
    ("1pzry9x0s0muk", "bech32: no separator or checksum"),
    ("x1b4n0q5v", "bech32: invalid character"),
    ("li1dgmt3", "bech32: no separator or checksum"),
    ("de1lg7wt\xff", "bech32: character out of range"),
    ("A1G7SGD8", "bech32: bad checksum"),
    ("10a06t8", "bech32: no separator or checksum"),
    ("1qzzfhee", "bech32: no separator or checksum"),
    ("A12uEL5L", "bech32: mixed case"),
]
BECH32M_CONST = 0x2BC830A3


@pytest.mark.parametrize("text", VALID)
def test_bip173_valid(text: str) -> None:
    hrp, data = bech32.decode(text)
    assert hrp == text.lower()[: text.rfind("1")]
    assert bech32.encode(hrp, data) == text.lower()


@pytest.mark.parametrize(("text", "message"), INVALID)
def test_bip173_invalid(text: str, message: str) -> None:
    with pytest.raises(bech32.Bech32Error) as err:
        bech32.decode(text)
    assert str(err.value) == message


def test_bech32m_checksum_is_rejected() -> None:
    """age uses Bech32; a key checksummed with the Bech32m constant (BIP 350) is not valid."""
    _, recipient = new_keypair()
    hrp, key = bech32.decode(recipient)
    words = bech32._convert_bits(key, 8, 5, pad=True)
    poly = bech32._polymod(bech32._hrp_expand(hrp) + words + [0] * 6) ^ BECH32M_CONST
    checksum = [(poly >> 5 * (5 - i)) & 31 for i in range(6)]
    text = hrp + "1" + "".join(bech32.CHARSET[w] for w in words + checksum)
    assert text[:-6] == recipient[:-6] and text != recipient
    with pytest.raises(bech32.Bech32Error, match="bad checksum"):
        bech32.decode(text)


def test_non_zero_padding_is_rejected() -> None:
    # One 5-bit word "l" (31) encodes 8 bits only with padding; its low bits are not zero.
    text = bech32.encode("x", b"\xff")
    hrp, data = bech32.decode(text)
    assert data == b"\xff"
    words = [bech32.CHARSET.index(c) for c in text[2:-6]]
    assert words == [31, 28]  # 0xff = 11111 111(00): the last word carries two zero bits


def test_pyrage_keys_round_trip() -> None:
    for _ in range(20):
        identity, recipient = new_keypair()
        hrp, key = bech32.decode(recipient)
        assert (hrp, len(key)) == ("age", 32)
        assert bech32.encode(hrp, key) == recipient
        hrp, secret = bech32.decode(identity)
        assert (hrp, len(secret)) == ("age-secret-key-", 32)
        assert bech32.encode(hrp, secret).upper() == identity


def test_age_keygen_keys_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "k.txt"
    subprocess.run(["age-keygen", "-o", str(path)], check=True, capture_output=True)
    lines = path.read_text().splitlines()
    recipient = lines[1].removeprefix("# public key: ")
    identity = lines[2]
    assert bech32.encode(*bech32.decode(recipient)) == recipient
    assert bech32.encode(*bech32.decode(identity)).upper() == identity
