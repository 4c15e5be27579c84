"""Health for IT support: facts about the running recorder -> checks, each OK, WARNING or CRITICAL.

The daemon gathers :class:`Facts` (capture counters, call and recording tallies, the store's disk and
keys) and :func:`evaluate` turns them into one :class:`Check` per concern, each with a one-line summary.
The same checks are served three ways: ``recorderd health`` prints one line per check and exits 0, 1 or
2 (the Nagios plugin convention); ``GET /healthz`` returns them as JSON; ``GET /metrics`` exposes the
facts and the check states in the Prometheus text format (``prometheus-client``). The listener binds a
loopback address only and is served from the daemon's own loop, one short request at a time.

:func:`evaluate` is pure (the clock is ``facts.now``), so every threshold is tested without a daemon.
"""

from __future__ import annotations

import json
import os
import sqlite3
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from recorderd.config import HealthConfig

_DAY = 86400.0
UNAVAILABLE = "not available in this build"
_RATE_WINDOW = 7 * _DAY


class Status(IntEnum):
    OK = 0
    WARNING = 1
    CRITICAL = 2


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    summary: str

    def line(self) -> str:
        return f"{self.status.name:<8} {self.name}: {self.summary}"


@dataclass(frozen=True, slots=True)
class CaptureFacts:
    interface: str
    running: bool
    packets: int
    kernel_drops: int
    interface_drops: int


@dataclass(frozen=True, slots=True)
class StoreFacts:
    """What the store's disk and files say; a problem is a sentence, None when there is none."""

    free_bytes: int
    total_bytes: int
    bytes_per_day: float  # recordings written per day, over the last week
    recipients: str | None
    index: str | None


@dataclass(frozen=True, slots=True)
class Facts:
    now: float
    started: float
    captures: tuple[CaptureFacts, ...] = ()
    last_packet: float | None = None
    last_sip: float | None = None
    packets_recent: int = 0  # since the previous self-check
    drops_recent: int = 0
    active_calls: int = 0
    max_calls: int = 10_000
    store_backlog: int = 0  # batches of events waiting for the store thread
    recordings_written: int = 0
    recordings_incomplete: int = 0
    legs_undecodable: int = 0
    calls_unrecorded: int = 0  # answered, yet no audio was captured
    store: StoreFacts | None = None
    last_sweep: float | None = None
    sweep: str | None = UNAVAILABLE  # None when the daemon runs sweeps
    audit: str | None = UNAVAILABLE  # None when intact, else the problem
    canary: str | None = "not run yet"  # None when the last self-test matched
    canary_failed: bool = False
    counters: dict[str, int] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------
# The checks


def _capture(f: Facts, c: HealthConfig) -> Check:
    down = [cap.interface for cap in f.captures if not cap.running]
    if not f.captures or down:
        return Check("capture", Status.CRITICAL, f"not capturing on {', '.join(down) or 'any interface'}")
    since = f.last_packet if f.last_packet is not None else f.started
    idle = f.now - since
    names = ", ".join(cap.interface for cap in f.captures)
    if idle > c.packets_stale:
        return Check("capture", Status.CRITICAL, f"no packets on {names} for {idle:.0f} s")
    total = sum(cap.packets for cap in f.captures)
    return Check("capture", Status.OK, f"capturing on {names}, {total} packets")


def _sip(f: Facts, c: HealthConfig) -> Check:
    since = f.last_sip if f.last_sip is not None else f.started
    idle = f.now - since
    if idle > c.sip_stale:
        seen = "never" if f.last_sip is None else f"not for {idle / 3600:.1f} h"
        return Check("sip", Status.WARNING, f"SIP seen {seen}: is the mirror port carrying signalling?")
    if f.last_sip is None:
        return Check("sip", Status.OK, "no SIP seen yet")
    return Check("sip", Status.OK, f"last SIP message {idle:.0f} s ago")


