"""Link layers: every supported LINKTYPE around real IP packets decodes to the same datagram."""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Callable

import pytest

from recorderd.errors import ParseError
from recorderd.events import Datagram, Frame, Transport
from recorderd.net import NetDecoder
from recorderd.net.link import (
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    ETHERTYPE_NONE,
    parse_ethernet,
    parse_link,
    parse_loop,
    parse_null,
    parse_raw,
    parse_sll,
    parse_sll2,
)
from tests.net.netcraft import (
    MAC_A,
    V6_DST,
    V6_SRC,
    ether,
    frames,
    ip_packet,
    ipv6,
    largest_sip_udp,
    udp,
    udp_segment,
)

SLL_HEADER = struct.pack("!HHH8s", 0, 1, 6, MAC_A + b"\0\0")  # then the 2-byte protocol
SIP = largest_sip_udp()
SIP_V6 = ipv6(17, udp_segment(SIP))


def sll(packet: bytes, protocol: int) -> bytes:
    return SLL_HEADER + struct.pack("!H", protocol) + packet


def sll2(packet: bytes, protocol: int) -> bytes:
    return struct.pack("!HHIHBB8s", protocol, 0, 2, 1, 0, 6, MAC_A + b"\0\0") + packet


def expected(packet: bytes, ts: float = 5.0) -> list[Datagram]:
    """The datagram the Ethernet fast path gives for this packet."""
    ethertype = 0x86DD if packet[0] >> 4 == 6 else 0x0800
    return NetDecoder(Counter()).feed(Frame(ts, 1, ether(packet, ethertype)))


WRAPPERS: dict[str, Callable[[bytes, int], tuple[int, bytes]]] = {
    "ethernet": lambda p, et: (1, ether(p, et)),
    "802.1q": lambda p, et: (1, ether(p, et, (0x8100,))),
    "qinq-88a8": lambda p, et: (1, ether(p, et, (0x88A8, 0x8100))),
    "qinq-9100": lambda p, et: (1, ether(p, et, (0x9100, 0x8100))),
    "sll": lambda p, et: (113, sll(p, et)),
    "sll-vlan": lambda p, et: (113, sll(struct.pack("!HH", 100, et) + p, 0x8100)),
    "sll2": lambda p, et: (276, sll2(p, et)),
    "null-le": lambda p, et: (0, struct.pack("<I", 2 if et == 0x0800 else 30) + p),
    "null-be": lambda p, et: (0, struct.pack(">I", 2 if et == 0x0800 else 24) + p),
    "loop": lambda p, et: (108, struct.pack(">I", 2 if et == 0x0800 else 28) + p),
    "raw": lambda p, et: (101, p),
    "raw-12": lambda p, et: (12, p),
    "raw-14": lambda p, et: (14, p),
    "raw-v4-v6": lambda p, et: (228 if et == 0x0800 else 229, p),
}


@pytest.mark.parametrize("wrapper", sorted(WRAPPERS))
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_every_linktype_decodes_a_real_packet(wrapper: str, family: str) -> None:
    packet, ethertype = (SIP, 0x0800) if family == "ipv4" else (SIP_V6, 0x86DD)
    linktype, data = WRAPPERS[wrapper](packet, ethertype)
    counters: Counter[str] = Counter()
    got = NetDecoder(counters).feed(Frame(5.0, linktype, data))
    assert got == expected(packet)
    assert got[0].payload.startswith(b"INVITE sip:")
    assert not counters


def test_every_rtp_frame_of_a_capture_through_raw_and_sll_matches_ethernet() -> None:
    decoder = NetDecoder(Counter())
    for frame in frames("sip-rtp-g722.pcap"):
        packet = ip_packet(frame)
        via_ethernet = decoder.feed(frame)
        assert decoder.feed(Frame(frame.ts, 101, packet)) == via_ethernet
        assert decoder.feed(Frame(frame.ts, 113, sll(packet, 0x0800))) == via_ethernet


def test_ipv6_datagram_fields() -> None:
    (got,) = expected(SIP_V6)
    assert (got.src, got.dst, got.transport) == (V6_SRC, V6_DST, Transport.UDP)
    assert got.payload == udp_segment(SIP)[8:]


