"""The engine's fast path (feed_batch) must give exactly the events of the general path (feed)."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest

from bench.gen import CaptureSpec, generate
from recorderd.config import EngineConfig
from recorderd.engine import Engine
from recorderd.events import AudioBlock, CallFinished, Datagram, Direction, EndReason, Event, Side, Transport
from tests.conftest import PCAPS
from tests.replay.engine_replay import replay_engine, without_sip

CAPTURES = sorted(PCAPS.glob("*.pcap")) + sorted((PCAPS / "crafted").glob("*.pcap"))


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_fast_path_equals_general_path(path) -> None:  # type: ignore[no-untyped-def]
    """Every call's events, in order; a batch writes out the calls that ended in it at its end (or
    at the next timer or call start), so the interleaving of different calls may differ."""
    fast, general = replay_engine(path, batched=True), replay_engine(path, batched=False)
    assert len(fast.events) == len(general.events)
    by_call_fast, by_call_general = _by_call(fast.events), _by_call(general.events)
    assert by_call_fast.keys() == by_call_general.keys()
    for call_id, events in by_call_fast.items():
        assert len(events) == len(by_call_general[call_id]), call_id
        for a, b in zip(events, by_call_general[call_id], strict=True):
            if isinstance(a, AudioBlock):
                assert isinstance(b, AudioBlock)
                assert (a.ts, a.call_id, a.start, a.encoding) == (b.ts, b.call_id, b.start, b.encoding)
                assert np.array_equal(a.samples, b.samples)
            else:
                assert a == b
    counters = {k: v for k, v in fast.engine.counters.items() if k != "frames.fast"}  # type: ignore[union-attr]
    assert counters == dict(general.engine.counters)  # type: ignore[union-attr]


def test_fast_path_is_taken_on_plain_and_vlan_tagged_rtp() -> None:
    for name in ("sip-dtmf2-rfc2833-603.pcap", "crafted/vlan-qinq-call.pcap"):
        engine = replay_engine(PCAPS / name).engine
        assert engine is not None
        assert engine.counters["frames.fast"] > 0.5 * engine.counters["frames"], name


def _by_call(events: list[Event]) -> dict[str, list[Event]]:
    out: dict[str, list[Event]] = {}
    for event in events:
        out.setdefault(event.call_id, []).append(event)
    return out


@pytest.mark.parametrize(
    "spec",
    [
        CaptureSpec(40, 6.0, loss=0.02, reorder=0.05, seed=3, rounds=2),
        CaptureSpec(30, 4.0, reorder=0.1, vlan=100, seed=4),
    ],
    ids=["loss-reorder-rounds", "vlan-reorder"],
)
def test_fast_path_equals_general_path_with_loss_and_reordering(spec: CaptureSpec, tmp_path: Path) -> None:
    """Many streams at once, packets lost and reordered, calls ending and starting mid-batch: the
    batch path falls back stream by stream, and must still agree with the general path."""
    path = tmp_path / "unruly.pcap"
    generate(path, spec)
    test_fast_path_equals_general_path(path)
    engine = replay_engine(path).engine
    assert engine is not None and engine.counters["frames.fast"] > 0.8 * engine.counters["frames"]


def test_rtp_of_calls_up_before_capture_is_counted_in_bulk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With unsignalled calls not recorded, streams no SDP named are only counted (rtp.unmapped),
    and a batch counts them together instead of sending each through the general path."""
    full, path = tmp_path / "full.pcap", tmp_path / "already-up.pcap"
    generate(full, CaptureSpec(20, 4.0, seed=5))
    dropped = without_sip(full, path, lambda call_id: zlib.crc32(call_id) % 2 == 1)
    assert 0 < len(dropped) < 20
    general_frames: list[int] = []
    original = Engine._general

    def counting(self: Engine, batch, meta, now, start: int, end: int, out: list[Event]) -> None:  # type: ignore[no-untyped-def]
        general_frames.append(end - start)
        original(self, batch, meta, now, start, end, out)

    monkeypatch.setattr(Engine, "_general", counting)
    replayed = replay_engine(path, EngineConfig(record_unsignalled=False))
    counters = replayed.engine.counters  # type: ignore[union-attr]
    calls = {e.call_id for e in replayed.events if isinstance(e, CallFinished)}
    assert len(calls) == 20 - len(dropped) and not calls & dropped
    rtp_per_call = 2 * 4.0 / 0.020
    assert counters["rtp.unmapped"] >= 0.95 * rtp_per_call * len(dropped)
    assert sum(general_frames) < counters["rtp.unmapped"] / 10  # frame by frame: more than all of them