def _drops(f: Facts, c: HealthConfig) -> Check:
    total = sum(cap.kernel_drops + cap.interface_drops for cap in f.captures)
    seen = f.packets_recent + f.drops_recent
    share = f.drops_recent / seen if seen else 0.0
    text = f"{f.drops_recent} dropped of {seen} recently ({share:.2%}), {total} since start"
    if share > c.drops_critical:
        return Check("drops", Status.CRITICAL, text)
    if share > c.drops_warning:
        return Check("drops", Status.WARNING, text)
    return Check("drops", Status.OK, text)


def _calls(f: Facts, c: HealthConfig) -> Check:
    text = f"{f.active_calls} active of at most {f.max_calls}"
    status = Status.WARNING if f.active_calls >= 0.9 * f.max_calls else Status.OK
    return Check("calls", status, text)


def _recordings(f: Facts, c: HealthConfig) -> Check:
    text = f"{f.recordings_written} written since start, {f.recordings_incomplete} incomplete"
    return Check("recordings", Status.WARNING if f.recordings_incomplete else Status.OK, text)


def _undecodable(f: Facts, c: HealthConfig) -> Check:
    if f.legs_undecodable:
        text = f"{f.legs_undecodable} RTP streams since start in codecs recorderd cannot decode"
        return Check("codecs", Status.WARNING, text)
    return Check("codecs", Status.OK, "every RTP stream decoded")


def _unrecorded(f: Facts, c: HealthConfig) -> Check:
    if f.calls_unrecorded:
        text = f"{f.calls_unrecorded} answered calls since start without captured audio"
        return Check("unrecorded", Status.WARNING, text)
    return Check("unrecorded", Status.OK, "every answered call had audio")


def days_left(store: StoreFacts) -> float | None:
    return store.free_bytes / store.bytes_per_day if store.bytes_per_day > 0 else None


def _disk(f: Facts, c: HealthConfig) -> Check:
    if f.store is None:
        return Check("disk", Status.CRITICAL, "store not readable")
    free_mb = f.store.free_bytes / 1e6
    days = days_left(f.store)
    text = f"{free_mb:.0f} MB free, " + (f"{days:.0f} days left" if days is not None else "no recent use")
    if free_mb < c.disk_min_free_mb or (days is not None and days < c.disk_critical_days):
        return Check("disk", Status.CRITICAL, text)
    if days is not None and days < c.disk_warning_days:
        return Check("disk", Status.WARNING, text)
    return Check("disk", Status.OK, text)


def _keys(f: Facts, c: HealthConfig) -> Check:
    problem = f.store.recipients if f.store else "store not readable"
    if problem:
        return Check("keys", Status.CRITICAL, problem)
    return Check("keys", Status.OK, "recipient keys present")


def _index(f: Facts, c: HealthConfig) -> Check:
    problem = f.store.index if f.store else "store not readable"
    if problem:
        return Check("index", Status.CRITICAL, problem)
    return Check("index", Status.OK, "index writable")


def _sweep(f: Facts, c: HealthConfig) -> Check:
    if f.sweep is not None:
        return Check("sweep", Status.OK, f"retention sweep {f.sweep}")
    if f.last_sweep is None or f.now - f.last_sweep > c.sweep_max_age:
        return Check("sweep", Status.WARNING, "retention sweep has not run recently")
    return Check("sweep", Status.OK, f"last retention sweep {(f.now - f.last_sweep) / 3600:.1f} h ago")


def _audit(f: Facts, c: HealthConfig) -> Check:
    if f.audit is None:
        return Check("audit", Status.OK, "audit chain intact")
    if f.audit == UNAVAILABLE:
        return Check("audit", Status.OK, f"audit chain check {f.audit}")
    return Check("audit", Status.CRITICAL, f.audit)


def _canary(f: Facts, c: HealthConfig) -> Check:
    if f.canary_failed:
        return Check("canary", Status.CRITICAL, f.canary or "self-test failed")
    return Check("canary", Status.OK, f.canary or "self-test matched its known digests")


