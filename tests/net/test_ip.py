"""IPv4 and IPv6 headers: fields of real packets, lengths, options and extension headers."""

from __future__ import annotations

import struct
from collections import Counter

import pytest

from recorderd.errors import ParseError
from recorderd.events import Frame
from recorderd.net import NetDecoder, parse_ipv4, parse_ipv6
from recorderd.net.ip import NOT_FRAGMENT, IPPacket
from tests.net.netcraft import (
    V6_DST,
    V6_SRC,
    eth_frame,
    ether,
    frames,
    ip_packet,
    ipv4,
    ipv6,
    ipv6_fragment,
    ipv6_options,
    largest_sip_udp,
    udp,
    udp_segment,
)

SIP = largest_sip_udp()
SEGMENT = udp_segment(SIP)


def decode(frame: Frame) -> tuple[list[bytes], Counter[str]]:
    counters: Counter[str] = Counter()
    return [d.payload for d in NetDecoder(counters).feed(frame)], counters


def test_real_ipv4_header_fields() -> None:
    packet = ip_packet(frames("sip-tcp-call-rtp.pcap")[2])  # the INVITE, over TCP
    got = parse_ipv4(packet)
    assert got == IPPacket(
        bytes([10, 33, 6, 100]), bytes([10, 33, 6, 101]), 6, 20, len(packet), NOT_FRAGMENT, 0, False
    )


def test_ipv4_at_an_offset_and_ethernet_padding_ignored() -> None:
    frame = ether(SIP) + b"\xee" * 30  # trailer bytes (padding, FCS) after the IP packet
    got = parse_ipv4(frame, 14)
    assert (got.start, got.end) == (34, 14 + len(SIP))
    payloads, counters = decode(Frame(1.0, 1, frame))
    assert payloads == [SEGMENT[8:]] and not counters


def test_every_prefix_of_an_ipv4_header_is_refused_with_its_length() -> None:
    for n in range(20):
        with pytest.raises(ParseError) as info:
            parse_ipv4(SIP[:n])
        assert str(info.value) == f"ipv4: header truncated ({n} < 20 bytes)"
    for n in range(20, len(SIP)):
        with pytest.raises(ParseError) as info:
            parse_ipv4(SIP[:n])
        assert str(info.value) == f"ipv4: truncated ({n} < {len(SIP)} bytes)"


def test_frame_cut_by_snaplen_is_dropped_and_counted() -> None:
    frame = Frame(1.0, 1, ether(SIP)[:200])
    assert decode(frame) == ([], Counter({"net.drop.ipv4.truncated": 1}))


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({0: 0x65}, "ipv4: bad version (6)"),
        ({0: 0x44}, "ipv4: bad header length (16 < 20 bytes)"),
        ({2: 0, 3: 19}, "ipv4: bad total length (19 < 20 bytes)"),
    ],
)
def test_bad_ipv4_headers(patch: dict[int, int], message: str) -> None:
    packet = bytearray(SIP)
    for index, value in patch.items():
        packet[index] = value
    with pytest.raises(ParseError) as info:
        parse_ipv4(bytes(packet))
    assert str(info.value) == message


def test_ipv4_options_are_skipped_by_ihl() -> None:
    src, dst = SIP[12:16], SIP[16:20]
    router_alert = b"\x94\x04\x00\x00"
    packet = ipv4(src, dst, 17, SEGMENT, options=router_alert + b"\x01" * 4)
    assert parse_ipv4(packet).start == 28
    assert decode(eth_frame(packet)) == ([SEGMENT[8:]], Counter())


def test_ipv4_fragment_fields() -> None:
    packet = ipv4(SIP[12:16], SIP[16:20], 17, SEGMENT[:64], ident=7, offset=1480, more=True)
    got = parse_ipv4(packet)
    assert (got.frag_id, got.frag_offset, got.more_fragments) == (7, 1480, True)


def test_real_ipv6_header_fields() -> None:
    packet = ipv6(17, SEGMENT)
    assert parse_ipv6(packet) == IPPacket(V6_SRC, V6_DST, 17, 40, len(packet), NOT_FRAGMENT, 0, False)


def test_every_prefix_of_an_ipv6_packet_is_refused_with_its_length() -> None:
    packet = ipv6(17, SEGMENT)
    for n in range(40):
        with pytest.raises(ParseError) as info:
            parse_ipv6(packet[:n])
        assert str(info.value) == f"ipv6: header truncated ({n} < 40 bytes)"
    for n in range(40, len(packet)):
        with pytest.raises(ParseError) as info:
            parse_ipv6(packet[:n])
        assert str(info.value) == f"ipv6: truncated ({n} < {len(packet)} bytes)"


def test_ipv6_extension_header_chain_is_walked() -> None:
    ah = struct.pack("!BBH", 60, 4, 0) + bytes(20)  # AH: (4 + 2) * 4 = 24 bytes
    chain = ipv6_options(43) + ipv6_options(51, 1) + ah + ipv6_options(17) + SEGMENT
    packet = ipv6(0, chain)  # hop-by-hop -> routing -> AH -> destination options -> UDP
    got = parse_ipv6(packet)
    assert (got.proto, got.start) == (17, 40 + 8 + 16 + 24 + 8)
    assert decode(eth_frame(packet, ethertype=0x86DD)) == ([SEGMENT[8:]], Counter())


def test_ipv6_atomic_fragment_is_a_whole_datagram() -> None:
    packet = ipv6(44, ipv6_fragment(17, 0, False, 99) + SEGMENT)  # RFC 6946
    got = parse_ipv6(packet)
    assert (got.proto, got.start, got.frag_id) == (17, 48, NOT_FRAGMENT)


def test_ipv6_walk_stops_at_esp_and_no_next_header() -> None:
    for proto in (50, 59):
        packet = ipv6(0, ipv6_options(proto) + bytes(32))
        assert parse_ipv6(packet).proto == proto
        assert decode(eth_frame(packet, ethertype=0x86DD)) == (
            [],
            Counter({"net.ip.other_proto": 1}),
        )


def test_ipv6_extension_header_errors() -> None:
    cases = [
        (ipv6(60, b"\x11"), "ipv6: extension header truncated (1 < 2 bytes)"),
        (ipv6(60, b"\x11\x01" + bytes(8)), "ipv6: extension header truncated (10 < 16 bytes)"),
        (ipv6(44, bytes(6)), "ipv6: fragment header truncated (6 < 8 bytes)"),
        (ipv6(60, ipv6_options(60) * 9), "ipv6: too many extension headers (> 8)"),
        (ipv6(0, b""), "ipv6: jumbogram unsupported"),
        (b"\x40" + ipv6(17, SEGMENT)[1:], "ipv6: bad version (4)"),
    ]
    for packet, message in cases:
        with pytest.raises(ParseError) as info:
            parse_ipv6(packet)
        assert str(info.value) == message


def test_other_ip_protocols_are_counted() -> None:
    icmp = ipv4(SIP[12:16], SIP[16:20], 1, bytes(16))
    assert decode(eth_frame(icmp)) == ([], Counter({"net.ip.other_proto": 1}))


def test_udp_length_beyond_ip_payload_is_dropped() -> None:
    packet = ipv4(SIP[12:16], SIP[16:20], 17, udp(5060, 5060, b"abc", length=100))
    assert decode(eth_frame(packet)) == ([], Counter({"net.drop.udp.truncated": 1}))
