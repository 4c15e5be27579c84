"""The audit chain: appends link and sign, the chain survives restarts, and tampering is caught."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from recorderd.store import audit
from recorderd.store.index import MIGRATIONS, Index
from recorderd.store.store import Store
from recorderd.store.verify import verify_store


def _log(store: Store, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        store.index.log_access(
            1000.0 + i, "manager (uid 1000)", "export-wav", f"{i:032x}", f"reason {i}", "ab" * 32
        )


def _tamper(store: Store, *statements: str) -> None:
    """What someone with write access to the file can do: drop the triggers, change rows."""
    conn = store.index.conn
    conn.execute("DROP TRIGGER audit_no_update")
    conn.execute("DROP TRIGGER audit_no_delete")
    conn.execute("DROP TRIGGER audit_heads_no_delete")
    for statement in statements:
        conn.execute(statement)


def test_entries_link_and_the_head_is_signed(store: Store) -> None:
    _log(store, 3)
    entries = store.index.access_log()
    assert [e.seq for e in entries] == [1, 2, 3]
    assert entries[0].prev_hash == audit.GENESIS
    assert [e.prev_hash for e in entries[1:]] == [e.hash for e in entries[:-1]]
    assert all(audit.entry_hash({**_asdict(e)}) == e.hash for e in entries)
    report = audit.verify(store.index.conn, store.audit_public_key)
    assert report == audit.AuditReport(3, 3, None) and report.ok


def _asdict(e: audit.AuditEntry) -> dict[str, object]:
    return {k: getattr(e, k) for k in audit.AuditEntry.__slots__}


def test_chain_continues_across_restarts(tmp_path: Path, recipient: str) -> None:
    store = Store.init(tmp_path / "s", [recipient])
    _log(store, 2)
    store.close()
    again = Store.open(tmp_path / "s")
    _log(again, 2, start=2)
    entries = again.index.access_log()
    assert [e.seq for e in entries] == [1, 2, 3, 4]
    assert entries[2].prev_hash == entries[1].hash
    assert audit.verify(again.index.conn, again.audit_public_key).ok
    again.close()


@pytest.mark.parametrize(
    ("statements", "problem"),
    [
        (
            ["UPDATE audit SET reason = 'nothing to see' WHERE seq = 3"],
            "audit entry 3 was altered (its content does not match its hash)",
        ),
        (
            ["UPDATE audit SET os_user = 'someone else' WHERE seq = 1"],
            "audit entry 1 was altered (its content does not match its hash)",
        ),
        (["DELETE FROM audit WHERE seq = 2"], "audit entry 2 is missing (the chain jumps from 1 to 3)"),
        (
            [
                "UPDATE audit SET seq = 100 WHERE seq = 2",
                "UPDATE audit SET seq = 2 WHERE seq = 3",
                "UPDATE audit SET seq = 3 WHERE seq = 100",
            ],
            "audit entry 2 does not follow entry 1 (reordered or replaced)",
        ),
        (["DELETE FROM audit WHERE seq = 5"], "audit entry 5 is missing (the signed head is entry 5)"),
        (
            ["DELETE FROM audit WHERE seq >= 4", "DELETE FROM audit_heads WHERE seq >= 3"],
            "audit entries 3 to 3 were added without a signature",
        ),
        (
            [
                "UPDATE audit_heads SET signature = (CASE WHEN signature LIKE '00%' THEN '01' ELSE '00' END)"
                " || substr(signature, 3) WHERE seq = 5"
            ],
            "the signature of the audit head (entry 5) is not valid",
        ),
    ],
)
def test_tampering_is_caught(store: Store, statements: list[str], problem: str) -> None:
    _log(store, 5)
    assert audit.verify(store.index.conn, store.audit_public_key).ok
    store.index.conn.execute("DROP TRIGGER audit_heads_no_update")
    _tamper(store, *statements)
    assert audit.verify(store.index.conn, store.audit_public_key).problem == problem
    report = verify_store(store)
    assert not report.ok and report.audit.problem == problem


def test_a_rewritten_chain_is_caught_by_the_signed_head(store: Store) -> None:
    _log(store, 3)
    _tamper(store)
    conn = store.index.conn
    # Rewrite entry 2 and recompute every hash after it, as a careful forger would.
    rows = [dict(r) for r in conn.execute("SELECT * FROM audit ORDER BY seq")]
    rows[1]["reason"] = "routine"
    prev = audit.GENESIS
    for row in rows:
        row["prev_hash"] = prev
        row["hash"] = prev = audit.entry_hash(row)
        conn.execute(
            "UPDATE audit SET reason = ?, prev_hash = ?, hash = ? WHERE seq = ?",
            (row["reason"], row["prev_hash"], row["hash"], row["seq"]),
        )
    problem = audit.verify(conn, store.audit_public_key).problem
    assert problem == "the signed head (entry 3) does not match the chain (rewritten?)"


def test_a_head_signed_by_another_key_is_caught(store: Store) -> None:
    _log(store, 1)
    other = Ed25519PrivateKey.generate()
    public = other.public_key().public_bytes_raw().hex()
    assert (
        audit.verify(store.index.conn, public).problem
        == "the signature of the audit head (entry 1) is not valid"
    )


def test_migration_from_v1_carries_the_access_log_into_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite"
    conn = sqlite3.connect(path)
    for statement in MIGRATIONS[0]:
        assert isinstance(statement, str)
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO calls (id, call_id, direction, from_uri, from_name, from_user, to_uri, to_name, to_user,"
        " invite_ts, sample_rate, state) VALUES ('c1', 'x@h', 'inbound', 'sip:07700900123@t', '',"
        " '07700900123', 'sip:201@p', '', '201', 1.0, 8000, 'finished')"
    )
    conn.execute(
        "INSERT INTO recordings VALUES ('c1', 'recordings/2024/01/01/c1.au.age', 'aa', 1, 'ulaw', 'complete')"
    )
    conn.execute(
        "INSERT INTO access_log (ts, os_user, action, call, reason, output_sha256)"
        " VALUES (5.0, 'dpo', 'export-wav', 'c1', 'complaint', 'bb')"
    )
    conn.commit()
    conn.close()
    index = Index.open(path)
    (entry,) = index.access_log()
    assert (entry.seq, entry.ts, entry.os_user, entry.call, entry.reason, entry.output_sha256) == (
        1,
        5.0,
        "dpo",
        "c1",
        "complaint",
        "bb",
    )
    row = index.conn.execute("SELECT from_number, to_number, erased_ts FROM calls").fetchone()
    assert tuple(row) == ("+447700900123", "201", None)
    assert index.conn.execute("SELECT state FROM recordings").fetchone()[0] == "complete"
    index.conn.execute("UPDATE recordings SET state = 'erased'")  # the widened CHECK
    assert audit.verify(index.conn, None).problem == "the audit log has entries but no signed head"
    index.close()