CHECKS: tuple[Callable[[Facts, HealthConfig], Check], ...] = (
    _capture, _sip, _drops, _calls, _recordings, _undecodable, _unrecorded,
    _disk, _keys, _index, _sweep, _audit, _canary,
)  # fmt: skip


def evaluate(facts: Facts, config: HealthConfig) -> tuple[Check, ...]:
    return tuple(check(facts, config) for check in CHECKS)


def overall(checks: tuple[Check, ...]) -> Status:
    return max((c.status for c in checks), default=Status.OK)


def to_json(checks: tuple[Check, ...]) -> dict[str, Any]:
    return {
        "status": overall(checks).name,
        "checks": [{"name": c.name, "status": c.status.name, "summary": c.summary} for c in checks],
    }


def from_json(data: Any) -> tuple[Check, ...]:
    """Checks from a ``/healthz`` answer (as :func:`to_json` wrote it)."""
    return tuple(Check(c["name"], Status[c["status"]], c["summary"]) for c in data["checks"])


# ---------------------------------------------------------------------------------------------------
# Facts about the store (I/O)


def store_facts(
    root: Path, recipients: list[str] | None, expected: tuple[str, ...], now: float
) -> StoreFacts:
    """Disk space, write rate, keys and index of the store at ``root``; ``recipients`` as the store
    lists them (None when store.json cannot be read)."""
    try:
        st = os.statvfs(root)
        free, total = st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize
    except OSError:
        free = total = 0
    return StoreFacts(free, total, _rate(root, now), _recipients(recipients, expected), _index_problem(root))


def _recipients(recipients: list[str] | None, expected: tuple[str, ...]) -> str | None:
    if not recipients:
        return "the store lists no recipient key: recordings cannot be encrypted"
    if expected and set(expected) != set(recipients):
        return "the store's recipient keys differ from store.recipients in the config"
    return None


