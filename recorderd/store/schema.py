"""The index schema as a list of migrations; ``PRAGMA user_version`` counts those applied (index.py).

A later change appends a migration and never edits an applied one. v1: calls, legs, recordings and
the access log. v2 (store administration): normalised numbers beside the raw user parts, the
'opted-out' and 'erased' recording states and a tombstone time on calls, holds, and the audit hash
chain with its signed heads (audit.py), which takes over from the access log. v3: call tags, one
row per (call, tag), which lengthen retention (retention.py) and narrow a search.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from recorderd.store import audit as chain
from recorderd.store.numbers import normalise_number

Step = str | Callable[[sqlite3.Connection, str], None]
"""A migration step: SQL, or a function of (connection, site region) for what SQL cannot do."""

_V1: tuple[Step, ...] = (
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


def _backfill_v2(conn: sqlite3.Connection, region: str) -> None:
    """Normalised numbers for the calls of a v1 index, and its access log carried into the chain."""
    rows = conn.execute("SELECT id, from_user, to_user FROM calls").fetchall()
    conn.executemany(
        "UPDATE calls SET from_number = ?, to_number = ? WHERE id = ?",
        [(normalise_number(r[1], region), normalise_number(r[2], region), r[0]) for r in rows],
    )
    for r in conn.execute("SELECT * FROM access_log ORDER BY id").fetchall():
        chain.append(
            conn,
            None,
            r["ts"],
            r["os_user"],
            r["action"],
            r["call"],
            r["reason"],
            r["output_sha256"],
            {"from": "access_log", "id": r["id"]},
        )


_RECORDING_STATES = "'recording', 'complete', 'incomplete', 'opted-out', 'erased'"
_V2: tuple[Step, ...] = (
    "ALTER TABLE calls ADD COLUMN from_number TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE calls ADD COLUMN to_number TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE calls ADD COLUMN erased_ts REAL",
    "CREATE INDEX calls_from_number ON calls (from_number)",
    "CREATE INDEX calls_to_number ON calls (to_number)",
    # SQLite cannot change a CHECK constraint in place: rebuild the table (nothing refers to it).
    f"""CREATE TABLE recordings_v2 (
        call TEXT PRIMARY KEY REFERENCES calls (id) ON DELETE CASCADE,
        path TEXT NOT NULL UNIQUE,
        sha256 TEXT,
        size INTEGER,
        encoding TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ({_RECORDING_STATES}))
    ) STRICT""",
    "INSERT INTO recordings_v2 SELECT call, path, sha256, size, encoding, state FROM recordings",
    "DROP TABLE recordings",
    "ALTER TABLE recordings_v2 RENAME TO recordings",
    "CREATE INDEX recordings_state ON recordings (state)",
    """CREATE TABLE holds (
        id INTEGER PRIMARY KEY,
        call TEXT NOT NULL REFERENCES calls (id),
        reason TEXT NOT NULL,
        placed_by TEXT NOT NULL,
        placed_ts REAL NOT NULL,
        until_ts REAL,
        released_ts REAL,
        released_by TEXT
    ) STRICT""",
    "CREATE INDEX holds_call ON holds (call)",
    """CREATE TABLE audit (
        seq INTEGER PRIMARY KEY,
        ts REAL NOT NULL,
        os_user TEXT NOT NULL,
        action TEXT NOT NULL,
        call TEXT,
        reason TEXT NOT NULL,
        output_sha256 TEXT,
        detail TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    ) STRICT""",
    "CREATE INDEX audit_call ON audit (call)",
    """CREATE TABLE audit_heads (
        seq INTEGER PRIMARY KEY,
        hash TEXT NOT NULL,
        ts REAL NOT NULL,
        signature TEXT NOT NULL
    ) STRICT""",
    *(
        f"""CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table}
        BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"""
        for table in ("audit", "audit_heads")
        for verb in ("UPDATE", "DELETE")
    ),
    _backfill_v2,
    # The chain replaces the v1 log; what it held was carried over just above.
    """CREATE TRIGGER access_log_closed BEFORE INSERT ON access_log
        BEGIN SELECT RAISE(ABORT, 'access_log is replaced by audit'); END""",
)

# The CHECK repeats retention.TAG (1 to 32 of a-z, 0-9, '-') so a row written by other means obeys it too.
_V3: tuple[Step, ...] = (
    """CREATE TABLE tags (
        call TEXT NOT NULL REFERENCES calls (id),
        tag TEXT NOT NULL CHECK (length(tag) BETWEEN 1 AND 32 AND tag NOT GLOB '*[^a-z0-9-]*'),
        added_ts REAL NOT NULL,
        added_by TEXT NOT NULL,
        PRIMARY KEY (call, tag)
    ) STRICT""",
    "CREATE INDEX tags_tag ON tags (tag)",
)

MIGRATIONS: tuple[tuple[Step, ...], ...] = (_V1, _V2, _V3)
