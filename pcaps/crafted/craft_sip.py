"""SIP messages and SDP bodies for the crafted captures.

Messages follow RFC 3261: section 7 (start line, headers, CRLF, Content-Length always present),
8.1.1 (Via with a z9hG4bK branch, Max-Forwards, From tag, Call-ID, CSeq, Contact), 8.2.6 (responses
copy Via, From, Call-ID and CSeq; the UAS adds its To tag from the first 1xx that creates the early
dialog), 9.1 (CANCEL: same branch and CSeq number as the INVITE, To without tag), 17.1.1.3 (ACK of a
non-2xx final response: same branch as the INVITE), 13.2.2.4 (ACK of a 2xx: new transaction, new
branch), 12.2 (in-dialog requests use the remote Contact as Request-URI and both tags), 22.4 (digest
Proxy-Authorization as in RFC 2617 section 3.2.2 with qop=auth). REFER/NOTIFY follow RFC 3515 and
Replaces RFC 3891. SDP follows RFC 4566 section 5 (v, o, s, c, t, m, a lines in that order) and the
offer/answer rules of RFC 3264 sections 6 and 8 (the answer keeps the m-line, the direction mirrors
the offer, a re-offer increments the o= version).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from random import Random

CRLF = "\r\n"
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, REFER, NOTIFY, UPDATE, INFO"

RTPMAP = {
    "PCMU": (0, "PCMU/8000"),
    "PCMA": (8, "PCMA/8000"),
    "G722": (9, "G722/8000"),
    "CN": (13, "CN/8000"),
    "telephone-event": (101, "telephone-event/8000"),
    # Dynamic types a softphone offers besides G.711; only the IPv6 scenario's offer lists them.
    "opus": (96, "opus/48000/2"),
    "iLBC": (97, "iLBC/8000"),
    "speex-wb": (98, "speex/16000"),
    "speex": (99, "speex/8000"),
    "AMR-WB": (100, "AMR-WB/16000"),
    "G729": (18, "G729/8000"),
    "GSM": (3, "GSM/8000"),
}

REASONS = {
    100: "Trying",
    180: "Ringing",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    407: "Proxy Authentication Required",
    486: "Busy Here",
    487: "Request Terminated",
}


def token(rng: Random, n: int) -> str:
    """``n`` lower-case hex digits from the scenario's seeded generator."""
    return f"{rng.getrandbits(4 * n):0{n}x}"


