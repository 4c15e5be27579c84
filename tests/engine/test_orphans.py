"""Orphans: the tallies of RTP nobody signalled, and when two streams become a call."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from recorderd.engine.orphans import IDLE, MIN_PACKETS, Orphan, Orphans


def ep(host: int, port: int) -> int:
    return (10 << 24 | host) << 16 | port


ENDS = [ep(1, 4000), ep(1, 4002), ep(2, 5000), ep(3, 6000)]
packets = st.lists(
    st.tuples(st.sampled_from(ENDS), st.sampled_from(ENDS), st.sampled_from([0, 8, 9, 96]), st.floats(0, 3)),
    max_size=400,
)


@settings(max_examples=150, deadline=None)
@given(packets=packets, cut=st.integers(0, 400))
def test_noting_a_batch_at_once_equals_noting_packet_by_packet(
    packets: list[tuple[int, int, int, float]], cut: int
) -> None:
    one, many = Orphans(), Orphans()
    for src, dst, pt, ts in packets:
        if pt in (0, 8):  # what the engine's frame-by-frame path notes
            one.note(src, dst, pt, ts)
    for part in (packets[:cut], packets[cut:]):
        if part:
            src, dst, pt, ts = (np.array(column) for column in zip(*part, strict=True))
            many.note_many(src.astype(np.uint64), dst.astype(np.uint64), pt.astype(np.int64), ts)
    assert one.ready(3.0) == many.ready(3.0)
    assert len(one) == len(many)


def stream(orphans: Orphans, src: int, dst: int, pt: int, start: float, count: int = MIN_PACKETS) -> None:
    for k in range(count):
        orphans.note(src, dst, pt, start + 0.02 * k)


def test_a_symmetric_pair_is_ready_once_both_ways_reach_the_minimum() -> None:
    orphans = Orphans()
    a, b = ENDS[2], ENDS[0]
    stream(orphans, a, b, 8, 100.0)
    assert orphans.ready(100.5) == []
    stream(orphans, b, a, 8, 100.5, MIN_PACKETS - 1)
    orphans.note(b, a, 0, 101.0)  # one packet of another type: the stream still carries PCMA
    assert orphans.ready(101.0) == []
    orphans.note(b, a, 8, 101.02)
    assert orphans.ready(101.02) == [Orphan((b, a), (a, b), 8, 8, 100.0, 101.02)]
    assert len(orphans) == 0  # handed over once


def test_one_party_may_send_from_another_port_than_it_receives_on() -> None:
    orphans = Orphans()  # as in pcaps/sip-dtmf2-rfc2833-603.pcap: host 1 sends from 4000, gets on 4002
    stream(orphans, ENDS[0], ENDS[2], 0, 10.0)
    stream(orphans, ENDS[2], ENDS[1], 0, 10.0)
    assert orphans.ready(10.5) == [Orphan((ENDS[0], ENDS[2]), (ENDS[2], ENDS[1]), 0, 0, 10.0, 10.48)]


def test_one_way_unrelated_or_ambiguous_streams_are_not_calls() -> None:
    orphans = Orphans()
    stream(orphans, ENDS[0], ENDS[3], 0, 0.0)  # one way only (music on hold)
    stream(orphans, ENDS[0], ENDS[2], 0, 0.0)  # host 1 -> host 2 and back, but no endpoint shared
    stream(orphans, ep(2, 5002), ENDS[1], 0, 0.0)
    assert orphans.ready(0.5) == []
    stream(orphans, ENDS[2], ENDS[0], 0, 0.5)  # now host 2 answers ENDS[0] twice: which is the call?
    stream(orphans, ENDS[2], ENDS[1], 0, 0.5)
    assert orphans.ready(1.0) == [] and len(orphans) == 5


def test_idle_streams_are_forgotten_and_the_table_is_bounded() -> None:
    orphans = Orphans(max_streams=2)
    for k, end in enumerate(ENDS[:3]):
        orphans.note(end, end + 1, 0, float(k))
    assert len(orphans) == 2  # the third stream found the table full
    assert orphans.ready(0.5 + IDLE) == [] and len(orphans) == 1  # the one last seen at 0 s went
