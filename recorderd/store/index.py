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
# Numbers recur (extensions, the practice's own lines): remember the recent ones.
_normalised = lru_cache(maxsize=4096)(normalise_number)
_BEGUN_MAX = 20_000  # calls whose parties are kept from begin to finish: more than ever run at once
_Parties = tuple[tuple[str, str], tuple[str, str], tuple[str, str]]  # URIs, user parts, numbers
_INSERT_LEG = "INSERT INTO legs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_SET_RECORDING = "UPDATE recordings SET state = ?, sha256 = ?, size = ? WHERE call = ?"
_MARK_INCOMPLETE = "UPDATE calls SET state = 'incomplete', samples = coalesce(?, samples) WHERE id = ?"


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


_JSON = json.JSONEncoder(separators=(",", ":"))  # one encoder: json.dumps builds one per call otherwise


def _json(value: list[Any]) -> str:
    return _JSON.encode(value) if value else "[]"


@lru_cache(maxsize=16)
def _insert_sql(columns: tuple[str, ...]) -> str:
    """INSERT of a calls row with ``columns``, built once per column set."""
    return f"INSERT INTO calls ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


@lru_cache(maxsize=16)
def _upsert_sql(columns: tuple[str, ...]) -> str:
    """INSERT of a calls row with ``columns`` that updates the row when it exists."""
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != "id")
    return f"{_insert_sql(columns)} ON CONFLICT (id) DO UPDATE SET {updates}"


def _by_columns(rows: list[dict[str, Any]]) -> list[tuple[tuple[str, ...], list[tuple[Any, ...]]]]:
    """``rows`` grouped by their column set (in first-seen order), each row as a tuple of values."""
    groups: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
    for row in rows:
        groups.setdefault(tuple(row), []).append(tuple(row.values()))
    return list(groups.items())


_RECORD_COLUMNS = (
    "call_id",
    "direction",
    "from_uri",
    "from_name",
    "from_user",
    "to_uri",
    "to_name",
    "to_user",
    "invite_ts",
    "answer_ts",
    "end_ts",
    "end_reason",
    "sip_status",
    "media_start_ts",
    "samples",
    "sample_rate",
    "dtmf",
    "holds",
    "transfers",
)
# A finished call's row: what its record determines, its parties' numbers, its id and state.
_FINAL_COLUMNS = (*_RECORD_COLUMNS, "from_number", "to_number", "id", "state")


def _record_values(record: CallRecord, from_user: str, to_user: str, samples: int) -> tuple[Any, ...]:
    """The values of :data:`_RECORD_COLUMNS`, in that order."""
    dtmf = [
        {"t": d.t, "digit": d.digit, "duration_ms": d.duration_ms, "side": str(d.side)} for d in record.dtmf
    ]
    return (
        record.call_id,
        str(record.direction),
        record.from_uri,
        record.from_name,
        from_user,
        record.to_uri,
        record.to_name,
        to_user,
        record.invite_ts,
        record.answer_ts,
        record.end_ts,
        str(record.end_reason),
        record.sip_status,
        record.media_start_ts,
        samples,
        record.sample_rate,
        _json(dtmf),
        _json([{"start": s, "end": e} for s, e in record.holds]),
        _json(list(record.transfers)),
    )


def call_columns(record: CallRecord) -> dict[str, Any]:
    """The ``calls`` columns that a finished :class:`CallRecord` determines."""
    users = (user_part(record.from_uri), user_part(record.to_uri))
    return dict(zip(_RECORD_COLUMNS, _record_values(record, *users, record.samples), strict=True))


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
        # uid -> ((from_uri, to_uri), (from_user, to_user), (from_number, to_number)) of each call
        # begun and not yet finished (_final_values)
        self._begun: dict[str, _Parties] = {}

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
        calls = [{**call, **self._numbers(call), "id": uid, "state": "recording"} for uid, call, _, _ in rows]
        with self.transaction() as conn:
            for columns, values in _by_columns(calls):
                conn.executemany(_insert_sql(columns), values)
            conn.executemany(
                "INSERT INTO recordings (call, path, encoding, state) VALUES (?, ?, ?, 'recording')",
                [(uid, path, encoding) for uid, _, path, encoding in rows],
            )
        self._remember_parties(calls)

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
        """Write every outcome in one transaction: all of them, or (on an error) none. A later outcome
        for the same call replaces an earlier one.

        One ``executemany`` per statement for the whole batch: every row of a statement touches only
        its own call, so running them statement by statement writes what outcome by outcome would.
        """
        if not outcomes:
            return
        latest = list({outcome.uid: outcome for outcome in outcomes}.values())
        finished = [(o, o.record) for o in latest if o.record is not None]
        incomplete = [o for o in latest if o.record is None]
        calls = [self._final_values(o, record) for o, record in finished]
        legs = [_leg_columns(o.uid, i, leg) for o, record in finished for i, leg in enumerate(record.legs)]
        recordings: list[tuple[str, str | None, int, str]] = [
            (*o.recording, o.uid) for o, _ in finished if o.recording is not None
        ]
        for o in incomplete:
            _, sha256, size = o.recording or ("", None, 0)
            recordings.append(("incomplete", sha256, size, o.uid))
        with self.transaction() as conn:
            conn.executemany(_upsert_sql(_FINAL_COLUMNS), calls)
            conn.executemany("DELETE FROM legs WHERE call = ?", [(o.uid,) for o, _ in finished])
            conn.executemany(_INSERT_LEG, legs)
            conn.executemany(_SET_RECORDING, recordings)
            conn.executemany(_MARK_INCOMPLETE, [(o.samples, o.uid) for o in incomplete])
        for o in latest:
            self._begun.pop(o.uid, None)

    def _final_values(self, outcome: Outcome, record: CallRecord) -> tuple[Any, ...]:
        """The values of :data:`_FINAL_COLUMNS` for a finished call."""
        parties = self._begun.get(outcome.uid)
        if parties is None or parties[0] != (record.from_uri, record.to_uri):
            from_user, to_user = user_part(record.from_uri), user_part(record.to_uri)
            numbers = (_normalised(from_user, self.region), _normalised(to_user, self.region))
            parties = ((record.from_uri, record.to_uri), (from_user, to_user), numbers)
        _, users, numbers = parties
        samples = record.samples if outcome.samples is None else outcome.samples
        return (*_record_values(record, *users, samples), *numbers, outcome.uid, outcome.state)

    def _numbers(self, call: Mapping[str, Any]) -> dict[str, str]:
        return {
            "from_number": _normalised(call["from_user"], self.region),
            "to_number": _normalised(call["to_user"], self.region),
        }

    def _remember_parties(self, calls: list[dict[str, Any]]) -> None:
        """Keep each begun call's user parts and numbers, by its URIs, until it finishes: working
        them out again costs tens of microseconds a call (bounded: past :data:`_BEGUN_MAX` calls
        in progress, the rest are worked out again)."""
        for c in calls:
            if len(self._begun) >= _BEGUN_MAX:
                return
            uris, users = (c["from_uri"], c["to_uri"]), (c["from_user"], c["to_user"])
            self._begun[c["id"]] = (uris, users, (c["from_number"], c["to_number"]))

    def mark_incomplete(self, uid: str, sha256: str | None, size: int, samples: int | None) -> None:
        """A call whose recording was closed or recovered without its CallFinished."""
        with self.transaction() as conn:
            conn.execute(_SET_RECORDING, ("incomplete", sha256, size, uid))
            conn.execute(_MARK_INCOMPLETE, (samples, uid))
        self._begun.pop(uid, None)

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
