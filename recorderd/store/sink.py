"""The store's side of the pipeline: engine events in, recordings and index rows out.

=================  ==============================================================================
event              effect
=================  ==============================================================================
CallStarted        remembered (From/To, INVITE time) until the call has media or finishes
RecordingStarted   calls row + recordings row in state 'recording', then the writer is opened, so
                   a crash from here on leaves a trace that :meth:`Store.recover` closes out
AudioBlock         appended to the call's writer (no index write)
CallFinished       writer finished (sealed, fsynced, renamed); then, in one transaction, the full
                   calls row, the legs and the recording's 'complete' state, digest and size. A
                   call without media (rejected, cancelled) gets its calls row here, no recording
write error        (a full disk) the StoreError is raised once; the recording stops there and its
                   sealed prefix is kept as 'incomplete' when the call finishes or the sink closes
other events       ignored: the CallRecord of CallFinished summarises them
=================  ==============================================================================

Every call gets its own uuid: a Call-ID seen again later (a capture replayed twice) is a new call.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from recorderd.errors import StoreError
from recorderd.events import AudioBlock, CallFinished, CallRecord, CallStarted, Event, RecordingStarted
from recorderd.store.index import user_part
from recorderd.store.store import Store, file_sha256
from recorderd.store.writer import RecordingWriter, fsync_dir

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Active:
    uid: str
    writer: RecordingWriter


class StoreSink:
    """Consumes engine events for ``store``; takes the store's writer lock and recovers at start
    (:meth:`Store.recover`).

    ``log_uris``: put From/To URIs (patients' phone numbers) in the log; off by default.
    """

    def __init__(self, store: Store, log_uris: bool = False) -> None:
        self.store = store
        self.log_uris = log_uris
        # Recover only when taking the lock: once it is held, recordings in state 'recording' are
        # live ones (another sink on this Store), not a crash's leftovers.
        self.recovered = store.recover() if store.lock_for_writing() else []
        self._started: dict[str, CallStarted] = {}
        self._active: dict[str, _Active] = {}
        self._failed: dict[str, _Active] = {}  # recordings stopped by a write error, until CallFinished

    @property
    def active_calls(self) -> int:
        return len(self._active)

    def handle(self, event: Event) -> None:
        match event:
            case AudioBlock():
                self._audio(event)
            case CallStarted():
                self._started[event.call_id] = event
            case RecordingStarted():
                self._recording_started(event)
            case CallFinished():
                self._finished(event)

    def _recording_started(self, event: RecordingStarted) -> None:
        if event.call_id in self._active:
            log.warning("second RecordingStarted for an active call ignored")
            return
        uid = self.store.new_uid()
        call = self._early_columns(event)
        path = self.store.recording_path(uid, call["invite_ts"])
        self.store.index.begin_recording(uid, call, path, event.encoding)
        writer = self.store.open_recording(uid, event.encoding, event.sample_rate, call["invite_ts"])
        self._active[event.call_id] = _Active(uid, writer)
        if self.log_uris:
            log.info("call %s: recording %s -> %s", uid, call["from_uri"], call["to_uri"])
        else:
            log.info("call %s: recording", uid)

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
        if event.call_id in self._failed:
            return  # its recording stopped at a write error; the error was raised once
        active = self._active.get(event.call_id)
        if active is None:
            raise ValueError("audio block for a call without RecordingStarted")
        try:
            active.writer.append(event.start, event.samples)
        except StoreError:
            self._failed[event.call_id] = self._active.pop(event.call_id)
            raise

    def _finished(self, event: CallFinished) -> None:
        self._started.pop(event.call_id, None)
        record = event.record
        failed = self._failed.get(event.call_id)
        if failed is not None:
            self._salvage(failed, record)  # may fail again on a full disk: close() retries
            del self._failed[event.call_id]
            return
        active = self._active.pop(event.call_id, None)
        if active is None:
            self.store.index.finish_call(self.store.new_uid(), record, "finished", None)
            return
        try:
            info = active.writer.finish()
        except StoreError:
            self._salvage(active, record)
            raise
        if info.samples != record.samples:
            log.warning(
                "call %s: CallRecord says %d samples, the recording holds %d",
                active.uid,
                record.samples,
                info.samples,
            )
        self.store.index.finish_call(
            active.uid, record, "finished", ("complete", info.sha256, info.size), info.samples
        )
        log.info("call %s: recording complete (%d samples)", active.uid, info.samples)

    def _salvage(self, active: _Active, record: CallRecord | None) -> None:
        """A recording cut by a write error (a full disk): keep its sealed prefix as 'incomplete',
        as recovery after a crash would."""
        writer = active.writer
        writer.abandon()
        if writer.part.exists():
            os.rename(writer.part, writer.path)
            fsync_dir(writer.path.parent)
        sha256, size = file_sha256(writer.path) if writer.path.exists() else (None, 0)
        if record is None:
            self.store.index.mark_incomplete(active.uid, sha256, size, None)
        else:
            self.store.index.finish_call(active.uid, record, "incomplete", ("incomplete", sha256, size))
        log.error("call %s: recording cut short by a write error; kept as incomplete", active.uid)

    def close(self) -> None:
        """Finish every recording still open and mark it 'incomplete' (shutdown mid-call)."""
        for active in self._active.values():
            try:
                info = active.writer.finish()
            except StoreError:
                self._salvage(active, None)
                continue
            self.store.index.mark_incomplete(active.uid, info.sha256, info.size, info.samples)
            log.warning("call %s: recording closed before the call ended", active.uid)
        for active in self._failed.values():
            self._salvage(active, None)
        self._active.clear()
        self._failed.clear()
        self._started.clear()
