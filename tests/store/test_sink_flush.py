"""Group commit and the wall-clock sync pass: what one flush() of the sink costs and guarantees."""

from __future__ import annotations

import errno
import hashlib
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from recorderd.errors import StoreError
from recorderd.events import AudioBlock, CallFinished, RecordingStarted
from recorderd.store import age, au
from recorderd.store import writer as writer_module
from recorderd.store.age import CHUNK
from recorderd.store.sink import StoreSink
from recorderd.store.store import INDEX_FILE, Store
from tests.store.helpers import T0, call_events, call_started, real_stereo
from tests.store.sync_calls import break_sync_of, failing_syncfs, sync_calls

needs_syncfs = pytest.mark.skipif(writer_module._SYNCFS is None, reason="no syncfs(2) here")


def calls_in_one_batch(n: int, frames: int = 1600) -> tuple[list[object], dict[str, np.ndarray]]:
    """``n`` calls interleaved as one batch would carry them: all start, their audio round-robin,
    all finish."""
    audio = {f"c{i}@host": np.roll(real_stereo("ulaw"), 800 * i, axis=0)[:frames] for i in range(n)}
    per_call = [
        call_events(call_id, samples, ts=T0 + i) for i, (call_id, samples) in enumerate(audio.items())
    ]
    starts = [e for events in per_call for e in events[:2]]
    blocks = [events[2:-1] for events in per_call]
    middle = [block for row in zip(*blocks, strict=True) for block in row]
    ends = [events[-1] for events in per_call]
    return starts + middle + ends, audio


def decrypted(call: dict[str, object], identity: str) -> np.ndarray:
    return au.read_au(age.decrypt(Path(str(call["recording"])).read_bytes(), [identity]))[3]


