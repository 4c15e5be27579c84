"""The benchmark report: Markdown tables of a :class:`bench.run.Run`, the issue's targets, the machine.

Printed by ``python -m bench.run`` and appended to ``bench/RESULTS.md`` as one dated section.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
import subprocess
from pathlib import Path

import numpy as np

from bench.run import ROOT, TSHARK, Measurement, Row, Run

# The targets.
TARGET_PPS = 525_000
TARGET_VS_TSHARK = 2.0
TARGET_KIB_PER_CALL = 256
TARGET_FLATNESS = 0.20

HEADER = """# Benchmark results

Appended by `python -m bench.run` (see README.md): one section per run, newest last. Packets/s are
frames in the capture per second; "steady" is the part of the capture with every call in media, every
recording open and no signalling. Ratios are to `tshark -q -z rtp,streams` on the same file in the same
run. KiB per call means something at 1,000 calls and more; at 10 calls it is allocator noise.
"""


def _n(x: float) -> str:
    return f"{x:,.0f}" if math.isfinite(x) else "-"


def _ratio(x: float, y: float) -> str:
    return f"{x / y:.2f}" if math.isfinite(x) and y > 0 and math.isfinite(y) else "-"


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    align = ["---"] + ["--:"] * (len(head) - 1)
    return ["| " + " | ".join(r) + " |" for r in (head, align, *rows)]


def _per_call_kib(row: Row, base: Measurement) -> float:
    return (row.stages["e2e"].peak_rss_kib - base.peak_rss_kib) / row.capture.spec.calls


def _steady_pps(m: Measurement | None) -> float:
    return m.steady.pps if m is not None and m.steady is not None else math.nan


def summary(run: Run) -> list[str]:
    head = ["calls", "call s", "frames", "e2e packets/s", "e2e steady packets/s", "steady us/packet",
            "steady cost vs first", "tshark packets/s", "e2e / tshark", "steady / tshark", "peak RSS MiB",
            "KiB per call"]  # fmt: skip
    rows, first = [], math.nan
    for row in run.rows:
        e2e, tshark = row.stages.get("e2e"), row.stages["tshark"].pps
        if e2e is None:
            continue
        steady_us = e2e.steady.us_per_frame if e2e.steady else math.nan
        first = steady_us if math.isnan(first) else first
        c, steady = row.capture, _steady_pps(e2e)
        rows.append([
            f"{c.spec.calls:,}", f"{c.spec.seconds:g}", f"{c.stats.frames:,}", _n(e2e.pps), _n(steady),
            f"{steady_us:.2f}", _ratio(steady_us, first), _n(tshark), _ratio(e2e.pps, tshark),
            _ratio(steady, tshark), f"{e2e.peak_rss_kib / 1024:,.0f}",
            _n(_per_call_kib(row, run.baseline["e2e"])),
        ])  # fmt: skip
    return _table(head, rows)


def stages(row: Row) -> list[str]:
    c = row.capture
    title = (
        f"**{c.spec.calls:,} calls of {c.spec.seconds:g} s** ({c.path.name}: {c.stats.frames:,} frames, "
        f"{c.stats.rtp_packets:,} RTP, {c.stats.bytes / 1e6:,.0f} MB"
    )
    if c.stats.window is not None:
        title += f"; steady window {c.stats.window.frames:,} frames"
    tshark = row.stages["tshark"].pps
    head = ["stage", "packets/s", "us/packet", "CPU s", "wall s", "ratio to tshark", "steady packets/s"]
    rows = [
        [name, _n(m.pps), f"{m.us_per_frame:.2f}", f"{m.cpu:.2f}", f"{m.wall:.2f}", _ratio(m.pps, tshark),
         _n(_steady_pps(m))]
        for name, m in row.stages.items()
    ]  # fmt: skip
    return [title + ")", "", *_table(head, rows)]


def targets(run: Run) -> list[str]:
    """The issue's targets, each with the figures it is judged on (whole file and steady window)."""
    rows = [r for r in run.rows if "e2e" in r.stages]
    if not rows:
        return []
    e2e = [r.stages["e2e"] for r in rows]
    tshark = [r.stages["tshark"].pps for r in rows]
    whole, steady = min(m.pps for m in e2e), min(_steady_pps(m) for m in e2e)
    vs_whole = min(m.pps / t for m, t in zip(e2e, tshark, strict=True))
    vs_steady = min(_steady_pps(m) / t for m, t in zip(e2e, tshark, strict=True))
    largest, smallest = rows[-1], rows[0]
    kib = _per_call_kib(largest, run.baseline["e2e"])
    drift = _steady_drift(smallest, largest)

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    return [
        f"- replay into the encrypted store >= {TARGET_PPS:,} packets/s on one core: slowest whole file "
        f"{_n(whole)} ({verdict(whole >= TARGET_PPS)}), slowest steady {_n(steady)} "
        f"({verdict(steady >= TARGET_PPS)})",
        f"- >= {TARGET_VS_TSHARK:g}x tshark rtp,streams: lowest whole file {vs_whole:.2f}x "
        f"({verdict(vs_whole >= TARGET_VS_TSHARK)}), lowest steady {vs_steady:.2f}x "
        f"({verdict(vs_steady >= TARGET_VS_TSHARK)})",
        f"- <= {TARGET_KIB_PER_CALL} KiB per active call at {largest.capture.spec.calls:,} calls: "
        f"{kib:,.0f} KiB ({verdict(kib <= TARGET_KIB_PER_CALL)})",
        f"- steady per-packet cost at {largest.capture.spec.calls:,} calls within {TARGET_FLATNESS:.0%} of "
        f"{smallest.capture.spec.calls:,}: {drift:+.0%} ({verdict(abs(drift) <= TARGET_FLATNESS)})",
    ]


