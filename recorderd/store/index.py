"""The SQLite index of a store: calls, their RTP legs, recordings, holds, tags, and the audit chain.

SQLite in WAL mode, so the CLI reads while the daemon writes; ``STRICT`` tables, so a wrong type is
an error instead of a silent conversion. The schema version is ``PRAGMA user_version``, the number
of entries of :data:`~recorderd.store.schema.MIGRATIONS` applied; opening an index applies the
missing ones in one transaction.

The index changes only at lifecycle points (recording started, call finished, recovery, export,
holds, tags, deletions), never per audio block; the sink writes the recordings begun, and the calls
finished, since its last flush in one transaction each (:meth:`Index.begin_recordings`,
:meth:`Index.finish_calls`), so a busy second costs a few commits rather than a few per call. Every
change that must be audited appends its audit entry in the same transaction (:meth:`Index.audit`);
``audit`` and ``audit_heads`` are append-only.
A full disk is reported as a StoreError saying so.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from recorderd.errors import StoreError
from recorderd.events import CallRecord, LegRecord
from recorderd.store import audit as chain
from recorderd.store.numbers import normalise_number, user_part
from recorderd.store.schema import MIGRATIONS

__all__ = ["MIGRATIONS", "Index", "Outcome", "call_columns", "normalise_number", "user_part"]

SCHEMA_VERSION = len(MIGRATIONS)
_BUSY_TIMEOUT_MS = 10_000
_IN_BATCH = 500  # SQLite's default limit on host parameters is 999 in older builds
# A call's parties are normalised when its recording starts and again when it ends: remember them.
_normalised = lru_cache(maxsize=4096)(normalise_number)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one call ends in the index (:meth:`Index.finish_calls`).

    ``record`` given: the call's final row and legs, ``state`` its calls.state, ``recording`` its
    recording's (state, sha256, size) or None when it has none. ``record`` None: a recording closed or
    recovered without its CallFinished; ``recording`` then gives the digest and size, and both the
    call and the recording become 'incomplete' (``state`` is not used).
    """

    uid: str
    record: CallRecord | None
    state: str
    recording: tuple[str, str | None, int] | None
    samples: int | None = None


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def call_columns(record: CallRecord) -> dict[str, Any]:
    """The ``calls`` columns that a finished :class:`CallRecord` determines."""
    return {
        "call_id": record.call_id,
        "direction": str(record.direction),
        "from_uri": record.from_uri,
        "from_name": record.from_name,
        "from_user": user_part(record.from_uri),
        "to_uri": record.to_uri,
        "to_name": record.to_name,
        "to_user": user_part(record.to_uri),
        "invite_ts": record.invite_ts,
        "answer_ts": record.answer_ts,
        "end_ts": record.end_ts,
        "end_reason": str(record.end_reason),
        "sip_status": record.sip_status,
        "media_start_ts": record.media_start_ts,
        "samples": record.samples,
        "sample_rate": record.sample_rate,
        "dtmf": _json(
            [
                {"t": d.t, "digit": d.digit, "duration_ms": d.duration_ms, "side": str(d.side)}
                for d in record.dtmf
            ]
        ),
        "holds": _json([{"start": s, "end": e} for s, e in record.holds]),
        "transfers": _json(list(record.transfers)),
    }


def _leg_columns(call: str, idx: int, leg: LegRecord) -> tuple[object, ...]:
    gaps = [{"start": g.start, "end": g.end, "reason": str(g.reason)} for g in leg.gaps]
    return (
        call,
        idx,
        str(leg.side),
        leg.ssrc,
        leg.src,
        leg.dst,
        leg.codec,
        leg.payload_type,
        leg.packets,
        leg.lost,
        leg.duplicates,
        int(leg.decoded),
        leg.first_ts,
        leg.last_ts,
        _json(gaps),
    )


def _connect(path: Path) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        # FULL: an index entry that says "complete" must survive a power cut; writes are rare.
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open index {path}: {exc}") from None
    if mode != "wal":
        conn.close()
        raise StoreError(f"cannot put index {path} in WAL mode (got {mode!r})")
    return conn


