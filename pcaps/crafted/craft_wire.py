"""Wire framing for the crafted captures: IPv4/IPv6/UDP/TCP with scapy, fragmentation, link layers.

Everything here turns already-decided content into bytes; nothing is sent anywhere. Each frame
carries its link-layer fields explicitly (MAC addresses derived from the IP address, VLAN tags,
Linux cooked packet type), so scapy never needs ARP, routing tables or an interface.

Follows RFC 791 section 3.2 (IPv4 fragmentation: 8-byte offsets, MF flag), RFC 8200 sections 4.1 and
4.5 (IPv6 extension header order; the unfragmentable part is the IPv6 header plus Hop-by-Hop
options, the fragmentable part starts with the final Destination Options header), RFC 768 and RFC
9293 (UDP and TCP headers; scapy computes the checksums over the proper pseudo-headers), IEEE
802.1Q/802.1ad (customer tag 0x8100 inside service tag 0x88a8), and the tcpdump.org LINKTYPE_*
definitions (ETHERNET 1, NULL 0, RAW 101, LINUX_SLL 113, LINUX_SLL2 276).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import (
    HBHOptUnknown,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    PadN,
)
from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Ether
from scapy.packet import Raw
from scapy.utils import PcapWriter

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
TPID_8021Q = 0x8100
TPID_8021AD = 0x88A8
AF_INET = 2  # BSD loopback header value for IPv4 on every platform

# Linux packet types (linux/if_packet.h) as they appear in cooked captures taken on the PBX host.
PACKET_HOST = 0
PACKET_OUTGOING = 4

# DSCP in the IPv4 TOS / IPv6 traffic class byte, as phones mark them (RFC 4594): EF for voice.
TOS_VOICE = 0xB8
TOS_SIGNALLING = 0x60

MTU = 1500

# An option type from the RFC 4727 experimental range whose two high bits say "skip if unknown".
EXPERIMENTAL_OPTION = 0x1E


@dataclass(frozen=True, slots=True)
class Endpoint:
    ip: str
    port: int

    def __str__(self) -> str:
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"


@dataclass(frozen=True, slots=True)
class Tag:
    """One VLAN tag as written on the wire: TPID, priority code point and VLAN id."""

    tpid: int
    vid: int
    pcp: int = 0


@dataclass(frozen=True, slots=True)
class Frame:
    """One capture record before its link layer: time, IP packet bytes, and link-layer choices."""

    t_us: int
    l3: bytes
    src_ip: str
    dst_ip: str
    tags: tuple[Tag, ...] = ()
    outgoing: bool = False  # sent by the capturing host (Linux cooked captures only)


def mac_of(ip: str) -> str:
    """A stable locally administered unicast MAC for ``ip`` (02:xx:..), so nothing ever ARPs."""
    digest = hashlib.sha256(ip.encode()).digest()
    return "02:" + ":".join(f"{b:02x}" for b in digest[:5])


def is_v6(ip: str) -> bool:
    return ":" in ip


# -------------------------------------------------------------------------------------------------
# IP and transport


def udp_packet(
    src: Endpoint, dst: Endpoint, payload: bytes, ip_id: int, tos: int = 0, flow: int = 0
) -> bytes:
    """A whole IPv4 or IPv6 UDP packet with correct length and checksum fields."""
    udp = UDP(sport=src.port, dport=dst.port) / Raw(payload)
    if is_v6(src.ip):
        return bytes(IPv6(src=src.ip, dst=dst.ip, tc=tos, fl=flow, hlim=64) / udp)
    return bytes(IP(src=src.ip, dst=dst.ip, id=ip_id, tos=tos, ttl=64) / udp)


def tcp_packet(
    src: Endpoint,
    dst: Endpoint,
    seq: int,
    ack: int,
    flags: str,
    payload: bytes,
    ip_id: int,
    window: int = 502,
) -> bytes:
    """One IPv4 TCP segment; SYNs carry the options Linux sends (MSS, SACK-permitted, WS)."""
    options: list[tuple[str, object]] = []
    if "S" in flags:
        options = [("MSS", 1460), ("NOP", None), ("NOP", None), ("SAckOK", b""), ("NOP", None)]
        options.append(("WScale", 7))
    segment = TCP(
        sport=src.port,
        dport=dst.port,
        seq=seq,
        ack=ack if "A" in flags else 0,
        flags=flags,
        window=64240 if "S" in flags else window,
        options=options,
    )
    if payload:
        segment = segment / Raw(payload)
    return bytes(IP(src=src.ip, dst=dst.ip, id=ip_id, tos=TOS_SIGNALLING, ttl=64) / segment)


def ipv4_fragments(packet: bytes, mtu: int = MTU) -> list[bytes]:
    """Split a whole IPv4 packet (no options) into RFC 791 fragments, first to last."""
    head = IP(packet)
    data = packet[20:]
    size = (mtu - 20) // 8 * 8
    out = []
    for off in range(0, len(data), size):
        more = off + size < len(data)
        frag = IP(
            src=head.src,
            dst=head.dst,
            id=head.id,
            tos=head.tos,
            ttl=head.ttl,
            proto=head.proto,
            flags="MF" if more else 0,
            frag=off // 8,
        ) / Raw(data[off : off + size])
        out.append(bytes(frag))
    return out


def ipv6_udp_with_options(src: Endpoint, dst: Endpoint, payload: bytes, tos: int = 0, flow: int = 0) -> bytes:
    """A whole IPv6 UDP packet carrying a Hop-by-Hop header (PadN) and a Destination Options header.

    The Destination Options header holds one RFC 4727 experimental option, so a parser has to walk
    it by its length field rather than by knowing the option.
    """
    pkt = (
        IPv6(src=src.ip, dst=dst.ip, tc=tos, fl=flow, hlim=64)
        / IPv6ExtHdrHopByHop(options=[PadN(optdata=b"\x00\x00\x00\x00")])
        / IPv6ExtHdrDestOpt(options=[HBHOptUnknown(otype=EXPERIMENTAL_OPTION, optdata=b"crafted")])
        / UDP(sport=src.port, dport=dst.port)
        / Raw(payload)
    )
    return bytes(pkt)


def ipv6_fragments(packet: bytes, frag_id: int, mtu: int = MTU) -> list[bytes]:
    """Fragment an IPv6 packet whose only unfragmentable extension is a Hop-by-Hop header.

    Every fragment repeats the IPv6 header and the Hop-by-Hop header (RFC 8200 section 4.5); the
    Destination Options header, the UDP header and the payload are the fragmentable part.
    """
    full = IPv6(packet)
    hbh = full[IPv6ExtHdrHopByHop]
    hbh_len = (hbh.len + 1) * 8
    first_nh = hbh.nh
    fragmentable = packet[40 + hbh_len :]
    size = (mtu - 40 - hbh_len - 8) // 8 * 8
    out = []
    for off in range(0, len(fragmentable), size):
        more = off + size < len(fragmentable)
        frag = (
            IPv6(src=full.src, dst=full.dst, tc=full.tc, fl=full.fl, hlim=full.hlim, nh=0)
            / IPv6ExtHdrHopByHop(nh=44, options=hbh.options)
            / IPv6ExtHdrFragment(nh=first_nh, offset=off // 8, m=int(more), id=frag_id)
            / Raw(fragmentable[off : off + size])
        )
        out.append(bytes(frag))
    return out


# -------------------------------------------------------------------------------------------------
# Link layers


def _ethertype(l3: bytes) -> int:
    return ETH_IPV6 if l3[0] >> 4 == 6 else ETH_IPV4


def ethernet(frame: Frame) -> bytes:
    """Ethernet II with the frame's VLAN tag stack, outermost first."""
    etype = _ethertype(frame.l3)
    first = frame.tags[0].tpid if frame.tags else etype
    pkt = Ether(src=mac_of(frame.src_ip), dst=mac_of(frame.dst_ip), type=first)
    for i, tag in enumerate(frame.tags):
        inner = frame.tags[i + 1].tpid if i + 1 < len(frame.tags) else etype
        layer = Dot1AD if tag.tpid == TPID_8021AD else Dot1Q
        pkt = pkt / layer(prio=tag.pcp, vlan=tag.vid, type=inner)
    return bytes(pkt) + frame.l3