def test_parsers_report_network_layer_and_offset() -> None:
    assert parse_ethernet(ether(SIP)) == (ETHERTYPE_IPV4, 14)
    assert parse_ethernet(ether(SIP, 0x86DD, (0x88A8, 0x8100))) == (ETHERTYPE_IPV6, 22)
    assert parse_sll(sll(SIP, 0x0800)) == (ETHERTYPE_IPV4, 16)
    assert parse_sll2(sll2(SIP, 0x86DD)) == (ETHERTYPE_IPV6, 20)
    assert parse_null(struct.pack("<I", 2) + SIP) == (ETHERTYPE_IPV4, 4)
    assert parse_null(struct.pack(">I", 10) + SIP) == (ETHERTYPE_IPV6, 4)
    assert parse_null(struct.pack("<I", 7) + SIP) == (ETHERTYPE_NONE, 4)
    assert parse_loop(struct.pack(">I", 24) + SIP) == (ETHERTYPE_IPV6, 4)
    assert parse_raw(SIP) == (ETHERTYPE_IPV4, 0)
    assert parse_raw(SIP_V6) == (ETHERTYPE_IPV6, 0)


def test_non_ip_frames_are_counted_not_errors() -> None:
    counters: Counter[str] = Counter()
    decoder = NetDecoder(counters)
    arp = ether(bytes(28), 0x0806)
    lldp = ether(bytes(40), 0x88CC)
    llc = ether(b"\x42\x42\x03" + bytes(40), 43)  # 802.3 length field, STP
    for data in (arp, lldp, llc, ether(bytes(28), 0x0806, (0x8100,))):
        assert decoder.feed(Frame(1.0, 1, data)) == []
    assert decoder.feed(Frame(1.0, 0, struct.pack("<I", 7) + SIP)) == []
    assert counters == Counter({"net.link.non_ip": 5})


def test_unsupported_linktype_is_counted() -> None:
    counters: Counter[str] = Counter()
    assert NetDecoder(counters).feed(Frame(1.0, 105, ether(SIP))) == []
    assert counters == Counter({"net.drop.link.unsupported_linktype": 1})
    with pytest.raises(ParseError, match=r"^link: unsupported linktype \(105\)$"):
        parse_link(105, SIP)


def test_vlan_tags_are_bounded() -> None:
    assert parse_ethernet(ether(SIP, tags=(0x8100,) * 4)) == (ETHERTYPE_IPV4, 30)
    with pytest.raises(ParseError, match=r"^vlan: too many tags \(> 4\)$"):
        parse_ethernet(ether(SIP, tags=(0x8100,) * 5))


@pytest.mark.parametrize(
    ("parser", "frame", "layer", "size"),
    [
        (parse_ethernet, ether(SIP), "ethernet", 14),
        (parse_sll, sll(SIP, 0x0800), "sll", 16),
        (parse_sll2, sll2(SIP, 0x0800), "sll2", 20),
        (parse_null, struct.pack("<I", 2) + SIP, "null", 4),
        (parse_loop, struct.pack(">I", 2) + SIP, "loop", 4),
    ],
)
def test_every_truncated_header_names_its_length(
    parser: Callable[[bytes], tuple[int, int]], frame: bytes, layer: str, size: int
) -> None:
    for n in range(size):
        with pytest.raises(ParseError) as info:
            parser(frame[:n])
        assert str(info.value) == f"{layer}: header truncated ({n} < {size} bytes)"


def test_truncated_vlan_tag() -> None:
    frame = ether(SIP, tags=(0x8100,))
    with pytest.raises(ParseError, match=r"^vlan: header truncated \(2 < 4 bytes\)$"):
        parse_ethernet(frame[:16])


def test_raw_frames_need_an_ip_version() -> None:
    with pytest.raises(ParseError, match="^raw: empty frame$"):
        parse_raw(b"")
    with pytest.raises(ParseError, match=r"^raw: bad IP version \(5\)$"):
        parse_raw(b"\x50" + SIP[1:])


def test_udp_inside_ipv6_raw_frame() -> None:
    packet = ipv6(17, udp(5060, 5062, b"OPTIONS sip:x SIP/2.0\r\n\r\n"))
    (got,) = NetDecoder(Counter()).feed(Frame(2.0, 229, packet))
    assert (got.sport, got.dport, got.payload) == (5060, 5062, b"OPTIONS sip:x SIP/2.0\r\n\r\n")
