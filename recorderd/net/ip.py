"""IPv4 (RFC 791 section 3.1) and IPv6 (RFC 8200 sections 3-4) headers.

The parsers walk a header in place, inside the captured frame, and return where the upper-layer payload
lies (``start``/``end`` offsets into the same bytes) instead of slicing it out: the payload is usually
sliced once, by the transport layer. ``end`` honours the IP length field, so Ethernet padding after a
short packet is ignored; a frame shorter than that length was cut by the capture's snap length and is
refused as truncated. Header checksums are not verified: a mirror port shows what the phones received,
and a bad checksum there is rare and harmless to a recorder.

IPv6 extension headers (section 4) are skipped: Hop-by-Hop Options (0), Routing (43), Destination
Options (60) and the Authentication Header (RFC 4302, 51). The walk stops at a Fragment header (44),
since what follows it is in the fragmentable part and exists whole only after reassembly, and at ESP
(RFC 4303, 50), whose payload is encrypted.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from recorderd.errors import ParseError

PROTO_HOPOPTS = 0
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ROUTING = 43
PROTO_FRAGMENT = 44
PROTO_ESP = 50
PROTO_AH = 51
PROTO_NONE = 59
PROTO_DSTOPTS = 60

NOT_FRAGMENT = -1  # IPPacket.frag_id of a packet that is not a fragment
MAX_EXTENSION_HEADERS = 8

_IPV4 = struct.Struct("!BxHHHxB2x4s4s")  # ver/ihl, total length, id, flags/offset, proto, src, dst
_IPV6 = struct.Struct("!B3xHB1x16s16s")  # version/class, payload length, next header, src, dst
_FRAGMENT6 = struct.Struct("!BxHI")  # next header, offset/flags, identification
_IPV4_MF = 0x2000
_IPV4_OFFSET = 0x1FFF


class IPPacket(NamedTuple):
    """An IP header walked in place; ``start:end`` is the upper-layer payload inside the frame."""

    src: bytes
    dst: bytes
    proto: int
    start: int
    end: int
    frag_id: int  # NOT_FRAGMENT, or the identification shared by the fragments of one datagram
    frag_offset: int  # in bytes
    more_fragments: bool


def parse_ipv4(data: bytes, off: int = 0) -> IPPacket:
    """The IPv4 header at ``off``; options are skipped by the IHL."""
    have = len(data) - off
    if have < 20:
        raise ParseError(f"ipv4: header truncated ({have} < 20 bytes)")
    vihl, total, ident, frag, proto, src, dst = _IPV4.unpack_from(data, off)
    if vihl >> 4 != 4:
        raise ParseError(f"ipv4: bad version ({vihl >> 4})")
    hlen = (vihl & 0x0F) * 4
    if hlen < 20:
        raise ParseError(f"ipv4: bad header length ({hlen} < 20 bytes)")
    if total < hlen:
        raise ParseError(f"ipv4: bad total length ({total} < {hlen} bytes)")
    if total > have:
        raise ParseError(f"ipv4: truncated ({have} < {total} bytes)")
    frag_offset = (frag & _IPV4_OFFSET) * 8
    more = bool(frag & _IPV4_MF)
    frag_id = ident if more or frag_offset else NOT_FRAGMENT
    return IPPacket(src, dst, proto, off + hlen, off + total, frag_id, frag_offset, more)


def parse_ipv6(data: bytes, off: int = 0) -> IPPacket:
    """The IPv6 header at ``off`` and its extension headers, up to the upper layer or a fragment."""
    have = len(data) - off
    if have < 40:
        raise ParseError(f"ipv6: header truncated ({have} < 40 bytes)")
    vtc, length, next_header, src, dst = _IPV6.unpack_from(data, off)
    if vtc >> 4 != 6:
        raise ParseError(f"ipv6: bad version ({vtc >> 4})")
    if length == 0 and next_header == PROTO_HOPOPTS:
        raise ParseError("ipv6: jumbogram unsupported")  # RFC 2675; never seen on a voice LAN
    if 40 + length > have:
        raise ParseError(f"ipv6: truncated ({have} < {40 + length} bytes)")
    end = off + 40 + length
    proto, start, frag_id, frag_offset, more = walk_ipv6_extensions(data, next_header, off + 40, end)
    return IPPacket(src, dst, proto, start, end, frag_id, frag_offset, more)


def walk_ipv6_extensions(
    data: bytes, next_header: int, pos: int, end: int
) -> tuple[int, int, int, int, bool]:
    """Skip extension headers from ``pos``: ``(proto, payload start, frag_id, frag_offset, more)``.

    Also used on a reassembled fragmentable part, which may begin with Destination Options.
    """
    for _ in range(MAX_EXTENSION_HEADERS):
        if next_header in (PROTO_HOPOPTS, PROTO_ROUTING, PROTO_DSTOPTS, PROTO_AH):
            if end - pos < 2:
                raise ParseError(f"ipv6: extension header truncated ({end - pos} < 2 bytes)")
            # RFC 8200 counts these in 8-octet units beyond the first 8; RFC 4302 counts AH in
            # 4-octet units beyond the first 8.
            if next_header == PROTO_AH:
                size = (data[pos + 1] + 2) * 4
            else:
                size = (data[pos + 1] + 1) * 8
            if end - pos < size:
                raise ParseError(f"ipv6: extension header truncated ({end - pos} < {size} bytes)")
            next_header = data[pos]
            pos += size
        elif next_header == PROTO_FRAGMENT:
            if end - pos < 8:
                raise ParseError(f"ipv6: fragment header truncated ({end - pos} < 8 bytes)")
            next_header, offset_flags, ident = _FRAGMENT6.unpack_from(data, pos)
            pos += 8
            frag_offset = offset_flags & 0xFFF8
            more = bool(offset_flags & 1)
            if frag_offset or more:
                return next_header, pos, ident, frag_offset, more
            # An atomic fragment (RFC 6946) is a whole datagram: keep walking.
        else:
            return next_header, pos, NOT_FRAGMENT, 0, False
    raise ParseError(f"ipv6: too many extension headers (> {MAX_EXTENSION_HEADERS})")
