"""Service subcommands: ``run`` (the live daemon) and ``health`` (its checks for IT support)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from recorderd.config import ServiceConfig, load_service_config
from recorderd.health import (
    Check,
    Status,
    StoreFacts,
    offline_checks,
    overall,
    query,
    store_facts,
    to_json,
)
from recorderd.store.store import STORE_FILE

DEFAULT_CONFIG = Path("/etc/recorderd/recorderd.toml")


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add this group's subcommands to the recorderd parser."""
    p = sub.add_parser("run", help="record live from the configured interfaces (the systemd service)")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help=f"default {DEFAULT_CONFIG}")
    p.set_defaults(handler=_run)

    p = sub.add_parser("health", help="check the recorder: exit 0 OK, 1 warning, 2 critical")
    p.add_argument("--config", type=Path, default=None, help=f"default {DEFAULT_CONFIG} when present")
    p.add_argument("--json", action="store_true", help="the checks as JSON, as /healthz serves them")
    p.set_defaults(handler=_health)


def _run(args: argparse.Namespace) -> int:
    from recorderd import daemon  # libpcap and the scheduler load only for the daemon

    return daemon.run(load_service_config(args.config))


def _health_config(path: Path | None) -> ServiceConfig:
    if path is not None:
        return load_service_config(path)
    return load_service_config(DEFAULT_CONFIG) if DEFAULT_CONFIG.exists() else ServiceConfig()


def checks_for(config: ServiceConfig) -> tuple[Check, ...]:
    """The daemon's own checks when it answers; otherwise its absence and the store's checks."""
    address = config.health.address
    if address is not None:
        checks = query(address)
        if checks is not None:
            return (Check("daemon", Status.OK, f"answering at {config.health.listen}"), *checks)
        problem = f"no answer at {config.health.listen}: is recorderd running?"
    else:
        problem = "health.listen is off: only the store can be checked"
    return offline_checks(_store_facts(config), config.health, problem)


def _store_facts(config: ServiceConfig) -> StoreFacts | None:
    """Read-only probes: opening the Store would migrate its index, which a full disk refuses."""
    root = config.store.path
    try:
        meta = json.loads((root / STORE_FILE).read_text())
    except (OSError, ValueError):
        return None
    recipients = meta.get("recipients") if isinstance(meta, dict) else None
    listed = [str(r) for r in recipients] if isinstance(recipients, list) else []
    return store_facts(root, listed, config.store.recipients, time.time())


def _health(args: argparse.Namespace) -> int:
    checks = checks_for(_health_config(args.config))
    if args.json:
        json.dump(to_json(checks), sys.stdout, indent=2)
        print()
    else:
        for check in checks:
            print(check.line())
    return int(overall(checks))
