"""``verify``: a swapped, missing, orphaned or left-over recording file, and a damaged audit log."""

from __future__ import annotations

import shutil
from pathlib import Path

from recorderd.store import admin
from recorderd.store.sink import StoreSink
from recorderd.store.store import Store
from recorderd.store.verify import Finding, verify_store
from tests.store.helpers import T0, call_events, real_stereo

USER = "dpo (uid 1001)"


def record(store: Store, *call_ids: str) -> list[Path]:
    sink = StoreSink(store)
    for n, call_id in enumerate(call_ids):
        for event in call_events(call_id, real_stereo("ulaw")[: 1600 * (n + 1)], ts=T0 + 60 * n):
            sink.handle(event)  # type: ignore[arg-type]
    sink.close()
    return [Path(store.find(c)["recording"]) for c in call_ids]


def kinds(store: Store) -> list[tuple[str, str | None, str]]:
    return [(f.kind, f.call, f.path) for f in verify_store(store).findings]


def rel(store: Store, path: Path) -> str:
    return str(path.relative_to(store.root))


def test_a_sound_store_verifies(store: Store) -> None:
    record(store, "a@h", "b@h")
    report = verify_store(store)
    assert report.ok and (report.recordings, report.files, report.findings) == (2, 2, ())
    assert report.database == () and report.audit.ok


def test_a_swapped_ciphertext_is_caught(store: Store) -> None:
    a, b = record(store, "a@h", "b@h")
    shutil.copyfile(b, a)  # a valid age file to the same recipient: it would decrypt
    uid = store.find("a@h")["id"]
    findings = verify_store(store).findings
    assert [(f.kind, f.call, f.path) for f in findings] == [("altered", uid, rel(store, a))]
    assert str(findings[0]).startswith(f"altered: call {uid}: {rel(store, a)}: SHA-256 ")


def test_missing_orphaned_and_not_erased_files_are_caught(store: Store) -> None:
    a, _, c = record(store, "a@h", "b@h", "c@h")
    uids = [store.find(x)["id"] for x in ("a@h", "b@h", "c@h")]
    a.unlink()
    stray = a.parent / "0123456789abcdef0123456789abcdef.au.age"
    stray.write_bytes(b"age-encryption.org/v1\n")
    kept = c.read_bytes()
    admin.erase(store, "c@h", "request", USER, T0 + 1000)
    c.write_bytes(kept)  # a restore from backup brings an erased recording back
    assert sorted(kinds(store)) == sorted(
        [
            ("missing", uids[0], rel(store, a)),
            ("orphaned", None, rel(store, stray)),
            ("not-erased", uids[2], rel(store, c)),
        ]
    )
    assert not verify_store(store).ok


def test_an_unrecovered_recording_is_reported_until_recovered(store: Store, recipient: str) -> None:
    sink = StoreSink(store)
    events = call_events("a@h", real_stereo("ulaw")[:16000])
    for event in events[:-1]:
        sink.handle(event)  # type: ignore[arg-type]
    sink.flush()
    uid = store.find("a@h")["id"]
    assert verify_store(store).ok  # being recorded by a live writer (this one)
    for active in sink._active.values():
        assert active.writer is not None
        active.writer.abandon()  # what kill -9 leaves
    root = store.root
    store.close()
    reader = Store.open(root)
    part = reader.recording_path(uid, events[0].ts) + ".part"  # type: ignore[attr-defined]
    assert [(f.kind, f.call, f.path) for f in verify_store(reader).findings] == [("unrecovered", uid, part)]
    StoreSink(reader)  # the next writer recovers
    assert verify_store(reader).ok
    assert reader.find(uid)["recording_state"] == "incomplete"
    reader.close()


def test_audit_damage_fails_verify(store: Store) -> None:
    record(store, "a@h")
    admin.add_hold(store, "a@h", "complaint", USER, T0, None)
    store.index.conn.execute("DROP TRIGGER audit_no_update")
    store.index.conn.execute("UPDATE audit SET reason = 'routine' WHERE seq = 1")
    report = verify_store(store)
    assert not report.ok and report.findings == ()
    assert report.audit.problem == "audit entry 1 was altered (its content does not match its hash)"


def test_finding_text() -> None:
    assert str(Finding("orphaned", None, "recordings/x", "no index row names this file")) == (
        "orphaned: recordings/x: no index row names this file"
    )


def test_a_recording_renamed_but_not_indexed_is_unrecovered_not_missing(store: Store) -> None:
    """The crash window of a batch's finish: files sealed and renamed, the index not yet told."""
    sink = StoreSink(store)
    events = call_events("b@h", real_stereo("ulaw")[:16000])
    for event in events[:-1]:
        sink.handle(event)  # type: ignore[arg-type]
    sink.flush()
    uid = store.find("b@h")["id"]
    (active,) = sink._active.values()
    assert active.writer is not None
    active.writer.abandon()
    final = store.root / store.recording_path(uid, events[0].ts)  # type: ignore[attr-defined]
    Path(str(final) + ".part").rename(final)  # renamed, then the process died before the commit
    root = store.root
    store.close()
    reader = Store.open(root)
    rel_path = str(final.relative_to(root))
    assert [(f.kind, f.call, f.path) for f in verify_store(reader).findings] == [
        ("unrecovered", uid, rel_path)
    ]
    StoreSink(reader)  # the next writer recovers it
    assert verify_store(reader).ok
    reader.close()
