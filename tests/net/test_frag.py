"""Fragment reassembly: a real SIP datagram cut into IPv4 and IPv6 fragments, in every order."""

from __future__ import annotations

from collections import Counter

import pytest

from recorderd.events import Datagram, Frame
from recorderd.net import NetDecoder, NetLimits, Reassembler
from tests.net.netcraft import (
    V6_SRC,
    eth_frame,
    fragment_ipv4,
    fragment_ipv6,
    ipv6,
    ipv6_fragment,
    ipv6_options,
    largest_sip_udp,
    split,
    udp_segment,
)

SIP = largest_sip_udp()
SEGMENT = udp_segment(SIP)  # UDP header + INVITE, 1756 bytes
PIECES = split(SEGMENT, 400)
OVERLAPPING = [(o, SEGMENT[o : o + 480]) for o in range(0, len(SEGMENT), 400)]  # 80 bytes shared

ORDERS = {
    "in-order": PIECES,
    "reversed": PIECES[::-1],
    "duplicated": PIECES[:2] + PIECES[:2] + PIECES[2:] + PIECES[1:2],
    "overlapping": OVERLAPPING,
    "overlapping-reversed": OVERLAPPING[::-1],
    "mixed-sizes": split(SEGMENT, 800)[:1] + split(SEGMENT, 200)[2:] + split(SEGMENT, 200)[:3],
    "last-first": PIECES[-1:] + PIECES[:-1],
}


def run(
    packets: list[bytes], ethertype: int = 0x0800, counters: Counter[str] | None = None
) -> list[Datagram]:
    decoder = NetDecoder(Counter() if counters is None else counters)
    out: list[Datagram] = []
    for i, packet in enumerate(packets):
        out += decoder.feed(eth_frame(packet, ts=10.0 + i * 0.001, ethertype=ethertype))
    return out


@pytest.mark.parametrize("order", sorted(ORDERS))
def test_ipv4_fragments_reassemble_to_the_original(order: str) -> None:
    counters: Counter[str] = Counter()
    (got,) = run(fragment_ipv4(SIP, ORDERS[order]), counters=counters)
    assert got.payload == SEGMENT[8:]
    assert (got.src, got.dst) == (SIP[12:16], SIP[16:20])
    assert (got.sport, got.dport) == (int.from_bytes(SEGMENT[:2]), int.from_bytes(SEGMENT[2:4]))
    assert counters["net.frag.reassembled"] == 1
    assert not [k for k in counters if k.startswith("net.drop")]


@pytest.mark.parametrize("order", sorted(ORDERS))
def test_ipv6_fragments_reassemble_to_the_original(order: str) -> None:
    (got,) = run(fragment_ipv6(SEGMENT, ORDERS[order]), 0x86DD)
    assert got.payload == SEGMENT[8:]
    assert got.src == V6_SRC


def test_ipv6_destination_options_after_the_fragment_header() -> None:
    fragmentable = ipv6_options(17) + SEGMENT
    packets = fragment_ipv6(fragmentable, split(fragmentable, 512), first_nh=60)
    # and a hop-by-hop header in front of the fragment header of each
    packets = [ipv6(0, ipv6_options(44) + p[40:]) for p in packets]
    (got,) = run(packets[::-1], 0x86DD)
    assert got.payload == SEGMENT[8:]


def test_the_reassembled_datagram_carries_the_last_fragments_time() -> None:
    (got,) = run(fragment_ipv4(SIP, PIECES))
    assert got.ts == pytest.approx(10.0 + (len(PIECES) - 1) * 0.001)


def test_an_incomplete_datagram_yields_nothing() -> None:
    decoder = NetDecoder(Counter())
    for packet in fragment_ipv4(SIP, PIECES[:-1]):
        assert decoder.feed(eth_frame(packet)) == []
    assert decoder.fragment_sets == 1
    assert decoder.fragment_bytes == sum(len(c) for _, c in PIECES[:-1])


def test_conflicting_overlap_drops_the_datagram() -> None:
    counters: Counter[str] = Counter()
    forged = (400, b"X" * 400)
    got = run(fragment_ipv4(SIP, PIECES[:1] + [forged] + PIECES[1:]), counters=counters)
    assert got == []  # the rest of the fragments start a new set that never completes
    assert counters["net.frag.overlap_conflict"] == 1


# -- the Reassembler's bounds ------------------------------------------------------------------------

KEY = (b"\x0a\0\0\x01", b"\x0a\0\0\x02", 17, 1)


