"""SIP messages and SDP bodies for the benchmark captures' calls.

Requests and responses follow RFC 3261: section 7 (start line, headers, CRLF, Content-Length always
present), 8.1.1 (Via with a z9hG4bK branch, Max-Forwards, From tag, Call-ID, CSeq, Contact), 8.2.6
(responses copy Via, From, Call-ID and CSeq; the callee adds its To tag from 180 on), 13.2.2.4 (the ACK
of a 2xx is a new transaction with its own branch) and 12.2.1.1 (a BYE from the callee swaps From and
To). SDP follows RFC 4566 section 5 line order and the offer/answer of RFC 3264 section 6: one audio
stream, the one G.711 codec offered and answered, telephone-event beside it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from bench.wire import PCMA, PCMU

PBX_SIP = "10.0.0.10"
SIP_PORT = 5060
_ENCODINGS = {PCMU: "PCMU/8000", PCMA: "PCMA/8000"}


@dataclass(frozen=True, slots=True)
class Party:
    user: str
    display: str
    ip: bytes
    rtp_port: int

    @property
    def host(self) -> str:
        return str(ipaddress.IPv4Address(self.ip))

    @property
    def contact(self) -> str:
        return f"<sip:{self.user}@{self.host}:{SIP_PORT}>"

    @property
    def name_addr(self) -> str:
        """The From/To value (RFC 3261 section 20.20): an address of record on the PBX's domain."""
        uri = f"<sip:{self.user}@{PBX_SIP}>"
        return f'"{self.display}" {uri}' if self.display else uri


def sdp(party: Party, session: int, pt: int) -> bytes:
    """An SDP offer or answer (RFC 4566 section 5 line order) for one G.711 audio stream."""
    host = party.host
    return (
        f"v=0\r\no=- {session} {session} IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
        f"m=audio {party.rtp_port} RTP/AVP {pt} 101\r\na=rtpmap:{pt} {_ENCODINGS[pt]}\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
    ).encode()


@dataclass(frozen=True, slots=True)
class Dialog:
    """The identifiers shared by every message of one call (RFC 3261 section 12)."""

    call_id: str
    caller: Party
    callee: Party
    from_tag: str
    to_tag: str
    invite_branch: str
    session: int
    pt: int


def _message(start: str, headers: list[str], body: bytes = b"") -> bytes:
    content = ["Content-Type: application/sdp"] if body else []
    lines = [start, *headers, *content, f"Content-Length: {len(body)}", "", ""]
    return "\r\n".join(lines).encode() + body


def _common(d: Dialog, via: Party, branch: str, cseq: str, to_tag: bool) -> list[str]:
    caller, callee = d.caller, d.callee
    return [
        f"Via: SIP/2.0/UDP {via.host}:{SIP_PORT};branch=z9hG4bK{branch};rport",
        f"From: {caller.name_addr};tag={d.from_tag}",
        f"To: {callee.name_addr}" + (f";tag={d.to_tag}" if to_tag else ""),
        f"Call-ID: {d.call_id}",
        f"CSeq: {cseq}",
    ]


def invite(d: Dialog) -> bytes:
    headers = _common(d, d.caller, d.invite_branch, "1 INVITE", False)
    headers[1:1] = ["Max-Forwards: 70"]
    headers += [f"Contact: {d.caller.contact}", "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS"]
    return _message(f"INVITE sip:{d.callee.user}@{PBX_SIP} SIP/2.0", headers, sdp(d.caller, d.session, d.pt))


def response(d: Dialog, status: int, reason: str, cseq: str = "1 INVITE", branch: str = "") -> bytes:
    """A response from the callee to the caller's INVITE (or, with ``cseq``/``branch``, to a BYE)."""
    headers = _common(d, d.caller, branch or d.invite_branch, cseq, status > 100)
    body = b""
    if status == 200 and cseq.endswith("INVITE"):
        headers.append(f"Contact: {d.callee.contact}")
        body = sdp(d.callee, d.session + 1, d.pt)
    return _message(f"SIP/2.0 {status} {reason}", headers, body)


def ack(d: Dialog, branch: str) -> bytes:
    headers = _common(d, d.caller, branch, "1 ACK", True)
    return _message(f"ACK sip:{d.callee.user}@{d.callee.host}:{SIP_PORT} SIP/2.0", headers)


def bye(d: Dialog, branch: str, by_caller: bool) -> tuple[bytes, bytes]:
    """The BYE and its 200 OK. A BYE from the callee swaps From and To (RFC 3261 section 12.2.1.1)."""
    sender, target = (d.caller, d.callee) if by_caller else (d.callee, d.caller)
    headers = _common(d, sender, branch, "2 BYE", True)
    if not by_caller:
        headers[1], headers[2] = headers[2].replace("To:", "From:", 1), headers[1].replace("From:", "To:", 1)
    request = _message(
        f"BYE sip:{target.user}@{target.host}:{SIP_PORT} SIP/2.0", [*headers, "Max-Forwards: 70"]
    )
    return request, _message("SIP/2.0 200 OK", headers)
