"""RTP fixed header parsing (RFC 3550 section 5.1) and RTCP recognition (RFC 5761 section 4).

Only bytes in, values out: no state. ``parse_rtp`` raises :class:`ParseError` with a stable message for
anything that is not a well-formed RTP version 2 packet.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from recorderd.errors import ParseError

_FIXED = struct.Struct("!BBHII")
_EXT = struct.Struct("!HH")


@dataclass(frozen=True, slots=True)
class RtpPacket:
    pt: int
    marker: bool
    seq: int
    ts: int
    ssrc: int
    payload: bytes


def is_rtcp(data: bytes) -> bool:
    """RFC 5761 4: with RTP and RTCP on one port, RTCP packet types 192-223 tell them apart."""
    return len(data) >= 2 and data[0] >> 6 == 2 and 192 <= data[1] <= 223


def parse_rtp(data: bytes) -> RtpPacket:
    if len(data) < 12:
        raise ParseError(f"rtp: header truncated ({len(data)} < 12 bytes)")
    b0, b1, seq, ts, ssrc = _FIXED.unpack_from(data)
    if b0 >> 6 != 2:
        raise ParseError(f"rtp: version {b0 >> 6} is not 2")
    start = 12 + 4 * (b0 & 0x0F)
    if len(data) < start:
        raise ParseError("rtp: truncated CSRC list")
    if b0 & 0x10:
        if len(data) < start + 4:
            raise ParseError("rtp: truncated header extension")
        _, words = _EXT.unpack_from(data, start)
        start += 4 + 4 * words
        if len(data) < start:
            raise ParseError("rtp: truncated header extension")
    end = len(data)
    if b0 & 0x20:
        padding = data[-1]
        if padding == 0 or end - padding < start:
            raise ParseError("rtp: bad padding length")
        end -= padding
    return RtpPacket(b1 & 0x7F, bool(b1 & 0x80), seq, ts, ssrc, bytes(data[start:end]))
