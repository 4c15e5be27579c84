"""The SQLite index of a store: calls, their RTP legs, recordings, and the access log.

SQLite in WAL mode, so the CLI reads while the daemon writes; ``STRICT`` tables, so a wrong type is
an error instead of a silent conversion. The schema version is ``PRAGMA user_version``, the number
of entries of :data:`MIGRATIONS` applied; opening an index applies the missing ones in one
transaction.
A later change appends a migration and never edits an applied one.

The index changes only at lifecycle points (recording started, call finished, recovery, export),
never per audio block. ``access_log`` is append-only: triggers refuse UPDATE and DELETE.
"""

from __future__ import annotations

import json
import sqlite3
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from recorderd.errors import StoreError
from recorderd.events import CallRecord, LegRecord

_V1 = (
    """CREATE TABLE calls (
        id TEXT PRIMARY KEY,
        call_id TEXT NOT NULL,
        direction TEXT NOT NULL,
        from_uri TEXT NOT NULL,
        from_name TEXT NOT NULL,
        from_user TEXT NOT NULL,
        to_uri TEXT NOT NULL,
        to_name TEXT NOT NULL,
        to_user TEXT NOT NULL,
        invite_ts REAL NOT NULL,
        answer_ts REAL,
        end_ts REAL,
        end_reason TEXT,
        sip_status INTEGER,
        media_start_ts REAL,
        samples INTEGER NOT NULL DEFAULT 0,
        sample_rate INTEGER NOT NULL,
        dtmf TEXT NOT NULL DEFAULT '[]',
        holds TEXT NOT NULL DEFAULT '[]',
        transfers TEXT NOT NULL DEFAULT '[]',
        state TEXT NOT NULL CHECK (state IN ('recording', 'finished', 'incomplete'))
    ) STRICT""",
    "CREATE INDEX calls_call_id ON calls (call_id)",
    "CREATE INDEX calls_invite_ts ON calls (invite_ts)",
    "CREATE INDEX calls_from_user ON calls (from_user)",
    "CREATE INDEX calls_to_user ON calls (to_user)",
    """CREATE TABLE legs (
        call TEXT NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        side TEXT NOT NULL CHECK (side IN ('caller', 'callee')),
        ssrc INTEGER NOT NULL,
        src TEXT NOT NULL,
        dst TEXT NOT NULL,
        codec TEXT NOT NULL,
        payload_type INTEGER NOT NULL,
        packets INTEGER NOT NULL,
        lost INTEGER NOT NULL,
        duplicates INTEGER NOT NULL,
        decoded INTEGER NOT NULL,
        first_ts REAL NOT NULL,
        last_ts REAL NOT NULL,
        gaps TEXT NOT NULL DEFAULT '[]',
        PRIMARY KEY (call, idx)
    ) STRICT""",
    """CREATE TABLE recordings (
        call TEXT PRIMARY KEY REFERENCES calls (id) ON DELETE CASCADE,
        path TEXT NOT NULL UNIQUE,
        sha256 TEXT,
        size INTEGER,
        encoding TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('recording', 'complete', 'incomplete'))
    ) STRICT""",
    "CREATE INDEX recordings_state ON recordings (state)",
    # No foreign key on call: the log must outlive the calls that retention deletes.
    """CREATE TABLE access_log (
        id INTEGER PRIMARY KEY,
        ts REAL NOT NULL,
        os_user TEXT NOT NULL,
        action TEXT NOT NULL,
        call TEXT,
        reason TEXT NOT NULL,
        output_sha256 TEXT
    ) STRICT""",
    """CREATE TRIGGER access_log_no_update BEFORE UPDATE ON access_log
        BEGIN SELECT RAISE(ABORT, 'access_log is append-only'); END""",
    """CREATE TRIGGER access_log_no_delete BEFORE DELETE ON access_log
        BEGIN SELECT RAISE(ABORT, 'access_log is append-only'); END""",
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1,)
SCHEMA_VERSION = len(MIGRATIONS)
_BUSY_TIMEOUT_MS = 10_000
_IN_BATCH = 500  # SQLite's default limit on host parameters is 999 in older builds


def user_part(uri: str) -> str:
    """The user part of a SIP/SIPS/tel URI: ``sip:07700900123@host;user=phone`` -> ``07700900123``.

    RFC 3261 section 19.1.1 (``sip:user;params@host``) and RFC 3966 (``tel:+44...;params``); escapes
    are decoded. A URI without a user part (``sip:host``) gives "".
    """
    text = uri.strip()
    if text.startswith("<"):
        text = text[1 : text.find(">")] if ">" in text else text[1:]
    scheme, colon, rest = text.partition(":")
    if not colon:
        return ""
    scheme = scheme.lower()
    if scheme == "tel":
        user = rest
    elif scheme in ("sip", "sips"):
        user, at, _ = rest.rpartition("@")
        if not at:
            return ""
    else:
        return ""
    user = user.split(";", 1)[0].split(":", 1)[0]  # user params; sip:user:password@host
    return urllib.parse.unquote(user)


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

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    @classmethod
    def open(cls, path: Path) -> Index:
        """Open (creating when absent) and migrate the index at ``path``."""
        index = cls(_connect(path))
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
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

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
                for statement in migration:
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # ----------------------------------------------------------------------------------------------
    # Lifecycle writes

    def begin_recording(self, uid: str, call: dict[str, Any], path: str, encoding: str) -> None:
        """A call whose first media just arrived: calls and recordings rows, state 'recording'."""
        columns = {**call, "id": uid, "state": "recording"}
        with self.transaction() as conn:
            conn.execute(
                f"INSERT INTO calls ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)})",
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
        columns = {**call_columns(record), "id": uid, "state": state}
        if samples is not None:
            columns["samples"] = samples
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != "id")
        with self.transaction() as conn:
            conn.execute(
                f"INSERT INTO calls ({', '.join(columns)})"
                f" VALUES ({', '.join(':' + c for c in columns)})"
                f" ON CONFLICT (id) DO UPDATE SET {updates}",
                columns,
            )
            conn.execute("DELETE FROM legs WHERE call = ?", (uid,))
            conn.executemany(
                "INSERT INTO legs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [_leg_columns(uid, i, leg) for i, leg in enumerate(record.legs)],
            )
            if recording is not None:
                self._set_recording(conn, uid, *recording)

    def mark_incomplete(self, uid: str, sha256: str | None, size: int, samples: int | None) -> None:
        """A call whose recording was closed or recovered without its CallFinished."""
        with self.transaction() as conn:
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
    ) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO access_log (ts, os_user, action, call, reason, output_sha256)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (ts, os_user, action, call, reason, output_sha256),
            )

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

    def access_log(self, call: str | None = None) -> list[sqlite3.Row]:
        if call is None:
            return self.conn.execute("SELECT * FROM access_log ORDER BY id").fetchall()
        return self.conn.execute("SELECT * FROM access_log WHERE call = ? ORDER BY id", (call,)).fetchall()
