"""SinkThread: the store's writing on its own thread, as the daemon runs it."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from recorderd.errors import StoreError
from recorderd.store import age, au
from recorderd.store.sink import StoreSink
from recorderd.store.store import Store
from recorderd.store.worker import SinkThread
from tests.store.helpers import call_events, real_stereo


def _opener(root: Path) -> object:
    return lambda: Store.open(root)


def test_recordings_written_on_the_thread_match_the_sink(store: Store, identity: str) -> None:
    samples = real_stereo("ulaw")
    root = store.root
    store.close()
    worker = SinkThread(_opener(root))  # type: ignore[arg-type]
    events = call_events("c1@host", samples)
    for k in range(0, len(events), 2):
        worker.submit(events[k : k + 2])
    worker.close()
    assert worker.errors() == []
    with Store.open(root) as again:
        (call,) = again.calls()
    assert call["recording_state"] == "complete"
    data = Path(str(call["recording"])).read_bytes()
    decoded = au.read_au(age.decrypt(data, [identity]))[3]
    assert np.array_equal(decoded, samples)


def test_submit_does_not_wait_for_a_slow_disk(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """While the store thread is stuck in a write, the capture thread can still hand over batches."""
    root = store.root
    store.close()
    entered, release = threading.Event(), threading.Event()
    handled: list[object] = []
    real = StoreSink.handle

    def stuck(self: StoreSink, event: object) -> None:
        entered.set()
        assert release.wait(30)
        handled.append(event)
        real(self, event)  # type: ignore[arg-type]

    monkeypatch.setattr(StoreSink, "handle", stuck)
    events = call_events("c2@host", real_stereo("alaw"))
    worker = SinkThread(_opener(root), depth=len(events))  # type: ignore[arg-type]
    try:
        worker.submit(events[:1])
        assert entered.wait(30)  # the thread is now inside a write that does not return
        for event in events[1:]:
            worker.submit([event])  # returns: queued, not written
        assert worker.backlog == len(events) - 1 and handled == []
    finally:
        release.set()
        worker.close()
    assert handled == events


def test_store_errors_come_back_to_the_daemon(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    root = store.root
    store.close()
    calls = []

    def full(self: StoreSink) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise StoreError("disk full: cannot write recording (test)")

    monkeypatch.setattr(StoreSink, "flush", full)
    worker = SinkThread(_opener(root))  # type: ignore[arg-type]
    worker.submit(call_events("c3@host", real_stereo("ulaw"))[:1])
    worker.close()
    errors = worker.errors()
    assert [str(e) for e in errors] == ["disk full: cannot write recording (test)"]


def test_a_bug_in_the_sink_stops_the_thread_and_reaches_the_daemon(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = store.root
    store.close()

    def broken(self: StoreSink, event: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(StoreSink, "handle", broken)
    worker = SinkThread(_opener(root), depth=2)  # type: ignore[arg-type]
    events = call_events("c4@host", real_stereo("ulaw"))
    with pytest.raises(RuntimeError, match="a bug"):
        for event in events * 10:
            worker.submit([event])
        worker.close()
    with Store.open(root) as again:  # the thread released the writer lock on its way out
        assert again.lock_for_writing()


def test_a_store_that_cannot_be_opened_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        SinkThread(_opener(tmp_path / "nowhere"))  # type: ignore[arg-type]
