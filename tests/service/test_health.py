"""Health checks: thresholds (pure), the HTTP listener and its metrics, and the CLI without a daemon."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest

from recorderd.cli import main
from recorderd.config import HealthConfig
from recorderd.health import (
    UNAVAILABLE,
    CaptureFacts,
    Facts,
    HealthServer,
    Status,
    StoreFacts,
    evaluate,
    overall,
    query,
    store_facts,
)
from tests.conftest import new_store

CONFIG = HealthConfig(packets_stale=60, sip_stale=3600, disk_min_free_mb=100)
GOOD_STORE = StoreFacts(free_bytes=50 * 10**9, total_bytes=100 * 10**9, bytes_per_day=10**9,
                        recipients=None, index=None)  # fmt: skip
NOW = 1_800_000_000.0
GOOD = Facts(
    now=NOW,
    started=NOW - 600,
    captures=(CaptureFacts("eth1", True, 5000, 0, 0),),
    last_packet=NOW - 1,
    last_sip=NOW - 30,
    packets_recent=1000,
    store=GOOD_STORE,
    canary=None,
)


def statuses(facts: Facts, config: HealthConfig = CONFIG) -> dict[str, Status]:
    return {c.name: c.status for c in evaluate(facts, config)}


def test_a_healthy_recorder_is_ok_on_every_check() -> None:
    checks = evaluate(GOOD, CONFIG)
    assert overall(checks) is Status.OK, [c.line() for c in checks if c.status]
    assert [c.name for c in checks] == [
        "capture", "sip", "drops", "calls", "recordings", "codecs", "unrecorded",
        "disk", "keys", "index", "sweep", "audit", "canary",
    ]  # fmt: skip
    assert all(c.summary and "\n" not in c.summary for c in checks)


@pytest.mark.parametrize(
    ("change", "name", "status"),
    [
        ({"last_packet": NOW - 61}, "capture", Status.CRITICAL),
        ({"last_packet": None, "started": NOW - 61}, "capture", Status.CRITICAL),
        ({"captures": (CaptureFacts("eth1", False, 0, 0, 0),)}, "capture", Status.CRITICAL),
        ({"captures": ()}, "capture", Status.CRITICAL),
        ({"last_sip": NOW - 3601}, "sip", Status.WARNING),
        ({"drops_recent": 5, "packets_recent": 995}, "drops", Status.WARNING),
        ({"drops_recent": 50, "packets_recent": 950}, "drops", Status.CRITICAL),
        ({"active_calls": 95, "max_calls": 100}, "calls", Status.WARNING),
        ({"recordings_incomplete": 1}, "recordings", Status.WARNING),
        ({"legs_undecodable": 2}, "codecs", Status.WARNING),
        ({"calls_unrecorded": 1}, "unrecorded", Status.WARNING),
        ({"store": replace(GOOD_STORE, free_bytes=99 * 10**6)}, "disk", Status.CRITICAL),
        ({"store": replace(GOOD_STORE, bytes_per_day=25 * 10**9)}, "disk", Status.CRITICAL),
        ({"store": replace(GOOD_STORE, bytes_per_day=2 * 10**9)}, "disk", Status.WARNING),
        ({"store": replace(GOOD_STORE, recipients="no key")}, "keys", Status.CRITICAL),
        ({"store": replace(GOOD_STORE, index="locked")}, "index", Status.CRITICAL),
        ({"store": None}, "index", Status.CRITICAL),
        ({"sweep": None, "last_sweep": NOW - 40 * 3600}, "sweep", Status.WARNING),
        ({"audit": "entry 17 does not chain to entry 16"}, "audit", Status.CRITICAL),
        ({"canary": "audio differs", "canary_failed": True}, "canary", Status.CRITICAL),
    ],
)
def test_each_check_trips_at_its_threshold(change: dict[str, object], name: str, status: Status) -> None:
    assert statuses(replace(GOOD, **change))[name] is status  # type: ignore[arg-type]


def test_unwired_store_jobs_are_reported_not_failed() -> None:
    checks = {c.name: c for c in evaluate(replace(GOOD, sweep=UNAVAILABLE, audit=UNAVAILABLE), CONFIG)}
    assert checks["sweep"].status is Status.OK and UNAVAILABLE in checks["sweep"].summary
    assert checks["audit"].status is Status.OK
    swept = statuses(replace(GOOD, sweep=None, last_sweep=NOW - 3600))
    assert swept["sweep"] is Status.OK


def test_store_facts_of_a_real_store(tmp_path: Path) -> None:
    store, _ = new_store(tmp_path)
    recipients = json.loads((store / "store.json").read_text())["recipients"]
    facts = store_facts(store, recipients, (), NOW)
    assert facts.free_bytes > 0 and facts.bytes_per_day == 0.0
    assert facts.recipients is None and facts.index is None
    assert store_facts(store, [], (), NOW).recipients is not None
    assert store_facts(store, recipients, ("age1other",), NOW).recipients is not None
    assert store_facts(tmp_path / "none", recipients, (), NOW).index is not None


def test_healthz_and_metrics_over_http() -> None:
    latest = [replace(GOOD, counters={"rtp.late": 3}, store_backlog=7)]
    server = HealthServer(("127.0.0.1", 0), lambda: (latest[0], evaluate(latest[0], CONFIG)))
    server.timeout = 5
    port = server.server_address[1]
    try:

        def serve() -> None:
            for _ in range(3):
                server.serve_one()

        thread = threading.Thread(target=serve)
        thread.start()
        checks = query(("127.0.0.1", port))
        assert checks is not None and overall(checks) is Status.OK
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
        assert 'recorderd_capture_packets_total{interface="eth1"} 5000.0' in text
        assert 'recorderd_check_status{check="capture"} 0.0' in text
        assert 'recorderd_engine_events_total{name="rtp.late"} 3.0' in text
        assert "recorderd_disk_free_bytes 5e+10" in text
        assert "recorderd_store_queue_batches 7.0" in text
        latest[0] = replace(GOOD, last_packet=NOW - 100)
        critical = query(("127.0.0.1", port))  # 503 still carries the checks
        assert critical is not None and overall(critical) is Status.CRITICAL
        thread.join(10)
    finally:
        server.server_close()
    assert query(("127.0.0.1", port), timeout=1) is None


def test_health_cli_without_a_daemon(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store, _ = new_store(tmp_path)
    config = tmp_path / "r.toml"
    config.write_text(f'[store]\npath = "{store}"\n[health]\nlisten = "127.0.0.1:1"\ndisk_min_free_mb = 1\n')
    capsys.readouterr()
    assert main(["health", "--config", str(config)]) == 2
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "CRITICAL daemon: no answer at 127.0.0.1:1: is recorderd running?"
    assert [line.split()[:2] for line in lines[1:]] == [["OK", "disk:"], ["OK", "keys:"], ["OK", "index:"]]
    assert main(["health", "--config", str(config), "--json"]) == 2
    data = json.loads(capsys.readouterr().out)
    assert data["status"] == "CRITICAL" and data["checks"][1]["name"] == "disk"


def _mount_tmpfs(path: Path, size: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")


def test_full_disk_turns_critical_and_back_to_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "8m")
    try:
        store, _ = new_store(disk)
        config = tmp_path / "r.toml"
        config.write_text(f'[store]\npath = "{store}"\n[health]\nlisten = ""\ndisk_min_free_mb = 2\n')
        capsys.readouterr()
        main(["health", "--config", str(config)])
        assert "OK       disk:" in capsys.readouterr().out
        filler = disk / "filler"
        with filler.open("wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass  # ENOSPC: the disk is full
        main(["health", "--config", str(config)])
        assert "CRITICAL disk: 0 MB free" in capsys.readouterr().out
        filler.unlink()
        main(["health", "--config", str(config)])
        assert "OK       disk:" in capsys.readouterr().out
    finally:
        subprocess.run(["umount", "--lazy", str(disk)], check=True)
