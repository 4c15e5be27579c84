"""The benchmark runner: recorderd end to end, each stage alone, and tshark, on the same captures.

``python -m bench.run [--calls 10,100,1000,5000] [--seconds D] [--packets P] [--quick]``

For each concurrency N it generates (or reuses, from ``bench/out/``) a capture of N simultaneous calls
(``bench/gen.py``), each long enough for the file to hold ``--packets`` RTP packets and never shorter
than ``--seconds``: with the defaults, 10 calls of 300 s, 100 of 30 s, 1,000 and 5,000 of 3 s. Then, in
one run, every measurement ``--repeat`` times, the repeats interleaved (the fastest run is kept, as the
machine is shared; peak memory is the largest seen):

* recorderd end to end (``replay_file`` into a fresh encrypted store) and each stage alone, each in a
  process of its own (``bench/stage.py``);
* ``tshark -r FILE -q -z rtp,streams``, the reference, checked to find 2 streams per call with every
  packet. Its start-up (dissector registration, timed on a one-call capture) is subtracted, as the
  recorderd figures leave out Python's start-up too (unless the file takes less than twice that);
* memory per active call: (peak RSS of the end-to-end run at N calls - peak RSS of the same run on a
  one-call capture) / N.

Throughput is always *frames in the capture / seconds*: for a stage, the rate the whole pipeline would
reach if that stage were all it did. For the replays (e2e, engine) a second figure covers only the
capture's *steady window*: from 1.5 s after the last call's media starts (when recorderd has opened
every recording) to the first BYE, so N calls are up, with no signalling and no recording opened or
closed. That is the load the issue describes (a mirror port full of calls that last minutes), and the
figure that shows whether cost stays flat as N grows; the whole-file figure adds each call's setup
and teardown, which 3-second calls make far more frequent than real ones.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.gen import TICK_US, CaptureSpec, CaptureStats, Window, generate
from bench.gen import VERSION as GENERATOR
from bench.measure import KEEP_STORES, file_creation_us, memory_touch_ms, work_dir

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
STAGES = ("e2e", "engine", "capture", "frames", "net", "parse", "demux", "decode", "encode", "encrypt")
TSHARK = "tshark"
PACKETS_PER_SECOND = 2 * 1_000_000 // TICK_US  # RTP packets per call-second, both directions


@dataclass(frozen=True)
class Plan:
    calls: tuple[int, ...]
    seconds: float  # shortest media length of a call
    packets: int  # at least this many RTP packets per capture
    repeat: int
    stages: tuple[str, ...]
    out: Path  # where captures are cached
    results: Path | None  # Markdown file to append to
    label: str = ""  # what is being measured, for the results heading


@dataclass
class Capture:
    spec: CaptureSpec
    path: Path
    stats: CaptureStats


@dataclass
class Steady:
    frames: float
    wall: float
    cpu: float

    @property
    def pps(self) -> float:
        return self.frames / self.wall if self.wall > 0 else math.inf

    @property
    def us_per_frame(self) -> float:
        return 1e6 * self.wall / self.frames if self.frames else math.nan


@dataclass
class Measurement:
    """The best of the repeats: wall and CPU of the fastest run (and of the fastest steady window,
    taken on its own), the largest peak RSS of all."""

    name: str
    frames: int
    wall: float = math.inf
    cpu: float = 0.0
    peak_rss_kib: int = 0
    runs: int = 0
    check: dict[str, Any] = field(default_factory=dict)
    steady: Steady | None = None

    def add(self, row: dict[str, Any]) -> None:
        self.runs += 1
        self.peak_rss_kib = max(self.peak_rss_kib, row["peak_rss_kib"])
        if row["wall"] < self.wall:
            self.wall, self.cpu, self.check = row["wall"], row["cpu"], row["check"]
        if row.get("steady"):
            steady = Steady(**row["steady"])
            if self.steady is None or steady.pps > self.steady.pps:
                self.steady = steady

    @property
    def pps(self) -> float:
        return self.frames / self.wall if self.wall > 0 else math.inf

    @property
    def us_per_frame(self) -> float:
        return 1e6 * self.wall / self.frames if self.frames else 0.0


@dataclass
class Row:
    """Everything measured on one capture."""

    capture: Capture
    stages: dict[str, Measurement] = field(default_factory=dict)


@dataclass
class Run:
    plan: Plan
    rows: list[Row]
    baseline: dict[str, Measurement]  # e2e and tshark on a one-call capture
    seconds: float = 0.0
    create_us: float = math.nan  # one file's creation where the stores go, before and after
    create_us_after: float = math.nan
    touch_ms: tuple[float, float] = (math.nan, math.nan)  # ms per MiB: new memory, then written again
    touch_ms_after: tuple[float, float] = (math.nan, math.nan)


# ---------------------------------------------------------------------------------------------------
# Captures


def capture_for(calls: int, plan: Plan) -> Capture:
    """The capture for ``calls`` simultaneous calls, generated unless ``plan.out`` already holds it."""
    seconds = max(plan.seconds, math.ceil(plan.packets / (calls * PACKETS_PER_SECOND)))
    return cached(CaptureSpec(calls, seconds), plan.out)


def cached(spec: CaptureSpec, out: Path) -> Capture:
    """The capture for ``spec`` from ``out``, made there first unless this generator made it."""
    path = out / spec.name()
    meta = path.with_suffix(".json")
    known = json.loads(meta.read_text()) if meta.exists() and path.exists() else {}
    if known.pop("generator", None) == GENERATOR:
        window = Window(**known.pop("window")) if known.get("window") else None
        return Capture(spec, path, CaptureStats(**known, window=window))
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    stats = generate(path, spec)
    meta.write_text(json.dumps({"generator": GENERATOR, **asdict(stats)}))
    took = time.perf_counter() - started
    print(f"generated {path.name}: {stats.frames:,} frames, {stats.bytes / 1e6:,.0f} MB in {took:.1f} s")
    return Capture(spec, path, stats)


# ---------------------------------------------------------------------------------------------------
# Measurements


def run_stage(stage: str, capture: Capture) -> dict[str, Any]:
    """One ``bench.stage`` run in a fresh interpreter: its JSON row."""
    spec, stats = capture.spec, capture.stats
    cmd = [sys.executable, "-m", "bench.stage", stage, str(capture.path)]
    cmd += ["--rtp-packets", str(stats.rtp_packets), "--calls", str(spec.calls)]
    cmd += ["--call-seconds", str(spec.seconds)]
    if stats.window is not None:
        cmd += ["--window", ",".join(str(v) for v in asdict(stats.window).values())]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"bench.stage {stage} {capture.path.name} failed:\n{done.stderr[-3000:]}")
    row: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return row


_STREAM_ROW = re.compile(
    r"^\s*[\d.]+\s+[\d.]+\s+\S+\s+\d+\s+\S+\s+\d+\s+0x[0-9A-Fa-f]+\s+.+?\s+(\d+)\s+(-?\d+)\s+\("
)


def run_tshark(capture: Capture) -> dict[str, Any]:
    """``tshark -q -z rtp,streams`` on the capture, as a row like ``bench.stage`` prints."""
    cmd = [TSHARK, "-r", str(capture.path), "-q", "-z", "rtp,streams"]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)  # the child's own CPU time and peak RSS
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stdout.close()
    if proc.returncode != 0:
        raise RuntimeError(f"tshark failed on {capture.path} (exit {proc.returncode})")
    rows = [m.groups() for m in map(_STREAM_ROW.match, out.splitlines()) if m]
    check = {
        "streams": len(rows),
        "packets": sum(int(p) for p, _ in rows),
        "lost": sum(int(x) for _, x in rows),
    }
    return {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "peak_rss_kib": usage.ru_maxrss,
        "check": check,
    }


def measure(plan: Plan, captures: list[Capture], baseline: Capture) -> Run:
    """Every measurement on every capture, ``plan.repeat`` times, repeats interleaved."""
    run = Run(plan, [Row(c) for c in captures], {})
    base = run.baseline
    for rep in range(1, plan.repeat + 1):
        print(f"repeat {rep} of {plan.repeat}: one-call baseline", flush=True)
        base.setdefault("e2e", Measurement("e2e", baseline.stats.frames)).add(run_stage("e2e", baseline))
        base.setdefault("tshark", Measurement("tshark", baseline.stats.frames)).add(run_tshark(baseline))
        for row in run.rows:
            print(f"repeat {rep} of {plan.repeat}: {row.capture.spec.calls:,} calls", flush=True)
            for name in ("tshark", *plan.stages):
                m = row.stages.setdefault(name, Measurement(name, row.capture.stats.frames))
                m.add(run_tshark(row.capture) if name == "tshark" else run_stage(name, row.capture))
    for row in run.rows:
        _subtract_startup(row.stages["tshark"], base["tshark"])
    return run


def _subtract_startup(tshark: Measurement, startup: Measurement) -> None:
    """Take tshark's start-up out of its figures, unless the file is too small for that to mean much."""
    tshark.check["wall_with_startup_s"] = round(tshark.wall, 3)
    if tshark.wall > 2 * startup.wall:
        tshark.wall -= startup.wall
        tshark.cpu = max(tshark.cpu - startup.cpu, 0.0)


