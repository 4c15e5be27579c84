"""The store's writing on a thread of its own, so the capture loop never waits for the disk.

Creating a file, a sync, an SQLite commit can each take milliseconds, and far longer on a disk that
is busy (a backup, an ext4 mounted with ``discard`` trimming the blocks a retention sweep freed: on
the reference machine a file creation then took 0.5-0.9 ms instead of 0.02 ms). On the capture
thread every such wait is time in which the kernel's capture ring fills, and a call-setup storm of
a few thousand new recordings overflowed it. So the daemon hands each batch's events to
:class:`SinkThread`, which runs the :class:`StoreSink` on a thread with its own store connection
(an SQLite connection stays on the thread that made it) and flushes whenever it has caught up, and
at least every :data:`FLUSH_EVERY` seconds while busy. Python releases the GIL while the kernel
works, so the capture thread reads on meanwhile.

The queue between them is bounded (:data:`DEPTH` batches): if the store falls behind for long, the
capture loop waits for it and the kernel's ring, not this process's memory, absorbs the backlog
(seen as kernel drops). Store errors (a full disk) come back to the daemon through :meth:`errors`,
to be counted and logged as before; anything else the sink raises stops the thread and is raised
again in the daemon by the next call, which then exits for systemd to restart it.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable

from recorderd.errors import StoreError
from recorderd.events import Event
from recorderd.store.sink import StoreSink
from recorderd.store.store import Store

log = logging.getLogger(__name__)

DEPTH = 64  # batches of events waiting for the store: at most about a second at line rate
FLUSH_EVERY = 0.25  # seconds between flushes while the queue never runs dry (StoreSink.flush)
STORE_ERRORS = (OSError, StoreError, sqlite3.Error, ValueError)
_STOP = object()


class SinkThread:
    """A :class:`StoreSink` on its own thread. ``open_store`` runs on that thread; what it or the
    sink's recovery raises is raised here."""

    def __init__(self, open_store: Callable[[], Store], log_uris: bool = False, depth: int = DEPTH) -> None:
        self._queue: queue.Queue[list[Event] | object] = queue.Queue(maxsize=depth)
        self._errors: queue.SimpleQueue[Exception] = queue.SimpleQueue()
        self._ready = threading.Event()
        self._fatal: BaseException | None = None
        self._sink: StoreSink | None = None
        self.recovered: list[str] = []
        self._log_uris = log_uris
        self._thread = threading.Thread(target=self._run, args=(open_store,), name="recorderd-store")
        self._thread.start()
        self._ready.wait()
        self._raise_fatal()

    # -- the capture thread's side -------------------------------------------------------------------

    @property
    def active_calls(self) -> int:
        return self._sink.active_calls if self._sink is not None else 0

    @property
    def log_uris(self) -> bool:
        return self._log_uris

    @log_uris.setter
    def log_uris(self, value: bool) -> None:
        self._log_uris = value
        if self._sink is not None:
            self._sink.log_uris = value

    @property
    def backlog(self) -> int:
        """Batches waiting for the store."""
        return self._queue.qsize()

    def submit(self, events: list[Event]) -> None:
        """Hand over one batch's events; waits only while :data:`DEPTH` batches are already queued."""
        if not events:
            return
        while True:
            self._raise_fatal()
            try:
                self._queue.put(events, timeout=0.5)
                return
            except queue.Full:
                continue

    def errors(self) -> list[Exception]:
        """The store errors since the last call (each raised once by the sink), oldest first."""
        out = []
        while True:
            try:
                out.append(self._errors.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> None:
        """Write out everything queued, close the sink (open recordings become 'incomplete') and the
        thread's store; raises what stopped the thread, if anything did."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        self._raise_fatal()

    def _raise_fatal(self) -> None:
        if self._fatal is not None:
            fatal, self._fatal = self._fatal, None
            raise fatal

    # -- the store thread ----------------------------------------------------------------------------

    def _run(self, open_store: Callable[[], Store]) -> None:
        try:
            store = open_store()
            try:
                sink = StoreSink(store, self._log_uris)
            except BaseException:
                store.close()
                raise
        except BaseException as exc:
            self._fatal = exc
            self._ready.set()
            return
        self._sink, self.recovered = sink, list(sink.recovered)
        self._ready.set()
        try:
            self._serve(sink)
        except BaseException as exc:  # a bug, not the disk: stop, and let the daemon exit
            log.exception("the store thread stopped")
            self._fatal = exc
            while not self._queue.empty():  # unblock a waiting submit
                self._queue.get_nowait()
        finally:
            self._guard(sink.close)
            store.close()

    def _serve(self, sink: StoreSink) -> None:
        flushed = time.monotonic()
        while True:
            try:
                item = self._queue.get(timeout=FLUSH_EVERY)
            except queue.Empty:
                item = None
            if item is _STOP:
                self._guard(sink.flush)
                return
            if isinstance(item, list):
                for event in item:
                    self._guard(sink.handle, event)
            now = time.monotonic()
            if item is None or self._queue.empty() or now - flushed >= FLUSH_EVERY:
                self._guard(sink.flush)
                flushed = now

    def _guard(self, work: Callable[..., None], *args: Event) -> None:
        try:
            work(*args)
        except STORE_ERRORS as err:
            self._errors.put(err)