class Index:
    """A store's ``index.sqlite``. Methods that write run in one transaction each."""

    def __init__(
        self, conn: sqlite3.Connection, region: str = "GB", signer: Ed25519PrivateKey | None = None
    ) -> None:
        self.conn = conn
        self.region = region  # how numbers without a country code are read (normalise_number)
        self.signer = signer  # signs the audit head on every append; None: entries go unsigned

    @classmethod
    def open(cls, path: Path, region: str = "GB", signer: Ed25519PrivateKey | None = None) -> Index:
        """Open (creating when absent) and migrate the index at ``path``."""
        index = cls(_connect(path), region, signer)
        try:
            index._migrate()
        except BaseException:
            index.close()
            raise
        return index

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode == sqlite3.SQLITE_FULL:
                raise StoreError(
                    "disk full: cannot update the index (free space on the store's disk)"
                ) from None
            raise

    @property
    def version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        with self.transaction() as conn:
            # Read inside the write transaction: two processes cannot both apply a migration.
            version = self.version
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"index schema version {version} is newer than this recorderd"
                    f" understands ({SCHEMA_VERSION}); upgrade recorderd"
                )
            for migration in MIGRATIONS[version:]:
                for step in migration:
                    if isinstance(step, str):
                        conn.execute(step)
                    else:
                        step(conn, self.region)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # ----------------------------------------------------------------------------------------------
    # Lifecycle writes

    def begin_recording(self, uid: str, call: dict[str, Any], path: str, encoding: str) -> None:
        """A call whose first media just arrived: calls and recordings rows, state 'recording'."""
        self.begin_recordings([(uid, call, path, encoding)])

    def begin_recordings(self, rows: Sequence[tuple[str, dict[str, Any], str, str]]) -> None:
        """:meth:`begin_recording` for each (uid, call, path, encoding), in one transaction."""
        if not rows:
            return
        with self.transaction() as conn:
            for uid, call, path, encoding in rows:
                columns = {**call, **self._numbers(call), "id": uid, "state": "recording"}
                conn.execute(
                    f"INSERT INTO calls ({', '.join(columns)})"
                    f" VALUES ({', '.join(':' + c for c in columns)})",
                    columns,
                )
                conn.execute(
                    "INSERT INTO recordings (call, path, encoding, state) VALUES (?, ?, ?, 'recording')",
                    (uid, path, encoding),
                )

    def finish_call(
        self,
        uid: str,
        record: CallRecord,
        state: str,
        recording: tuple[str, str | None, int] | None,
        samples: int | None = None,
    ) -> None:
        """Write a call's final row and legs, and its recording's (state, sha256, size), at once."""
        self.finish_calls([Outcome(uid, record, state, recording, samples)])

    def finish_calls(self, outcomes: Sequence[Outcome]) -> None:
        """Write every outcome in one transaction: all of them, or (on an error) none."""
        if not outcomes:
            return
        with self.transaction() as conn:
            for outcome in outcomes:
                if outcome.record is None:
                    sha256, size = outcome.recording[1:] if outcome.recording else (None, 0)
                    self._incomplete(conn, outcome.uid, sha256, size, outcome.samples)
                else:
                    self._finish(conn, outcome)

    def _finish(self, conn: sqlite3.Connection, outcome: Outcome) -> None:
        assert outcome.record is not None
        uid = outcome.uid
        call = call_columns(outcome.record)
        columns: dict[str, Any] = {**call, **self._numbers(call), "id": uid, "state": outcome.state}
        if outcome.samples is not None:
            columns["samples"] = outcome.samples
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != "id")
        conn.execute(
            f"INSERT INTO calls ({', '.join(columns)})"
            f" VALUES ({', '.join(':' + c for c in columns)})"
            f" ON CONFLICT (id) DO UPDATE SET {updates}",
            columns,
        )
        conn.execute("DELETE FROM legs WHERE call = ?", (uid,))
        conn.executemany(
            "INSERT INTO legs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [_leg_columns(uid, i, leg) for i, leg in enumerate(outcome.record.legs)],
        )
        if outcome.recording is not None:
            self._set_recording(conn, uid, *outcome.recording)

    def _numbers(self, call: Mapping[str, Any]) -> dict[str, str]:
        return {
            "from_number": _normalised(call["from_user"], self.region),
            "to_number": _normalised(call["to_user"], self.region),
        }

    def mark_incomplete(self, uid: str, sha256: str | None, size: int, samples: int | None) -> None:
        """A call whose recording was closed or recovered without its CallFinished."""
        with self.transaction() as conn:
            self._incomplete(conn, uid, sha256, size, samples)

    def _incomplete(
        self, conn: sqlite3.Connection, uid: str, sha256: str | None, size: int, samples: int | None
    ) -> None:
        self._set_recording(conn, uid, "incomplete", sha256, size)
        conn.execute(
            "UPDATE calls SET state = 'incomplete', samples = coalesce(?, samples) WHERE id = ?",
            (samples, uid),
        )

    @staticmethod
    def _set_recording(conn: sqlite3.Connection, uid: str, state: str, sha256: str | None, size: int) -> None:
        conn.execute(
            "UPDATE recordings SET state = ?, sha256 = ?, size = ? WHERE call = ?",
            (state, sha256, size, uid),
        )

    def log_access(
        self,
        ts: float,
        os_user: str,
        action: str,
        call: str | None,
        reason: str,
        output_sha256: str | None,
        detail: Mapping[str, Any] | None = None,
    ) -> chain.AuditEntry:
        """Append an audit entry on its own (an access that changes nothing else in the index)."""
        with self.transaction() as conn:
            return self.audit(conn, ts, os_user, action, call, reason, output_sha256, detail)

    def audit(
        self,
        conn: sqlite3.Connection,
        ts: float,
        os_user: str,
        action: str,
        call: str | None,
        reason: str,
        output_sha256: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> chain.AuditEntry:
        """Append an audit entry inside the caller's transaction, beside the change it records."""
        return chain.append(conn, self.signer, ts, os_user, action, call, reason, output_sha256, detail)

    # ----------------------------------------------------------------------------------------------
    # Reads

    def open_recordings(self) -> list[sqlite3.Row]:
        """Recordings still in state 'recording' (call, path): a crash or a live writer."""
        return self.conn.execute(
            "SELECT call, path FROM recordings WHERE state = 'recording' ORDER BY call"
        ).fetchall()

    def calls(self, where: str = "", params: Sequence[object] = (), limit: int = 1000) -> list[sqlite3.Row]:
        """Calls joined with their recording (``rec_*`` columns), oldest first."""
        return self.conn.execute(
            "SELECT calls.*, r.path AS rec_path, r.state AS rec_state, r.sha256 AS rec_sha256,"
            " r.size AS rec_size, r.encoding AS rec_encoding"
            " FROM calls LEFT JOIN recordings r ON r.call = calls.id"
            f" {'WHERE ' + where if where else ''} ORDER BY calls.invite_ts, calls.id LIMIT ?",
            (*params, limit),
        ).fetchall()

    def legs(self, uids: Sequence[str]) -> dict[str, list[sqlite3.Row]]:
        out: dict[str, list[sqlite3.Row]] = {uid: [] for uid in uids}
        for i in range(0, len(uids), _IN_BATCH):
            batch = uids[i : i + _IN_BATCH]
            rows = self.conn.execute(
                f"SELECT * FROM legs WHERE call IN ({', '.join('?' * len(batch))}) ORDER BY call, idx",
                batch,
            )
            for row in rows:
                out[row["call"]].append(row)
        return out

    def tags(self, uids: Sequence[str]) -> dict[str, list[str]]:
        """The tags of each call in ``uids``, in alphabetical order."""
        out: dict[str, list[str]] = {uid: [] for uid in uids}
        for i in range(0, len(uids), _IN_BATCH):
            batch = uids[i : i + _IN_BATCH]
            rows = self.conn.execute(
                f"SELECT call, tag FROM tags WHERE call IN ({', '.join('?' * len(batch))})"
                " ORDER BY call, tag",
                batch,
            )
            for row in rows:
                out[row["call"]].append(row["tag"])
        return out

    def access_log(self, call: str | None = None) -> list[chain.AuditEntry]:
        """Audit entries, oldest first; only those about ``call`` when given."""
        return chain.entries(self.conn, call)
