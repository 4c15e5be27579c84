from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import numpy as np
import pytest

from recorderd.events import AudioBlock, CallAnswered, CallFinished, RecordingStarted
from recorderd.store import age, au
from recorderd.store.sink import StoreSink
from recorderd.store.store import Store
from tests.store.helpers import T0, call_events, call_record, call_started, real_stereo


def feed(sink: StoreSink, events: list[object]) -> None:
    """Handle ``events`` as one batch, then flush, as the replay loop and the daemon do."""
    for event in events:
        sink.handle(event)  # type: ignore[arg-type]
    sink.flush()


def recording_of(call: dict[str, object], identity: str) -> np.ndarray:
    data = Path(str(call["recording"])).read_bytes()
    return au.read_au(age.decrypt(data, [identity]))[3]


def test_call_with_media(store: Store, identity: str) -> None:
    samples = real_stereo("ulaw")
    sink = StoreSink(store)
    events = call_events("c1@host", samples)
    feed(sink, events[:2])
    # After RecordingStarted a crash would leave a trace: both rows exist, state 'recording'.
    (early,) = store.calls()
    assert (early["state"], early["recording_state"]) == ("recording", "recording")
    assert (early["from_user"], early["to_user"], early["direction"]) == ("07700900123", "201", "unknown")
    assert early["start"] == "2024-06-01T12:00:00.000000Z"
    assert Path(str(early["recording"]) + ".part").exists()
    feed(sink, events[2:])
    assert sink.active_calls == 0
    (call,) = store.calls()
    path = Path(str(call["recording"]))
    assert path == store.root / f"recordings/2024/06/01/{call['id']}.au.age"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert (call["state"], call["recording_state"], call["encoding"]) == (
        "finished",
        "complete",
        "ulaw",
    )
    assert call["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert call["size"] == path.stat().st_size
    assert call["samples"] == len(samples) and call["from_user"] == "07700900123"
    assert len(call["legs"]) == 2 and call["direction"] == "inbound"
    assert np.array_equal(recording_of(call, identity), samples)
    sink.close()


def test_calls_without_media_and_other_events(store: Store) -> None:
    sink = StoreSink(store)
    record = call_record("cancelled@host", 0, media=False)
    feed(
        sink,
        [
            call_started("cancelled@host"),
            CallAnswered(T0 + 1, "unrelated@host", 200),  # ignored: summarised by CallFinished
            CallFinished(record.end_ts, "cancelled@host", record),
        ],
    )
    (call,) = store.calls()
    assert (call["state"], call["recording"], call["end_reason"], call["sip_status"]) == (
        "finished",
        None,
        "cancel",
        487,
    )
    assert list((store.root / "recordings").iterdir()) == []


def test_same_call_id_twice_gets_two_ids(store: Store, identity: str) -> None:
    samples = real_stereo("alaw")[:16000]
    sink = StoreSink(store)
    feed(sink, call_events("again@host", samples, encoding="alaw"))
    feed(sink, call_events("again@host", samples[::-1].copy(), encoding="alaw", ts=T0 + 100))
    first, second = store.calls(call_id="again@host")
    assert first["id"] != second["id"]
    assert np.array_equal(recording_of(first, identity), samples)
    assert np.array_equal(recording_of(second, identity), samples[::-1])


def test_audio_contract_violations(store: Store) -> None:
    sink = StoreSink(store)
    block = np.zeros((160, 2), np.int16)
    with pytest.raises(ValueError, match="without RecordingStarted"):
        sink.handle(AudioBlock(T0, "nobody@host", 0, block))
    sink.handle(RecordingStarted(T0, "c@host", "ulaw", 8000))
    sink.handle(RecordingStarted(T0, "c@host", "ulaw", 8000))  # repeated: ignored
    sink.handle(AudioBlock(T0, "c@host", 0, block))
    with pytest.raises(ValueError, match="starts at 480"):
        sink.handle(AudioBlock(T0, "c@host", 480, block))  # held for a writer not yet open
    sink.flush()
    with pytest.raises(ValueError, match="starts at 480"):
        sink.handle(AudioBlock(T0, "c@host", 480, block))  # the open writer's own check
    assert len(store.calls()) == 1


def test_close_marks_open_recordings_incomplete(store: Store, identity: str) -> None:
    samples = real_stereo("ulaw")[:20000]
    sink = StoreSink(store)
    feed(sink, call_events("open@host", samples)[:-1])  # no CallFinished
    sink.close()
    (call,) = store.calls()
    assert (call["state"], call["recording_state"], call["samples"]) == (
        "incomplete",
        "incomplete",
        20000,
    )
    path = Path(str(call["recording"]))
    assert call["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert np.array_equal(recording_of(call, identity), samples)  # sealed: nothing lost


def test_recover_after_abandoned_writer(tmp_path: Path, recipient: str, identity: str) -> None:
    """A crash mid-call: the next writer's start renames the .part and marks it incomplete."""
    samples = real_stereo("ulaw")
    store = Store.init(tmp_path / "s", [recipient])
    sink = StoreSink(store)
    feed(sink, call_events("crash@host", samples)[:-1])
    (call,) = store.calls()
    part = Path(str(call["recording"]) + ".part")
    snapshot = part.read_bytes()
    # The process dies: no finish, no index update, the lock goes with it.
    for active in sink._active.values():
        assert active.writer is not None
        active.writer.abandon()
    store.close()

    reopened = Store.open(tmp_path / "s")
    assert reopened.calls()[0]["recording_state"] == "recording"  # a reader does not recover
    sink = StoreSink(reopened)
    assert sink.recovered == [call["id"]]
    (call,) = reopened.calls()
    assert (call["state"], call["recording_state"]) == ("incomplete", "incomplete")
    path = Path(str(call["recording"]))
    assert not part.exists() and path.read_bytes() == snapshot
    assert call["sha256"] == hashlib.sha256(snapshot).hexdigest() and call["size"] == len(snapshot)
    prefix = bytearray()
    with open(path, "rb") as f, pytest.raises(age.TruncatedError):
        for chunk in age.decrypt_chunks(f, [identity]):
            prefix += chunk
    got = au.read_au(bytes(prefix))[3]
    assert len(got) > 0 and np.array_equal(got, samples[: len(got)])
    assert StoreSink(reopened).recovered == []  # idempotent
    reopened.close()


def test_recover_with_missing_file(tmp_path: Path, recipient: str) -> None:
    store = Store.init(tmp_path / "s", [recipient])
    sink = StoreSink(store)
    feed(sink, [RecordingStarted(T0, "gone@host", "ulaw", 8000)])
    (call,) = store.calls()
    for active in sink._active.values():
        assert active.writer is not None
        active.writer.abandon()
    Path(str(call["recording"]) + ".part").unlink()
    store.close()
    with Store.open(tmp_path / "s") as reopened:
        assert StoreSink(reopened).recovered == [call["id"]]
        (call,) = reopened.calls()
        assert (call["recording_state"], call["sha256"], call["size"]) == ("incomplete", None, 0)


def test_recover_renamed_but_not_indexed(tmp_path: Path, recipient: str) -> None:
    """Crash between the rename and the index update: the final file is kept as is."""
    store = Store.init(tmp_path / "s", [recipient])
    sink = StoreSink(store)
    feed(sink, call_events("late@host", real_stereo("ulaw")[:1600])[:-1])
    for active in sink._active.values():
        assert active.writer is not None
        info = active.writer.finish()
    store.close()
    with Store.open(tmp_path / "s") as reopened:
        StoreSink(reopened)
        (call,) = reopened.calls()
        assert call["recording_state"] == "incomplete" and call["sha256"] == info.sha256


def test_log_uris_off_by_default(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="recorderd.store.sink")
    sink = StoreSink(store)
    feed(sink, call_events("c@host", np.zeros((160, 2), np.int16)))
    assert "07700900123" not in caplog.text and "recording" in caplog.text
    caplog.clear()
    sink.log_uris = True
    feed(sink, call_events("d@host", np.zeros((160, 2), np.int16)))
    assert "07700900123" in caplog.text


def test_store_files_have_private_modes(store: Store) -> None:
    sink = StoreSink(store)
    feed(sink, call_events("m@host", np.zeros((160, 2), np.int16)))
    sink.close()
    for path in [store.root, *store.root.rglob("*")]:
        expected = 0o700 if path.is_dir() else 0o600
        assert stat.S_IMODE(path.stat().st_mode) == expected, path


def test_second_sink_on_the_same_store_leaves_live_recordings_alone(store: Store) -> None:
    first = StoreSink(store)
    feed(first, [RecordingStarted(T0, "live@host", "ulaw", 8000)])
    second = StoreSink(store)
    assert second.recovered == []
    (call,) = store.calls()
    assert call["recording_state"] == "recording"
    assert Path(str(call["recording"]) + ".part").exists()
    first.close()
