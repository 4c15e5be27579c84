"""Store administration commands: search, sar, hold, tag, sweep, erase, audit, verify.

Parsing and printing only; the work is in ``recorderd/store/`` (admin.py, sar.py, verify.py,
audit.py). Every command that reads recordings or changes the store names the OS user in the audit
log; the ones that hand out or delete data also need ``--reason``. Dates are ISO 8601
(``2024-06-01`` or ``2024-06-01T09:30``), UTC unless they carry an offset.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from recorderd import commands
from recorderd.config import parse_config, read_toml
from recorderd.errors import ConfigError, RecorderdError
from recorderd.events import Direction
from recorderd.store import admin, audit
from recorderd.store.retention import RetentionPolicy, parse_retention
from recorderd.store.sar import SAR_FORMATS, subject_access
from recorderd.store.store import Store, iso_utc
from recorderd.store.verify import verify_store

T = TypeVar("T")


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add this group's subcommands to the recorderd parser."""
    p = _with_store(sub.add_parser("search", help="find calls by number, extension, time, name"))
    p.add_argument("--number", help="an external number in any form: 07700 900123, +44..., sip:...")
    p.add_argument("--extension", help="an internal extension (exact user part)")
    p.add_argument("--since", type=_date, help="INVITE at or after this time (ISO 8601, UTC)")
    p.add_argument("--until", type=_date, help="INVITE before this time")
    p.add_argument("--direction", choices=[str(d) for d in Direction])
    p.add_argument("--name", help="part of either party's display name")
    p.add_argument("--call-id", help="SIP Call-ID")
    p.add_argument("--tag", help="calls carrying this tag")
    p.add_argument("--json", action="store_true", help="one JSON list, one object per call")
    p.set_defaults(handler=_search)

    p = _with_store(sub.add_parser("sar", help="subject-access bundle for one number (audited)"))
    p.add_argument("--number", required=True)
    p.add_argument("--since", type=_date)
    p.add_argument("--until", type=_date)
    p.add_argument("--identity", type=Path, required=True, help="age identity file")
    p.add_argument("--reason", required=True, help="the request being answered (audited)")
    p.add_argument("--out", type=Path, required=True, help="new directory for the bundle")
    p.add_argument("--format", choices=SAR_FORMATS, default="wav")
    p.add_argument("--zip", action="store_true", help="pack the bundle into OUT.zip")
    p.set_defaults(handler=_sar)

    hold = sub.add_parser("hold", help="keep calls past their retention period").add_subparsers(
        dest="hold_command", required=True, metavar="ACTION"
    )
    p = _with_store(hold.add_parser("add", help="place a hold on a call (audited)"))
    p.add_argument("call", metavar="CALL", help="the call's id or SIP Call-ID")
    p.add_argument("--reason", required=True, help="complaint, tribunal, training, ... (audited)")
    p.add_argument("--until", type=_date, help="the hold ends by itself at this date")
    p.set_defaults(handler=_hold_add)
    p = _with_store(hold.add_parser("release", help="lift a hold (audited)"))
    p.add_argument("hold", metavar="HOLD", help="the hold number from `hold list`, or a call")
    p.add_argument("--reason", required=True)
    p.set_defaults(handler=_hold_release)
    p = _with_store(hold.add_parser("list", help="holds in force"))
    p.add_argument("--all", action="store_true", help="released and lapsed holds too")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_hold_list)

    tag = sub.add_parser("tag", help="label calls (training, complaint, ...)").add_subparsers(
        dest="tag_command", required=True, metavar="ACTION"
    )
    for action, handler, text in (
        ("add", _tag_add, "put a tag on a call (audited)"),
        ("remove", _tag_remove, "take a tag off a call (audited)"),
    ):
        p = _with_store(tag.add_parser(action, help=text))
        p.add_argument("call", metavar="CALL", help="the call's id or SIP Call-ID")
        p.add_argument("tag", metavar="TAG", help="a lowercase word: a-z, 0-9 and '-', at most 32")
        p.add_argument("--reason", required=True, help="why (audited)")
        p.set_defaults(handler=handler)
    p = _with_store(tag.add_parser("list", help="tagged calls and their tags"))
    p.add_argument("--call", help="only the tags of this call (id or SIP Call-ID)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_tag_list)

    p = _with_store(sub.add_parser("sweep", help="delete calls past their retention period (audited)"))
    p.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    p.set_defaults(handler=_sweep)

    p = _with_store(sub.add_parser("erase", help="erase a call on request (audited; refused under a hold)"))
    p.add_argument("call", metavar="CALL")
    p.add_argument("--reason", required=True, help="the erasure request (audited)")
    p.set_defaults(handler=_erase)

    group = sub.add_parser("audit", help="the tamper-evident audit log").add_subparsers(
        dest="audit_command", required=True, metavar="ACTION"
    )
    p = _with_store(group.add_parser("verify", help="check the hash chain and its signed head"))
    p.set_defaults(handler=_audit_verify)
    p = _with_store(group.add_parser("show", help="print the audit log"))
    p.add_argument("--call", help="only the entries about this call id")
    p.add_argument("--head", action="store_true", help="only the head (sequence and hash) to note off-box")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_audit_show)

    p = _with_store(sub.add_parser("verify", help="check recordings against the index (no identity needed)"))
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_verify)