def problems(run: Run) -> list[str]:
    """tshark or recorderd finding other calls, streams or packets than the capture holds."""
    found = []
    for row in run.rows:
        spec, stats, name = row.capture.spec, row.capture.stats, row.capture.path.name
        calls = spec.total_calls
        tshark = row.stages["tshark"].check
        if (tshark["streams"], tshark["packets"]) != (2 * calls, stats.rtp_packets):
            found.append(
                f"{name}: tshark found {tshark}, expected {2 * calls} streams, {stats.rtp_packets} packets"
            )
        for stage in ("e2e", "engine"):
            check = row.stages[stage].check if stage in row.stages else None
            if check is not None and (check["calls"], check["legs"], check["drops"]) != (
                calls,
                2 * calls,
                {},
            ):
                found.append(f"{name}: {stage} recorded {check}, expected {calls} calls")
    return found


# ---------------------------------------------------------------------------------------------------
# Command line


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n", 1)[0])
    p.add_argument("--calls", default="10,100,1000,5000", help="concurrencies, comma-separated")
    p.add_argument("--seconds", type=float, default=5.0, help="shortest media length of a call (D)")
    p.add_argument("--packets", type=int, default=300_000, help="at least this many RTP packets per capture")
    p.add_argument("--quick", action="store_true", help="10 and 100 calls, 5 s or more, 100,000 packets")
    p.add_argument("--repeat", type=int, default=3, help="runs per measurement; the fastest is kept")
    p.add_argument("--stages", default=",".join(STAGES), help="stages to measure, comma-separated")
    p.add_argument("--out", type=Path, default=BENCH / "out", help="capture cache directory")
    p.add_argument("--results", type=Path, default=BENCH / "RESULTS.md", help="Markdown file to append to")
    p.add_argument("--no-results", action="store_true", help="print only; append nothing")
    p.add_argument("--label", default="", help="a note for the results heading (what changed)")
    return p