def test_calls_up_before_capture_are_recorded_without_sip(tmp_path: Path) -> None:
    """Each call whose SIP was not captured is recorded from half a second into its two-way media,
    with the same audio as the full capture gives from there on, and without SIP details; the batch
    and frame-by-frame paths agree (the orphans' tallies do not depend on where a batch is cut)."""
    full, path = tmp_path / "full.pcap", tmp_path / "already-up.pcap"
    generate(full, CaptureSpec(20, 4.0, loss=0.01, reorder=0.02, seed=6))
    dropped = without_sip(full, path, lambda call_id: zlib.crc32(call_id) % 2 == 1)
    test_fast_path_equals_general_path(path)
    whole, cut = replay_engine(full), replay_engine(path)
    unsignalled = {c for c in cut.records if c.startswith("unsignalled:")}
    assert len(unsignalled) == len(dropped) == cut.engine.counters["rtp.unsignalled_calls"]  # type: ignore[union-attr]
    by_ends = {frozenset(leg.src for leg in whole.record(c).legs): c for c in dropped}
    for call_id in unsignalled:
        record = cut.record(call_id)
        # the capture ends before rtp_timeout (30 s), as it does for the calls whose BYE was left out
        assert record.end_reason is EndReason.CAPTURE_END and record.from_uri == record.to_uri == ""
        assert record.direction is Direction.UNKNOWN and record.sip_status is None
        original = whole.record(by_ends[frozenset(leg.src for leg in record.legs)])
        recorded, expected = cut.stereo(call_id), whole.stereo(original.call_id)
        assert 2.4 * 8000 <= len(recorded) <= 3.5 * 8000  # 4 s less the wait for 25 packets each way
        for leg in record.legs:
            (twin,) = [t for t in original.legs if t.src == leg.src]
            mine = recorded[-8000:, 0 if leg.side is Side.CALLER else 1]
            theirs = expected[:, 0 if twin.side is Side.CALLER else 1]
            # Each recording anchors a stream at the arrival of its first packet it saw, so the two
            # place the same voice up to the capture's jitter apart (1 ms, 8 samples) or a reordering.
            same = max(
                int(np.sum(mine == theirs[len(theirs) - 8000 - k : len(theirs) - k])) for k in range(40)
            )
            assert same >= 0.97 * 8000, (call_id, leg.src)


def test_one_way_or_short_streams_are_not_calls(tmp_path: Path) -> None:
    """Music on hold or paging flows one way; a burst of a few packets is no call either."""
    engine = Engine()
    src, dst = bytes([10, 9, 0, 1]), bytes([10, 9, 0, 2])
    for k in range(200):  # four seconds one way, then 10 packets back
        packet = (
            bytes([0x80, 0, k >> 8, k & 0xFF])
            + (160 * k).to_bytes(4, "big")
            + b"\x01\x02\x03\x04"
            + bytes(160)
        )
        engine._rtp(Datagram(1000.0 + 0.02 * k, Transport.UDP, src, 4000, dst, 5000, packet))
        if k < 10:
            engine._rtp(Datagram(1000.0 + 0.02 * k, Transport.UDP, dst, 5000, src, 4000, packet))
        if k % 25 == 0:
            engine.advance(1000.0 + 0.02 * k)
    assert not engine.calls and engine.counters["rtp.unsignalled_calls"] == 0
    assert engine.counters["rtp.unmapped"] == 210
