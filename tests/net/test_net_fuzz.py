"""hypothesis: the parsers raise only ParseError on any bytes; NetDecoder.feed never raises."""

from __future__ import annotations

import functools
import struct
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recorderd.errors import NeedMoreData, ParseError
from recorderd.events import Frame
from recorderd.net import NetDecoder, NetLimits, SipStreamFramer
from recorderd.net.ip import parse_ipv4, parse_ipv6, walk_ipv6_extensions
from recorderd.net.link import LINK_PARSERS, parse_link
from recorderd.net.sipframe import content_length
from recorderd.net.transport import parse_tcp, parse_udp
from tests.net.netcraft import MAC_A, MAC_B, frames, ip_packet

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LINKTYPES = sorted(LINK_PARSERS) + [2, 105, 127, 65535]

PARSERS: dict[str, Callable[[bytes], Any]] = {
    "ipv4": parse_ipv4,
    "ipv6": parse_ipv6,
    "udp": parse_udp,
    "tcp": parse_tcp,
    "content-length": content_length,
    "ipv6-extensions": lambda d: walk_ipv6_extensions(d, d[0] if d else 0, 1, len(d)),
    **{f"link-{lt}": functools.partial(parse_link, lt) for lt in LINKTYPES},
}


def only_parse_errors(parser: Callable[[bytes], Any], data: bytes) -> None:
    try:
        parser(data)
    except ParseError:
        pass


@pytest.mark.parametrize("name", sorted(PARSERS))
@FUZZ
@given(data=st.binary(max_size=120))
def test_parsers_raise_only_parse_error(name: str, data: bytes) -> None:
    only_parse_errors(PARSERS[name], data)


# Headers that are mostly valid reach the deeper branches far more often than random bytes.
def _ipv4_header(proto: int, rest: bytes, ihl: int, frag: int) -> bytes:
    total = ihl * 4 + len(rest)
    head = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, total, 1, frag, 64, proto, 0, b"\1" * 4, b"\2" * 4)
    return head + bytes(ihl * 4 - 20) + rest


ipv4_packets = st.builds(
    _ipv4_header,
    st.sampled_from([6, 17, 1, 50]),
    st.binary(max_size=80),
    st.integers(5, 7),
    st.sampled_from([0, 0x2000, 0x2001, 0x0003, 0x4000]),
)
ipv6_packets = st.builds(
    lambda nh, rest: struct.pack("!IHBB16s16s", 0x60000000, len(rest), nh, 64, b"\1" * 16, b"\2" * 16) + rest,
    st.sampled_from([0, 6, 17, 43, 44, 50, 51, 59, 60]),
    st.binary(max_size=80),
)


def ethernet(packet: bytes, ethertype: int, tags: list[int]) -> bytes:
    head = MAC_B + MAC_A + b"".join(struct.pack("!HH", t, 1) for t in tags)
    return head + struct.pack("!H", ethertype) + packet


frames_st = st.one_of(
    st.builds(Frame, st.floats(0, 1e9), st.sampled_from(LINKTYPES), st.binary(max_size=200)),
    st.builds(
        lambda p, tags: Frame(1.0, 1, ethernet(p, 0x0800, tags)),
        ipv4_packets,
        st.lists(st.sampled_from([0x8100, 0x88A8]), max_size=5),
    ),
    st.builds(lambda p: Frame(1.0, 1, ethernet(p, 0x86DD, [])), ipv6_packets),
    st.builds(lambda p: Frame(1.0, 101, p), st.one_of(ipv4_packets, ipv6_packets)),
)


@FUZZ
@given(st.lists(frames_st, max_size=20))
def test_feed_never_raises(batch: list[Frame]) -> None:
    counters: Counter[str] = Counter()
    decoder = NetDecoder(counters, limits=NetLimits(frag_sets=4, tcp_flows=4, tcp_syn_flows=2))
    for frame in batch:
        for datagram in decoder.feed(frame):
            assert isinstance(datagram.payload, bytes)
    decoder.expire(2e9)
    assert decoder.fragment_sets == 0 and decoder.tcp_flows == 0


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2), st.binary(max_size=60)), max_size=30))
def test_tcp_segments_in_any_order_never_raise_and_stay_bounded(
    segments: list[tuple[int, int, bytes]],
) -> None:
    """Random segments of a real SIP stream on a few flows, with SYN/FIN/RST mixed in."""
    limits = NetLimits(tcp_flows=2, tcp_syn_flows=2, tcp_flow_buffer=2048)
    decoder = NetDecoder(Counter(), limits=limits)
    stream = b"".join(ip_packet(f)[52:] for f in frames("sip-tcp-call-rtp.pcap")[:12])
    for flow, flag_kind, noise in segments:
        flags = (0x18, 0x02, 0x01)[flag_kind] if noise[:1] != b"\xff" else 0x04
        offset = int.from_bytes(noise[:2] or b"\0", "big") % len(stream)
        payload = stream[offset : offset + len(noise) * 8] if len(noise) % 3 else noise
        seq = (0xFFFFFF00 + offset) & 0xFFFFFFFF
        tcp = struct.pack("!HHIIBBHHH", 40000 + flow, 5060, seq, 0, 0x50, flags, 1, 0, 0) + payload
        packet = _ipv4_header(6, tcp, 5, 0)
        decoder.feed(Frame(1.0, 101, packet))
    assert decoder.tcp_flows <= 2
    assert decoder.tcp_buffered_bytes <= 4 * (2048 + 1024)  # capped buffers, short probes


@FUZZ
@given(st.lists(st.binary(max_size=80), max_size=20))
def test_framer_raises_only_parse_error(chunks: list[bytes]) -> None:
    framer = SipStreamFramer(max_header=256, max_message=512)
    for chunk in chunks:
        framer.receive_data(b"INVITE sip:a SIP/2.0\r\n" + chunk if chunk[:1] == b"I" else chunk)
        for _ in range(10):
            try:
                framer.next_message()
            except NeedMoreData:
                break
            except ParseError:
                assert framer.buffered == 0
                break
        assert framer.buffered <= 256 + 80 + 22 + 512
