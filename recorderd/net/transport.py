"""UDP (RFC 768) and TCP (RFC 9293 section 3.1) headers.

Like the IP parsers, these read a header in place: ``data[start:end]`` is the IP payload, and the result
says where the transport payload lies. Checksums are not verified (a zero UDP checksum, legal in IPv4,
is therefore fine too): the recorder sees the traffic after the fact and cannot ask for a resend.
"""

from __future__ import annotations

import struct

from recorderd.errors import ParseError

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04

_UDP = struct.Struct("!HHH")  # source port, destination port, length
_TCP = struct.Struct("!HHI4xH")  # ports, sequence number, data offset + flags


def parse_udp(data: bytes, start: int = 0, end: int | None = None) -> tuple[int, int, int, int]:
    """``(sport, dport, payload_start, payload_end)``; the UDP length field bounds the payload."""
    if end is None:
        end = len(data)
    have = end - start
    if have < 8:
        raise ParseError(f"udp: header truncated ({have} < 8 bytes)")
    sport, dport, length = _UDP.unpack_from(data, start)
    if length == 0:
        length = have  # an IPv6 jumbogram's UDP length (RFC 2675 section 4); take the IP length
    elif length < 8:
        raise ParseError(f"udp: bad length ({length} < 8 bytes)")
    elif length > have:
        raise ParseError(f"udp: truncated ({have} < {length} bytes)")
    return sport, dport, start + 8, start + length


def parse_tcp(data: bytes, start: int = 0, end: int | None = None) -> tuple[int, int, int, int, int, int]:
    """``(sport, dport, seq, flags, payload_start, payload_end)``; options are skipped."""
    if end is None:
        end = len(data)
    have = end - start
    if have < 20:
        raise ParseError(f"tcp: header truncated ({have} < 20 bytes)")
    sport, dport, seq, offset_flags = _TCP.unpack_from(data, start)
    header = (offset_flags >> 12) * 4
    if header < 20:
        raise ParseError(f"tcp: bad header length ({header} < 20 bytes)")
    if header > have:
        raise ParseError(f"tcp: header truncated ({have} < {header} bytes)")
    return sport, dport, seq, offset_flags & 0x3F, start + header, end
