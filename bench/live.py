"""The live benchmark: ``recorderd run`` capturing a veth pair that ``tcpreplay`` feeds at set rates.

``python -m bench.live [--calls N] [--rates 50000,100000,200000,300000] [--seconds S]`` (as root)

Two network namespaces joined by a veth pair (``tests/live/harness.py``: named after this process,
removed on exit, no traffic leaves them). For each rate, a fresh daemon captures on its veth end in
one namespace, with the shipped defaults (64 MiB ring, the default filter) and a fresh encrypted store;
``tcpreplay --pps RATE`` sends a ``bench.gen`` capture from the other end. By default a rate of R
packets/s is R / 100 calls (each G.711 call at 20 ms is 100 packets/s), S seconds long, so the daemon
sees calls at their real pace; ``--calls N`` fixes the number of calls instead (the capture's clock then
runs faster or slower than the wall clock).

Per rate: packets sent and the rate tcpreplay achieved; packets the daemon captured (``/metrics``), its
kernel (capture ring) and interface drops, the veth pair's own drop counters; how long after the sender
stopped the daemon still had packets to read ("lag": a daemon that keeps up reads the last packets
when the ring's block times out, 0.1 s, plus a poll; more means it lived off its ring for a while);
the daemon's CPU share while sending; its peak RSS (``VmHWM``) and (peak RSS - RSS when ready) / calls.
The same counters are also read over the capture's *steady window* (every call in media, no
signalling; placed on the wall clock as tcpreplay sends frame k at k / rate): the whole run includes
every call's setup within the first second (N recordings opened at once), a storm no site sees, while
the window is the load the issue describes. The result is the highest rate without a single drop
(kernel, interface, veth, sender), over the whole run and in the window. ``tcpreplay --topspeed`` into
the same veth (no daemon) shows the sender's ceiling, so the reader can see it was not the bottleneck.
the sender's ceiling, so the reader can see the sender was not the bottleneck.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.gen import CaptureSpec
from bench.measure import work_dir
from bench.run import BENCH, PACKETS_PER_SECOND, Capture, cached
from tests.live.harness import Daemon, Pair, namespaces

TARGET_PPS = 250_000  # issue 3: sustained with zero kernel drops
HEALTH = "127.0.0.1:9107"  # inside the daemon's namespace

# Fetches /metrics inside the daemon's namespace once per line read, printing the sums per metric name
# as one JSON line: one small process for the whole run instead of one interpreter per poll.
POLLER = f"""
import json, sys, urllib.request
for _ in sys.stdin:
    out = {{}}
    try:
        body = urllib.request.urlopen("http://{HEALTH}/metrics", timeout=5).read().decode()
    except OSError:
        body = ""
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, value = line.split("{{")[0].split(" ")[0], line.rsplit(" ", 1)[1]
            out[name] = out.get(name, 0.0) + float(value)
    print(json.dumps(out), flush=True)
"""

_ACTUAL = re.compile(r"Actual: (\d+) packets \((\d+) bytes\) sent in ([\d.]+) seconds")
_FAILED = re.compile(r"Failed packets:\s+(\d+)")


@dataclass(frozen=True)
class Sent:
    packets: int
    seconds: float
    failed: int

    @property
    def pps(self) -> float:
        return self.packets / self.seconds if self.seconds > 0 else math.nan


@dataclass(frozen=True)
class Steady:
    """The daemon over the capture's steady window (every call in media, no signalling)."""

    seconds: float
    captured: int  # packets the daemon read meanwhile (a backlog from before counts too)
    drops: int  # kernel and interface drops meanwhile

    @property
    def pps(self) -> float:
        return self.captured / self.seconds if self.seconds > 0 else math.nan


@dataclass(frozen=True)
class Point:
    rate: int  # asked of tcpreplay
    capture: Capture
    sent: Sent
    captured: int
    kernel_drops: int
    interface_drops: int
    veth_drops: int
    lag: float  # seconds from the sender's end to the daemon having read every packet (or giving up)
    cpu: float  # the daemon's CPU seconds per wall second while the sender ran
    active_calls: int  # the most seen by /metrics
    steady: Steady | None  # the capture's steady window, as the wall clock placed it
    ready_rss_kib: int
    peak_rss_kib: int

    @property
    def lossless(self) -> bool:
        drops = self.kernel_drops + self.interface_drops + self.veth_drops + self.sent.failed
        return drops == 0 and self.captured >= self.sent.packets

    @property
    def captured_pps(self) -> float:
        return self.captured / (self.sent.seconds + self.lag)

    @property
    def kib_per_call(self) -> float:
        calls = self.active_calls or self.capture.spec.calls
        return (self.peak_rss_kib - self.ready_rss_kib) / calls


