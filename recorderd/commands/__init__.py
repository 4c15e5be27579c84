"""Command-line subcommand groups beyond the core ones in ``cli.py``.

Each module has ``register(sub)``, which adds its subparsers with ``set_defaults(handler=...)``; a
handler takes the parsed arguments and returns the exit status, raising RecorderdError for failures.
This module holds what several groups share.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

from recorderd.errors import RecorderdError
from recorderd.events import UNSIGNALLED
from recorderd.store.keys import load_identities

PASSPHRASE_ENV = "RECORDERD_PASSPHRASE"


def identities(path: Path) -> list[str]:
    """The identities in the file at ``path``; a passphrase-protected file takes its passphrase from
    ``$RECORDERD_PASSPHRASE`` or asks for it on the terminal."""
    try:
        with path.open("rb") as f:
            encrypted = f.read(22) == b"age-encryption.org/v1\n"
    except FileNotFoundError:
        raise RecorderdError(f"identity file not found: {path}") from None
    except OSError as e:
        raise RecorderdError(f"cannot read identity {path}: {e.strerror}") from None
    passphrase = None
    if encrypted:
        passphrase = os.environ.get(PASSPHRASE_ENV) or getpass.getpass(f"passphrase for {path}: ")
    return load_identities(path, passphrase)


def print_calls(calls: list[dict[str, Any]], as_json: bool) -> None:
    """Calls as `recorderd calls` and `recorderd search` show them: one JSON list, or a line each."""
    if as_json:
        json.dump(calls, sys.stdout, indent=2)
        print()
        return
    for call in calls:
        print(call_line(call))


def call_line(call: dict[str, Any]) -> str:
    """One line of `recorderd calls` and `recorderd search` for a call object of Store.calls()."""
    state = "erased" if call.get("erased") else call["recording_state"] or "no recording"
    tags = f"  [{', '.join(call['tags'])}]" if call.get("tags") else ""
    caller = _party(call.get("from_number") or call["from"], call["from_name"])
    callee = _party(call.get("to_number") or call["to"], call["to_name"])
    parties = f"{caller} -> {callee}"
    if str(call.get("call_id", "")).startswith(UNSIGNALLED):  # engine/orphans.py: only the media seen
        ends = call["call_id"][len(UNSIGNALLED) :].rpartition("@")[0]
        parties = "no SIP, media " + ends.replace("-", " <-> ")
    return (
        f"{call['id']}  {call['start']}  {call['direction']:<8}  {parties}  "
        f"{call['end_reason']} ({call['sip_status']})  {call['duration_s']:.1f} s  {state}{tags}"
    )


def _party(number: str, name: str) -> str:
    return f"{number} ({name})" if name and name != number else number