def _steady_drift(smallest: Row, largest: Row) -> float:
    a, b = smallest.stages["e2e"].steady, largest.stages["e2e"].steady
    if a is None or b is None:
        return math.nan
    return b.us_per_frame / a.us_per_frame - 1


def machine(label: str) -> list[str]:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    tshark = subprocess.run([TSHARK, "--version"], capture_output=True, text=True).stdout.splitlines()
    lines = [
        f"- CPU: {cpu}, {os.cpu_count()} logical cores; {platform.platform()}",
        f"- Python {platform.python_version()} ({platform.python_implementation()}), NumPy {np.__version__}",
        f"- {tshark[0] if tshark else 'tshark: version unknown'}",
        f"- recorderd: {_git_head()}",
    ]
    return lines + ([f"- note: {label}"] if label else [])


def _git_head() -> str:
    """The commit measured, and whether recorderd/ had uncommitted changes (read-only git calls)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    head = git("rev-parse", "--short", "HEAD")
    if not head:
        return "not a git checkout"
    dirty = git("status", "--porcelain", "--", "recorderd")
    return f"commit {head}" + (" with uncommitted changes in recorderd/" if dirty else "")


def render(run: Run, problems: list[str]) -> str:
    base = run.baseline
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"## {stamp}", "", *machine(run.plan.label)]
    lines.append(
        f"- fastest of {run.plan.repeat} runs per measurement (peak RSS: the largest); tshark start-up "
        f"{base['tshark'].wall:.2f} s subtracted; one-call baseline e2e peak RSS "
        f"{base['e2e'].peak_rss_kib / 1024:.0f} MiB; the whole benchmark took {run.seconds:.0f} s"
    )
    lines += [
        f"- creating a file where the stores go (one per recording): {run.create_us:,.0f} us before the "
        f"measurements, {run.create_us_after:,.0f} us after (1,000 small files in a fresh directory)",
        f"- writing memory the process has just mapped: {run.touch_ms[0]:.2f} ms per MiB before the "
        f"measurements, {run.touch_ms_after[0]:.2f} after; written again: {run.touch_ms[1]:.2f} and "
        f"{run.touch_ms_after[1]:.2f} (256 MiB)",
    ]
    lines += ["", "### Summary", "", *summary(run), "", *targets(run)]
    if problems:
        lines += ["", "### Problems", "", *(f"- {p}" for p in problems)]
    lines += ["", "### Stages", ""]
    for row in run.rows:
        lines += [*stages(row), ""]
    return "\n".join(lines)


def append(path: Path, text: str) -> None:
    """Add ``text`` as a section of ``path``, creating it with its header if needed."""
    with path.open("a") as f:
        if f.tell() == 0:
            f.write(HEADER)
        f.write("\n" + text + "\n")
