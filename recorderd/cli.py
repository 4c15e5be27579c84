"""Command line: argument parsing and dispatch only; the work happens in the modules it calls.

The core commands (keygen, init, replay, calls, export) are here; the store administration commands
and the service commands register themselves from ``recorderd/commands/``. Every operational failure
is a :class:`RecorderdError` whose message is printed on one line with a non-zero exit status, never
a traceback.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from recorderd import __version__, commands, gctune
from recorderd.commands import service as service_commands
from recorderd.commands import store as store_commands
from recorderd.config import EngineConfig, load_config
from recorderd.errors import RecorderdError
from recorderd.events import CallRecord
from recorderd.replay import ReplayResult, replay_file
from recorderd.store.audit import os_user
from recorderd.store.export import export_call
from recorderd.store.keys import keygen
from recorderd.store.sink import StoreSink
from recorderd.store.store import Store


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recorderd", description="Record SIP calls from a mirror port or a capture file."
    )
    parser.add_argument("--version", action="version", version=f"recorderd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("keygen", help="create an age identity (private key) and print its recipient")
    p.add_argument("--out", type=Path, required=True, help="identity file to write (mode 0600)")
    p.add_argument(
        "--passphrase",
        action="store_true",
        help=f"protect the identity with a passphrase (prompted, or from ${commands.PASSPHRASE_ENV})",
    )

    p = sub.add_parser("init", help="create a recording store")
    p.add_argument("store", type=Path)
    p.add_argument("--recipient", action="append", required=True, help="age1... public key")

    p = sub.add_parser("replay", help="record the calls in capture files into a store")
    p.add_argument("pcaps", type=Path, nargs="+", metavar="PCAP")
    p.add_argument("--store", type=Path, required=True)
    p.add_argument("--config", type=Path, help="site config (TOML): numbering, timeouts")
    p.add_argument("--quiet", action="store_true", help="no progress or per-call summary")

    p = sub.add_parser("calls", help="list the calls in a store")
    p.add_argument("--store", type=Path, required=True)
    p.add_argument("--json", action="store_true", help="one JSON list, one object per call")

    p = sub.add_parser("export", help="decrypt one recording to WAV, FLAC or MP3 (audited)")
    p.add_argument("call", metavar="CALL", help="the call's id from `calls`, or its SIP Call-ID")
    p.add_argument("--store", type=Path, required=True)
    p.add_argument("--identity", type=Path, required=True, help="age identity file")
    p.add_argument("--format", choices=("wav", "flac", "mp3"), default="wav")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--reason", required=True, help="why this recording is accessed (audited)")

    for name, handler in COMMANDS.items():
        sub.choices[name].set_defaults(handler=handler)
    for module in (store_commands, service_commands):
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except RecorderdError as e:
        print(f"recorderd: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("recorderd: interrupted", file=sys.stderr)
        return 130


# -- commands ----------------------------------------------------------------------------------------


def _keygen(args: argparse.Namespace) -> int:
    passphrase = _new_passphrase() if args.passphrase else None
    recipient = keygen(args.out, passphrase)
    print(recipient)
    print(f"identity written to {args.out}; keep it away from the recorder", file=sys.stderr)
    return 0


def _init(args: argparse.Namespace) -> int:
    store = Store.init(args.store, args.recipient)  # also creates the audit log's Ed25519 signing key
    public_key = store.audit_public_key
    store.close()
    print(f"store created at {args.store}")
    print(f"audit signing public key: {public_key} (note it somewhere off this machine)")
    return 0


def _replay(args: argparse.Namespace) -> int:
    gctune.tune()
    config = load_config(args.config) if args.config else EngineConfig()
    for path in args.pcaps:
        if not path.is_file():
            raise RecorderdError(f"capture file not found: {path}")
    store = Store.open(args.store, config.site.default_region)
    sink = StoreSink(store)
    progress = None if args.quiet else _progress
    status = 0
    try:
        for path in args.pcaps:
            result = replay_file(path, sink, config, progress)
            if not args.quiet:
                _summary(result, store)
            if result.truncated:
                print(f"recorderd: error: {result.truncated}", file=sys.stderr)
                status = 1
    finally:
        sink.close()
        store.close()
    return status


def _calls(args: argparse.Namespace) -> int:
    store = Store.open(args.store)
    try:
        calls = store.calls()
    finally:
        store.close()
    commands.print_calls(calls, args.json)
    return 0


def _export(args: argparse.Namespace) -> int:
    identities = commands.identities(args.identity)
    store = Store.open(args.store)
    try:
        result = export_call(store, args.call, identities, args.format, args.out, args.reason, os_user())
    finally:
        store.close()
    seconds = result.samples / result.sample_rate
    print(f"exported call {result.call} to {args.out} ({seconds:.1f} s, sha256 {result.sha256})")
    if not result.complete:
        print("note: the recording is incomplete (cut short); the export holds what was saved")
    return 0


COMMANDS = {
    "keygen": _keygen,
    "init": _init,
    "replay": _replay,
    "calls": _calls,
    "export": _export,
}


# -- helpers -----------------------------------------------------------------------------------------


def _new_passphrase() -> str:
    if commands.PASSPHRASE_ENV in os.environ:
        return os.environ[commands.PASSPHRASE_ENV]
    first = getpass.getpass("passphrase for the new identity: ")
    if first != getpass.getpass("again: "):
        raise RecorderdError("the passphrases do not match")
    if not first:
        raise RecorderdError("an empty passphrase protects nothing; leave out --passphrase instead")
    return first


def _progress(path: Path, done: int, total: int) -> None:
    if not sys.stderr.isatty():
        return
    percent = 100 * done // total if total else 100
    end = "\n" if done >= total else ""
    print(
        f"\r{path.name}: {percent:3d}% ({done // 1_000_000} of {total // 1_000_000} MB)",
        end=end,
        file=sys.stderr,
        flush=True,
    )


def _summary(result: ReplayResult, store: Store) -> None:
    print(f"{result.path}: {result.frames} frames, {len(result.calls)} calls")
    for record in result.calls:
        print("  " + _record_line(record))


def _record_line(r: CallRecord) -> str:
    start = _iso(r.invite_ts)
    duration = (r.end_ts - r.answer_ts) if r.answer_ts is not None else 0.0
    decoded = sum(1 for leg in r.legs if leg.decoded)
    undecodable = sorted({leg.codec for leg in r.legs if not leg.decoded})
    media = f"{len(r.legs)} streams, {decoded} decoded"
    if undecodable:
        media += f", not decodable: {', '.join(undecodable)}"
    recording = f"{r.samples / r.sample_rate:.1f} s recorded" if r.samples else "no recording"
    status = r.sip_status if r.sip_status is not None else "-"
    return (
        f"{start} {r.call_id[:40]} {r.direction} {r.end_reason} ({status}) "
        f"talk {duration:.1f} s; {media}; {recording}"
    )


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"