@needs_syncfs
def test_a_batch_of_calls_costs_two_commits_one_syncfs_one_directory_sync(
    store: Store, identity: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = StoreSink(store, clock=lambda: 0.0)
    events, audio = calls_in_one_batch(12)
    statements: list[str] = []
    store.index.conn.set_trace_callback(statements.append)
    calls = sync_calls(monkeypatch)
    for event in events:
        sink.handle(event)  # type: ignore[arg-type]
    assert statements == [] and calls == []  # handle() does no index work and no sync
    sink.flush()
    assert statements.count("BEGIN IMMEDIATE") == statements.count("COMMIT") == 2
    # One syncfs for the twelve files' data, one fsync for the directory all twelve were renamed in.
    assert calls == ["syncfs", "fsync"]
    found = store.calls()
    assert len(found) == 12 and {c["recording_state"] for c in found} == {"complete"}
    for call in found:
        path = Path(str(call["recording"]))
        assert call["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert np.array_equal(decrypted(call, identity), audio[str(call["call_id"])])
    sink.close()


def test_calls_begun_in_one_batch_and_ended_in_another(store: Store, identity: str) -> None:
    sink = StoreSink(store, clock=lambda: 0.0)
    events, audio = calls_in_one_batch(5)
    statements: list[str] = []
    store.index.conn.set_trace_callback(statements.append)
    middle = len(events) - 5
    for event in events[:middle]:
        sink.handle(event)  # type: ignore[arg-type]
    sink.flush()
    assert statements.count("COMMIT") == 1
    assert {c["recording_state"] for c in store.calls()} == {"recording"}
    for event in events[middle:]:
        sink.handle(event)  # type: ignore[arg-type]
    sink.flush()
    assert statements.count("COMMIT") == 2
    for call in store.calls():
        assert call["recording_state"] == "complete"
        assert np.array_equal(decrypted(call, identity), audio[str(call["call_id"])])
    sink.flush()  # nothing new: no transaction
    assert statements.count("COMMIT") == 2
    sink.close()


def test_the_row_is_committed_before_the_file_exists(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Recovery finds every .part because its row in state 'recording' was committed first."""
    seen: list[str] = []
    real_open = store.open_recording_at

    def open_recording_at(path: str, encoding: str, sample_rate: int) -> object:
        assert not store.index.conn.in_transaction
        with sqlite3.connect(store.root / INDEX_FILE) as other:  # sees committed rows only
            (state,) = other.execute("SELECT state FROM recordings WHERE path = ?", (path,)).fetchone()
        seen.append(state)
        assert not list((store.root / "recordings").rglob(f"{Path(path).name}*"))
        return real_open(path, encoding, sample_rate)

    monkeypatch.setattr(store, "open_recording_at", open_recording_at)
    sink = StoreSink(store)
    events, _ = calls_in_one_batch(3)
    for event in events:
        sink.handle(event)  # type: ignore[arg-type]
    sink.flush()
    assert seen == ["recording"] * 3
    sink.close()


def test_one_call_id_twice_in_one_batch(store: Store, identity: str) -> None:
    first = real_stereo("alaw")[:1600]
    second = real_stereo("alaw")[1600:4000]
    sink = StoreSink(store)
    for event in call_events("again@host", first, "alaw") + call_events("again@host", second, "alaw", T0 + 9):
        sink.handle(event)  # type: ignore[arg-type]
    sink.flush()
    one, two = store.calls(call_id="again@host")
    assert one["id"] != two["id"]
    assert np.array_equal(decrypted(one, identity), first)
    assert np.array_equal(decrypted(two, identity), second)


def test_audio_held_for_an_unopened_recording_stays_under_one_chunk(store: Store) -> None:
    """Without a flush, the sink flushes by itself before a new recording holds a chunk's worth."""
    sink = StoreSink(store)
    samples = np.tile(real_stereo("ulaw"), (2, 1))
    block = 8000  # 16,000 bytes of stereo G.711
    sink.handle(call_started("long@host"))
    sink.handle(RecordingStarted(T0 + 1, "long@host", "ulaw", 8000))
    held = 0
    for start in range(0, 8 * block, block):
        sink.handle(AudioBlock(T0 + 1, "long@host", start, samples[start : start + block]))
        held += 2 * block
        if held < CHUNK:
            assert store.calls() == []  # 4 blocks: 64,000 bytes held, one short of 65,536
        else:
            break
    assert held == 5 * 2 * block  # the fifth block made the sink flush
    (call,) = store.calls()
    assert call["recording_state"] == "recording" and Path(str(call["recording"]) + ".part").exists()
    sink.close()


def open_calls(sink: StoreSink, n: int) -> list[str]:
    for i in range(n):
        sink.handle(call_started(f"s{i}@host"))
        sink.handle(RecordingStarted(T0 + 1, f"s{i}@host", "ulaw", 8000))
    sink.flush()
    return [f"s{i}@host" for i in range(n)]


def seal_a_chunk_each(sink: StoreSink, call_ids: list[str], start: int) -> int:
    """Append 5 s of audio to every call (80,000 bytes: at least one chunk sealed each)."""
    samples = np.tile(real_stereo("ulaw"), (2, 1))
    for call_id in call_ids:
        sink.handle(AudioBlock(T0 + 1, call_id, start, samples[start : start + 40000]))
    return start + 40000


@needs_syncfs
def test_the_sync_pass_runs_by_wall_clock(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    sink = StoreSink(store, clock=lambda: now[0])
    call_ids = open_calls(sink, 3)
    calls = sync_calls(monkeypatch)
    at = seal_a_chunk_each(sink, call_ids, 0)
    for t in (100.5, 101.0, 104.0):
        now[0] = t
        sink.flush()
    assert calls == []  # 4 s of wall time: nothing synced yet, however much audio was written
    now[0] = 105.0
    sink.flush()
    assert calls == ["syncfs"]  # one system call for the three files
    sink.flush()
    at = seal_a_chunk_each(sink, call_ids, at)
    now[0] = 109.0
    sink.flush()
    assert calls == ["syncfs"]
    now[0] = 110.0
    sink.flush()
    assert calls == ["syncfs", "syncfs"]
    now[0] = 120.0
    sink.flush()  # nothing sealed since: nothing to sync
    assert calls == ["syncfs", "syncfs"]
    sink.close()


def test_the_sync_pass_without_syncfs_syncs_each_file_that_sealed_a_chunk(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [0.0]
    sink = StoreSink(store, clock=lambda: now[0])
    call_ids = open_calls(sink, 3)
    calls = sync_calls(monkeypatch)
    monkeypatch.setattr(writer_module, "_SYNCFS", None)
    seal_a_chunk_each(sink, call_ids[:2], 0)
    now[0] = 5.0
    sink.flush()
    assert calls == ["fdatasync", "fdatasync"]  # the third sealed nothing
    sink.close()


def test_a_failed_syncfs_raises_a_store_error_once_and_is_retried(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [0.0]
    sink = StoreSink(store, clock=lambda: now[0])
    call_ids = open_calls(sink, 2)
    seal_a_chunk_each(sink, call_ids, 0)
    monkeypatch.setattr(writer_module, "_SYNCFS", failing_syncfs(errno.ENOSPC))
    now[0] = 5.0
    with pytest.raises(StoreError) as err:
        sink.flush()
    assert str(err.value) == (
        "disk full: cannot sync the recordings to disk"
        " (free space on the store's disk; what was saved is kept)"
    )
    monkeypatch.undo()
    calls = sync_calls(monkeypatch)
    sink.flush()  # the pass is still due, but each file's own fdatasync succeeded: nothing to sync
    assert calls == []
    for call_id in call_ids:  # every file's own sync succeeded: the recordings are unharmed
        record = call_events(call_id, np.zeros((40000, 2), np.int16))[-1]
        assert isinstance(record, CallFinished)
        sink.handle(record)
    sink.flush()
    assert {c["recording_state"] for c in store.calls()} == {"complete"}
    sink.close()


def test_a_file_whose_own_sync_fails_is_kept_as_incomplete(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [0.0]
    sink = StoreSink(store, clock=lambda: now[0])
    call_ids = open_calls(sink, 2)
    seal_a_chunk_each(sink, call_ids, 0)
    bad = sink._active[call_ids[0]].writer
    assert bad is not None
    break_sync_of(monkeypatch, bad)
    now[0] = 5.0
    with pytest.raises(StoreError, match=r"^cannot write recording .*\.part: Input/output error$"):
        sink.flush()
    monkeypatch.undo()
    for call_id in call_ids:
        sink.handle(call_events(call_id, np.zeros((40000, 2), np.int16))[-1])  # type: ignore[arg-type]
    sink.flush()
    states = {c["call_id"]: (c["state"], c["recording_state"]) for c in store.calls()}
    assert states == {call_ids[0]: ("incomplete", "incomplete"), call_ids[1]: ("finished", "complete")}
    sink.close()


def test_a_finished_file_whose_own_sync_fails_is_kept_as_incomplete(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = StoreSink(store, clock=lambda: 0.0)
    events, _ = calls_in_one_batch(2)
    for event in events[:-2]:
        sink.handle(event)  # type: ignore[arg-type]
    sink.flush()
    bad = sink._active["c0@host"].writer
    assert bad is not None
    break_sync_of(monkeypatch, bad)
    for event in events[-2:]:
        sink.handle(event)  # type: ignore[arg-type]
    with pytest.raises(StoreError, match=r"^cannot write recording .*\.part: Input/output error$"):
        sink.flush()
    states = {c["call_id"]: (c["state"], c["recording_state"]) for c in store.calls()}
    assert states == {"c0@host": ("incomplete", "incomplete"), "c1@host": ("finished", "complete")}
    sink.close()


def test_no_row_no_file_when_the_index_cannot_be_written(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(rows: object) -> None:
        raise StoreError("disk full: cannot update the index (free space on the store's disk)")

    monkeypatch.setattr(store.index, "begin_recordings", full)
    sink = StoreSink(store)
    events = call_events("nowhere@host", real_stereo("ulaw")[:3200])
    for event in events[:-1]:
        sink.handle(event)  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="^disk full: cannot update the index"):
        sink.flush()
    sink.handle(AudioBlock(T0 + 9, "nowhere@host", 3200, np.zeros((160, 2), np.int16)))  # ignored
    monkeypatch.undo()
    sink.handle(events[-1])  # type: ignore[arg-type]
    sink.flush()
    (call,) = store.calls()
    assert (call["state"], call["recording"]) == ("incomplete", None)
    assert [p for p in (store.root / "recordings").rglob("*") if p.is_file()] == []
    sink.close()


def test_a_failed_finish_transaction_is_retried_at_the_next_flush(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = StoreSink(store)
    events, _ = calls_in_one_batch(3)
    real_finish = store.index.finish_calls
    tries: list[int] = []

    def finish_calls(outcomes: list[object]) -> None:
        tries.append(len(outcomes))
        if len(tries) == 1:
            raise StoreError("disk full: cannot update the index (free space on the store's disk)")
        real_finish(outcomes)  # type: ignore[arg-type]

    monkeypatch.setattr(store.index, "finish_calls", finish_calls)
    for event in events:
        sink.handle(event)  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="^disk full"):
        sink.flush()
    found = store.calls()
    assert {c["recording_state"] for c in found} == {"recording"}
    assert all(Path(str(c["recording"])).exists() for c in found)  # renamed, not yet indexed
    sink.flush()
    assert tries == [3, 3]
    assert {c["recording_state"] for c in store.calls()} == {"complete"}
    sink.close()


def test_close_closes_out_open_recordings_in_one_batch(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    sink = StoreSink(store, clock=lambda: 0.0)
    events, _ = calls_in_one_batch(4)
    for event in events[:-4]:  # no CallFinished
        sink.handle(event)  # type: ignore[arg-type]
    sink.flush()
    statements: list[str] = []
    store.index.conn.set_trace_callback(statements.append)
    calls = sync_calls(monkeypatch)
    sink.close()
    sink.close()  # idempotent
    assert statements.count("COMMIT") == 1
    assert calls in (["syncfs", "fsync"], ["fdatasync"] * 4 + ["fsync"])
    assert {(c["state"], c["recording_state"]) for c in store.calls()} == {("incomplete", "incomplete")}