# ---------------------------------------------------------------------------------------------------
# The pieces


def tcpreplay(pair: Pair, capture: Path, *, pps: int | None, limit: int | None = None) -> Sent:
    """Send ``capture`` from the far end of ``pair`` at ``pps`` packets/s (None: as fast as it can)."""
    argv = ["tcpreplay", "-i", pair.veth_b, *(["--pps", str(pps)] if pps else ["--topspeed"])]
    argv += [f"--limit={limit}"] if limit else []
    done = subprocess.run(pair.exec(pair.b, *argv, str(capture)), capture_output=True, text=True, timeout=600)
    actual, failed = _ACTUAL.search(done.stdout), _FAILED.search(done.stdout)
    if done.returncode != 0 or actual is None:
        raise RuntimeError(
            f"tcpreplay failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    return Sent(int(actual[1]), float(actual[3]), int(failed[1]) if failed else 0)


def veth_drops(pair: Pair) -> int:
    """Receive and transmit drops on both veth ends (a full backlog queue shows here, not in pcap)."""
    total = 0
    for ns, dev in ((pair.a, pair.veth_a), (pair.b, pair.veth_b)):
        done = subprocess.run(
            ["ip", "-n", ns, "-s", "-j", "link", "show", dev], capture_output=True, text=True
        )
        stats = json.loads(done.stdout)[0]["stats64"]
        total += stats["rx"]["dropped"] + stats["tx"]["dropped"]
    return total


def proc_status(pid: int, field: str) -> int:
    """A ``/proc/PID/status`` figure in KiB (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


class Metrics:
    """The daemon's ``/metrics``, summed per metric name, read from inside its namespace."""

    def __init__(self, pair: Pair) -> None:
        argv = pair.exec(pair.a, sys.executable, "-c", POLLER)
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def read(self) -> dict[str, float]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        values: dict[str, float] = json.loads(self.proc.stdout.readline())
        return values

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=10)


