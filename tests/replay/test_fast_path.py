"""The engine's fast path (feed_batch) must give exactly the events of the general path (feed)."""

from __future__ import annotations

import numpy as np
import pytest

from recorderd.events import AudioBlock
from tests.conftest import PCAPS
from tests.replay.engine_replay import replay_engine

CAPTURES = sorted(PCAPS.glob("*.pcap")) + sorted((PCAPS / "crafted").glob("*.pcap"))


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_fast_path_equals_general_path(path) -> None:  # type: ignore[no-untyped-def]
    fast, general = replay_engine(path, batched=True), replay_engine(path, batched=False)
    assert len(fast.events) == len(general.events)
    for a, b in zip(fast.events, general.events, strict=True):
        if isinstance(a, AudioBlock):
            assert isinstance(b, AudioBlock) and (a.ts, a.call_id, a.start) == (b.ts, b.call_id, b.start)
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
