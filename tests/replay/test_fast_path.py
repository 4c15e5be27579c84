"""The engine's fast path (feed_batch) must give exactly the events of the general path (feed)."""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from bench.gen import CaptureSpec, generate
from recorderd.engine import Engine
from recorderd.events import AudioBlock, CallFinished, Event
from tests.conftest import PCAPS
from tests.replay.engine_replay import replay_engine

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


def _without_sip_of_some_calls(source: Path, target: Path) -> set[str]:
    """Copy the classic pcap ``source`` leaving out the SIP of every other call, as if those calls
    were already up when capture began; their Call-IDs."""
    data = source.read_bytes()
    out, pos, dropped = [data[:24]], 24, set()
    while pos < len(data):
        caplen = struct.unpack_from("<I", data, pos + 8)[0]
        record = data[pos : pos + 16 + caplen]
        pos += 16 + caplen
        found = re.search(rb"\r\nCall-ID: (\S+)\r\n", record)
        if found is not None and zlib.crc32(found[1]) % 2:
            dropped.add(found[1].decode())
            continue
        out.append(record)
    target.write_bytes(b"".join(out))
    return dropped


def test_rtp_of_calls_up_before_capture_is_counted_in_bulk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Streams no SDP named are only counted (rtp.unmapped), and a batch counts them together
    instead of sending each through the general path; the other calls are recorded as before."""
    full, path = tmp_path / "full.pcap", tmp_path / "already-up.pcap"
    generate(full, CaptureSpec(20, 4.0, seed=5))
    dropped = _without_sip_of_some_calls(full, path)
    assert 0 < len(dropped) < 20
    test_fast_path_equals_general_path(path)
    general_frames: list[int] = []
    original = Engine._general

    def counting(self: Engine, batch, meta, now, start: int, end: int, out: list[Event]) -> None:  # type: ignore[no-untyped-def]
        general_frames.append(end - start)
        original(self, batch, meta, now, start, end, out)

    monkeypatch.setattr(Engine, "_general", counting)
    replayed = replay_engine(path)
    counters = replayed.engine.counters  # type: ignore[union-attr]
    calls = {e.call_id for e in replayed.events if isinstance(e, CallFinished)}
    assert len(calls) == 20 - len(dropped) and not calls & dropped
    rtp_per_call = 2 * 4.0 / 0.020
    assert counters["rtp.unmapped"] >= 0.95 * rtp_per_call * len(dropped)
    assert sum(general_frames) < counters["rtp.unmapped"] / 10  # frame by frame: more than all of them
