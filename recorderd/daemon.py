"""The live daemon: the project's only event loop.

One loop runs the capture: libpcap sources (non-blocking, polled by ``select``) feed one
:class:`~recorderd.engine.Engine`; the same loop serves the health listener, fires the timers and runs
the scheduled jobs. The engine's events go to a :class:`~recorderd.store.worker.SinkThread`, which
writes the recordings and their index rows on a thread of its own with its own store connection, in
the order the events came, so a slow disk never stops the capture loop from draining the kernel's
ring (``store/worker.py`` says why). The loop keeps a second connection for the jobs and checks.

Time. Frames carry the kernel's capture timestamp, the engine's only clock. When the interfaces are
quiet the loop advances the engine with the wall clock less :data:`IDLE_LAG`: libpcap hands frames over
in blocks up to ``timeout`` late, and a frame stamped before an ``advance`` would arrive "late" for
the reorder window. RTP-silence and no-answer timeouts are tens of seconds, so the lag is harmless.

Signals (sd_notify(3), systemd.service(5)):

- SIGTERM, SIGINT: stop reading, end every open call (``engine.close``: the held audio is written and
  every recording sealed as complete, end reason ``capture-end``), close the store, exit 0.
- SIGHUP: re-read the config file. Reloaded: site numbering, engine timeouts, health thresholds,
  schedule, ``store.log_uris``. Interfaces, filter, buffer, store path and listener need a restart; a
  change to them is logged. An invalid file is logged and the running config kept.

Scheduled jobs (APScheduler 3.x triggers, run by this loop rather than APScheduler's thread pool, so a
job touches the store through the loop's own connection): retention sweep at start and daily, canary at start
and daily, audit-head signing and self-checks at intervals. Every job is idempotent; one that was due
while the daemon was down is done at the next start.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from types import FrameType

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from tzlocal import get_localzone

from recorderd import canary, gctune
from recorderd.capture.pcap import LiveSource
from recorderd.config import ServiceConfig, load_service_config
from recorderd.engine import Engine
from recorderd.errors import CaptureError, RecorderdError, StoreError
from recorderd.events import CallFinished, Event, FrameBatch
from recorderd.health import (
    UNAVAILABLE,
    CaptureFacts,
    Check,
    Facts,
    HealthServer,
    Status,
    StoreFacts,
    evaluate,
    store_facts,
)
from recorderd.sdnotify import Notifier, watchdog_interval
from recorderd.store import jobs
from recorderd.store.retention import parse_retention
from recorderd.store.store import Store
from recorderd.store.worker import SinkThread

log = logging.getLogger(__name__)

IDLE_LAG = 0.5  # seconds the idle engine clock trails the wall clock
TICK = 0.25  # longest wait in select: timers and signals are served at least this often
STATUS_EVERY = 5.0  # seconds between sd_notify STATUS lines
STORE_FACTS_TTL = 5.0  # statvfs and SQLite probes are reused this long

# The store's periodic work (recorderd/store/jobs.py). Each takes the open store and the wall-clock time
# and returns a one-line summary for the log; each is idempotent. Set to None (tests, a build without
# them), the job is not scheduled and the health check says so.
SweepHook = Callable[[Store, ServiceConfig, float], str]
AuditHook = Callable[[Store, float], str]
RETENTION_SWEEP: SweepHook | None = jobs.retention_sweep
AUDIT_SIGN: AuditHook | None = jobs.audit_sign
AUDIT_VERIFY: Callable[[Store], str | None] | None = jobs.audit_verify  # None when intact, else the problem


@dataclass(slots=True)
class _Tally:
    """What the loop has seen since start, for health and metrics."""

    last_packet: float | None = None
    last_sip: float | None = None
    sip_messages: int = 0
    recordings: int = 0
    incomplete: int = 0
    undecodable: int = 0
    unrecorded: int = 0
    store_errors: int = 0
    last_sweep: float | None = None
    canary: str = "not run yet"
    canary_failed: bool = False
    audit: str | None = None


@dataclass(slots=True)
class _Job:
    name: str
    trigger: BaseTrigger
    run: Callable[[float], None]
    due: float = 0.0  # at start: run once now


def _daily(at: str) -> CronTrigger:
    hour, minute = at.split(":")
    return CronTrigger(hour=int(hour), minute=int(minute), timezone=get_localzone())


def _next_fire(trigger: BaseTrigger, now: float) -> float:
    current = datetime.fromtimestamp(now, get_localzone())
    fire = trigger.get_next_fire_time(None, current)
    return fire.timestamp() if fire is not None else float("inf")


class Daemon:
    """``run()`` until SIGTERM; ``notifier`` and ``clock`` are injectable for tests."""

    def __init__(
        self,
        config: ServiceConfig,
        notifier: Notifier | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        parse_retention(config.retention)  # a bad [retention] is a config error at start, not at 03:30
        self.config = config
        self.notifier = notifier or Notifier()
        self.clock = clock
        self.started = clock()
        self.tally = _Tally()
        self.checks: dict[str, Status] = {}
        self._stop = False
        self._reload = False
        self._engine_ts = 0.0
        self._store_facts: tuple[float, StoreFacts] | None = None
        self._recent: tuple[int, int] = (0, 0)  # packets, drops at the previous self-check
        self._recent_delta: tuple[int, int] = (0, 0)
        self._status_at = 0.0
        self._status_packets = 0
        self._errors_logged: Counter[str] = Counter()
        self.store = self._open_store()  # this thread's connection: jobs and health checks
        self.sink = SinkThread(self._open_store, config.store.log_uris)  # recordings, on its own thread
        for uid in self.sink.recovered:
            self.tally.incomplete += 1
            log.warning("call %s: recording interrupted by the previous run, kept as incomplete", uid)
        self.engine = Engine(config.engine)
        self.sources: list[LiveSource] = []
        self.failed: dict[str, str] = {}  # interface -> why capture on it stopped; retried at self-check
        self.server: HealthServer | None = None
        self.jobs: list[_Job] = []

    # -- start and stop ------------------------------------------------------------------------------

    def _open_store(self) -> Store:
        store = Store.open(self.config.store.path, self.config.engine.site.default_region)
        expected = self.config.store.recipients
        if expected and set(expected) != set(store.recipients):
            store.close()
            raise StoreError(
                f"store {store.root} encrypts to other recipients than store.recipients in the config"
            )
        return store

    def _open_sources(self) -> None:
        capture = self.config.capture
        if not capture.interfaces:
            raise RecorderdError("capture.interfaces: no interface configured (the mirror port, e.g. eth1)")
        for name in capture.interfaces:
            self._open_source(name)

    def _open_source(self, name: str) -> None:
        capture = self.config.capture
        source = LiveSource(name, capture.snaplen, capture.promisc, capture.buffer_mb, capture.filter)
        if source.warning:
            log.warning("%s", source.warning)
        self.sources.append(source)
        self.failed.pop(name, None)
        log.info("capturing on %s (filter %r)", name, capture.filter)

    def _retry_sources(self) -> None:
        for name in list(self.failed):
            try:
                self._open_source(name)
            except CaptureError as err:
                self.failed[name] = str(err)

    def _open_server(self) -> None:
        address = self.config.health.address
        if address is None:
            return
        try:
            self.server = HealthServer(address, self.latest)
        except OSError as err:
            raise RecorderdError(
                f"health.listen: cannot listen on {self.config.health.listen}: {err}"
            ) from None
        log.info("health and metrics on http://%s/", self.config.health.listen)

    def _schedule(self, at_start: bool = True) -> None:
        """The job table. At start every job is due at once (a run missed while down is done now);
        after a reload each waits for its next time."""
        s = self.config.schedule
        now = self.clock()
        begin = datetime.fromtimestamp(now, get_localzone())
        every = {"start_date": begin, "timezone": get_localzone()}
        jobs = [_Job("self-check", IntervalTrigger(seconds=s.self_check_every, **every), self._self_check)]
        if s.canary:
            jobs.append(_Job("canary", _daily(s.canary_at), self._canary))
        if RETENTION_SWEEP is not None:
            jobs.append(_Job("retention sweep", _daily(s.sweep_at), self._sweep))
        if AUDIT_SIGN is not None:
            trigger = IntervalTrigger(seconds=s.audit_sign_every, **every)
            jobs.append(_Job("audit signing", trigger, self._audit_sign))
        for job in jobs:
            job.due = now if at_start else _next_fire(job.trigger, now + 1)
        self.jobs = jobs

    def run(self) -> int:
        """Capture until SIGTERM; returns the exit status."""
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        old = self._install_signals(wake_w)
        try:
            self._open_sources()
            self._open_server()
            self._schedule()
            self._run_jobs(self.clock())
            self.notifier.ready(self._status_line(self.clock()))
            log.info("recorderd running")
            self._loop(wake_r)
        finally:
            self.notifier.stopping()
            self._shutdown()
            self._restore_signals(old)
            wake_r.close()
            wake_w.close()
        return 0

    def _install_signals(self, wake: socket.socket) -> dict[int, object]:
        old: dict[int, object] = {signum: signal.getsignal(signum) for signum in _SIGNALS}
        for signum in _SIGNALS:
            signal.signal(signum, self._on_signal)
        old[-1] = signal.set_wakeup_fd(wake.fileno(), warn_on_full_buffer=False)
        return old

    def _restore_signals(self, old: dict[int, object]) -> None:
        signal.set_wakeup_fd(int(old.pop(-1)))  # type: ignore[call-overload]
        for signum, handler in old.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self._reload = True
        else:
            self._stop = True

    def _shutdown(self) -> None:
        """End every open call and seal its recording; then close sources, listener and store."""
        for source in self.sources:
            source.close()
        now = max(self._engine_ts, self.clock())
        try:
            self._deliver(self.engine.close(now))
        finally:
            try:
                self.sink.close()  # writes out what is queued first
            finally:
                self._flush()
                self.store.close()
            if self.server is not None:
                self.server.server_close()
            self.notifier.close()
        log.info("recorderd stopped")

    # -- the loop ------------------------------------------------------------------------------------

    def _loop(self, wake: socket.socket) -> None:
        watchdog = watchdog_interval()
        next_watchdog = 0.0
        while not self._stop:
            fds: list[int] = [wake.fileno(), *(s.getfd() for s in self.sources)]
            if self.server is not None:
                fds.append(self.server.fileno())
            readable, _, _ = select.select(fds, [], [], TICK)
            if wake.fileno() in readable:
                _drain(wake)
            if self.server is not None and self.server.fileno() in readable:
                self.server.serve_one()
            busy = self._read_sources()
            now = self.clock()
            if not busy and now - IDLE_LAG > self._engine_ts:
                self._advance(now - IDLE_LAG)
            self._flush()  # every turn: the store thread's errors are counted here
            if self._reload:
                self._reload = False
                self.reload()
            self._run_jobs(now)
            self._report(now)
            if watchdog is not None and now >= next_watchdog:
                self.notifier.watchdog()
                next_watchdog = now + watchdog

    def _read_sources(self) -> bool:
        busy = False
        for source in list(self.sources):
            try:
                batch = source.read_raw()
            except CaptureError as err:  # the interface went away: health turns critical, retried
                log.error("%s", err)
                self.sources.remove(source)
                source.close()
                self.failed[source.interface] = str(err)
                continue
            if batch is not None:
                self._feed(batch)
                busy = True
        return busy

    def _feed(self, batch: FrameBatch) -> None:
        self._deliver(self.engine.feed_batch(batch))
        last = batch.last_ts
        self._engine_ts = max(self._engine_ts, last)
        self.tally.last_packet = last
        sip = self.engine.counters["sip.messages"]
        if sip != self.tally.sip_messages:
            self.tally.sip_messages = sip
            self.tally.last_sip = last

    def _advance(self, now: float) -> None:
        self._engine_ts = now
        self._deliver(self.engine.advance(now))

    def _deliver(self, events: list[Event]) -> None:
        self.sink.submit(events)
        for event in events:
            if isinstance(event, CallFinished):
                self._count(event)

    def _flush(self) -> None:
        """Count and log the errors the store thread met since the last turn (it flushes itself)."""
        for err in self.sink.errors():
            self._store_error(err)

    def _count(self, event: CallFinished) -> None:
        record = event.record
        if record.samples:
            self.tally.recordings += 1
        elif record.answer_ts is not None:
            self.tally.unrecorded += 1
        self.tally.undecodable += sum(1 for leg in record.legs if not leg.decoded)

    def _store_error(self, err: Exception) -> None:
        """Count a failed store write; log the first of each kind and then every hundredth."""
        self.tally.store_errors += 1
        kind = type(err).__name__
        self._errors_logged[kind] += 1
        if self._errors_logged[kind] % 100 == 1:
            log.error("store write failed (%d so far): %s", self.tally.store_errors, err)

    # -- reload --------------------------------------------------------------------------------------

    def reload(self) -> None:
        """Apply what can change without a restart from the config file (SIGHUP)."""
        if self.config.path is None:
            return
        self.notifier.reloading()
        try:
            new = load_service_config(self.config.path)
            parse_retention(new.retention)
        except RecorderdError as err:
            log.error("reload failed, keeping the running config: %s", err)
            self.notifier.ready(self._status_line(self.clock()))
            return
        fixed = ("capture", "health.listen", "store.path", "store.recipients")
        for name in fixed:
            if _pick(new, name) != _pick(self.config, name):
                log.warning("%s changed: restart recorderd to apply it", name)
        self.config = replace(
            new, capture=self.config.capture, store=replace(new.store, path=self.config.store.path,
            recipients=self.config.store.recipients),
            health=replace(new.health, listen=self.config.health.listen),
        )  # fmt: skip
        # Timeouts and numbering are read by the engine from its config object at each use; the
        # table bounds (max_calls) were fixed when it was made.
        self.engine.config = replace(new.engine, max_calls=self.engine.config.max_calls)
        self.sink.log_uris = new.store.log_uris
        self._schedule(at_start=False)
        log.info("configuration reloaded from %s", self.config.path)
        self.notifier.ready(self._status_line(self.clock()))

    # -- jobs ----------------------------------------------------------------------------------------

    def _run_jobs(self, now: float) -> None:
        for job in self.jobs:
            if now >= job.due:
                try:
                    job.run(now)
                except Exception:  # a failing job must not stop recording; health reports it
                    log.exception("scheduled job %s failed", job.name)
                job.due = _next_fire(job.trigger, max(now, self.clock()) + 1)

    def _self_check(self, now: float) -> None:
        self._retry_sources()
        packets = sum(s.stats().frames for s in self.sources)
        drops = sum(s.stats().kernel_drops + s.stats().interface_drops for s in self.sources)
        self._recent_delta = (packets - self._recent[0], drops - self._recent[1])
        self._recent = (packets, drops)
        if AUDIT_VERIFY is not None:
            self.tally.audit = AUDIT_VERIFY(self.store)
        _, checks = self.latest()
        for check in checks:
            previous = self.checks.get(check.name, Status.OK)
            if check.status != previous:
                level = logging.INFO if check.status is Status.OK else logging.WARNING
                log.log(level, "health %s is now %s: %s", check.name, check.status.name, check.summary)
            self.checks[check.name] = check.status

    def _canary(self, now: float) -> None:
        result = canary.run()
        self.tally.canary, self.tally.canary_failed = result.summary, not result.ok
        log.log(logging.INFO if result.ok else logging.ERROR, "canary: %s", result.summary)

    def _sweep(self, now: float) -> None:
        assert RETENTION_SWEEP is not None
        log.info("retention sweep: %s", RETENTION_SWEEP(self.store, self.config, now))
        self.tally.last_sweep = now

    def _audit_sign(self, now: float) -> None:
        assert AUDIT_SIGN is not None
        log.info("audit signing: %s", AUDIT_SIGN(self.store, now))

    # -- health and status ---------------------------------------------------------------------------

    def facts(self, now: float) -> Facts:
        failed = tuple(CaptureFacts(name, False, 0, 0, 0) for name in self.failed)
        captures = tuple(_capture_facts(s) for s in self.sources) + failed
        return Facts(
            now=now,
            started=self.started,
            captures=captures,
            last_packet=self.tally.last_packet,
            last_sip=self.tally.last_sip,
            packets_recent=self._recent_delta[0],
            drops_recent=self._recent_delta[1],
            active_calls=len(self.engine.calls),
            max_calls=self.engine.config.max_calls,
            store_backlog=self.sink.backlog,
            recordings_written=self.tally.recordings,
            recordings_incomplete=self.tally.incomplete,
            legs_undecodable=self.tally.undecodable,
            calls_unrecorded=self.tally.unrecorded,
            store=self._cached_store_facts(now),
            last_sweep=self.tally.last_sweep,
            sweep=None if RETENTION_SWEEP is not None else UNAVAILABLE,
            audit=self.tally.audit if AUDIT_VERIFY is not None else UNAVAILABLE,
            canary=self.tally.canary,
            canary_failed=self.tally.canary_failed,
            counters={**self.engine.counters, "store.errors": self.tally.store_errors},
        )

    def _cached_store_facts(self, now: float) -> StoreFacts:
        cached = self._store_facts
        if cached is None or now - cached[0] > STORE_FACTS_TTL or now < cached[0]:
            facts = store_facts(self.store.root, self.store.recipients, self.config.store.recipients, now)
            self._store_facts = cached = (now, facts)
        return cached[1]

    def latest(self) -> tuple[Facts, tuple[Check, ...]]:
        facts = self.facts(self.clock())
        return facts, evaluate(facts, self.config.health)

    def _status_line(self, now: float) -> str:
        packets = sum(s.stats().frames for s in self.sources)
        drops = sum(s.stats().kernel_drops for s in self.sources)
        span = now - self._status_at if self._status_at else 0.0
        rate = (packets - self._status_packets) / span if span > 0 else 0.0
        self._status_at, self._status_packets = now, packets
        return f"{len(self.engine.calls)} calls, {rate:.0f} packets/s, {drops} dropped"

    def _report(self, now: float) -> None:
        if now - self._status_at >= STATUS_EVERY:
            self.notifier.status(self._status_line(now))


_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _capture_facts(source: LiveSource) -> CaptureFacts:
    stats = source.stats()
    return CaptureFacts(source.interface, True, stats.frames, stats.kernel_drops, stats.interface_drops)


def _drain(sock: socket.socket) -> None:
    try:
        while sock.recv(4096):
            pass
    except BlockingIOError:
        pass


def _pick(config: ServiceConfig, dotted: str) -> object:
    value: object = config
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def setup_logging(level: int = logging.INFO) -> None:
    """Log lines for the journal: systemd adds the time, so only level and text ("<4>" prefixes
    would be parsed as priorities by journald; plain text keeps it readable under any supervisor)."""
    handler = logging.StreamHandler()
    fmt = "%(levelname)s %(name)s: %(message)s" if os.environ.get("INVOCATION_ID") else (
        "%(asctime)s %(levelname)s %(name)s: %(message)s"
    )  # fmt: skip
    handler.setFormatter(logging.Formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def run(config: ServiceConfig) -> int:
    setup_logging()
    daemon = Daemon(config)
    gctune.tune()
    return daemon.run()