def write_config(path: Path, store: Path, interface: str, buffer_mb: int) -> Path:
    """The shipped defaults but for the interface, the store and the daily jobs (no canary replay)."""
    lines = [
        "[capture]",
        f'interfaces = ["{interface}"]',
        f"buffer_mb = {buffer_mb}",
        "[store]",
        f'path = "{store}"',
        "[health]",
        f'listen = "{HEALTH}"',
        "[schedule]",
        "canary = false",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def new_store(directory: Path) -> Path:
    from recorderd.cli import main
    from recorderd.store.keys import load_identities, recipient_of

    identity = directory / "identity.txt"
    quiet = io.StringIO()  # the CLI's notes to the operator
    with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        made = main(["keygen", "--out", str(identity)])
    if made != 0:
        raise RuntimeError("recorderd keygen failed")
    (secret,) = load_identities(identity, None)
    store = directory / "store"
    with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        made = main(["init", str(store), "--recipient", recipient_of(secret)])
    if made != 0:
        raise RuntimeError("recorderd init failed")
    return store


# ---------------------------------------------------------------------------------------------------
# One rate


def capture_for(rate: int, calls: int | None, seconds: float, out: Path) -> Capture:
    """``rate / 100`` calls of ``seconds`` (real pace), or ``calls`` long enough for ``rate * seconds``
    packets."""
    if calls is None:
        return cached(CaptureSpec(max(1, rate // PACKETS_PER_SECOND), seconds), out)
    return cached(CaptureSpec(calls, max(1, math.ceil(rate * seconds / (calls * PACKETS_PER_SECOND)))), out)


def measure(pair: Pair, rate: int, capture: Capture, buffer_mb: int, work: Path) -> Point:
    tmp = Path(tempfile.mkdtemp(prefix=f"rate{rate}-", dir=work))
    try:
        store = new_store(tmp)
        config = write_config(tmp / "recorderd.toml", store, pair.veth_a, buffer_mb)
        daemon = Daemon(pair, config, tmp)
        metrics = Metrics(pair)
        try:
            return _drive(pair, rate, capture, daemon, metrics)
        finally:
            metrics.close()
            status = daemon.stop()
            if status != 0:
                print(f"  daemon exited with {status}; log: {(tmp / 'daemon.log').read_text()[-2000:]}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _drive(pair: Pair, rate: int, capture: Capture, daemon: Daemon, metrics: Metrics) -> Point:
    pid = daemon.proc.pid
    ready_rss = proc_status(pid, "VmRSS")
    before, drops_before = metrics.read(), veth_drops(pair)
    cpu0 = cpu_seconds(pid)
    sender = _Sender(pair, capture.path, rate)
    window = capture.stats.window
    # tcpreplay sends frame k at k / rate: read the counters when the steady window starts and ends
    marks = [sender.started + f / rate for f in ((window.first_frame, window.end_frame) if window else ())]
    snaps: list[tuple[float, dict[str, float]]] = []
    active = 0.0
    while not sender.poll(min(1.0, max(0.01, marks[0] - time.monotonic())) if marks else 1.0):
        if marks and time.monotonic() >= marks[0]:
            marks.pop(0)
            snaps.append((time.monotonic(), metrics.read()))
        active = max(active, metrics.read().get("recorderd_active_calls", 0.0))
    sent = sender.result()
    cpu = (cpu_seconds(pid) - cpu0) / sent.seconds
    lag, after = _wait_drained(metrics, before, sent.packets)
    got = _delta(before, after)
    return Point(
        rate, capture, sent, got["packets_total"], got["kernel_drops_total"], got["interface_drops_total"],
        veth_drops(pair) - drops_before, lag, cpu, int(active), _steady(snaps), ready_rss,
        proc_status(pid, "VmHWM"),
    )  # fmt: skip


def _delta(before: dict[str, float], after: dict[str, float]) -> dict[str, int]:
    return {k.removeprefix("recorderd_capture_"): int(after.get(k, 0) - before.get(k, 0)) for k in after}


def _steady(snaps: list[tuple[float, dict[str, float]]]) -> Steady | None:
    if len(snaps) != 2:
        return None
    (t0, first), (t1, last) = snaps
    got = _delta(first, last)
    return Steady(t1 - t0, got["packets_total"], got["kernel_drops_total"] + got["interface_drops_total"])


class _Sender:
    """tcpreplay in the background, so the daemon can be watched meanwhile."""

    def __init__(self, pair: Pair, path: Path, rate: int) -> None:
        argv = pair.exec(pair.b, "tcpreplay", "-i", pair.veth_b, "--pps", str(rate), str(path))
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.started = time.monotonic()

    def poll(self, timeout: float) -> bool:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def result(self) -> Sent:
        out = self.proc.stdout.read() if self.proc.stdout is not None else ""
        actual, failed = _ACTUAL.search(out), _FAILED.search(out)
        if self.proc.returncode != 0 or actual is None:
            raise RuntimeError(f"tcpreplay failed ({self.proc.returncode}):\n{out[-2000:]}")
        return Sent(int(actual[1]), float(actual[3]), int(failed[1]) if failed else 0)


def _wait_drained(metrics: Metrics, before: dict[str, float], sent: int) -> tuple[float, dict[str, float]]:
    """Seconds until the daemon has captured ``sent`` packets more than ``before``, or until its count
    stops moving for a second (then the lag is how long it kept moving)."""
    start = last_move = time.monotonic()
    seen = -1.0
    while True:
        now_metrics = metrics.read()
        now = time.monotonic()
        got = now_metrics.get("recorderd_capture_packets_total", 0.0) - before.get(
            "recorderd_capture_packets_total", 0.0
        )
        if got >= sent:
            return now - start, now_metrics
        if got != seen:
            seen, last_move = got, now
        elif now - last_move > 1.0 or now - start > 60:
            return last_move - start, now_metrics
        time.sleep(0.02)


# ---------------------------------------------------------------------------------------------------
# The report


def _n(x: float) -> str:
    return f"{x:,.0f}" if math.isfinite(x) else "-"


def render(points: list[Point], topspeed: Sent, seconds: float, label: str, buffer_mb: int) -> str:
    from bench.report import _table, machine

    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    done = subprocess.run(["tcpreplay", "--version"], capture_output=True, text=True)
    version = (done.stdout + done.stderr).split("\n")[0]
    lines = [f"## {stamp} (live)", "", *machine(label), f"- {version.strip()}"]
    lines.append(
        f"- `python -m bench.live`: `recorderd run` capturing one end of a veth pair (ring {buffer_mb} MiB, "
        f"default filter, canary off) fed by tcpreplay --pps from another namespace; a fresh daemon and "
        f"store per rate; the whole benchmark took {seconds:.0f} s"
    )
    lines.append(
        f"- sender ceiling: tcpreplay --topspeed into the same veth with no daemon: {_n(topspeed.pps)} "
        f"packets/s ({topspeed.packets:,} packets)"
    )
    head = ["asked packets/s", "calls", "packets sent", "sent packets/s", "captured", "captured packets/s",
            "lag s", "kernel drops", "if drops", "veth drops", "daemon CPU", "zero drops"]  # fmt: skip
    rows = [
        [_n(p.rate), f"{p.capture.spec.calls:,}", f"{p.sent.packets:,}", _n(p.sent.pps), f"{p.captured:,}",
         _n(p.captured_pps), f"{p.lag:.2f}", f"{p.kernel_drops:,}", f"{p.interface_drops:,}",
         f"{p.veth_drops:,}", f"{p.cpu:.0%}", "yes" if p.lossless else "**no**"]
        for p in points
    ]  # fmt: skip
    steady_head = ["asked packets/s", "steady window s", "steady read packets/s", "steady drops",
                   "active calls", "peak RSS MiB", "KiB per call"]  # fmt: skip
    steady_rows = [
        [_n(p.rate), f"{p.steady.seconds:.1f}" if p.steady else "-", _n(p.steady.pps) if p.steady else "-",
         f"{p.steady.drops:,}" if p.steady else "-", f"{p.active_calls:,}", f"{p.peak_rss_kib / 1024:,.0f}",
         _n(p.kib_per_call)]
        for p in points
    ]  # fmt: skip
    best = max((p.rate for p in points if p.lossless), default=0)
    steady = max((p.rate for p in points if p.steady is not None and p.steady.drops == 0), default=0)
    lines += ["", "Whole run (every call's setup in the first second, media, every BYE at the end):", ""]
    lines += [*_table(head, rows), ""]
    lines += ["Steady window (every call in media, no signalling) and memory:", ""]
    lines += [*_table(steady_head, steady_rows), ""]
    lines.append(
        f"- >= {TARGET_PPS:,} packets/s live with zero drops: highest rate without a drop over the whole run "
        f"{best:,} ({'met' if best >= TARGET_PPS else '**not met**'}), in the steady window {steady:,} "
        f"({'met' if steady >= TARGET_PPS else '**not met**'})"
    )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# Main


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.live", description=__doc__.split("\n", 1)[0])
    p.add_argument("--rates", default="50000,100000,200000,300000", help="packets/s, comma-separated")
    p.add_argument("--calls", type=int, default=None, help="calls per capture (default: rate / 100)")
    p.add_argument("--seconds", type=float, default=10.0, help="seconds of traffic per rate (S)")
    p.add_argument("--buffer-mb", type=int, default=64, help="the daemon's capture ring (capture.buffer_mb)")
    p.add_argument("--out", type=Path, default=BENCH / "out", help="capture cache directory")
    p.add_argument("--results", type=Path, default=BENCH / "RESULTS.md", help="Markdown file to append to")
    p.add_argument("--no-results", action="store_true", help="print only; append nothing")
    p.add_argument("--label", default="", help="a note for the results heading")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from bench.report import append

    args = _parser().parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("bench.live: needs root (network namespaces, raw capture)")
    for tool in ("ip", "tcpreplay"):
        if shutil.which(tool) is None:
            raise SystemExit(
                f"bench.live: needs {tool} (Debian package {'iproute2' if tool == 'ip' else tool})"
            )
    started = time.perf_counter()
    rates = [int(r) for r in args.rates.split(",") if r]
    captures = [capture_for(r, args.calls, args.seconds, args.out) for r in rates]
    points = []
    work = Path(tempfile.mkdtemp(prefix="recorderd-live-", dir=work_dir()))  # not /tmp: see bench.measure
    try:
        with namespaces("L") as pair:
            biggest = max(captures, key=lambda c: c.stats.frames)
            topspeed = tcpreplay(pair, biggest.path, pps=None, limit=1_000_000)
            print(f"tcpreplay --topspeed: {topspeed.pps:,.0f} packets/s")
            for rate, capture in zip(rates, captures, strict=True):
                point = measure(pair, rate, capture, args.buffer_mb, work)
                points.append(point)
                print(
                    f"{rate:>9,} asked: sent {point.sent.pps:,.0f}/s, captured {point.captured:,} of "
                    f"{point.sent.packets:,}, kernel drops {point.kernel_drops:,}, lag {point.lag:.2f} s, "
                    f"steady drops {point.steady.drops if point.steady else '-'}, "
                    f"CPU {point.cpu:.0%}, peak RSS {point.peak_rss_kib / 1024:,.0f} MiB"
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = render(points, topspeed, time.perf_counter() - started, args.label, args.buffer_mb)
    print()
    print(text)
    if not args.no_results:
        append(args.results, text)
        print(f"appended to {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
