"""The store's side of the pipeline: engine events in, recordings and index rows out, in batches.

``handle(event)`` takes each event; ``flush()``, called by the replay loop after each batch of frames
and by the daemon on every turn of its loop, does the index work of the batch in a few system calls
instead of a few per call (group commit):

=================  ==============================================================================
event              effect
=================  ==============================================================================
CallStarted        remembered (From/To, INVITE time) until the call has media or finishes
RecordingStarted   noted; at the flush, one transaction inserts a calls row and a recordings row in
                   state 'recording' for every recording begun since the last flush, commits, and
                   only then opens their writers: a file never exists without its row, so a crash
                   from here on leaves a trace that :meth:`Store.recover` closes out
AudioBlock         appended to the call's writer (no index write); held in memory until the flush
                   when its writer is not open yet (less than one age chunk per recording: the sink
                   flushes by itself before that, so a crash loses no more than the unsealed chunk)
CallFinished       at the flush, with every other call that ended since the last one: each writer
                   sealed; one sync for all (writer.py :class:`Durability`); all renamed; each
                   directory fsynced once; then one transaction for every calls row, legs and
                   recording state ('complete', digest, size). A call without media (rejected,
                   cancelled) gets its calls row in the same transaction
write error        (a full disk) the StoreError is raised once; the recording stops there and its
                   sealed prefix is kept as 'incomplete' when the call finishes or the sink closes
other events       ignored: the CallRecord of CallFinished summarises them
=================  ==============================================================================

Durability by wall clock: every flush also runs a sync pass once :data:`FSYNC_EVERY_S` seconds
(``time.monotonic``, read here, never in the engine) have passed since the last one, over every writer
that sealed a chunk since; with flush() called at least every :data:`SYNC_SLACK_S` seconds (the daemon:
every loop, 0.25 s at most) no sealed chunk waits longer than FSYNC_EVERY_S for stable storage.

A crash between the renames and the index transaction leaves rows in 'recording' whose final file
exists without a ``.part``: :meth:`Store.recover` marks them 'incomplete' with the file's digest.

Every call gets its own uuid: a Call-ID seen again later (a capture replayed twice) is a new call.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from recorderd.errors import StoreError
from recorderd.events import AudioBlock, CallFinished, CallRecord, CallStarted, Event, RecordingStarted
from recorderd.store.age import CHUNK
from recorderd.store.index import Outcome, user_part
from recorderd.store.store import RECORDINGS, Store, file_sha256
from recorderd.store.writer import (
    FSYNC_EVERY_S,
    PART_SUFFIX,
    Durability,
    RecordingInfo,
    RecordingWriter,
    block_bytes,
    check_block,
    fsync_dir,
    write_error,
)

log = logging.getLogger(__name__)

SYNC_SLACK_S = 0.5  # a sync pass is due this long before FSYNC_EVERY_S: the longest gap between flushes
MAX_UNINDEXED = 10_000  # finished calls kept for a retry when their transaction failed (a full disk)
_FLUSH_ERRORS = (StoreError, sqlite3.Error, ValueError)


@dataclass(slots=True, eq=False)
class _Recording:
    uid: str
    call: dict[str, Any]  # the index's early columns, as of RecordingStarted
    path: str  # relative to the store's root
    encoding: str
    sample_rate: int
    writer: RecordingWriter | None = None  # opened by flush(), after its row is committed
    held: list[tuple[int, NDArray[np.generic]]] = field(default_factory=list)  # audio before the writer
    held_bytes: int = 0
    samples: int = 0  # frames accepted so far: where the next block must start
    failed: bool = False  # stopped by a write error: later audio ignored, its prefix kept


_Ending = tuple[_Recording | None, CallRecord | None]  # (None, record): a call without media


class StoreSink:
    """Consumes engine events for ``store``; takes the store's writer lock and recovers at start
    (:meth:`Store.recover`).

    ``log_uris``: put From/To URIs (patients' phone numbers) in the log; off by default.
    ``clock``: wall-clock seconds for the sync passes (tests give their own).
    """

    def __init__(
        self, store: Store, log_uris: bool = False, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self.log_uris = log_uris
        self.clock = clock
        # Recover only when taking the lock: once it is held, recordings in state 'recording' are
        # live ones (another sink on this Store), not a crash's leftovers.
        self.recovered = store.recover() if store.lock_for_writing() else []
        # Opened before any writer: syncfs reports writeback errors since its descriptor was opened.
        self._durability = Durability(store.root / RECORDINGS)
        self._synced_at = clock()
        self._started: dict[str, CallStarted] = {}
        self._active: dict[str, _Recording] = {}  # by Call-ID, from RecordingStarted to CallFinished
        self._new: list[_Recording] = []  # begun since the last flush
        self._ended: list[_Ending] = []  # finished since the last flush
        self._unindexed: list[Outcome] = []  # a failed transaction's outcomes, retried at each flush
        self._closed = False

    @property
    def active_calls(self) -> int:
        return len(self._active)

    def handle(self, event: Event) -> None:
        """Take one event; index work waits for :meth:`flush`. Raises a StoreError (a write error, at
        most once per recording) or ValueError (audio out of order)."""
        match event:
            case AudioBlock():
                self._audio(event)
            case CallStarted():
                self._started[event.call_id] = event
            case RecordingStarted():
                self._recording_started(event)
            case CallFinished():
                self._started.pop(event.call_id, None)
                self._ended.append((self._active.pop(event.call_id, None), event.record))

    def _recording_started(self, event: RecordingStarted) -> None:
        if event.call_id in self._active:
            log.warning("second RecordingStarted for an active call ignored")
            return
        uid = self.store.new_uid()
        call = self._early_columns(event)
        path = self.store.recording_path(uid, call["invite_ts"])
        recording = _Recording(uid, call, path, event.encoding, event.sample_rate)
        self._active[event.call_id] = recording
        self._new.append(recording)

    def _early_columns(self, event: RecordingStarted) -> dict[str, Any]:
        """What the index can say about a call when its media starts, before its CallRecord."""
        started = self._started.get(event.call_id)
        from_uri = started.from_uri if started else ""
        to_uri = started.to_uri if started else ""
        return {
            "call_id": event.call_id,
            "direction": "unknown",  # the site's rules are applied by the engine, in the CallRecord
            "from_uri": from_uri,
            "from_name": started.from_name if started else "",
            "from_user": user_part(from_uri),
            "to_uri": to_uri,
            "to_name": started.to_name if started else "",
            "to_user": user_part(to_uri),
            "invite_ts": started.ts if started else event.ts,
            "media_start_ts": event.ts,
            "sample_rate": event.sample_rate,
        }

    def _audio(self, event: AudioBlock) -> None:
        recording = self._active.get(event.call_id)
        if recording is None:
            raise ValueError("audio block for a call without RecordingStarted")
        if recording.failed:
            return  # its recording stopped at a write error; the error was raised once
        if recording.writer is not None:
            try:
                recording.writer.append(event.start, event.samples)
            except StoreError:
                recording.failed = True
                raise
            return
        check_block(recording.samples, recording.encoding, event.start, event.samples)
        recording.held.append((event.start, event.samples))
        recording.samples += len(event.samples)
        recording.held_bytes += block_bytes(recording.encoding, len(event.samples))
        if recording.held_bytes >= CHUNK:
            self.flush()  # keep what a crash can lose under one chunk, and memory bounded

    # ----------------------------------------------------------------------------------------------
    # Flush

    def flush(self) -> None:
        """Do the work of the events handled since the last flush, in this order: index and open the
        recordings begun, write their held audio; seal, sync, rename and index the calls ended; run
        the wall-clock sync pass when due. Everything is attempted; then the first error is raised
        (a StoreError, or sqlite3.Error), the recordings it hit being kept as 'incomplete'."""
        errors: list[Exception] = []
        self._open_new(errors)
        ended, self._ended = self._ended, []
        self._close_out(ended, errors)  # its sync is also the wall-clock pass, when due
        _raise_first(errors)

    def _open_new(self, errors: list[Exception]) -> None:
        new, self._new = self._new, []
        if not new:
            return
        try:
            self.store.index.begin_recordings([(r.uid, r.call, r.path, r.encoding) for r in new])
        except (StoreError, sqlite3.Error) as exc:
            errors.append(exc)  # no row, so no file either: these calls get their row when they end
            for recording in new:
                recording.failed = True
                recording.held = []
            return
        for recording in new:
            self._open_writer(recording, errors)

    def _open_writer(self, recording: _Recording, errors: list[Exception]) -> None:
        try:
            writer = self.store.open_recording_at(recording.path, recording.encoding, recording.sample_rate)
        except (StoreError, ValueError) as exc:
            recording.failed, recording.held = True, []
            errors.append(exc)
            return
        recording.writer = writer
        held, recording.held = recording.held, []
        try:
            for start, samples in held:
                writer.append(start, samples)
        except StoreError as exc:
            recording.failed = True
            errors.append(exc)
        if self.log_uris:
            call = recording.call
            log.info("call %s: recording %s -> %s", recording.uid, call["from_uri"], call["to_uri"])
        else:
            log.info("call %s: recording", recording.uid)

    def _close_out(self, ending: Sequence[_Ending], errors: list[Exception]) -> None:
        """Seal, sync, rename and index ``ending`` (record None: closed before the call ended)."""
        outcomes, self._unindexed = self._unindexed, []
        outcomes += [
            Outcome(self.store.new_uid(), record, "finished", None) for r, record in ending if r is None
        ]
        sealed, cut = self._seal([(r, record) for r, record in ending if r is not None], errors)
        lost = self._sync([r.writer for r, _ in sealed if r.writer is not None], errors)
        published: list[tuple[_Recording, CallRecord | None, RecordingInfo]] = []
        for recording, record in sealed:
            recording.failed = recording.failed or id(recording.writer) in lost
            info = None if recording.failed else self._publish(recording, errors)
            if info is None:
                cut.append((recording, record))
            else:
                published.append((recording, record, info))
        directories = {info.path.parent for _, _, info in published}
        cut_outcomes = [self._salvage(recording, record, directories, errors) for recording, record in cut]
        unsynced = self._sync_directories(directories, errors)
        outcomes += [
            self._outcome(r, record, info, info.path.parent in unsynced) for r, record, info in published
        ]
        outcomes += cut_outcomes
        try:
            self.store.index.finish_calls(outcomes)
        except (StoreError, sqlite3.Error) as exc:
            errors.append(exc)
            self._keep_unindexed(outcomes)
            return
        for recording, record, info in published:
            if record is not None:
                log.info("call %s: recording complete (%d samples)", recording.uid, info.samples)

    def _seal(
        self, ending: list[tuple[_Recording, CallRecord | None]], errors: list[Exception]
    ) -> tuple[list[tuple[_Recording, CallRecord | None]], list[tuple[_Recording, CallRecord | None]]]:
        """Seal each writer's final chunk: (sealed, cut by a write error now or before)."""
        sealed, cut = [], []
        for recording, record in ending:
            if recording.writer is None or recording.failed:
                cut.append((recording, record))
                continue
            try:
                recording.writer.seal()
                sealed.append((recording, record))
            except StoreError as exc:
                recording.failed = True
                errors.append(exc)
                cut.append((recording, record))
        return sealed, cut

    def _publish(self, recording: _Recording, errors: list[Exception]) -> RecordingInfo | None:
        assert recording.writer is not None
        try:
            return recording.writer.publish()
        except StoreError as exc:
            recording.failed = True
            errors.append(exc)
            return None

    def _outcome(
        self, recording: _Recording, record: CallRecord | None, info: RecordingInfo, unsynced: bool
    ) -> Outcome:
        """A whole recording's outcome: 'complete', or 'incomplete' when its rename may not last."""
        if record is None:
            log.warning("call %s: recording closed before the call ended", recording.uid)
            return Outcome(
                recording.uid, None, "incomplete", ("incomplete", info.sha256, info.size), info.samples
            )
        if info.samples != record.samples:
            log.warning(
                "call %s: CallRecord says %d samples, the recording holds %d",
                recording.uid,
                record.samples,
                info.samples,
            )
        state = "incomplete" if unsynced else "complete"
        call_state = "incomplete" if unsynced else "finished"
        return Outcome(recording.uid, record, call_state, (state, info.sha256, info.size), info.samples)

    def _salvage(
        self,
        recording: _Recording,
        record: CallRecord | None,
        directories: set[Path],
        errors: list[Exception],
    ) -> Outcome:
        """A recording cut by a write error (a full disk): keep its sealed prefix as 'incomplete',
        as recovery after a crash would."""
        if recording.writer is not None:
            recording.writer.abandon()
        path = self.store.root / recording.path
        part = path.with_name(path.name + PART_SUFFIX)
        sha256: str | None = None
        size = 0
        try:
            if part.exists():
                os.rename(part, path)
                directories.add(path.parent)
            if path.exists():
                sha256, size = file_sha256(path)
        except OSError as exc:
            errors.append(write_error(f"cannot keep recording {path}", exc))
        log.error("call %s: recording cut short by a write error; kept as incomplete", recording.uid)
        return Outcome(recording.uid, record, "incomplete", ("incomplete", sha256, size))

    def _sync(self, sealed: list[RecordingWriter], errors: list[Exception]) -> set[int]:
        """Make ``sealed`` durable; when the wall-clock pass is due, with every writer that sealed a
        chunk since the last one (one syncfs covers them all). Returns the ids of the writers whose
        data could not be synced: they are abandoned, and their recordings (if active) cut."""
        now = self.clock()
        due = now - self._synced_at >= FSYNC_EVERY_S - SYNC_SLACK_S
        writers = list(sealed)
        if due:
            writers += [r.writer for r in self._active.values() if r.writer is not None and r.writer.unsynced]
        failures = self._durability.sync(writers)
        for writer, exc in failures:
            if writer is None:
                errors.append(write_error("cannot sync the recordings to disk", exc))
            else:
                writer.abandon()  # its recording is cut
                errors.append(write_error(f"cannot write recording {writer.part}", exc))
        lost = {id(w) for w, _ in failures if w is not None}
        if lost:
            for recording in self._active.values():
                recording.failed = recording.failed or id(recording.writer) in lost
        if due and not any(w is None for w, _ in failures):
            self._synced_at = now
        return lost

    def _sync_directories(self, directories: set[Path], errors: list[Exception]) -> set[Path]:
        """fsync each directory once; the ones that failed (their renames may not survive power loss)."""
        failed = set()
        for directory in directories:
            try:
                fsync_dir(directory)
            except OSError as exc:
                failed.add(directory)
                errors.append(write_error(f"cannot sync directory {directory}", exc))
        return failed

    def _keep_unindexed(self, outcomes: list[Outcome]) -> None:
        """Keep outcomes whose transaction failed for the next flush, at most MAX_UNINDEXED."""
        dropped = len(outcomes) - MAX_UNINDEXED
        if dropped > 0:
            log.error(
                "%d finished calls could not be indexed; their recordings are recovered as incomplete"
                " at the next start",
                dropped,
            )
        self._unindexed = outcomes[-MAX_UNINDEXED:]

    # ----------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Flush; then seal every recording still open and mark it 'incomplete' (shutdown mid-call),
        all in one batch. Idempotent. Raises the first error once everything is closed out."""
        if self._closed:
            return
        errors: list[Exception] = []
        try:
            self.flush()
        except _FLUSH_ERRORS as exc:
            errors.append(exc)
        remaining = [(recording, None) for recording in self._active.values()]
        self._active.clear()
        self._started.clear()
        try:
            self._close_out(remaining, errors)
        finally:
            self._closed = True
            self._durability.close()
        _raise_first(errors)


def _raise_first(errors: list[Exception]) -> None:
    if not errors:
        return
    if len(errors) > 1:
        log.error("%d more store errors in the same flush after: %s", len(errors) - 1, errors[0])
    raise errors[0]
