"""A capture being assembled: frames on one clock, plus what the generator knows went into it.

:class:`Capture` collects frames (SIP over UDP or TCP, RTP, IP fragments) with their capture times
and link-layer choices, counts the SIP messages it carries and keeps the RTP senders, so that
:meth:`Capture.streams` and :meth:`Capture.tshark` can describe the file from the generator's own
knowledge, never by parsing the result. TCP follows RFC 9293 section 3.4 (sequence numbers count
SYN, data and FIN).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from random import Random
from typing import Any

from craft_media import RtpPacket, RtpSender
from craft_sip import Message
from craft_wire import (
    TOS_SIGNALLING,
    TOS_VOICE,
    Endpoint,
    Frame,
    Tag,
    tcp_packet,
    udp_packet,
)

Json = dict[str, Any]


def capture_time(t_us: int) -> float:
    """A capture time as float UNIX seconds, rounded to the microsecond the pcap stores."""
    return round(t_us / 1e6, 6)


@dataclass
class Capture:
    """Frames of one pcap file and the ground truth about them."""

    rng: Random
    tags: tuple[Tag, ...] = ()  # default VLAN tag stack of every frame
    capture_host: str = ""  # IP of the host whose cooked capture this is (marks outgoing frames)
    frames: list[Frame] = field(default_factory=list)
    sip: list[Message] = field(default_factory=list)
    senders: list[RtpSender] = field(default_factory=list)
    rtp: list[RtpPacket] = field(default_factory=list)
    _ip_id: dict[str, int] = field(default_factory=dict)

    def ip_id(self, ip: str) -> int:
        """Per-host incrementing IPv4 identification, starting at a seeded value."""
        if ip not in self._ip_id:
            self._ip_id[ip] = self.rng.randrange(0, 0x10000)
        self._ip_id[ip] = (self._ip_id[ip] + 1) & 0xFFFF
        return self._ip_id[ip]

    def add(self, t_us: int, l3: bytes, src: str, dst: str, tags: tuple[Tag, ...] | None) -> None:
        self.frames.append(
            Frame(t_us, l3, src, dst, self.tags if tags is None else tags, src == self.capture_host)
        )

    def udp(
        self,
        t_us: int,
        src: Endpoint,
        dst: Endpoint,
        payload: bytes,
        tos: int = 0,
        tags: tuple[Tag, ...] | None = None,
    ) -> None:
        self.add(t_us, udp_packet(src, dst, payload, self.ip_id(src.ip), tos), src.ip, dst.ip, tags)

    def send_sip(
        self,
        t_us: int,
        msg: Message,
        src: Endpoint,
        dst: Endpoint,
        tags: tuple[Tag, ...] | None = None,
    ) -> Message:
        """One SIP message in one UDP datagram."""
        self.sip.append(msg)
        self.udp(t_us, src, dst, msg.render(), TOS_SIGNALLING, tags)
        return msg

    def send_sip_fragments(
        self,
        t_us: int,
        msg: Message,
        frags: list[bytes],
        src: str,
        dst: str,
        order: tuple[int, ...],
    ) -> None:
        """One SIP message whose datagram was cut into IP fragments ``frags``, put on the wire in
        ``order`` (indices may repeat: a duplicate), 150 us apart."""
        self.sip.append(msg)
        for i, k in enumerate(order):
            self.add(t_us + 150 * i, frags[k], src, dst, None)

    def add_rtp(
        self, packets: list[RtpPacket], tags: Callable[[int, RtpPacket], tuple[Tag, ...] | None]
    ) -> None:
        """Captured RTP packets (after delivery and impairments); ``tags(i, p)`` picks link tags."""
        for i, pkt in enumerate(packets):
            self.udp(pkt.t_us, pkt.src, pkt.dst, pkt.to_bytes(), TOS_VOICE, tags(i, pkt))
        self.rtp.extend(packets)

    def sender(self, sender: RtpSender) -> RtpSender:
        self.senders.append(sender)
        return sender

    def ordered_frames(self) -> list[Frame]:
        """Frames by capture time; frames with equal times keep the order they were added in."""
        return sorted(self.frames, key=lambda f: f.t_us)

    # ----------------------------------------------------------------------------------------------
    # Ground truth

    def streams(self, call_id: str) -> list[Json]:
        """Every RTP stream of a call: one per (sender SSRC, source, destination)."""
        return [
            stream
            for sender in self.senders
            if sender.call_id == call_id
            for src, dst in _legs(sender)
            if (stream := self._stream(sender, src, dst))["captured"]
        ]

    def _stream(self, sender: RtpSender, src: Endpoint, dst: Endpoint) -> Json:
        sent = [p for p in sender.sent if p.src == src and p.dst == dst]
        got = [p for p in self.rtp if p.ssrc == sender.ssrc and p.src == src and p.dst == dst]
        if not got:
            return {"src": str(src), "dst": str(dst), "captured": 0}
        unique = {p.order: p for p in got}
        in_order = [unique[k] for k in sorted(unique)]
        audio = [p for p in in_order if p.kind == "audio"]
        return {
            "direction": sender.direction,
            "src": str(src),
            "dst": str(dst),
            "ssrc": sender.ssrc,
            "ssrc_hex": f"0x{sender.ssrc:08X}",
            "payload_type": sender.pt,
            "codec": sender.codec,
            "clock_rate": 8000,
            "tone_hz": sender.tone.hz,
            "packets": len(unique),
            "captured": len(got),
            "audio_packets": len(audio),
            "event_packets": sum(p.kind == "event" for p in in_order),
            "cn_packets": sum(p.kind == "cn" for p in in_order),
            "lost": [p.seq for p in sent if p.order not in unique],
            "duplicates": len(got) - len(unique),
            "first_seq": in_order[0].seq,
            "last_seq": in_order[-1].seq,
            "first_rtp_ts": in_order[0].ts,
            "first_time": capture_time(min(p.t_us for p in got)),
            "last_time": capture_time(max(p.t_us for p in got)),
            "samples": sum(len(p.payload) for p in audio),
            "payload_sha256": hashlib.sha256(b"".join(p.payload for p in audio)).hexdigest(),
        }

    def dtmf_events(self, call_id: str) -> list[Json]:
        """Telephone-events sent in a call, timed by the capture of their first packet."""
        out = []
        for sender in self.senders:
            if sender.call_id != call_id:
                continue
            for d in sender.dtmf:
                first = min(
                    p.t_us
                    for p in self.rtp
                    if p.ssrc == sender.ssrc and p.kind == "event" and p.ts == d.rtp_ts
                )
                out.append(
                    {
                        "digit": d.digit,
                        "direction": sender.direction,
                        "time": capture_time(first),
                        "rtp_ts": d.rtp_ts,
                        "duration_ms": d.duration // 8,
                    }
                )
        return out

    def tshark(self, frames: int) -> Json:
        """What tshark should report: frames, SIP messages by method/status, RTP streams."""
        requests = Counter(m.first_word for m in self.sip if m.is_request)
        responses = Counter(m.first_word for m in self.sip if not m.is_request)
        streams = [
            {k: s[k] for k in ("src", "dst", "ssrc_hex")} | {"packets": s["captured"]}
            for sender in self.senders
            for src, dst in _legs(sender)
            if (s := self._stream(sender, src, dst))["captured"]
        ]
        return {
            "frames": frames,
            "sip_messages": len(self.sip),
            "sip_requests": dict(sorted(requests.items())),
            "sip_responses": dict(sorted(responses.items())),
            "rtp_streams": len(streams),
            "rtp_stream_packets": streams,
        }


def _legs(sender: RtpSender) -> list[tuple[Endpoint, Endpoint]]:
    """The (source, destination) pairs a sender used, in the order it first used them."""
    legs: dict[tuple[Endpoint, Endpoint], None] = {}
    for p in sender.sent:
        legs.setdefault((p.src, p.dst), None)
    return list(legs)


@dataclass
class TcpConnection:
    """A TCP connection from ``client`` to ``server``, tracking the next sequence number each way.

    :meth:`segment` builds a segment without sending it, so a scenario can emit segments out of
    order or twice (a retransmission) while the sequence numbers stay those of the original stream.
    """

    cap: Capture
    client: Endpoint
    server: Endpoint
    nxt: dict[bool, int] = field(default_factory=dict)  # keyed by "from client"

    def __post_init__(self) -> None:
        rng = self.cap.rng
        self.nxt = {True: rng.randrange(0, 1 << 32), False: rng.randrange(0, 1 << 32)}

    def segment(self, from_client: bool, flags: str, data: bytes = b"") -> tuple[bool, int, str, bytes]:
        """Allocate sequence space for a segment: (direction, seq, flags, data)."""
        seq = self.nxt[from_client]
        used = len(data) + (1 if "S" in flags else 0) + (1 if "F" in flags else 0)
        self.nxt[from_client] = (seq + used) & 0xFFFFFFFF
        return (from_client, seq, flags, data)

    def emit(self, t_us: int, seg: tuple[bool, int, str, bytes], ack: int | None = None) -> None:
        """Put a segment on the wire at ``t_us``; it acknowledges everything the peer sent so far
        unless ``ack`` says otherwise."""
        from_client, seq, flags, data = seg
        src, dst = (self.client, self.server) if from_client else (self.server, self.client)
        ack_no = self.nxt[not from_client] if ack is None else ack
        l3 = tcp_packet(src, dst, seq, ack_no, flags, data, self.cap.ip_id(src.ip))
        self.cap.add(t_us, l3, src.ip, dst.ip, None)

    def send(self, t_us: int, from_client: bool, data: bytes, flags: str = "PA") -> None:
        self.emit(t_us, self.segment(from_client, flags, data))
