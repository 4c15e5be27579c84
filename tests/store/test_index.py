from __future__ import annotations

import dataclasses
import sqlite3
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from recorderd.errors import StoreError
from recorderd.store import index as index_module
from recorderd.store.index import SCHEMA_VERSION, Index, call_columns, user_part
from tests.store.helpers import call_record


@pytest.mark.parametrize(
    ("uri", "user"),
    [
        ("sip:07700900123@host;user=phone", "07700900123"),
        ("sips:alice@example.com", "alice"),
        ("<sip:201@pbx.example:5060;transport=tcp>", "201"),
        ("SIP:+441234567890@trunk", "+441234567890"),
        ("sip:1234;phone-context=example.com@host", "1234"),
        ("sip:bob:secret@host", "bob"),
        ("sip:%2A21%23@host", "*21#"),
        ("tel:+44-20-7946-0000;phone-context=+44", "+44-20-7946-0000"),
        ("sip:host.example", ""),
        ("mailto:x@y", ""),
        ("", ""),
        ("anonymous", ""),
    ],
)
def test_user_part(uri: str, user: str) -> None:
    assert user_part(uri) == user


def test_new_index_is_wal_strict_and_versioned(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite"
    index = Index.open(path)
    conn = index.conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert index.version == SCHEMA_VERSION == len(index_module.MIGRATIONS)
    tables = {r[0]: r[1] for r in conn.execute("SELECT name, sql FROM sqlite_master")}
    for table in ("calls", "legs", "recordings", "access_log", "holds", "audit", "audit_heads"):
        assert tables[table].rstrip().endswith("STRICT")
    # STRICT: a wrong type is refused instead of stored.
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO holds (call, reason, placed_by, placed_ts) VALUES ('c', 'r', 'u', 'x')")
    index.close()
    # Reopening applies nothing again.
    again = Index.open(path)
    assert again.version == SCHEMA_VERSION
    again.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite"
    Index.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this recorderd understands"):
        Index.open(path)


def test_migrations_apply_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A later migration runs once on an index made by the earlier schema."""
    path = tmp_path / "index.sqlite"
    Index.open(path).close()
    extra = ("ALTER TABLE calls ADD COLUMN announcement TEXT",)
    monkeypatch.setattr(index_module, "MIGRATIONS", (*index_module.MIGRATIONS, extra))
    monkeypatch.setattr(index_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    index = Index.open(path)
    assert index.version == SCHEMA_VERSION + 1
    columns = [r[1] for r in index.conn.execute("PRAGMA table_info(calls)")]
    assert columns[-1] == "announcement"
    index.close()
    Index.open(path).close()  # not applied twice (ALTER would fail)


def test_audit_is_append_only(tmp_path: Path) -> None:
    index = Index.open(tmp_path / "index.sqlite", signer=Ed25519PrivateKey.generate())
    index.log_access(1.0, "manager", "export-wav", "abc", "complaint 42", "00" * 32)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        index.conn.execute("UPDATE audit SET reason = 'nothing'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        index.conn.execute("DELETE FROM audit")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        index.conn.execute("DELETE FROM audit_heads")
    with pytest.raises(sqlite3.IntegrityError, match="replaced by audit"):
        index.conn.execute("INSERT INTO access_log (ts, os_user, action, reason) VALUES (1.0, 'u', 'a', 'r')")
    rows = index.access_log()
    assert [(r.os_user, r.action, r.reason) for r in rows] == [("manager", "export-wav", "complaint 42")]
    index.close()


def test_finish_call_is_one_transaction(tmp_path: Path) -> None:
    """A failure part-way (here: a leg with a bad side) leaves no calls row behind."""
    index = Index.open(tmp_path / "index.sqlite")
    record = call_record("c1@host", 8000)
    bad_leg = dataclasses.replace(record.legs[0], side="third-party")  # type: ignore[arg-type]
    broken = dataclasses.replace(record, legs=(record.legs[1], bad_leg))
    with pytest.raises(sqlite3.IntegrityError):
        index.finish_call("a" * 32, broken, "finished", None)
    assert index.calls() == []
    index.finish_call("a" * 32, record, "finished", None)
    (row,) = index.calls()
    assert row["from_user"] == "07700900123" and row["to_user"] == "201"
    assert [r["ssrc"] for r in index.legs(["a" * 32])["a" * 32]] == [0x343DA99B, 0xFFFFFFFF]
    index.close()


def test_call_columns_json() -> None:
    columns = call_columns(call_record("c1@host", 8000))
    assert columns["dtmf"] == '[{"t":3.5,"digit":"5","duration_ms":160,"side":"caller"}]'
    assert columns["holds"] == '[{"start":5.0,"end":6.0}]'
    assert columns["transfers"] == "[]"
    assert columns["direction"] == "inbound" and columns["end_reason"] == "bye"


def test_index_file_mode_follows_precreated_file(tmp_path: Path) -> None:
    """SQLite gives -wal and -shm the mode of the database file (the store pre-creates it 0600)."""
    path = tmp_path / "index.sqlite"
    path.touch(0o600)
    path.chmod(0o600)
    index = Index.open(path)
    index.log_access(1.0, "u", "a", None, "r", None)
    for name in ("index.sqlite", "index.sqlite-wal", "index.sqlite-shm"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
    index.close()
