"""The engine never raises on hostile input: mutated, truncated and shuffled real captures."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recorderd.engine import Engine
from recorderd.events import CallFinished, Frame
from tests.conftest import PCAPS, read_frames

CAPTURES = sorted(PCAPS.glob("*.pcap"))
FRAMES = {p.name: read_frames(p) for p in CAPTURES}
LINKTYPES = [0, 1, 101, 108, 113, 228, 229, 276, 12345]


def run(frames: list[tuple[float, bytes]], linktype: int = 1) -> int:
    engine = Engine()
    finished = 0
    ts = 0.0
    for ts, data in frames:
        finished += sum(isinstance(e, CallFinished) for e in engine.feed(Frame(ts, linktype, data)))
    finished += sum(isinstance(e, CallFinished) for e in engine.close(ts))
    return finished


@pytest.mark.parametrize("name", sorted(FRAMES))
def test_every_frame_truncated_at_random_points(name: str) -> None:
    rng = random.Random(name)
    frames = [(ts, data[: rng.randrange(len(data) + 1)]) for ts, data in FRAMES[name]]
    run(frames)


@pytest.mark.parametrize("name", sorted(FRAMES))
def test_bit_flips_in_every_frame(name: str) -> None:
    rng = random.Random(name)
    mutated = []
    for ts, data in FRAMES[name]:
        buf = bytearray(data)
        for _ in range(3):
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        mutated.append((ts, bytes(buf)))
    run(mutated)


@pytest.mark.parametrize("name", sorted(FRAMES))
def test_shuffled_and_time_travelling_frames(name: str) -> None:
    rng = random.Random(name)
    frames = list(FRAMES[name])
    rng.shuffle(frames)
    assert run(frames) >= 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(FRAMES)),
    start=st.integers(min_value=0, max_value=400),
    length=st.integers(min_value=1, max_value=60),
    linktype=st.sampled_from(LINKTYPES),
    junk=st.binary(max_size=64),
)
def test_slices_under_any_linktype_with_junk(
    name: str, start: int, length: int, linktype: int, junk: bytes
) -> None:
    frames = FRAMES[name][start : start + length]
    run([(ts, data + junk) for ts, data in frames], linktype)


def test_arbitrary_bytes_never_raise() -> None:
    rng = random.Random(7)
    frames = [(i * 0.01, rng.randbytes(rng.randrange(200))) for i in range(3000)]
    for linktype in LINKTYPES:
        run(frames, linktype)
