from __future__ import annotations

import dataclasses
import sqlite3
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from recorderd.errors import StoreError
from recorderd.events import CallRecord
from recorderd.store import index as index_module
from recorderd.store.index import SCHEMA_VERSION, Index, Outcome, call_columns, user_part
from tests.store.helpers import T0, call_record


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


# --------------------------------------------------------------------------------------------------
# Batched lifecycle writes (one executemany per statement) and the parties kept from begin to finish

ANON = "sip:anonymous@invalid"


def _early(record: CallRecord, from_uri: str | None = None) -> dict[str, object]:
    """The columns the sink writes when a call's media starts (as StoreSink._early_columns)."""
    uri = record.from_uri if from_uri is None else from_uri
    return {
        "call_id": record.call_id,
        "direction": "unknown",
        "from_uri": uri,
        "from_name": record.from_name,
        "from_user": user_part(uri),
        "to_uri": record.to_uri,
        "to_name": record.to_name,
        "to_user": user_part(record.to_uri),
        "invite_ts": record.invite_ts,
        "media_start_ts": record.invite_ts + 1.0,
        "sample_rate": record.sample_rate,
    }


def _mixed_batch() -> tuple[list[tuple[str, dict[str, object], str, str]], list[Outcome]]:
    """Begun recordings and the outcomes of a busy flush: complete, cut, closed without a record,
    a call without media, a From that changed (none at the start), and a CallRecord overridden by
    the recording's real length."""
    begun, outcomes = [], []
    for i in range(12):
        uid = f"{i:032x}"
        record = dataclasses.replace(
            call_record(f"c{i}@host", 8000 * i, T0 + i), from_uri=f"sip:0770090{i:04d}@trunk;user=phone"
        )
        begun.append(
            (uid, _early(record, ANON if i % 4 == 1 else None), f"recordings/x/{uid}.au.age", "ulaw")
        )
        if i % 4 == 3:
            outcomes.append(Outcome(uid, None, "finished", ("incomplete", "ab" * 32, 100 * i), 80 * i))
        elif i % 4 == 2:
            outcomes.append(Outcome(uid, record, "incomplete", ("incomplete", None, 0)))
        else:
            outcomes.append(Outcome(uid, record, "finished", ("complete", "cd" * 32, 1000 + i), 8000 * i + 7))
    outcomes.append(Outcome("f" * 32, call_record("nomedia@host", 0, T0, media=False), "finished", None))
    return begun, outcomes


def _dump(index: Index) -> list[list[tuple[object, ...]]]:
    return [
        [tuple(r) for r in index.conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2")]
        for table in ("calls", "legs", "recordings")
    ]


def test_batched_finish_writes_what_one_by_one_does(tmp_path: Path) -> None:
    begun, outcomes = _mixed_batch()
    batched, single = Index.open(tmp_path / "a.sqlite"), Index.open(tmp_path / "b.sqlite")
    batched.begin_recordings(begun)
    for row in begun:
        single.begin_recording(*row)
    assert _dump(batched) == _dump(single)
    batched.finish_calls(outcomes)
    for outcome in outcomes:
        single.finish_calls([outcome])
    assert _dump(batched) == _dump(single)
    calls = {r["id"]: r for r in batched.calls()}
    assert len(calls) == 13 and len(_dump(batched)[1]) == 2 * 9  # legs of the 9 calls with a record
    assert calls[f"{1:032x}"]["from_number"] == "+447700900001"  # From known only at the end
    assert calls[f"{3:032x}"]["state"] == "incomplete" and calls[f"{3:032x}"]["samples"] == 240
    assert calls[f"{4:032x}"]["samples"] == 32007  # the recording's length, not the record's
    assert batched._begun == {} and single._begun == {}
    batched.close()
    single.close()


def test_each_number_is_normalised_once_per_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Begin normalises; finish reuses what begin found for the same URIs, and works out anew what
    changed (the From that was anonymous when the media started)."""
    seen: list[str] = []

    def normalise(user: str, region: str) -> str:
        seen.append(user)
        return index_module.normalise_number(user, region)

    monkeypatch.setattr(index_module, "_normalised", normalise)
    index = Index.open(tmp_path / "index.sqlite")
    same, changed = call_record("same@host", 8000), call_record("changed@host", 8000)
    index.begin_recordings(
        [
            ("a" * 32, _early(same), "r/a.au.age", "ulaw"),
            ("b" * 32, _early(changed, ANON), "r/b.au.age", "ulaw"),
        ]
    )
    assert sorted(seen) == sorted(["07700900123", "201", "anonymous", "201"])
    seen.clear()
    index.finish_calls(
        [Outcome(uid, r, "finished", None) for uid, r in (("a" * 32, same), ("b" * 32, changed))]
    )
    assert sorted(seen) == ["07700900123", "201"]
    rows = {r["id"]: (r["from_user"], r["from_number"], r["to_number"]) for r in index.calls()}
    assert rows == {
        "a" * 32: ("07700900123", "+447700900123", "201"),
        "b" * 32: ("07700900123", "+447700900123", "201"),
    }
    index.close()


def test_parties_kept_are_bounded_and_dropped_when_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(index_module, "_BEGUN_MAX", 2)
    index = Index.open(tmp_path / "index.sqlite")
    records = {f"{i:032x}": call_record(f"c{i}@host", 8000) for i in range(3)}
    index.begin_recordings([(uid, _early(r), f"r/{uid}", "ulaw") for uid, r in records.items()])
    assert len(index._begun) == 2
    uids = list(records)
    index.mark_incomplete(uids[0], None, 0, None)
    index.finish_calls([Outcome(uid, records[uid], "finished", None) for uid in uids[1:]])
    assert index._begun == {}
    assert [r["from_number"] for r in index.calls()] == ["+447700900123"] * 3
    index.close()


def test_a_later_outcome_for_the_same_call_replaces_an_earlier_one(tmp_path: Path) -> None:
    index = Index.open(tmp_path / "index.sqlite")
    record = call_record("c1@host", 8000)
    index.finish_calls(
        [Outcome("a" * 32, record, "incomplete", None), Outcome("a" * 32, record, "finished", None, 9)]
    )
    ((state, samples),) = index.conn.execute("SELECT state, samples FROM calls").fetchall()
    assert (state, samples) == ("finished", 9)
    assert len(index.legs(["a" * 32])["a" * 32]) == 2
    index.close()
