"""Call tags: adding and removing them (each audited), the tag rule, search by tag, tags in call JSON."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from recorderd.errors import StoreError
from recorderd.events import Direction
from recorderd.store import admin, audit
from recorderd.store import index as index_module
from recorderd.store.sink import StoreSink
from recorderd.store.store import Store
from tests.store.helpers import call_events, real_stereo
from tests.store.test_retention import NOW, USER, months_ago, record_calls


def test_add_and_remove_are_audited(store: Store) -> None:
    uids = record_calls(store, ("a@h", months_ago(2), Direction.INBOUND))
    uid = uids["a@h"]
    tag = admin.add_tag(store, "a@h", "training", "good example for new staff", USER, NOW)
    assert tag == admin.Tag(uid, "training", NOW, USER)
    admin.add_tag(store, uid, "complaint", "complaint C-17", USER, NOW + 1)
    assert admin.tags(store) == [admin.Tag(uid, "complaint", NOW + 1, USER), tag]
    assert store.find(uid)["tags"] == ["complaint", "training"]

    removed = admin.remove_tag(store, uid, "training", "course finished", "pm (uid 1002)", NOW + 2)
    assert removed == tag and admin.tags(store, "a@h") == [admin.Tag(uid, "complaint", NOW + 1, USER)]

    entries = store.index.access_log(uid)
    got = [(e.action, e.os_user, e.ts, e.reason, json.loads(e.detail)) for e in entries]
    assert got == [
        ("tag-add", USER, NOW, "good example for new staff", {"tag": "training"}),
        ("tag-add", USER, NOW + 1, "complaint C-17", {"tag": "complaint"}),
        (
            "tag-remove",
            "pm (uid 1002)",
            NOW + 2,
            "course finished",
            {"tag": "training", "added": "2026-01-01T00:00:00.000000Z", "added_by": USER},
        ),
    ]
    assert audit.verify(store.index.conn, store.audit_public_key).ok


@pytest.mark.parametrize("bad", ["Training", "", "a" * 33, "no spaces", "caf\u00e9", "x_y", "t\n"])
def test_a_bad_tag_is_refused_and_not_audited(store: Store, bad: str) -> None:
    record_calls(store, ("a@h", months_ago(2), Direction.INBOUND))
    with pytest.raises(StoreError) as err:
        admin.add_tag(store, "a@h", bad, "why", USER, NOW)
    assert str(err.value) == f"{bad!r} is not a tag: expected 1 to 32 lowercase letters, digits or '-'"
    with pytest.raises(StoreError, match="is not a tag"):
        store.search(tag=bad)
    assert admin.tags(store) == [] and store.index.access_log() == []


def test_refusals(store: Store) -> None:
    uids = record_calls(store, ("a@h", months_ago(2), Direction.INBOUND))
    with pytest.raises(StoreError, match="tagging a call needs a reason"):
        admin.add_tag(store, "a@h", "training", "  ", USER, NOW)
    with pytest.raises(StoreError, match="no call 'b@h'"):
        admin.add_tag(store, "b@h", "training", "why", USER, NOW)
    admin.add_tag(store, "a@h", "training", "why", USER, NOW)
    with pytest.raises(StoreError) as err:
        admin.add_tag(store, "a@h", "training", "again", USER, NOW)
    assert str(err.value) == f"call {uids['a@h']} already has tag 'training'"
    with pytest.raises(StoreError, match="removing a tag needs a reason"):
        admin.remove_tag(store, "a@h", "training", "", USER, NOW)
    with pytest.raises(StoreError) as err:
        admin.remove_tag(store, "a@h", "complaint", "why", USER, NOW)
    assert str(err.value) == f"call {uids['a@h']} has no tag 'complaint'"
    assert [e.action for e in store.index.access_log()] == ["tag-add"]

    # Unlike a hold, a tag does not stop an erasure; the tombstone keeps no tag and takes none.
    admin.erase(store, "a@h", "erasure request", USER, NOW + 1)
    assert admin.tags(store) == []
    with pytest.raises(StoreError, match="was erased on .*; there is nothing to tag"):
        admin.add_tag(store, "a@h", "training", "why", USER, NOW + 2)


def test_search_by_tag(store: Store) -> None:
    uids = record_calls(
        store,
        ("a@h", months_ago(3), Direction.INBOUND),
        ("b@h", months_ago(2), Direction.OUTBOUND),
        ("c@h", months_ago(1), Direction.INBOUND),
    )
    admin.add_tag(store, "a@h", "training", "why", USER, NOW)
    admin.add_tag(store, "c@h", "training", "why", USER, NOW)
    admin.add_tag(store, "c@h", "complaint", "why", USER, NOW)
    assert [c["id"] for c in store.search(tag="training")] == [uids["a@h"], uids["c@h"]]
    assert [c["id"] for c in store.search(tag="complaint")] == [uids["c@h"]]
    assert [c["id"] for c in store.search(tag="training", direction="inbound", since=months_ago(2))] == [
        uids["c@h"]
    ]
    assert store.search(tag="unused") == []
    assert {c["call_id"]: c["tags"] for c in store.calls()} == {
        "a@h": ["training"],
        "b@h": [],
        "c@h": ["complaint", "training"],
    }


def test_the_index_refuses_a_bad_tag_written_around_the_api(store: Store) -> None:
    uid = record_calls(store, ("a@h", months_ago(1), Direction.INBOUND))["a@h"]
    for bad in ("Upper", "", "a" * 33, "under_score"):
        with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint"):
            store.index.conn.execute("INSERT INTO tags VALUES (?, ?, 0.0, 'x')", (uid, bad))
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        store.index.conn.execute("INSERT INTO tags VALUES ('nope', 'training', 0.0, 'x')")


def test_a_v2_store_gains_tags_when_opened(
    tmp_path: Path, recipient: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as m:
        m.setattr(index_module, "MIGRATIONS", index_module.MIGRATIONS[:2])
        m.setattr(index_module, "SCHEMA_VERSION", 2)
        old = Store.init(tmp_path / "s", [recipient])
        sink = StoreSink(old)
        for event in call_events("a@h", real_stereo("ulaw")[:2400], ts=months_ago(1)):
            sink.handle(event)  # type: ignore[arg-type]
        sink.close()
        assert old.index.version == 2
        (uid,) = old.index.conn.execute("SELECT id FROM calls").fetchone()
        old.close()
    with Store.open(tmp_path / "s") as store:
        assert store.index.version == 3
        assert store.find(uid)["tags"] == []
        admin.add_tag(store, uid, "training", "why", USER, NOW)
        assert [c["id"] for c in store.search(tag="training")] == [uid]
