"""Call building blocks shared by the scenarios: parties, the INVITE/answer/BYE exchange, two-way
media, and the ground-truth description of a call (the rows of expected.json).

Times are integer microseconds on the capture clock; every file starts at :data:`EPOCH_US`
(2026-01-05T09:00:00Z). Ringing and answer delays follow RFC 3261 section 13 (INVITE, provisional
responses, 2xx, ACK); media starts once the answer is seen (RFC 3264 section 5.1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeAlias

from craft_capture import Capture, Json, capture_time
from craft_media import (
    PACKET_US,
    SAMPLES_PER_PACKET,
    Impairments,
    RtpPacket,
    RtpSender,
    deliver,
    impair,
    random_sender,
)
from craft_sip import UA, Dialog, Message, sdp
from craft_wire import Endpoint, Tag

EPOCH_US = 1_767_603_600_000_000  # 2026-01-05T09:00:00Z
MS = 1_000
S = 1_000_000
DOMAIN = "clinic.example"
PHONE_AGENT = "CraftPhone/1.4 (recorderd test capture)"
PBX_AGENT = "CraftPBX/2.3 (recorderd test capture)"
CALLER_TONE = 440
CALLEE_TONE = 1000
CALLER_TO_CALLEE = "caller->callee"
CALLEE_TO_CALLER = "callee->caller"

TagChooser: TypeAlias = Callable[[int, RtpPacket], tuple[Tag, ...] | None]


def phone(
    user: str,
    display: str,
    ip: str,
    port: int = 5060,
    agent: str = PHONE_AGENT,
    transport: str = "UDP",
) -> UA:
    return UA(user, display, ip, port, DOMAIN, agent, transport)


def sig(ua: UA) -> Endpoint:
    """The signalling address a UA sends from and listens on."""
    return Endpoint(ua.ip, ua.port)


def default_tags(_: int, __: RtpPacket) -> tuple[Tag, ...] | None:
    return None


@dataclass
class Call:
    """One INVITE dialog in a capture and what the generator knows about it."""

    cap: Capture
    dlg: Dialog
    codec: str
    caller_media: Endpoint
    callee_media: Endpoint
    invite_t: int = 0
    answer_t: int | None = None
    end_t: int | None = None
    status: int | None = None
    end: str = ""
    caller_src: Endpoint | None = None  # where the caller's SIP comes from (NAT), default its UA
    session: dict[str, int] = field(default_factory=dict)
    version: dict[str, int] = field(default_factory=dict)
    holds: list[Json] = field(default_factory=list)
    transfer: Json | None = None
    auth_challenges: list[int] = field(default_factory=list)
    tones: dict[str, int] = field(
        default_factory=lambda: {CALLER_TO_CALLEE: CALLER_TONE, CALLEE_TO_CALLER: CALLEE_TONE}
    )

    def __post_init__(self) -> None:
        rng = self.cap.rng
        self.session = {
            "caller": rng.randrange(10**9, 10**10),
            "callee": rng.randrange(10**9, 10**10),
        }
        self.version = {"caller": 1, "callee": 1}

    @property
    def call_id(self) -> str:
        return self.dlg.call_id

    def endpoints(self, by_caller: bool) -> tuple[Endpoint, Endpoint]:
        """(source, destination) of a SIP message sent by the caller or by the callee."""
        caller = self.caller_src or sig(self.dlg.caller)
        callee = sig(self.dlg.callee)
        return (caller, callee) if by_caller else (callee, caller)

    def send(self, t_us: int, msg: Message, by_caller: bool) -> Message:
        src, dst = self.endpoints(by_caller)
        return self.cap.send_sip(t_us, msg, src, dst)

    def sdp(
        self,
        by_caller: bool,
        codecs: tuple[str, ...],
        direction: str = "sendrecv",
        port: int | None = None,
        extra: tuple[str, ...] = (),
    ) -> bytes:
        """This party's next SDP (offer or answer); every new SDP increments the o= version."""
        side = "caller" if by_caller else "callee"
        media = self.caller_media if by_caller else self.callee_media
        body = sdp(
            media.ip,
            port or media.port,
            self.session[side],
            self.version[side],
            codecs,
            direction,
            extra,
        )
        self.version[side] += 1
        return body

    def sender(self, by_caller: bool, origin_us: int, tone_hz: int | None = None) -> RtpSender:
        """A new RTP sender for one party, registered with the capture."""
        direction = CALLER_TO_CALLEE if by_caller else CALLEE_TO_CALLER
        src, dst = (
            (self.caller_media, self.callee_media) if by_caller else (self.callee_media, self.caller_media)
        )
        hz = tone_hz or self.tones[direction]
        return self.cap.sender(
            random_sender(self.cap.rng, self.call_id, direction, self.codec, hz, origin_us, src, dst)
        )

    def to_json(self) -> Json:
        events = self.cap.dtmf_events(self.call_id)
        return {
            "call_id": self.call_id,
            "from_user": self.dlg.caller.user,
            "from_display": self.dlg.caller.display,
            "to_user": self.dlg.callee.user,
            "to_display": self.dlg.callee.display,
            "answered": self.answer_t is not None,
            "end": self.end,
            "sip_status": self.status,
            "auth_challenges": self.auth_challenges,
            "invite_time": capture_time(self.invite_t),
            "answer_time": None if self.answer_t is None else capture_time(self.answer_t),
            "end_time": None if self.end_t is None else capture_time(self.end_t),
            "codec": self.codec,
            "tones": self.tones,
            "streams": self.cap.streams(self.call_id),
            "dtmf": "".join(e["digit"] for e in events),
            "dtmf_events": events,
            "holds": self.holds,
            "transfer": self.transfer,
        }