def key(n: int) -> tuple[bytes, bytes, int, int]:
    return (KEY[0], KEY[1], KEY[2], n)


def test_oldest_set_is_evicted_when_the_table_is_full() -> None:
    counters: Counter[str] = Counter()
    frags = Reassembler(counters, max_sets=2)
    for n in range(3):
        assert frags.add(key(n), 0, True, b"a" * 8, float(n)) is None
    assert len(frags) == 2
    assert counters["net.frag.evicted"] == 1
    assert frags.add(key(0), 8, False, b"b", 3.0) is None  # its first half was evicted
    assert frags.add(key(2), 8, False, b"b", 3.0) == b"a" * 8 + b"b"


def test_sets_expire_by_capture_time() -> None:
    counters: Counter[str] = Counter()
    frags = Reassembler(counters, timeout=30.0)
    frags.add(key(1), 0, True, b"a" * 8, 100.0)
    frags.add(key(2), 0, True, b"a" * 8, 110.0)
    frags.expire(129.9)
    assert len(frags) == 2
    frags.expire(130.0)
    assert len(frags) == 1 and counters["net.frag.expired"] == 1
    frags.expire(1000.0)
    assert len(frags) == 0 and frags.held_bytes == 0


def test_decoder_expiry_uses_its_limits() -> None:
    counters: Counter[str] = Counter()
    decoder = NetDecoder(counters, limits=NetLimits(frag_timeout=5.0))
    decoder.feed(eth_frame(fragment_ipv4(SIP, PIECES[:1])[0], ts=1.0))
    decoder.expire(5.9)
    assert decoder.fragment_sets == 1
    decoder.expire(6.0)
    assert decoder.fragment_sets == 0 and counters["net.frag.expired"] == 1


def test_datagram_over_65535_bytes_is_dropped() -> None:
    counters: Counter[str] = Counter()
    frags = Reassembler(counters)
    assert frags.add(KEY, 0, True, b"a" * 1480, 0.0) is None
    assert frags.add(KEY, 65528, False, b"b" * 16, 0.0) is None
    assert counters["net.frag.too_big"] == 1
    assert len(frags) == 0 and frags.held_bytes == 0


def test_fragments_per_datagram_are_bounded() -> None:
    counters: Counter[str] = Counter()
    frags = Reassembler(counters, max_fragments=4)
    for n in range(5):
        frags.add(KEY, n * 16, True, b"a" * 8, 0.0)  # gaps between them: never complete
    assert counters["net.frag.too_many"] == 1
    assert len(frags) == 0


def test_held_bytes_are_bounded() -> None:
    counters: Counter[str] = Counter()
    frags = Reassembler(counters, max_bytes=100)
    frags.add(key(1), 0, True, b"a" * 64, 0.0)
    frags.add(key(2), 0, True, b"a" * 64, 1.0)
    assert len(frags) == 1 and frags.held_bytes == 64
    assert counters["net.frag.evicted"] == 1
    frags.add(key(3), 0, True, b"a" * 200, 2.0)  # alone over the budget
    assert len(frags) == 0 and frags.held_bytes == 0


def test_inconsistent_last_fragments_drop_the_set() -> None:
    counters: Counter[str] = Counter()
    frags = Reassembler(counters)
    frags.add(KEY, 16, False, b"a" * 8, 0.0)
    assert frags.add(KEY, 16, False, b"a" * 16, 0.0) is None  # a second, different end
    assert counters["net.frag.inconsistent"] == 1
    frags.add(KEY, 16, False, b"a" * 8, 0.0)
    assert frags.add(KEY, 24, True, b"a" * 8, 0.0) is None  # data beyond the end
    assert counters["net.frag.inconsistent"] == 2


def test_duplicates_are_counted_once_each() -> None:
    counters: Counter[str] = Counter()
    frags = Reassembler(counters)
    frags.add(KEY, 0, True, b"a" * 16, 0.0)
    frags.add(KEY, 0, True, b"a" * 16, 0.0)
    frags.add(KEY, 8, True, b"a" * 8, 0.0)
    assert counters["net.frag.duplicate"] == 2
    assert frags.add(KEY, 16, False, b"z", 0.0) == b"a" * 16 + b"z"


def test_unfragmented_frames_never_touch_the_table() -> None:
    decoder = NetDecoder(Counter())
    assert decoder.feed(Frame(1.0, 1, eth_frame(SIP).data)) != []
    assert decoder.feed(eth_frame(ipv6(44, ipv6_fragment(17, 0, False, 5) + SEGMENT), ethertype=0x86DD))
    assert decoder.fragment_sets == 0
