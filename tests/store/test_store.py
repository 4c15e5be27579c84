from __future__ import annotations

import datetime as dt
import json
import stat
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from recorderd.errors import StoreError
from recorderd.store import age, au
from recorderd.store.store import Store, iso_utc
from tests.store.helpers import T0, call_record, new_keypair


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_layout_and_modes(tmp_path: Path, recipient: str) -> None:
    root = tmp_path / "site" / "store"
    store = Store.init(root, [recipient])
    assert store.root == root
    assert mode(root) == 0o700 and mode(root / "recordings") == 0o700
    assert mode(root / "store.json") == 0o600 and mode(root / "index.sqlite") == 0o600
    meta = json.loads((root / "store.json").read_text())
    public_key = meta.pop("audit_public_key")
    assert meta == {"format": "recorderd-store", "version": 1, "recipients": [recipient]}
    assert len(bytes.fromhex(public_key)) == 32 and mode(root / "audit-signing.key") == 0o600
    store.close()
    with Store.open(root) as again:
        assert again.recipients == [recipient]


def test_init_refusals(tmp_path: Path, recipient: str) -> None:
    with pytest.raises(StoreError, match="at least one recipient"):
        Store.init(tmp_path / "a", [])
    with pytest.raises(StoreError, match="not an age X25519 recipient: 'age1nope'"):
        Store.init(tmp_path / "a", [recipient, "age1nope"])
    assert not (tmp_path / "a").exists()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("x")
    with pytest.raises(StoreError, match="exists and is not an empty directory"):
        Store.init(busy, [recipient])
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="exists and is not an empty directory"):
        Store.init(tmp_path / "file", [recipient])
    Store.init(tmp_path / "s", [recipient]).close()
    with pytest.raises(StoreError, match="is already a recorderd store"):
        Store.init(tmp_path / "s", [recipient])
    empty = tmp_path / "empty"
    empty.mkdir(0o755)
    Store.init(empty, [recipient]).close()
    assert mode(empty) == 0o700


def test_open_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError) as err:
        Store.open(tmp_path / "nowhere")
    path = tmp_path / "nowhere"
    assert str(err.value) == (
        f"no recorderd store at {path} (create one with: recorderd init {path} --recipient age1...)"
    )
    (tmp_path / "store.json").write_text('{"format": "other"}')
    with pytest.raises(StoreError, match="is not a recorderd store description"):
        Store.open(tmp_path)
    (tmp_path / "store.json").write_text("{")
    with pytest.raises(StoreError, match="cannot read"):
        Store.open(tmp_path)


def test_recording_path_uses_utc_date_and_private_dirs(store: Store) -> None:
    uid = store.new_uid()
    assert len(uid) == 32
    ts = 1_704_067_199.5  # 2023-12-31T23:59:59.5Z
    assert store.recording_path(uid, ts) == f"recordings/2023/12/31/{uid}.au.age"
    writer = store.open_recording(uid, "ulaw", 8000, ts)
    for part in ("recordings/2023", "recordings/2023/12", "recordings/2023/12/31"):
        assert mode(store.root / part) == 0o700
    assert writer.part.name == f"{uid}.au.age.part"
    writer.discard()


def test_writer_lock_is_exclusive(tmp_path: Path, recipient: str) -> None:
    first = Store.init(tmp_path / "s", [recipient])
    first.lock_for_writing()
    first.lock_for_writing()
    second = Store.open(tmp_path / "s")
    with pytest.raises(StoreError, match="is being written by another process"):
        second.lock_for_writing()
    with pytest.raises(StoreError, match="needs the writer lock"):
        second.recover()
    first.close()
    second.lock_for_writing()
    second.close()


def test_find_by_id_and_call_id(store: Store) -> None:
    first, second, other = store.new_uid(), store.new_uid(), store.new_uid()
    store.index.finish_call(first, call_record("dup@host", 0, T0, media=False), "finished", None)
    store.index.finish_call(second, call_record("dup@host", 0, T0 + 60, media=False), "finished", None)
    store.index.finish_call(other, call_record("one@host", 0, T0 + 90, media=False), "finished", None)
    assert store.find(first)["id"] == first
    assert store.find("one@host")["id"] == other
    with pytest.raises(StoreError) as err:
        store.find("dup@host")
    assert str(err.value) == (
        f"Call-ID 'dup@host' matches 2 calls: {first} (2024-06-01T12:00:00.000000Z),"
        f" {second} (2024-06-01T12:01:00.000000Z); give the id"
    )
    with pytest.raises(StoreError, match="no call 'nobody' in the store"):
        store.find("nobody")