def _cooked_src(frame: Frame) -> bytes:
    return bytes.fromhex(mac_of(frame.src_ip).replace(":", "")) + b"\x00\x00"


def linux_sll(frame: Frame) -> bytes:
    """LINKTYPE_LINUX_SLL: the 16-byte cooked header of ``tcpdump -i any`` (before libpcap 1.10)."""
    head = CookedLinux(
        pkttype=PACKET_OUTGOING if frame.outgoing else PACKET_HOST,
        lladdrtype=1,
        lladdrlen=6,
        src=_cooked_src(frame),
        proto=_ethertype(frame.l3),
    )
    return bytes(head) + frame.l3


def linux_sll2(frame: Frame) -> bytes:
    """LINKTYPE_LINUX_SLL2: the 20-byte cooked header (protocol first, interface index included)."""
    head = CookedLinuxV2(
        proto=_ethertype(frame.l3),
        reserved=0,
        ifindex=2,
        lladdrtype=1,
        pkttype=PACKET_OUTGOING if frame.outgoing else PACKET_HOST,
        lladdrlen=6,
        src=_cooked_src(frame),
    )
    return bytes(head) + frame.l3


def bsd_null(frame: Frame) -> bytes:
    """LINKTYPE_NULL: a 4-byte address family in the capturing host's order (little-endian here)."""
    return struct.pack("<I", AF_INET) + frame.l3


def raw_ip(frame: Frame) -> bytes:
    return frame.l3


LINK_ENCODERS = {
    LINKTYPE_ETHERNET: ethernet,
    LINKTYPE_LINUX_SLL: linux_sll,
    LINKTYPE_LINUX_SLL2: linux_sll2,
    LINKTYPE_NULL: bsd_null,
    LINKTYPE_RAW: raw_ip,
}


def write_pcap(path: str, linktype: int, frames: Iterable[Frame]) -> int:
    """Write classic little-endian microsecond pcap; returns the number of records written."""
    encode = LINK_ENCODERS[linktype]
    writer = PcapWriter(path, linktype=linktype, endianness="<", sync=False)
    # scapy only keeps a truthy linktype (LINKTYPE_NULL is 0), and writes the file header lazily.
    writer.linktype = linktype
    writer.write_header(None)
    count = 0
    try:
        for frame in frames:
            sec, usec = divmod(frame.t_us, 1_000_000)
            writer.write_packet(encode(frame), sec=sec, usec=usec)
            count += 1
        if count == 0:
            raise ValueError(f"{path}: no frames")
    finally:
        writer.close()
    return count
