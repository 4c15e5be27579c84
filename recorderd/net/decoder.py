"""The network stage: captured frames in, UDP payloads and framed SIP-over-TCP messages out.

:class:`NetDecoder` is the one entry point the engine uses. Each frame goes through the link layer
(:mod:`recorderd.net.link`), IPv4 or IPv6 (:mod:`recorderd.net.ip`), fragment reassembly
(:mod:`recorderd.net.frag`) and UDP or TCP (:mod:`recorderd.net.transport`, :mod:`recorderd.net.tcp`).

Almost every frame on a voice network is RTP: UDP in an option-less, unfragmented IPv4 packet in an
Ethernet frame, untagged or with one 802.1Q tag. :meth:`NetDecoder.feed` checks for exactly that shape
with one precompiled ``struct`` read and builds the :class:`Datagram` directly; every other frame takes
the general path, which gives the same result for that shape (the tests hold the two paths to it).

Malformed input never raises out of :meth:`NetDecoder.feed`: a :class:`ParseError` is counted under
``net.drop.<layer>.<reason>`` and the frame is dropped. Frames that are well formed but of no interest
are counted too (``net.link.non_ip``, ``net.ip.other_proto``). Tables are bounded by :class:`NetLimits`
and aged by :meth:`NetDecoder.expire`, which the caller drives with capture timestamps.
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass

from recorderd.errors import ParseError
from recorderd.events import Datagram, Frame, Transport
from recorderd.net.drops import drop_key
from recorderd.net.frag import Reassembler
from recorderd.net.ip import (
    NOT_FRAGMENT,
    PROTO_TCP,
    PROTO_UDP,
    IPPacket,
    parse_ipv4,
    parse_ipv6,
    walk_ipv6_extensions,
)
from recorderd.net.link import ETHERTYPE_IPV4, ETHERTYPE_IPV6, LINKTYPE_ETHERNET, parse_link
from recorderd.net.tcp import TcpReassembler
from recorderd.net.transport import parse_tcp, parse_udp

# Ethernet type .. UDP length, read from offset 12: EtherType; IPv4 version/IHL, total length, flags and
# fragment offset, protocol, source, destination; UDP ports and length.
_ETH_IPV4_UDP = struct.Struct("!HBxH2xHxB2x4s4sHHH")
_UDP = Transport.UDP


@dataclass(frozen=True, slots=True)
class NetLimits:
    """Bounds on the state the network stage may hold."""

    frag_sets: int = 1024  # datagrams being reassembled at once
    frag_bytes: int = 16 * 1024 * 1024  # fragment payload held in total
    frag_fragments: int = 128  # fragments per datagram
    frag_timeout: float = 30.0  # seconds from a datagram's first fragment
    tcp_flows: int = 1024  # SIP flows followed (one direction of a connection each)
    tcp_syn_flows: int = 256  # opened flows that have not sent data yet
    tcp_pending: int = 64  # out-of-order segments queued per flow
    tcp_gap_timeout: float = 1.0  # seconds to wait for a missing segment before skipping it
    tcp_flow_buffer: int = 256 * 1024  # bytes held per flow (also the largest SIP message)
    tcp_idle_timeout: float = 900.0
    sip_max_header: int = 64 * 1024


class NetDecoder:
    """Frames to datagrams. Pure and synchronous; the capture timestamp is its only clock."""

    def __init__(self, counters: Counter[str], *, limits: NetLimits | None = None) -> None:
        limits = limits or NetLimits()
        self.limits = limits
        self._counters = counters
        self._frags = Reassembler(
            counters,
            max_sets=limits.frag_sets,
            max_bytes=limits.frag_bytes,
            max_fragments=limits.frag_fragments,
            timeout=limits.frag_timeout,
        )
        self._tcp = TcpReassembler(
            counters,
            max_flows=limits.tcp_flows,
            max_syn_flows=limits.tcp_syn_flows,
            max_pending=limits.tcp_pending,
            gap_timeout=limits.tcp_gap_timeout,
            buffer_cap=limits.tcp_flow_buffer,
            max_header=limits.sip_max_header,
            idle_timeout=limits.tcp_idle_timeout,
        )

    @property
    def fragment_sets(self) -> int:
        return len(self._frags)

    @property
    def fragment_bytes(self) -> int:
        return self._frags.held_bytes

    @property
    def tcp_flows(self) -> int:
        return len(self._tcp)

    @property
    def tcp_syn_flows(self) -> int:
        return self._tcp.syn_flows

    @property
    def tcp_buffered_bytes(self) -> int:
        return self._tcp.buffered_bytes

    def feed(self, frame: Frame) -> list[Datagram]:
        """The datagrams a frame yields: usually one UDP payload, none, or SIP messages over TCP."""
        data = frame.data
        if frame.linktype == LINKTYPE_ETHERNET and len(data) >= 42:
            off = 12  # where the EtherType is
            fields = _ETH_IPV4_UDP.unpack_from(data, off)
            if fields[0] == 0x8100 and len(data) >= 46:  # one 802.1Q tag, as mirror ports often add
                off = 16
                fields = _ETH_IPV4_UDP.unpack_from(data, off)
            etype, vihl, total, frag, proto, src, dst, sport, dport, length = fields
            if (
                etype == 0x0800
                and vihl == 0x45
                and proto == 17
                and not frag & 0x3FFF
                and 8 <= length <= total - 20
                and total + off + 2 <= len(data)
            ):
                payload = data[off + 30 : off + 22 + length]
                return [Datagram(frame.ts, _UDP, src, sport, dst, dport, payload)]
        try:
            return self._decode(frame)
        except ParseError as err:
            self._counters[drop_key(err)] += 1
            return []

    def expire(self, now: float) -> None:
        """Drop fragments and TCP flows that have waited too long, by capture time ``now``."""
        self._frags.expire(now)
        self._tcp.expire(now)

    def _decode(self, frame: Frame) -> list[Datagram]:
        """The general path: any supported link type, IPv6, options, fragments, TCP."""
        data = frame.data
        ethertype, off = parse_link(frame.linktype, data)
        packet: IPPacket
        if ethertype == ETHERTYPE_IPV4:
            packet = parse_ipv4(data, off)
        elif ethertype == ETHERTYPE_IPV6:
            packet = parse_ipv6(data, off)
        else:
            self._counters["net.link.non_ip"] += 1
            return []
        src, dst, proto, start, end, frag_id, frag_offset, more = packet
        if frag_id != NOT_FRAGMENT:
            key = (src, dst, proto, frag_id)
            whole = self._frags.add(key, frag_offset, more, data[start:end], frame.ts)
            if whole is None:
                return []
            data, start, end = whole, 0, len(whole)
            if ethertype == ETHERTYPE_IPV6:
                # Extension headers after the Fragment header travel in the first fragment.
                proto, start, frag_id, _, _ = walk_ipv6_extensions(data, proto, 0, end)
                if frag_id != NOT_FRAGMENT:
                    raise ParseError("ipv6: nested fragment header")
        if proto == PROTO_UDP:
            sport, dport, start, end = parse_udp(data, start, end)
            return [Datagram(frame.ts, _UDP, src, sport, dst, dport, data[start:end])]
        if proto == PROTO_TCP:
            sport, dport, seq, flags, start, end = parse_tcp(data, start, end)
            return self._tcp.segment(frame.ts, src, sport, dst, dport, seq, flags, data[start:end])
        self._counters["net.ip.other_proto"] += 1
        return []
