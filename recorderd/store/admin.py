"""Store administration: holds, tags, the retention sweep and erasure, each change audited.

A **hold** (complaint, tribunal, training, unacceptable behaviour) keeps a call past its retention
period, and refuses its erasure, until it is released or its ``until`` date passes.

A **tag** is a short lowercase word on a call (``training``, ``complaint``): it narrows a search,
and a tag with a period in ``[retention.tags]`` keeps the call at least that long (retention.py).
Unlike a hold it does not stop an erasure; the sweep reads the tags again under the write lock, so
a tag added while it runs is not missed.

**Deleting** a call (the sweep, or an erasure request) takes the index's write lock first, so no hold
can be placed meanwhile; checks the holds; unlinks the recording and fsyncs its directory (files
first); and only then, in one transaction, turns the call into a tombstone and appends the audit
entry. A kill at any point leaves either the call untouched, or its file gone and its row intact, in
which case the next sweep (or the same erase again) finishes the job: the file is already gone, the
row and its single audit entry are written. So the sweep is idempotent and safe to interrupt.

A tombstone keeps what is not personal data (internal uid, INVITE time, direction, end reason, the
recording's path, ``erased_ts``) so that ``verify`` can tell an erased recording from a lost one and
the audit log's entries still point at something; the parties' URIs, names, numbers, DTMF, legs and
tags go.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from recorderd.errors import StoreError
from recorderd.store.retention import Candidate, RetentionPolicy, add_months, select_expired, tag_problem
from recorderd.store.store import Store, iso_utc
from recorderd.store.writer import PART_SUFFIX, fsync_dir

_DAY = 86400.0
_SCRUB = (
    "from_uri = '', from_name = '', from_user = '', from_number = '',"
    " to_uri = '', to_name = '', to_user = '', to_number = '', dtmf = '[]', holds = '[]', transfers = '[]'"
)


@dataclass(frozen=True, slots=True)
class Hold:
    id: int
    call: str  # the call's uid
    reason: str
    placed_by: str
    placed_ts: float
    until_ts: float | None
    released_ts: float | None
    released_by: str | None

    def active(self, now: float) -> bool:
        return self.released_ts is None and (self.until_ts is None or now < self.until_ts)

    def describe(self) -> str:
        until = f", until {iso_utc(self.until_ts)}" if self.until_ts is not None else ""
        placed = iso_utc(self.placed_ts)
        return f"hold {self.id} ({self.reason!r}, placed by {self.placed_by} on {placed}{until})"


def _hold(row: sqlite3.Row) -> Hold:
    return Hold(*(row[k] for k in Hold.__slots__))


def holds(store: Store, now: float, call: str | None = None, everything: bool = False) -> list[Hold]:
    """Holds in force at ``now`` (all ever placed with ``everything``), on ``call`` when given."""
    where, params = ("WHERE call = ?", (call,)) if call else ("", ())
    rows = store.index.conn.execute(f"SELECT * FROM holds {where} ORDER BY id", params).fetchall()
    return [h for h in map(_hold, rows) if everything or h.active(now)]


def add_hold(store: Store, call_ref: str, reason: str, user: str, now: float, until: float | None) -> Hold:
    """Place a hold on a call (audited ``hold-add``)."""
    _need_reason(reason, "a hold")
    call = store.find(call_ref)
    if call["erased"] is not None:
        raise StoreError(f"call {call['id']} was erased on {call['erased']}; there is nothing to hold")
    if until is not None and until <= now:
        raise StoreError(f"the hold would end at {iso_utc(until)}, which has passed")
    with store.index.transaction() as conn:
        cursor = conn.execute(
            "INSERT INTO holds (call, reason, placed_by, placed_ts, until_ts) VALUES (?, ?, ?, ?, ?)",
            (call["id"], reason, user, now, until),
        )
        hold_id = cursor.lastrowid
        store.index.audit(conn, now, user, "hold-add", call["id"], reason, None, {"hold": hold_id})
    return Hold(int(hold_id or 0), call["id"], reason, user, now, until, None, None)


def release_hold(store: Store, ref: str, reason: str, user: str, now: float) -> list[Hold]:
    """Release hold number ``ref``, or every hold in force on call ``ref`` (audited ``hold-release``)."""
    _need_reason(reason, "releasing a hold")
    if ref.isdigit():
        found = [h for h in holds(store, now, everything=True) if h.id == int(ref)]
        if not found:
            raise StoreError(f"no hold {ref}")
        if not found[0].active(now):
            raise StoreError(f"hold {ref} is no longer in force")
    else:
        found = holds(store, now, store.find(ref)["id"])
        if not found:
            raise StoreError(f"call {ref} has no hold in force")
    with store.index.transaction() as conn:
        for hold in found:
            conn.execute(
                "UPDATE holds SET released_ts = ?, released_by = ? WHERE id = ?", (now, user, hold.id)
            )
            store.index.audit(conn, now, user, "hold-release", hold.call, reason, None, {"hold": hold.id})
    return found


# ---------------------------------------------------------------------------------------------------
# Tags


@dataclass(frozen=True, slots=True)
class Tag:
    call: str  # the call's uid
    tag: str
    added_ts: float
    added_by: str


def tags(store: Store, call: str | None = None) -> list[Tag]:
    """Every tag on every call (on ``call``, an id or SIP Call-ID, when given), by call then tag."""
    where, params = ("WHERE call = ?", (store.find(call)["id"],)) if call else ("", ())
    rows = store.index.conn.execute(
        f"SELECT call, tag, added_ts, added_by FROM tags {where} ORDER BY call, tag", params
    ).fetchall()
    return [Tag(*row) for row in rows]


def add_tag(store: Store, call_ref: str, tag: str, reason: str, user: str, now: float) -> Tag:
    """Put ``tag`` on a call (audited ``tag-add``); refused when the call already has it."""
    _need_reason(reason, "tagging a call")
    _need_tag(tag)
    call = store.find(call_ref)
    if call["erased"] is not None:
        raise StoreError(f"call {call['id']} was erased on {call['erased']}; there is nothing to tag")
    with store.index.transaction() as conn:
        try:
            conn.execute(
                "INSERT INTO tags (call, tag, added_ts, added_by) VALUES (?, ?, ?, ?)",
                (call["id"], tag, now, user),
            )
        except sqlite3.IntegrityError:
            raise StoreError(f"call {call['id']} already has tag {tag!r}") from None
        store.index.audit(conn, now, user, "tag-add", call["id"], reason, None, {"tag": tag})
    return Tag(call["id"], tag, now, user)


def remove_tag(store: Store, call_ref: str, tag: str, reason: str, user: str, now: float) -> Tag:
    """Take ``tag`` off a call (audited ``tag-remove``); the tag as it was."""
    _need_reason(reason, "removing a tag")
    _need_tag(tag)
    uid = store.find(call_ref)["id"]
    with store.index.transaction() as conn:
        row = conn.execute(
            "SELECT call, tag, added_ts, added_by FROM tags WHERE call = ? AND tag = ?", (uid, tag)
        ).fetchone()
        if row is None:
            raise StoreError(f"call {uid} has no tag {tag!r}")
        conn.execute("DELETE FROM tags WHERE call = ? AND tag = ?", (uid, tag))
        detail = {"tag": tag, "added": iso_utc(row["added_ts"]), "added_by": row["added_by"]}
        store.index.audit(conn, now, user, "tag-remove", uid, reason, None, detail)
    return Tag(*row)


def _need_tag(tag: str) -> None:
    problem = tag_problem(tag)
    if problem:
        raise StoreError(problem)


# ---------------------------------------------------------------------------------------------------
# Deleting


@dataclass(frozen=True, slots=True)
class Deleted:
    call: str
    invite_ts: float
    sha256: str | None  # of the ciphertext that was deleted


def erase(store: Store, call_ref: str, reason: str, user: str, now: float) -> Deleted:
    """Erase one call on request (right to erasure; audited ``erase``); refused under a hold."""
    _need_reason(reason, "an erasure")
    call = store.find(call_ref)
    if call["erased"] is not None:
        raise StoreError(f"call {call['id']} was already erased on {call['erased']}")
    deleted = _delete(store, call["id"], "erase", reason, user, now)
    if deleted is None:  # only a race with another eraser can get here
        raise StoreError(f"call {call['id']} was erased meanwhile")
    return deleted


@dataclass(frozen=True, slots=True)
class SweepResult:
    deleted: list[Deleted]
    due: list[str]  # uids past their period (deleted, or to be deleted in a dry run)
    held: list[str]  # past their period but kept by a hold


def sweep(store: Store, policy: RetentionPolicy, user: str, now: float, dry_run: bool = False) -> SweepResult:
    """Delete every call past its retention period that no hold covers (audited ``retention-delete``)."""
    candidates = _candidates(store, policy, now)
    expired = select_expired(candidates, (), policy, now)
    held = {h.call for h in holds(store, now)}
    due = [uid for uid in expired if uid not in held]
    kept = [uid for uid in expired if uid in held]
    if dry_run:
        return SweepResult([], due, kept)
    deleted = []
    for uid in due:
        result = _delete(store, uid, "retention-delete", "", user, now, policy)
        if result is not None:
            deleted.append(result)
    return SweepResult(deleted, due, kept)


def _candidates(store: Store, policy: RetentionPolicy, now: float) -> list[Candidate]:
    """Calls not erased, not being recorded, and old enough to be due under the shortest period
    (tags only lengthen a period, so they cannot make a call due earlier), with their tags."""
    shortest = min([policy.default, *(m for _, m in policy.by_direction)])
    rows = store.index.conn.execute(
        "SELECT calls.id, calls.invite_ts, calls.direction FROM calls"
        " LEFT JOIN recordings r ON r.call = calls.id"
        " WHERE calls.erased_ts IS NULL AND calls.invite_ts <= ?"
        " AND (r.state IS NULL OR r.state != 'recording') ORDER BY calls.invite_ts, calls.id",
        (now - shortest * 28 * _DAY,),  # 28 days a month: a superset of the calls that are due
    ).fetchall()
    tagged = store.index.tags([r[0] for r in rows])
    return [Candidate(r[0], r[1], r[2], tuple(tagged[r[0]])) for r in rows]


def _delete(
    store: Store,
    uid: str,
    action: str,
    reason: str,
    user: str,
    now: float,
    policy: RetentionPolicy | None = None,
) -> Deleted | None:
    """Files first, then the index, under the index write lock (module docstring). None: gone
    already, or (with the sweep's ``policy``) kept by a hold or a tag added since the call was selected;
    the sweep's reason is then the rule that made the call due, from its tags as they are now."""
    with store.index.transaction() as conn:
        row = conn.execute(
            "SELECT calls.invite_ts, calls.direction, calls.erased_ts, r.path, r.sha256, r.state FROM calls"
            " LEFT JOIN recordings r ON r.call = calls.id WHERE calls.id = ?",
            (uid,),
        ).fetchone()
        if row is None or row["erased_ts"] is not None:
            return None
        if policy is not None:
            months, source = policy.rule_for(row["direction"], store.index.tags([uid])[uid])
            if add_months(row["invite_ts"], months) > now:
                return None
            reason = f"retention period of {months} months ({source}) has passed"
        active = holds(store, now, uid)
        if policy is not None and (active or row["state"] == "recording"):
            return None  # held or recording again since the sweep chose it: the sweep skips it
        if row["state"] == "recording":
            raise StoreError(f"call {uid} is still being recorded; it can be erased after it ends")
        if active:
            raise StoreError(
                f"call {uid} is under {active[0].describe()}; release it first"
                f" (recorderd hold release {active[0].id} --reason ...)"
            )
        if row["path"] is not None:
            _unlink_recording(store.root / row["path"])
            conn.execute(
                "UPDATE recordings SET state = 'erased', sha256 = NULL, size = 0 WHERE call = ?", (uid,)
            )
        conn.execute(f"UPDATE calls SET {_SCRUB}, erased_ts = ? WHERE id = ?", (now, uid))
        conn.execute("DELETE FROM legs WHERE call = ?", (uid,))
        conn.execute("DELETE FROM tags WHERE call = ?", (uid,))
        detail = {"invite": iso_utc(row["invite_ts"]), "recording_sha256": row["sha256"], "path": row["path"]}
        store.index.audit(conn, now, user, action, uid, reason, None, detail)
    return Deleted(uid, row["invite_ts"], row["sha256"])


def _unlink_recording(path: Path) -> None:
    try:
        for name in (path, path.with_name(path.name + PART_SUFFIX)):
            name.unlink(missing_ok=True)
        if path.parent.is_dir():
            fsync_dir(path.parent)
    except OSError as exc:
        raise StoreError(f"cannot delete recording {path}: {os.strerror(exc.errno or 0)}") from None


def _need_reason(reason: str, what: str) -> None:
    if not reason.strip():
        raise StoreError(f"{what} needs a reason; it is kept in the audit log")