def test_calls_json_and_filters(store: Store) -> None:
    uid = store.new_uid()
    record = call_record("c1@host", 80000, T0)
    store.index.finish_call(uid, record, "finished", None)
    store.index.finish_call(
        store.new_uid(), call_record("c2@host", 0, T0 + 3600, media=False), "finished", None
    )
    (call,) = store.calls(until=T0 + 1)
    assert call == {
        "id": uid,
        "call_id": "c1@host",
        "direction": "inbound",
        "from": "sip:07700900123@trunk.example;user=phone",
        "from_name": "Alice Patient",
        "from_user": "07700900123",
        "from_number": "+447700900123",
        "to": "sip:201@pbx.example",
        "to_name": "Reception",
        "to_user": "201",
        "to_number": "201",
        "start": "2024-06-01T12:00:00.000000Z",
        "answer": "2024-06-01T12:00:02.000000Z",
        "end": "2024-06-01T12:00:12.500000Z",
        "end_reason": "bye",
        "sip_status": 200,
        "duration_s": 10.5,
        "media_start": "2024-06-01T12:00:01.000000Z",
        "samples": 80000,
        "sample_rate": 8000,
        "state": "finished",
        "erased": None,
        "recording": None,
        "recording_state": None,
        "encoding": None,
        "sha256": None,
        "size": None,
        "dtmf": [{"t": 3.5, "digit": "5", "duration_ms": 160, "side": "caller"}],
        "holds": [{"start": 5.0, "end": 6.0}],
        "transfers": [],
        "tags": [],
        "legs": [
            {
                "side": "caller",
                "ssrc": 0x343DA99B,
                "src": "192.0.2.1:4000",
                "dst": "192.0.2.2:6000",
                "codec": "PCMU",
                "payload_type": 0,
                "packets": 425,
                "lost": 2,
                "duplicates": 1,
                "decoded": True,
                "first": "2024-06-01T12:00:01.000000Z",
                "last": "2024-06-01T12:00:09.500000Z",
                "gaps": [{"start": 1.0, "end": 1.04, "reason": "loss"}],
            },
            {
                "side": "callee",
                "ssrc": 0xFFFFFFFF,
                "src": "192.0.2.2:6000",
                "dst": "192.0.2.1:4000",
                "codec": "PCMU",
                "payload_type": 0,
                "packets": 400,
                "lost": 0,
                "duplicates": 0,
                "decoded": True,
                "first": "2024-06-01T12:00:01.000000Z",
                "last": "2024-06-01T12:00:09.500000Z",
                "gaps": [],
            },
        ],
    }
    json.dumps(call)  # printable as is
    assert [c["call_id"] for c in store.calls()] == ["c1@host", "c2@host"]
    later = store.calls(since=T0 + 1)
    assert [c["call_id"] for c in later] == ["c2@host"]
    assert later[0]["duration_s"] == 0 and later[0]["answer"] is None and later[0]["legs"] == []
    assert [c["call_id"] for c in store.calls(party="7700900")] == ["c1@host", "c2@host"]
    assert [c["call_id"] for c in store.calls(party="recep")] == ["c1@host", "c2@host"]
    assert store.calls(party="%") == [] and store.calls(party="_") == []
    assert [c["call_id"] for c in store.calls(call_id="c2@host")] == ["c2@host"]
    assert len(store.calls(limit=1)) == 1


def test_iso_utc() -> None:
    assert iso_utc(None) is None
    assert iso_utc(0.0) == "1970-01-01T00:00:00.000000Z"
    assert iso_utc(T0 + 0.1234) == "2024-06-01T12:00:00.123400Z"


def test_several_recipients_each_open_recordings(tmp_path: Path) -> None:
    pairs = [new_keypair(), new_keypair()]
    store = Store.init(tmp_path / "s", [r for _, r in pairs])
    writer = store.open_recording(store.new_uid(), "ulaw", 8000, T0)
    writer.append(0, np.zeros((10, 2), np.int16))
    info = writer.finish()
    store.close()
    for identity, _ in pairs:
        assert au.read_au(age.decrypt(info.path.read_bytes(), [identity]))[3].shape == (10, 2)


@given(st.integers(min_value=0, max_value=4_102_444_800 * 1_000_000))
def test_recording_path_day_is_the_utc_date(us: int) -> None:
    """Remembered per day, the date is still each capture timestamp's own UTC date."""
    ts = us / 1_000_000  # capture timestamps have microseconds
    day = dt.datetime.fromtimestamp(ts, dt.UTC)
    assert Store.recording_path(None, "u", ts) == f"recordings/{day:%Y/%m/%d}/u.au.age"  # type: ignore[arg-type]


def test_a_day_directory_removed_meanwhile_is_made_again(store: Store) -> None:
    first = store.open_recording(store.new_uid(), "ulaw", 8000, T0)
    first.discard()
    day = first.path.parent
    day.rmdir()  # by an administrator tidying up
    second = store.open_recording(store.new_uid(), "ulaw", 8000, T0)
    assert second.path.parent == day and mode(day) == 0o700
    second.finish()
