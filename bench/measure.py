"""What one measurement takes and gives: :class:`Job` in, :class:`Result` out, timed by :class:`Clock`.

A result's ``steady`` figures come from :class:`Samples`, the (file position, wall, CPU) points a
replay's progress callback leaves behind, cut to the capture's steady window.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.gen import Window

ROOT = Path(__file__).resolve().parent.parent  # the repository: where ``python -m bench.*`` runs
# Where the measurements make their stores (a fresh directory each, removed afterwards): a plain
# directory on the disk a real store would use. Not /tmp, and not beside the captures: on the reference
# machine (ext4 mounted with discard) creating a file took 0.3-0.9 ms in /tmp and in bench/out, where
# gigabytes of captures are rewritten, against 0.013 ms in a fresh directory of the same disk.
WORK = Path(os.environ.get("RECORDERD_BENCH_WORK", Path(__file__).parent / "work"))


KEEP_STORES = "RECORDERD_BENCH_STORES"  # set by bench.run: make stores here and leave them


def store_dir(prefix: str) -> tuple[Path, bool]:
    """A new directory for one measurement's store, and whether the caller removes it afterwards."""
    keep = os.environ.get(KEEP_STORES)
    parent = Path(keep) if keep else work_dir()
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=parent)), not keep


def file_creation_us(parent: Path, files: int = 1_000) -> float:
    """Microseconds to create, write and close one small file in a fresh directory under ``parent``
    (the store makes one per recording). The files stay: see WORK on deleting them."""
    parent.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="create-", dir=parent))
    started = time.perf_counter()
    for i in range(files):
        fd = os.open(directory / f"{i}.part", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, bytes(200))
        os.close(fd)
    return 1e6 * (time.perf_counter() - started) / files


def memory_touch_ms(mib: int = 256) -> tuple[float, float]:
    """Milliseconds per MiB to write memory a process just mapped, then to write it again.

    The first figure is what every new page of a measurement's heap, ring and page cache costs. On
    bare metal both are a fraction of a millisecond. On a VM whose host backs guest memory only when
    it is first touched, and takes back what the guest frees (free page reporting), the first varies
    with what the machine did in the seconds before: on the reference VM 0.07-2.4 ms, against 0.03.

    Measured in a process of its own: Linux hands a process's peak RSS on to the children it starts
    (across fork, and kept over exec), so a probe in the runner would add its 256 MiB to the peak
    RSS of every measurement after it.
    """
    code = f"from bench.measure import _touch; print(*_touch({int(mib)}))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True)
    first, again = (float(x) for x in done.stdout.split())
    return first, again


def _touch(mib: int) -> tuple[float, float]:
    size = mib << 20
    started = time.perf_counter()
    block = np.zeros(size, dtype=np.uint8)  # calloc: fresh pages from the kernel, none touched yet
    block.fill(1)
    first = time.perf_counter() - started
    started = time.perf_counter()
    block.fill(2)
    again = time.perf_counter() - started
    return 1e3 * first / mib, 1e3 * again / mib


def work_dir() -> Path:
    WORK.mkdir(parents=True, exist_ok=True)
    return WORK


ROUTINE_COUNTERS = ("frames", "sip.messages", "sip.dialog.late")  # prefixes


@dataclass(frozen=True)
class Job:
    """One measurement's inputs: the capture, a scratch directory, and what the generator knows."""

    pcap: Path
    workdir: Path
    rtp_packets: int = 0  # for the stages that work on synthetic audio (encode, encrypt)
    calls: int = 1
    call_seconds: float = 60.0
    window: Window | None = None


@dataclass
class Clock:
    """Wall and CPU seconds summed over the timed pieces."""

    wall: float = 0.0
    cpu: float = 0.0
    _wall0: float = 0.0
    _cpu0: float = 0.0

    def start(self) -> None:
        self._wall0, self._cpu0 = time.perf_counter(), time.process_time()

    def stop(self) -> None:
        self.wall += time.perf_counter() - self._wall0
        self.cpu += time.process_time() - self._cpu0


@dataclass
class Result:
    stage: str
    frames: int = 0  # frames in the capture
    items: int = 0  # what the stage handled: frames, RTP packets, blocks...
    clock: Clock = field(default_factory=Clock)
    check: dict[str, Any] = field(default_factory=dict)
    steady: dict[str, float] | None = None  # frames, wall, cpu within the capture's steady window

    def as_json(self) -> str:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        row = {
            "stage": self.stage,
            "frames": self.frames,
            "items": self.items,
            "wall": self.clock.wall,
            "cpu": self.clock.cpu,
            "peak_rss_kib": peak,
            "check": self.check,
            "steady": self.steady,
        }
        return json.dumps(row)


class Samples:
    """(file position, wall, CPU) after each batch of a replay, to time the steady window alone."""

    def __init__(self) -> None:
        self.points: list[tuple[int, float, float]] = []

    def __call__(self, path: Path, done: int, total: int) -> None:
        self.points.append((done, time.perf_counter(), time.process_time()))

    def within(self, window: Window) -> dict[str, float] | None:
        """Frames, wall and CPU between the first sample in the window and the last one."""
        inside = [p for p in self.points if window.first_byte <= p[0] <= window.end_byte]
        if len(inside) < 2:
            return None
        (pos0, wall0, cpu0), (pos1, wall1, cpu1) = inside[0], inside[-1]
        return {"frames": (pos1 - pos0) / window.record_bytes, "wall": wall1 - wall0, "cpu": cpu1 - cpu0}


def drops(counters: Counter[str]) -> dict[str, int]:
    """Counters other than the routine ones (frames, SIP messages, retransmissions after a call
    ended): on a clean synthetic capture, each means something was not recorded as it should be."""
    return {k: v for k, v in sorted(counters.items()) if not k.startswith(ROUTINE_COUNTERS)}