def plan_from(args: argparse.Namespace) -> Plan:
    calls = tuple(int(c) for c in args.calls.split(","))
    seconds, packets = args.seconds, args.packets
    if args.quick:
        calls, seconds, packets = (10, 100), 5.0, 100_000
    stages = tuple(s for s in args.stages.split(",") if s)
    unknown = set(stages) - set(STAGES)
    if unknown:
        raise SystemExit(f"bench.run: unknown stage(s): {', '.join(sorted(unknown))}")
    results = None if args.no_results else args.results
    return Plan(calls, seconds, packets, max(1, args.repeat), stages, args.out, results, args.label)


def main(argv: Sequence[str] | None = None) -> int:
    from bench.report import append, render  # here, as bench.report imports this module

    plan = plan_from(_parser().parse_args(argv))
    started = time.perf_counter()
    baseline = cached(CaptureSpec(1, 2.0), plan.out)
    captures = [capture_for(n, plan) for n in plan.calls]
    # Every measurement's store is kept until the end: deleting it at once would leave the next
    # measurement creating its files while the disk discards the freed blocks (bench.measure.WORK).
    stores = work_dir() / f"run-{os.getpid()}"
    os.environ[KEEP_STORES] = str(stores)
    try:
        create_us = file_creation_us(stores)  # the disk's part of the store's cost per recording
        touch_ms = memory_touch_ms()  # the machine's part of every new page's cost
        run = measure(plan, captures, baseline)
        run.create_us, run.create_us_after = create_us, file_creation_us(stores)
        run.touch_ms, run.touch_ms_after = touch_ms, memory_touch_ms()
    finally:
        shutil.rmtree(stores, ignore_errors=True)
    run.seconds = time.perf_counter() - started
    text = render(run, problems(run))
    print()
    print(text)
    if plan.results is not None:
        append(plan.results, text)
        print(f"appended to {plan.results}")
    return 1 if problems(run) else 0


if __name__ == "__main__":
    sys.exit(main())