def hostport(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


@dataclass
class Message:
    """A SIP request or response: start line, ordered headers, body. Content-Length is computed."""

    start: str
    headers: list[tuple[str, str]]
    body: bytes = b""

    def header(self, name: str) -> str:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        raise KeyError(name)

    @property
    def first_word(self) -> str:
        """The method of a request, or the status code of a response, as a string."""
        parts = self.start.split(" ")
        return parts[1] if parts[0] == "SIP/2.0" else parts[0]

    @property
    def is_request(self) -> bool:
        return not self.start.startswith("SIP/2.0 ")

    def render(self) -> bytes:
        lines = [self.start] + [f"{k}: {v}" for k, v in self.headers]
        lines.append(f"Content-Length: {len(self.body)}")
        return (CRLF.join(lines) + CRLF + CRLF).encode() + self.body


@dataclass(frozen=True)
class UA:
    """A SIP user agent: its AOR user, display name, signalling address and User-Agent string."""

    user: str
    display: str
    ip: str
    port: int
    domain: str
    agent: str
    transport: str = "UDP"

    @property
    def aor(self) -> str:
        return f"sip:{self.user}@{self.domain}"

    @property
    def contact_uri(self) -> str:
        suffix = ";transport=tcp" if self.transport == "TCP" else ""
        return f"sip:{self.user}@{hostport(self.ip, self.port)}{suffix}"

    def name_addr(self, uri: str | None = None) -> str:
        uri = uri or self.aor
        return f'"{self.display}" <{uri}>' if self.display else f"<{uri}>"


@dataclass
class Dialog:
    """One INVITE dialog between ``caller`` and ``callee``, building its messages in order."""

    rng: Random
    caller: UA
    callee: UA
    call_id: str = ""
    from_tag: str = ""
    to_tag: str = ""
    cseq: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.call_id:
            self.call_id = f"{token(self.rng, 24)}@{self.caller.domain}"
        self.from_tag = self.from_tag or token(self.rng, 10)
        self.to_tag = self.to_tag or token(self.rng, 10)
        self.cseq = {"caller": self.rng.randrange(1, 200), "callee": self.rng.randrange(1, 200)}

    def _via(self, ua: UA, branch: str) -> str:
        return f"SIP/2.0/{ua.transport} {hostport(ua.ip, ua.port)};branch=z9hG4bK{branch};rport"

    def _ends(self, by_caller: bool, in_dialog: bool) -> tuple[UA, UA, str, str]:
        """(sender, receiver, From, To) header values for a request."""
        me, peer = (self.caller, self.callee) if by_caller else (self.callee, self.caller)
        my_tag, peer_tag = (self.from_tag, self.to_tag) if by_caller else (self.to_tag, self.from_tag)
        from_hdr = f"{me.name_addr()};tag={my_tag}"
        to_hdr = peer.name_addr() + (f";tag={peer_tag}" if in_dialog else "")
        return me, peer, from_hdr, to_hdr

    def request(
        self,
        method: str,
        by_caller: bool = True,
        body: bytes = b"",
        content_type: str = "application/sdp",
        extra: tuple[tuple[str, str], ...] = (),
        cseq: int | None = None,
        branch: str | None = None,
        in_dialog: bool = True,
    ) -> Message:
        """A request; the initial INVITE passes ``in_dialog=False`` (no To tag, AOR as R-URI)."""
        me, peer, from_hdr, to_hdr = self._ends(by_caller, in_dialog)
        side = "caller" if by_caller else "callee"
        if cseq is None:
            self.cseq[side] += 1
            cseq = self.cseq[side]
        ruri = peer.contact_uri if in_dialog else f"sip:{peer.user}@{hostport(peer.ip, peer.port)}"
        headers = [
            ("Via", self._via(me, branch or token(self.rng, 16))),
            ("Max-Forwards", "70"),
            ("From", from_hdr),
            ("To", to_hdr),
            ("Call-ID", self.call_id),
            ("CSeq", f"{cseq} {method}"),
        ]
        if method in ("INVITE", "REFER", "NOTIFY", "SUBSCRIBE", "UPDATE"):
            headers.append(("Contact", f"<{me.contact_uri}>"))
        if method == "INVITE":
            headers += [("Allow", ALLOW), ("Supported", "replaces, timer")]
        headers += list(extra)
        headers.append(("User-Agent", me.agent))
        if body:
            headers.append(("Content-Type", content_type))
        return Message(f"{method} {ruri} SIP/2.0", headers, body)

    def invite(self, body: bytes, extra: tuple[tuple[str, str], ...] = (), content_type: str = "") -> Message:
        """The initial INVITE (out of dialog)."""
        return self.request(
            "INVITE",
            body=body,
            extra=extra,
            in_dialog=False,
            content_type=content_type or "application/sdp",
        )

    def response(
        self,
        req: Message,
        code: int,
        body: bytes = b"",
        tag: bool = True,
        extra: tuple[tuple[str, str], ...] = (),
        content_type: str = "application/sdp",
    ) -> Message:
        """A response to ``req`` from its receiver; ``tag`` adds the responder's To tag."""
        by_caller_req = req.header("From").endswith(f"tag={self.from_tag}")
        responder = self.callee if by_caller_req else self.caller
        to_hdr = req.header("To")
        if tag and ";tag=" not in to_hdr:
            to_hdr += f";tag={self.to_tag}"
        headers = [(k, v) for k, v in req.headers if k == "Via"]
        headers += [
            ("From", req.header("From")),
            ("To", to_hdr),
            ("Call-ID", self.call_id),
            ("CSeq", req.header("CSeq")),
        ]
        cseq_method = req.header("CSeq").split(" ")[1]
        if cseq_method == "INVITE" and 100 < code < 300:
            headers.append(("Contact", f"<{responder.contact_uri}>"))
        if cseq_method == "INVITE" and code == 200:
            headers += [("Allow", ALLOW), ("Supported", "replaces, timer")]
        headers += list(extra)
        headers.append(("Server", responder.agent))
        if body:
            headers.append(("Content-Type", content_type))
        return Message(f"SIP/2.0 {code} {REASONS[code]}", headers, body)

    def ack_non2xx(self, invite: Message) -> Message:
        """ACK of a 3xx-6xx final response: the INVITE's branch, R-URI and CSeq number."""
        branch = invite.header("Via").split(";branch=z9hG4bK")[1].split(";")[0]
        cseq = int(invite.header("CSeq").split(" ")[0])
        ack = self.request("ACK", cseq=cseq, branch=branch)
        ack.start = f"ACK {invite.start.split(' ')[1]} SIP/2.0"
        return ack

    def ack_2xx(self, invite: Message) -> Message:
        """ACK of a 2xx: a new transaction (new branch) with the INVITE's CSeq number."""
        cseq = int(invite.header("CSeq").split(" ")[0])
        return self.request("ACK", cseq=cseq)

    def cancel(self, invite: Message) -> Message:
        """CANCEL of a pending INVITE: same R-URI, branch and CSeq number, no To tag."""
        branch = invite.header("Via").split(";branch=z9hG4bK")[1].split(";")[0]
        cseq = int(invite.header("CSeq").split(" ")[0])
        msg = self.request("CANCEL", cseq=cseq, branch=branch, in_dialog=False)
        msg.start = f"CANCEL {invite.start.split(' ')[1]} SIP/2.0"
        return msg


def sdp(
    ip: str,
    port: int,
    session_id: int,
    version: int,
    codecs: tuple[str, ...],
    direction: str = "sendrecv",
    extra: tuple[str, ...] = (),
    username: str = "-",
) -> bytes:
    """An SDP body with one audio m-line; ``codecs`` in preference order (RTPMAP names)."""
    family = "IP6" if ":" in ip else "IP4"
    pts = [RTPMAP[c][0] for c in codecs]
    lines = [
        "v=0",
        f"o={username} {session_id} {version} IN {family} {ip}",
        "s=-",
        f"c=IN {family} {ip}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {' '.join(str(p) for p in pts)}",
    ]
    for codec in codecs:
        pt, mapping = RTPMAP[codec]
        lines.append(f"a=rtpmap:{pt} {mapping}")
        if codec == "telephone-event":
            lines.append(f"a=fmtp:{pt} 0-16")
    lines += ["a=ptime:20", *extra, f"a={direction}"]
    return (CRLF.join(lines) + CRLF).encode()


def digest_response(
    user: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    cnonce: str,
    nc: str = "00000001",
) -> str:
    """RFC 2617 section 3.2.2.1 request-digest with qop=auth and MD5."""

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    ha1 = md5(f"{user}:{realm}:{password}")
    ha2 = md5(f"{method}:{uri}")
    return md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
