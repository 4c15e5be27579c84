"""Search and subject-access bundles: on the captures in pcaps/, and on E.164 numbers in every spelling.

The oracle for the captures is independent of recorderd's SIP stage: the tshark reports beside the
real captures (dialogs per Call-ID with their From/To) and ``crafted/expected.json``.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import re
import zipfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import soundfile

from recorderd.config import EngineConfig
from recorderd.errors import StoreError
from recorderd.events import CallFinished
from recorderd.replay import replay_file
from recorderd.store.numbers import normalise_number, user_part
from recorderd.store.sar import subject_access
from recorderd.store.sink import StoreSink
from recorderd.store.store import Store
from tests.conftest import PCAPS
from tests.store.helpers import T0, call_events, new_keypair, real_stereo

USER = "dpo (uid 1001)"
_DIALOG = re.compile(r"^- Call-ID=(\S+)\n\s+state=(\S+)\s+from=(\S+)\s+to=(\S+)", re.M)


def oracle_calls() -> list[tuple[str, str, str]]:
    """(Call-ID, from user, to user) of every INVITE dialog in pcaps/, from the oracles."""
    calls = []
    for report in sorted(PCAPS.glob("*.tshark.txt")):
        for call_id, state, from_uri, to_uri in _DIALOG.findall(report.read_text()):
            if not state.startswith("non-INVITE"):
                calls.append((call_id, user_part(from_uri), user_part(to_uri)))
    expected = json.loads((PCAPS / "crafted" / "expected.json").read_text())
    for entry in expected["files"].values():
        calls += [(c["call_id"], c["from_user"], c["to_user"]) for c in entry.get("calls", [])]
    return calls


@pytest.fixture(scope="module")
def keys() -> tuple[str, str]:
    return new_keypair()


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory, keys: tuple[str, str]) -> Iterator[Store]:
    store = Store.init(tmp_path_factory.mktemp("sar") / "store", [keys[1]])
    sink = StoreSink(store)
    for path in sorted(PCAPS.glob("*.pcap")) + sorted((PCAPS / "crafted").glob("*.pcap")):
        replay_file(path, sink, EngineConfig(), None)
    sink.close()
    yield store
    store.close()


def test_the_oracle_covers_numbers() -> None:
    numbers = Counter(u for _, f, t in oracle_calls() for u in {f, t} if u.isdigit())
    assert numbers["201"] >= 15 and numbers["2502"] == 2 and numbers["202"] >= 8


@pytest.mark.parametrize("number", ["201", "202", "203", "204", "2502", "2504", "101", "800"])
@pytest.mark.parametrize(
    "form", ["{}", "sip:{}@pbx.example", "<sip:{}@10.0.0.1:5060;transport=tcp>", "tel:{}"]
)
def test_search_by_number_in_each_form_finds_exactly_the_oracle_calls(
    replayed: Store, number: str, form: str
) -> None:
    expected = sorted(cid for cid, f, t in oracle_calls() if number in (f, t))
    assert expected, number
    found = sorted(c["call_id"] for c in replayed.search(number=form.format(number)))
    assert found == expected


@pytest.mark.parametrize("number", ["2502", "sip:202@clinic.example"])
def test_sar_bundle_on_the_captures(
    replayed: Store, keys: tuple[str, str], tmp_path: Path, number: str
) -> None:
    plain = normalise_number(number)
    expected = sorted(cid for cid, f, t in oracle_calls() if plain in (f, t))
    before = len(replayed.index.access_log())
    result = subject_access(replayed, number, [keys[0]], "wav", tmp_path / "b", "SAR 2026-04", USER, T0)
    bundle = tmp_path / "b"
    rows = json.loads((bundle / "calls.json").read_text())
    assert (
        sorted(r["call_id"] for r in rows)
        == expected
        == sorted(r["call_id"] for r in csv.DictReader((bundle / "calls.csv").open()))
    )
    audio = [r for r in rows if r["audio_file"]]
    assert result.recordings == len(audio) > 0 and result.calls == len(rows)
    for row in audio:
        data = (bundle / row["audio_file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row["audio_sha256"]
        info = soundfile.info(str(bundle / row["audio_file"]))
        assert (info.channels, info.samplerate, info.format) == (2, 8000, "WAV")
    sums = (bundle / "SHA256SUMS").read_text().splitlines()
    assert {line.split("  ")[1] for line in sums} == {p.name for p in bundle.iterdir()} - {"SHA256SUMS"}
    assert "SAR 2026-04" in (bundle / "README.txt").read_text()
    entries = replayed.index.access_log()[before:]
    assert [e.action for e in entries] == ["sar-wav"] * len(audio) + ["sar-bundle"]
    assert (
        entries[-1].output_sha256
        == result.sha256
        == hashlib.sha256((bundle / "SHA256SUMS").read_bytes()).hexdigest()
    )
    assert {e.output_sha256 for e in entries[:-1]} <= {r["audio_sha256"] for r in audio}


def record(store: Store, call_id: str, from_uri: str, ts: float) -> None:
    sink = StoreSink(store)
    for event in call_events(call_id, real_stereo("alaw")[:1600], "alaw", ts=ts):
        if isinstance(event, CallFinished):
            event = CallFinished(event.ts, call_id, dataclasses.replace(event.record, from_uri=from_uri))
        sink.handle(event)  # type: ignore[arg-type]
    sink.close()


@pytest.mark.parametrize(
    "form",
    [
        "07700 900123",
        "07700900123",
        "+447700900123",
        "+44 7700 900123",
        "00447700900123",
        "sip:07700900123@trunk.example;user=phone",
        "sip:+447700900123@trunk",
        "tel:+44-7700-900123",
    ],
)
def test_an_e164_number_is_found_in_every_spelling(store: Store, form: str) -> None:
    record(store, "a@h", "sip:07700900123@trunk.example;user=phone", T0)
    record(store, "b@h", "tel:+44-7700-900-123", T0 + 60)
    record(store, "c@h", "sip:+441632960001@trunk", T0 + 120)
    record(store, "d@h", "sip:00447700900123@trunk", T0 + 180)
    assert [c["call_id"] for c in store.search(number=form)] == ["a@h", "b@h", "d@h"]
    assert [c["call_id"] for c in store.search(number=form, since=T0 + 30, until=T0 + 181)] == ["b@h", "d@h"]


def test_search_criteria(store: Store) -> None:
    record(store, "a@h", "sip:07700900123@trunk", T0)
    record(store, "b@h", "sip:07700900999@trunk", T0 + 60)
    assert [c["call_id"] for c in store.search(extension="201")] == ["a@h", "b@h"]
    assert store.search(extension="20") == []
    assert [c["call_id"] for c in store.search(name="alice")] == ["a@h", "b@h"]
    assert store.search(name="bob") == []
    assert [c["call_id"] for c in store.search(direction="inbound", call_id="b@h")] == ["b@h"]
    assert store.search(direction="outbound") == []
    with pytest.raises(StoreError, match="'reception' is not a phone number"):
        store.search(number="reception")


def test_sar_zip_and_mp3(store: Store, identity: str, tmp_path: Path) -> None:
    record(store, "a@h", "sip:07700900123@trunk", T0)
    result = subject_access(
        store, "07700 900123", [identity], "mp3", tmp_path / "b", "SAR", USER, T0, zip_bundle=True
    )
    assert result.path == tmp_path / "b.zip" and not (tmp_path / "b").exists()
    with zipfile.ZipFile(result.path) as archive:
        names = sorted(archive.namelist())
    assert names[0].startswith("b/20240601T120000Z_") and names[0].endswith(".mp3")
    assert names[1:] == ["b/README.txt", "b/SHA256SUMS", "b/calls.csv", "b/calls.json"]
    assert hashlib.sha256(result.path.read_bytes()).hexdigest() == result.sha256
    assert store.index.access_log()[-1].output_sha256 == result.sha256


def test_sar_refusals_leave_nothing_behind(store: Store, identity: str, tmp_path: Path) -> None:
    record(store, "a@h", "sip:07700900123@trunk", T0)
    with pytest.raises(StoreError, match="needs a reason"):
        subject_access(store, "07700900123", [identity], "wav", tmp_path / "b", " ", USER, T0)
    with pytest.raises(StoreError, match="choose wav or mp3"):
        subject_access(store, "07700900123", [identity], "flac", tmp_path / "b", "r", USER, T0)
    other, _ = new_keypair()
    with pytest.raises(StoreError, match="none of the identities given opens"):
        subject_access(store, "07700900123", [other], "wav", tmp_path / "b", "r", USER, T0)
    assert not (tmp_path / "b").exists() and store.index.access_log() == []