def new_call(
    cap: Capture,
    caller: UA,
    callee: UA,
    codec: str,
    caller_media: Endpoint,
    callee_media: Endpoint,
) -> Call:
    return Call(cap, Dialog(cap.rng, caller, callee), codec, caller_media, callee_media)


def offer_codecs(codec: str) -> tuple[str, ...]:
    """What a phone offers: the call's codec first, the other G.711 law, then DTMF events."""
    other = "PCMA" if codec == "PCMU" else "PCMU"
    return (codec, other, "telephone-event")


def invite(call: Call, t_us: int, body: bytes | None = None) -> Message:
    call.invite_t = t_us
    offer = call.sdp(True, offer_codecs(call.codec)) if body is None else body
    return call.send(t_us, call.dlg.invite(offer), True)


def answer(
    call: Call,
    inv: Message,
    t_us: int,
    ring_us: int = 300 * MS,
    answer_us: int = 1200 * MS,
    ack: bool = True,
    codecs: tuple[str, ...] = (),
) -> int:
    """100 Trying, 180 Ringing, 200 OK with the SDP answer, then the ACK.

    Returns the answer time."""
    call.send(t_us + 2 * MS, call.dlg.response(inv, 100, tag=False), False)
    call.send(t_us + ring_us, call.dlg.response(inv, 180), False)
    body = call.sdp(False, codecs or (call.codec, "telephone-event"))
    call.answer_t = t_us + answer_us
    call.status = 200
    call.send(call.answer_t, call.dlg.response(inv, 200, body), False)
    if ack:
        call.send(call.answer_t + 4 * MS, call.dlg.ack_2xx(inv), True)
    return call.answer_t


def hangup(call: Call, t_us: int, by_caller: bool = True) -> None:
    """BYE and its 200 OK; the call ends with the BYE."""
    bye = call.send(t_us, call.dlg.request("BYE", by_caller=by_caller), by_caller)
    call.send(t_us + 3 * MS, call.dlg.response(bye, 200), not by_caller)
    call.end_t = t_us
    call.end = "bye"


def two_way_media(
    call: Call,
    start_us: int,
    seconds: float,
    tags: TagChooser = default_tags,
) -> tuple[RtpSender, RtpSender]:
    """``seconds`` of 20 ms packets each way; the callee starts 10 ms after ``start_us``, the caller
    17 ms after it (each party starts when it has seen the answer)."""
    count = round(seconds * 1000) // 20
    callee = call.sender(False, start_us + 10 * MS)
    caller = call.sender(True, start_us + 17 * MS)
    send_media(call.cap, callee.talk(0, count), tags)
    send_media(call.cap, caller.talk(0, count), tags)
    return caller, callee


def send_media(
    cap: Capture,
    packets: list[RtpPacket],
    tags: TagChooser = default_tags,
    imp: Impairments | None = None,
) -> list[RtpPacket]:
    """Deliver packets to the tap with jitter (and impairments), add them to the capture."""
    arrived = deliver(packets, cap.rng)
    if imp is not None:
        arrived = impair(arrived, imp)
    cap.add_rtp(arrived, tags)
    return arrived


def media_end(sender: RtpSender) -> int:
    """Send time just after the sender's last packet."""
    return sender.sent[-1].t_us + PACKET_US


def slot_sample(slot: int) -> int:
    return slot * SAMPLES_PER_PACKET


def basic_call(
    cap: Capture,
    caller: UA,
    callee: UA,
    codec: str,
    caller_media: Endpoint,
    callee_media: Endpoint,
    seconds: float,
    t0: int = EPOCH_US,
    tags: TagChooser = default_tags,
) -> Call:
    """INVITE, 100, 180, 200, ACK, ``seconds`` of two-way media, BYE, 200."""
    call = new_call(cap, caller, callee, codec, caller_media, callee_media)
    inv = invite(call, t0)
    answered = answer(call, inv, t0)
    caller_s, _ = two_way_media(call, answered, seconds, tags=tags)
    hangup(call, media_end(caller_s) + 20 * MS)
    return call


@dataclass
class Scenario:
    """One crafted file: its name, link type, frames and the calls in it."""

    file: str
    summary: str
    linktype: int
    cap: Capture
    calls: list[Call]