def _with_store(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--store", type=Path, required=True)
    p.add_argument("--config", type=Path, help="site config (TOML): [site] default_region, [retention]")
    return p


# -- handlers ----------------------------------------------------------------------------------------


def _search(args: argparse.Namespace) -> int:
    with _open(args) as store:
        calls = store.search(
            args.number,
            args.extension,
            args.since,
            args.until,
            args.direction,
            args.name,
            args.call_id,
            tag=args.tag,
        )
    commands.print_calls(calls, args.json)
    if not args.json:
        print(f"{len(calls)} call(s)", file=sys.stderr)
    return 0


def _sar(args: argparse.Namespace) -> int:
    identities = commands.identities(args.identity)
    with _open(args) as store:
        result = subject_access(
            store,
            args.number,
            identities,
            args.format,
            args.out,
            args.reason,
            audit.os_user(),
            time.time(),
            args.since,
            args.until,
            args.zip,
        )
    print(f"{result.path}: {result.calls} call(s), {result.recordings} recording(s), sha256 {result.sha256}")
    for line in result.unavailable:
        print(f"note: {line}")
    return 0


def _hold_add(args: argparse.Namespace) -> int:
    with _open(args) as store:
        hold = admin.add_hold(store, args.call, args.reason, audit.os_user(), time.time(), args.until)
    print(f"placed {hold.describe()} on call {hold.call}")
    return 0


def _hold_release(args: argparse.Namespace) -> int:
    with _open(args) as store:
        released = admin.release_hold(store, args.hold, args.reason, audit.os_user(), time.time())
    for hold in released:
        print(f"released {hold.describe()} on call {hold.call}")
    return 0


def _hold_list(args: argparse.Namespace) -> int:
    now = time.time()
    with _open(args) as store:
        holds = admin.holds(store, now, everything=args.all)
    if args.json:
        rows = [{**{k: getattr(h, k) for k in admin.Hold.__slots__}, "active": h.active(now)} for h in holds]
        json.dump(rows, sys.stdout, indent=2)
        print()
        return 0
    for h in holds:
        state = "in force" if h.active(now) else "released" if h.released_ts else "lapsed"
        print(f"{h.id:>5}  {h.call}  {state:<8}  {h.describe()}")
    return 0


def _tag_add(args: argparse.Namespace) -> int:
    with _open(args) as store:
        tag = admin.add_tag(store, args.call, args.tag, args.reason, audit.os_user(), time.time())
    print(f"added tag {tag.tag!r} to call {tag.call}")
    return 0


def _tag_remove(args: argparse.Namespace) -> int:
    with _open(args) as store:
        tag = admin.remove_tag(store, args.call, args.tag, args.reason, audit.os_user(), time.time())
    print(f"removed tag {tag.tag!r} from call {tag.call}")
    return 0


def _tag_list(args: argparse.Namespace) -> int:
    with _open(args) as store:
        tags = admin.tags(store, args.call)
    if args.json:
        json.dump([{k: getattr(t, k) for k in admin.Tag.__slots__} for t in tags], sys.stdout, indent=2)
        print()
        return 0
    for t in tags:
        print(f"{t.call}  {t.tag:<32}  added {iso_utc(t.added_ts)} by {t.added_by}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    with _open(args) as store:
        result = admin.sweep(store, _policy(args.config), audit.os_user(), time.time(), args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    print(f"{verb} {len(result.due)} call(s); {len(result.held)} kept by a hold")
    for uid in result.due if args.dry_run else [d.call for d in result.deleted]:
        print(f"  {verb} {uid}")
    return 0


def _erase(args: argparse.Namespace) -> int:
    with _open(args) as store:
        deleted = admin.erase(store, args.call, args.reason, audit.os_user(), time.time())
    print(f"erased call {deleted.call} (recorded {iso_utc(deleted.invite_ts)})")
    return 0


def _audit_verify(args: argparse.Namespace) -> int:
    with _open(args) as store:
        report = audit.verify(store.index.conn, store.audit_public_key)
    if report.problem:
        raise RecorderdError(f"audit log check failed: {report.problem}")
    print(f"audit log intact: {report.entries} entries, head signed at entry {report.signed_seq}")
    return 0


def _audit_show(args: argparse.Namespace) -> int:
    with _open(args) as store:
        entries = store.index.access_log(args.call)
    if args.head:
        entries = entries[-1:]
    if args.json:
        json.dump(
            [{k: getattr(e, k) for k in audit.AuditEntry.__slots__} for e in entries], sys.stdout, indent=2
        )
        print()
        return 0
    for e in entries:
        if args.head:
            print(f"{e.seq} {e.hash}")
            continue
        what = f"call {e.call}" if e.call else "-"
        out = f" sha256 {e.output_sha256}" if e.output_sha256 else ""
        print(f"{e.seq:>6}  {iso_utc(e.ts)}  {e.os_user}  {e.action}  {what}  {e.reason!r}{out}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    with _open(args) as store:
        report = verify_store(store)
    problems = [str(f) for f in report.findings] + list(report.database)
    if report.audit.problem:
        problems.append(f"audit: {report.audit.problem}")
    if args.json:
        json.dump({"ok": report.ok, "problems": problems}, sys.stdout, indent=2)
        print()
    else:
        for line in problems:
            print(line)
        print(f"{report.recordings} recordings, {report.files} files, {len(problems)} problem(s)")
    return 0 if report.ok else 1


# -- helpers -----------------------------------------------------------------------------------------


def _open(args: argparse.Namespace) -> Store:
    region = "GB"
    if args.config:
        region = _with_path(args.config, lambda data: parse_config(data).site.default_region)
    return Store.open(args.store, region)


def _policy(path: Path | None) -> RetentionPolicy:
    if path is None:
        return RetentionPolicy()
    return _with_path(path, lambda data: parse_retention(data.get("retention", {})))


def _with_path(path: Path, parse: Callable[[dict[str, Any]], T]) -> T:
    data = read_toml(path)
    try:
        return parse(data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def _date(text: str) -> float:
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO 8601 date or time, got {text!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()
