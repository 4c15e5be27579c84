"""Retention with a fake clock, holds, erasure: what goes, what stays, and the audit entry for each."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from recorderd.errors import ConfigError, StoreError
from recorderd.events import CallFinished, Direction
from recorderd.store import admin, audit
from recorderd.store.retention import (
    Candidate,
    RetentionPolicy,
    add_months,
    parse_retention,
    select_expired,
)
from recorderd.store.sink import StoreSink
from recorderd.store.store import Store
from tests.store.helpers import call_events, real_stereo

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z
USER = "dpo (uid 1001)"


def record_calls(store: Store, *calls: tuple[str, float, Direction]) -> dict[str, str]:
    """Record a short call per (Call-ID, INVITE time, direction); their uids by Call-ID."""
    sink = StoreSink(store)
    audio = real_stereo("ulaw")[:2400]
    for call_id, ts, direction in calls:
        for event in call_events(call_id, audio, ts=ts):
            if isinstance(event, CallFinished):
                record = dataclasses.replace(event.record, direction=direction)
                event = CallFinished(event.ts, call_id, record)
            sink.handle(event)  # type: ignore[arg-type]
    sink.close()
    return {c["call_id"]: c["id"] for c in store.calls()}


def months_ago(n: int) -> float:
    return add_months(NOW, -n)


def test_add_months_clamps_to_the_end_of_the_month() -> None:
    assert add_months(1_711_843_200.0, 1) == 1_714_435_200.0  # 2024-03-31 -> 2024-04-30
    assert add_months(1_709_164_800.0, 12) == 1_740_700_800.0  # 2024-02-29 -> 2025-02-28
    assert add_months(NOW, -1) == 1_764_547_200.0  # 2025-12-01
    assert add_months(NOW, 36) == 1_861_920_000.0  # 2029-01-01


def test_parse_retention() -> None:
    assert parse_retention({}) == RetentionPolicy(36, ())
    policy = parse_retention({"default": "3 years", "outbound": "6 months", "internal": "1 year"})
    assert policy == RetentionPolicy(36, (("internal", 12), ("outbound", 6)))
    assert policy.months_for("outbound") == 6 and policy.months_for("inbound") == 36


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"default": 36}, 'retention.default: expected a period like "36 months" or "3 years", got 36'),
        ({"default": "36 weeks"}, "retention.default: expected a period like"),
        (
            {"inbound": "0 months"},
            "retention.inbound: expected between 1 month and 100 years, got '0 months'",
        ),
        ({"default": "101 years"}, "retention.default: expected between 1 month and 100 years"),
        ({"tag": {}}, "retention.tag: unknown option"),
        ({"tags": "x"}, "retention.tags: expected a table of tag = period"),
        (
            {"tags": {"Training": "5 years"}},
            "retention.tags.Training: not a tag (expected 1 to 32 lowercase letters, digits or '-')",
        ),
        ({"tags": {"a" * 33: "5 years"}}, f"retention.tags.{'a' * 33}: not a tag"),
        ({"tags": {"training": "5 yrs"}}, 'retention.tags.training: expected a period like "36 months"'),
        ({"tags": {"training": 60}}, "retention.tags.training: expected a period like"),
        ({"tags": {"complaint": "0 years"}}, "retention.tags.complaint: expected between 1 month"),
    ],
)
def test_parse_retention_errors_name_the_key(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_retention(table)
    assert str(err.value).startswith(message)


def test_parse_retention_tags() -> None:
    policy = parse_retention(
        {"outbound": "6 months", "tags": {"training": "5 years", "complaint": "6 years"}}
    )
    assert policy == RetentionPolicy(36, (("outbound", 6),), (("complaint", 72), ("training", 60)))
    assert parse_retention({"tags": {}}) == RetentionPolicy()


def test_a_tag_lengthens_retention_and_never_shortens_it() -> None:
    policy = RetentionPolicy(36, (("outbound", 6), ("internal", 48)), (("training", 60), ("brief", 12)))
    assert policy.rule_for("inbound") == (36, "inbound calls")
    assert policy.rule_for("inbound", ("training",)) == (60, "tag training")
    assert policy.rule_for("inbound", ("brief",)) == (36, "inbound calls")  # shorter: no effect
    assert policy.rule_for("outbound", ("brief",)) == (12, "tag brief")  # longer than outbound's 6
    assert policy.rule_for("internal", ("training", "brief", "other")) == (60, "tag training")
    assert policy.rule_for("internal", ("other",)) == (48, "internal calls")  # a tag with no period
    tie = RetentionPolicy(36, (), (("a", 36),))
    assert tie.rule_for("inbound", ("a",)) == (36, "inbound calls")


def test_select_expired_is_pure_and_per_direction() -> None:
    policy = RetentionPolicy(36, (("outbound", 6),))
    calls = [
        Candidate("a", months_ago(37), "inbound"),
        Candidate("b", months_ago(35), "inbound"),
        Candidate("c", months_ago(7), "outbound"),
        Candidate("d", months_ago(5), "outbound"),
        Candidate("e", months_ago(40), "inbound"),
    ]
    assert select_expired(calls, (), policy, NOW) == ["a", "c", "e"]
    assert select_expired(calls, {"e"}, policy, NOW) == ["a", "c"]


def test_sweep_deletes_37_months_keeps_35_and_held_until_release(store: Store) -> None:
    uids = record_calls(
        store,
        ("old@h", months_ago(37), Direction.INBOUND),
        ("recent@h", months_ago(35), Direction.INBOUND),
        ("held@h", months_ago(40), Direction.INBOUND),
    )
    files = {cid: store.root / store.find(uid)["recording"] for cid, uid in uids.items()}
    hold = admin.add_hold(store, uids["held@h"], "complaint 2025-17", USER, NOW - 10, None)

    dry = admin.sweep(store, RetentionPolicy(), USER, NOW, dry_run=True)
    assert (dry.deleted, dry.due, dry.held) == ([], [uids["old@h"]], [uids["held@h"]])
    assert all(f.exists() for f in files.values())

    result = admin.sweep(store, RetentionPolicy(), USER, NOW)
    assert [d.call for d in result.deleted] == [uids["old@h"]]
    assert result.held == [uids["held@h"]]
    assert not files["old@h"].exists() and files["recent@h"].exists() and files["held@h"].exists()
    gone = store.find(uids["old@h"])
    assert gone["recording_state"] == "erased" and gone["erased"] is not None
    assert (gone["from"], gone["from_name"], gone["from_number"], gone["legs"]) == ("", "", "", [])

    # Idempotent: nothing more to do, nothing more logged.
    assert admin.sweep(store, RetentionPolicy(), USER, NOW).due == []
    deletions = [e for e in store.index.access_log() if e.action == "retention-delete"]
    assert [e.call for e in deletions] == [uids["old@h"]]
    assert deletions[0].reason == "retention period of 36 months (inbound calls) has passed"

    admin.release_hold(store, str(hold.id), "complaint closed", USER, NOW + 1)
    result = admin.sweep(store, RetentionPolicy(), USER, NOW + 2)
    assert [d.call for d in result.deleted] == [uids["held@h"]] and not files["held@h"].exists()
    actions = [(e.action, e.call) for e in store.index.access_log()]
    assert actions == [
        ("hold-add", uids["held@h"]),
        ("retention-delete", uids["old@h"]),
        ("hold-release", uids["held@h"]),
        ("retention-delete", uids["held@h"]),
    ]
    assert audit.verify(store.index.conn, store.audit_public_key).ok


def test_a_hold_with_an_end_date_lapses(store: Store) -> None:
    uids = record_calls(store, ("a@h", months_ago(37), Direction.INBOUND))
    admin.add_hold(store, "a@h", "tribunal", USER, NOW - 100, until=NOW + 100)
    assert admin.sweep(store, RetentionPolicy(), USER, NOW).held == [uids["a@h"]]
    assert [d.call for d in admin.sweep(store, RetentionPolicy(), USER, NOW + 100).deleted] == [uids["a@h"]]


def test_sweep_finishes_a_deletion_cut_between_file_and_index(store: Store) -> None:
    uids = record_calls(store, ("a@h", months_ago(37), Direction.INBOUND))
    path = Path(store.find(uids["a@h"])["recording"])
    path.unlink()  # what a kill right after the unlink leaves: no file, the index unchanged
    result = admin.sweep(store, RetentionPolicy(), USER, NOW)
    assert [d.call for d in result.deleted] == [uids["a@h"]]
    assert [e.action for e in store.index.access_log()] == ["retention-delete"]


def test_per_direction_periods(store: Store) -> None:
    uids = record_calls(
        store,
        ("out@h", months_ago(7), Direction.OUTBOUND),
        ("in@h", months_ago(7), Direction.INBOUND),
    )
    policy = parse_retention({"outbound": "6 months"})
    assert [d.call for d in admin.sweep(store, policy, USER, NOW).deleted] == [uids["out@h"]]


def test_a_tagged_call_is_kept_for_its_tags_period(store: Store) -> None:
    policy = parse_retention({"tags": {"training": "5 years"}})
    uids = record_calls(
        store,
        ("training@h", months_ago(37), Direction.INBOUND),
        ("plain@h", months_ago(37), Direction.INBOUND),
        ("other-tag@h", months_ago(37), Direction.INBOUND),
    )
    admin.add_tag(store, "training@h", "training", "induction pack", USER, NOW - 10)
    admin.add_tag(store, "other-tag@h", "billing", "query", USER, NOW - 10)
    files = {cid: store.root / store.find(uid)["recording"] for cid, uid in uids.items()}

    # At 37 months: the untagged call and the one whose tag has no period go; training stays.
    result = admin.sweep(store, policy, USER, NOW)
    assert sorted(d.call for d in result.deleted) == sorted([uids["plain@h"], uids["other-tag@h"]])
    assert files["training@h"].exists() and not files["plain@h"].exists()
    assert store.find(uids["other-tag@h"])["tags"] == []  # a tombstone keeps no tags
    assert store.find(uids["training@h"])["tags"] == ["training"]

    # Still there at 59 months (due at 60); gone at 61, the audit entry naming the tag's period.
    assert admin.sweep(store, policy, USER, add_months(NOW, 22)).deleted == []
    assert files["training@h"].exists()
    result = admin.sweep(store, policy, USER, add_months(NOW, 24))
    assert [d.call for d in result.deleted] == [uids["training@h"]] and not files["training@h"].exists()
    last = store.index.access_log()[-1]
    assert (last.action, last.call, last.reason) == (
        "retention-delete",
        uids["training@h"],
        "retention period of 60 months (tag training) has passed",
    )
    assert audit.verify(store.index.conn, store.audit_public_key).ok


def test_a_hold_still_outlasts_a_tags_period(store: Store) -> None:
    policy = parse_retention({"tags": {"training": "5 years"}})
    uids = record_calls(store, ("a@h", months_ago(61), Direction.INBOUND))
    admin.add_tag(store, "a@h", "training", "induction", USER, NOW - 10)
    hold = admin.add_hold(store, "a@h", "tribunal 3", USER, NOW - 5, None)
    assert admin.sweep(store, policy, USER, NOW).held == [uids["a@h"]]
    admin.release_hold(store, str(hold.id), "tribunal over", USER, NOW + 1)
    assert [d.call for d in admin.sweep(store, policy, USER, NOW + 2).deleted] == [uids["a@h"]]


def test_a_tag_added_after_selection_still_keeps_the_call(store: Store) -> None:
    """The sweep reads tags again under the write lock: a tag placed between its selection and the
    deletion (here, between the dry run's answer and the call to _delete) is honoured."""
    policy = parse_retention({"tags": {"training": "5 years"}})
    uids = record_calls(store, ("a@h", months_ago(37), Direction.INBOUND))
    assert admin.sweep(store, policy, USER, NOW, dry_run=True).due == [uids["a@h"]]
    admin.add_tag(store, "a@h", "training", "late", USER, NOW)
    assert admin._delete(store, uids["a@h"], "retention-delete", "", USER, NOW, policy) is None
    assert store.find(uids["a@h"])["erased"] is None


def test_a_hold_placed_after_selection_is_skipped_and_the_sweep_goes_on(store: Store) -> None:
    policy = parse_retention({})
    uids = record_calls(
        store, ("a@h", months_ago(37), Direction.INBOUND), ("b@h", months_ago(38), Direction.INBOUND)
    )
    assert sorted(admin.sweep(store, policy, USER, NOW, dry_run=True).due) == sorted(uids.values())
    admin.add_hold(store, "a@h", "complaint 10", USER, NOW, None)
    assert admin._delete(store, uids["a@h"], "retention-delete", "", USER, NOW, policy) is None
    assert admin._delete(store, uids["b@h"], "retention-delete", "", USER, NOW, policy) is not None
    assert store.find(uids["a@h"])["erased"] is None and store.find(uids["b@h"])["erased"] is not None


def test_erase_is_refused_under_a_hold_naming_it(store: Store) -> None:
    uids = record_calls(store, ("a@h", months_ago(1), Direction.INBOUND))
    hold = admin.add_hold(store, "a@h", "complaint 9", USER, NOW, None)
    with pytest.raises(StoreError) as err:
        admin.erase(store, "a@h", "erasure request 4", USER, NOW)
    assert str(err.value) == (
        f"call {uids['a@h']} is under hold {hold.id} ('complaint 9', placed by {USER}"
        " on 2026-01-01T00:00:00.000000Z);"
        f" release it first (recorderd hold release {hold.id} --reason ...)"
    )
    admin.release_hold(store, "a@h", "complaint withdrawn", USER, NOW + 1)
    path = Path(store.find("a@h")["recording"])
    deleted = admin.erase(store, "a@h", "erasure request 4", USER, NOW + 2)
    assert deleted.call == uids["a@h"] and not path.exists()
    last = store.index.access_log()[-1]
    assert (last.action, last.call, last.reason, last.os_user) == (
        "erase",
        uids["a@h"],
        "erasure request 4",
        USER,
    )
    assert "07700900123" not in repr(store.index.access_log())  # the log does not undo the erasure
    with pytest.raises(StoreError, match="was already erased"):
        admin.erase(store, uids["a@h"], "again", USER, NOW + 3)
    with pytest.raises(StoreError, match="nothing to hold"):
        admin.add_hold(store, uids["a@h"], "late", USER, NOW + 3, None)


def test_hold_refusals(store: Store) -> None:
    record_calls(store, ("a@h", months_ago(1), Direction.INBOUND))
    with pytest.raises(StoreError, match="needs a reason"):
        admin.add_hold(store, "a@h", " ", USER, NOW, None)
    with pytest.raises(StoreError, match="which has passed"):
        admin.add_hold(store, "a@h", "x", USER, NOW, NOW - 1)
    with pytest.raises(StoreError, match="no hold 7"):
        admin.release_hold(store, "7", "x", USER, NOW)
    with pytest.raises(StoreError, match="has no hold in force"):
        admin.release_hold(store, "a@h", "x", USER, NOW)
    hold = admin.add_hold(store, "a@h", "x", USER, NOW, None)
    admin.release_hold(store, str(hold.id), "done", USER, NOW)
    with pytest.raises(StoreError, match="no longer in force"):
        admin.release_hold(store, str(hold.id), "done", USER, NOW)
    assert admin.holds(store, NOW) == [] and len(admin.holds(store, NOW, everything=True)) == 1


def test_the_shipped_configs_tag_example_parses_when_uncommented() -> None:
    shipped = Path(__file__).resolve().parents[2] / "config" / "recorderd.toml"
    lines = shipped.read_text().splitlines()
    start = lines.index("# [retention.tags]")
    example = [line.removeprefix("# ") for line in lines[start : start + 3]]
    data = tomllib.loads('[retention]\ndefault = "36 months"\n' + "\n".join(example))
    policy = parse_retention(data["retention"])
    assert policy.by_tag == (("complaint", 72), ("training", 60))