def _connect(root: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{root / 'index.sqlite'}?mode=rw", uri=True, timeout=2.0)
    conn.isolation_level = None
    return conn


def _index_problem(root: Path) -> str | None:
    """None when a write transaction can be opened on the index (then rolled back)."""
    try:
        conn = _connect(root)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
        finally:
            conn.close()
    except sqlite3.Error as err:
        return f"index not writable: {err}"
    if not os.access(root / "recordings", os.W_OK):
        return "recordings directory not writable"
    return None


def _rate(root: Path, now: float) -> float:
    """Bytes of recordings per day over the last week (or since the first call in it, at least a day)."""
    try:
        conn = _connect(root)
        try:
            size, first = conn.execute(
                "SELECT coalesce(sum(r.size), 0), min(c.invite_ts) FROM recordings r"
                " JOIN calls c ON c.id = r.call WHERE c.invite_ts >= ?",
                (now - _RATE_WINDOW,),
            ).fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return 0.0
    if not size:
        return 0.0
    span = min(max(now - float(first), _DAY), _RATE_WINDOW)
    return float(size) / (span / _DAY)


# ---------------------------------------------------------------------------------------------------
# Prometheus metrics


class FactsCollector(Collector):
    """Metrics from the latest facts and checks, read at scrape time."""

    def __init__(self, latest: Callable[[], tuple[Facts, tuple[Check, ...]]]) -> None:
        self._latest = latest

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        facts, checks = self._latest()
        yield from _capture_metrics(facts)
        gauges = {
            "active_calls": ("calls being recorded", facts.active_calls),
            "store_queue_batches": ("batches of events waiting for the store thread", facts.store_backlog),
            "last_packet_timestamp_seconds": ("time of the last captured packet", facts.last_packet or 0),
            "last_sip_timestamp_seconds": ("time of the last SIP message", facts.last_sip or 0),
            "last_sweep_timestamp_seconds": ("time of the last retention sweep", facts.last_sweep or 0),
            "start_time_seconds": ("time the daemon started", facts.started),
        }
        if facts.store is not None:
            gauges["disk_free_bytes"] = ("free space for the store", facts.store.free_bytes)
            gauges["disk_write_bytes_per_day"] = ("recording bytes a day", facts.store.bytes_per_day)
        for name, (doc, value) in gauges.items():
            yield GaugeMetricFamily(f"recorderd_{name}", doc, value=value)
        counters = {
            "recordings_written": ("recordings finished", facts.recordings_written),
            "recordings_incomplete": (
                "recordings closed before their call ended",
                facts.recordings_incomplete,
            ),
            "legs_undecodable": ("RTP streams in codecs recorderd cannot decode", facts.legs_undecodable),
            "calls_unrecorded": ("answered calls without captured audio", facts.calls_unrecorded),
        }
        for name, (doc, value) in counters.items():
            yield CounterMetricFamily(f"recorderd_{name}", doc, value=value)
        yield _labelled(GaugeMetricFamily, "check_status", "0 OK, 1 warning, 2 critical", "check",
                        {c.name: int(c.status) for c in checks})  # fmt: skip
        yield _labelled(CounterMetricFamily, "engine_events", "pipeline counters", "name", facts.counters)


def _labelled(kind: Any, name: str, doc: str, label: str, values: dict[str, int]) -> Any:
    family = kind(f"recorderd_{name}", doc, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


def _capture_metrics(facts: Facts) -> Iterator[CounterMetricFamily]:
    for name, doc, attribute in (
        ("capture_packets", "packets captured", "packets"),
        ("capture_kernel_drops", "packets dropped by the kernel (buffer full)", "kernel_drops"),
        ("capture_interface_drops", "packets dropped by the interface", "interface_drops"),
    ):
        values = {c.interface: int(getattr(c, attribute)) for c in facts.captures}
        yield _labelled(CounterMetricFamily, name, doc, "interface", values)


# ---------------------------------------------------------------------------------------------------
# The loopback listener and its client


class _Handler(BaseHTTPRequestHandler):
    server: HealthServer
    timeout = 0.5  # a stalled client holds the capture loop no longer (the kernel ring buffers meanwhile)

    def do_GET(self) -> None:
        if self.path.split("?")[0] == "/healthz":
            _, checks = self.server.latest()
            body = json.dumps(to_json(checks)).encode()
            code = 503 if overall(checks) is Status.CRITICAL else 200
            self._send(code, "application/json", body)
        elif self.path.split("?")[0] == "/metrics":
            self._send(200, "text/plain; version=0.0.4; charset=utf-8", generate_latest(self.server.registry))
        else:
            self._send(404, "text/plain", b"not found\n")

    def _send(self, code: int, kind: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # scrapes every few seconds would flood the journal


class HealthServer(HTTPServer):
    """``/healthz`` and ``/metrics``; the caller polls :meth:`fileno` and calls :meth:`serve_one`."""

    def __init__(
        self, address: tuple[str, int], latest: Callable[[], tuple[Facts, tuple[Check, ...]]]
    ) -> None:
        super().__init__(address, _Handler)
        self.timeout = 0
        self.latest = latest
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(FactsCollector(latest))

    def serve_one(self) -> None:
        self.handle_request()


def query(address: tuple[str, int], timeout: float = 3.0) -> tuple[Check, ...] | None:
    """The daemon's checks from its ``/healthz``, or None when nothing answers there."""
    host = f"[{address[0]}]" if ":" in address[0] else address[0]
    try:
        with urllib.request.urlopen(f"http://{host}:{address[1]}/healthz", timeout=timeout) as reply:
            return from_json(json.load(reply))
    except urllib.error.HTTPError as err:
        if err.code == 503:
            return from_json(json.load(err))
        return None
    except (OSError, ValueError, KeyError):
        return None


def offline_checks(store: StoreFacts | None, config: HealthConfig, problem: str) -> tuple[Check, ...]:
    """What can be said without the daemon: its absence (``problem``) and the store's own checks."""
    facts = Facts(now=0.0, started=0.0, store=store)
    return (Check("daemon", Status.CRITICAL, problem), _disk(facts, config), _keys(facts, config),
            _index(facts, config))  # fmt: skip
