"""Minimal Ethernet/IPv4/UDP frames and SIP/RTP payloads for engine unit tests (struct only)."""

from __future__ import annotations

import struct

from recorderd.events import Frame

CALLER = "192.0.2.10"
CALLEE = "192.0.2.20"


def _ip(text: str) -> bytes:
    return bytes(int(x) for x in text.split("."))


def udp_frame(ts: float, src: str, sport: int, dst: str, dport: int, payload: bytes) -> Frame:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, _ip(src), _ip(dst))
    eth = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00"
    return Frame(ts, 1, eth + ip + udp)


def sdp(ip: str, port: int, pt: int, name: str, direction: str = "sendrecv") -> str:
    return (
        f"v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP {pt} 101\r\na=rtpmap:{pt} {name}/8000\r\n"
        f"a=rtpmap:101 telephone-event/8000\r\na={direction}\r\n"
    )


def sip(first: str, call_id: str, cseq: str, *, tagged: bool = True, body: str = "") -> bytes:
    """A SIP message of the call 2001 (tag a1) -> 2002 (tag b2 once ``tagged``)."""
    headers = [
        first,
        f"Via: SIP/2.0/UDP {CALLER}:5060;branch=z9hG4bK{cseq.replace(' ', '')}",
        "From: <sip:2001@clinic.example>;tag=a1",
        "To: <sip:2002@clinic.example>" + (";tag=b2" if tagged else ""),
        f"Call-ID: {call_id}",
        f"CSeq: {cseq}",
        *(["Content-Type: application/sdp"] if body else []),
        f"Content-Length: {len(body.encode())}",
    ]
    return ("\r\n".join(headers) + "\r\n\r\n" + body).encode()


def rtp(seq: int, ts: int, ssrc: int, pt: int, payload: bytes, marker: bool = False) -> bytes:
    return (
        struct.pack("!BBHII", 0x80, pt | (0x80 if marker else 0), seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)
        + payload
    )
