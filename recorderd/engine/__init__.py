"""The engine: pure glue from captured frames to call and recording events.

``feed(frame)`` runs one frame through net -> sip | rtp -> codecs and returns the events it caused;
``advance(now)`` fires timers (RTP silence, maximum call length, unanswered INVITEs) from the capture
clock; ``close(now)`` ends every call still open when a replay runs out. No sockets, files, threads or
clocks: live capture and pcap replay drive the very same object, and a replay is deterministic.

This is the one error boundary of the pure core: a :class:`ParseError` from any stage is counted under
its stage and dropped, so hostile or broken traffic never stops the pipeline.

Fast path. Nearly every frame on a mirror port is an RTP packet of a stream already known: G.711 in
UDP in an option-less IPv4 packet in an Ethernet frame, untagged or with one 802.1Q tag.
:meth:`Engine.feed_batch` reads such a frame's headers with one ``struct`` call and finds its stream in
one dictionary probe on the raw address bytes and SSRC, then hands it straight to the stream. Anything
else, and the first packet of every stream, takes the general path (:meth:`Engine.feed`), which also
fills the fast path's table. An entry is dropped whenever the general path could decide differently
for it: its call ended or renegotiated media, or a binding of one of its endpoints changed. The tests
replay every capture both ways and require identical events.
"""

from __future__ import annotations

import struct
from collections import Counter

from recorderd.config import EngineConfig
from recorderd.engine.call import RATE, CallMedia, Leg
from recorderd.errors import ParseError
from recorderd.events import (
    CallAnswered,
    CallEnded,
    CallFinished,
    CallStarted,
    CallTransferred,
    Datagram,
    EndReason,
    Event,
    Frame,
    FrameBatch,
    MediaNegotiated,
    SipEvent,
    Transport,
)
from recorderd.net import NetDecoder
from recorderd.rtp.demux import MediaMap
from recorderd.rtp.packet import is_rtcp, parse_rtp
from recorderd.rtp.stream import Kind, Outcome, RtpStream
from recorderd.sip.dialog import DialogTracker
from recorderd.sip.message import parse_sip, user_part

TICK = 0.25  # seconds of capture time between housekeeping passes

# An Ethernet frame from its EtherType (offset 12) to the end of a 12-byte RTP header (offset 54):
# EtherType; IPv4 version/IHL, total length, flags/fragment offset, protocol; source and destination
# addresses and UDP ports as one 12-byte key; UDP length; RTP first byte, marker/PT, sequence number,
# timestamp, SSRC.
_FAST = struct.Struct("!HBxH2xHxB2x12sH2xBBHII")
_META = struct.Struct("=4I")
_ETH_IPV4, _ETH_VLAN = 0x0800, 0x8100
_AUDIO = Kind.AUDIO
_ACCEPTED = Outcome.ACCEPTED

FastKey = tuple[bytes, int]  # src, dst, sport, dport as on the wire; SSRC
Endpoint = tuple[bytes, int]


def _reason(error: ParseError) -> str:
    """A counter key from a parse error: its stable prefix, e.g. "rtp: version 1 is not 2" -> "rtp"."""
    return str(error).split(":", 1)[0].strip().replace(" ", "_") or "unknown"


def _looks_like_sip(payload: bytes) -> bool:
    """A SIP start line (RFC 3261 7.1, 7.2): "METHOD uri SIP/2.0" or "SIP/2.0 code reason"."""
    end = payload.find(b"\n", 0, 2048)
    line = payload[: end if end >= 0 else 2048].rstrip()
    return line.startswith(b"SIP/2.0 ") or line.endswith(b" SIP/2.0")


class Engine:
    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self.counters: Counter[str] = Counter()
        self.net = NetDecoder(self.counters)
        self.dialogs = DialogTracker(self.counters, max_calls=self.config.max_calls)
        self.media = MediaMap()
        self.calls: dict[str, CallMedia] = {}
        self._next_tick = 0.0
        # fast path: stream key -> (call, stream, payload type, how the store keeps it)
        self._fast: dict[FastKey, tuple[CallMedia, RtpStream, int, str]] = {}
        self._fast_by_call: dict[str, set[FastKey]] = {}
        self._fast_by_endpoint: dict[Endpoint, set[FastKey]] = {}

    # -- inputs --------------------------------------------------------------------------------------

    def feed(self, frame: Frame) -> list[Event]:
        out: list[Event] = []
        if frame.ts >= self._next_tick:
            out.extend(self.advance(frame.ts))
        self.counters["frames"] += 1
        for datagram in self.net.feed(frame):
            self._datagram(datagram, out)
        return out

    def feed_batch(self, batch: FrameBatch) -> list[Event]:
        """The events of every frame in ``batch``, exactly as :meth:`feed` frame by frame would give."""
        out: list[Event] = []
        data, fast = batch.data, self._fast
        ethernet = batch.linktype == 1
        fast_frames = 0
        for sec, usec, off, caplen in _META.iter_unpack(batch.meta):
            now = sec + usec / 1_000_000
            if now >= self._next_tick:
                out.extend(self.advance(now))
            if ethernet and caplen >= 54:
                start = off
                etype, vihl, length, frag, proto, key, ulen, b0, b1, seq, ts, ssrc = _FAST.unpack_from(
                    data, off + 12
                )
                if etype == _ETH_VLAN and caplen >= 58:
                    start = off + 4
                    etype, vihl, length, frag, proto, key, ulen, b0, b1, seq, ts, ssrc = _FAST.unpack_from(
                        data, start + 12
                    )
                entry = fast.get((key, ssrc))
                if (
                    entry is not None
                    and etype == _ETH_IPV4
                    and vihl == 0x45
                    and not frag & 0x3FFF
                    and proto == 17
                    and b0 == 0x80
                    and ulen == length - 20
                    and (b1 & 0x7F) == entry[2]
                    and start + 14 + length <= off + caplen
                ):
                    call, stream, pt, encoding = entry
                    payload = data[start + 54 : start + 14 + length]
                    if call.encoding is not None and call.encoding != encoding and call.encoding != "pcm16":
                        call.counters["transcoded_packets"] += 1
                    call.last_activity = now
                    outcome = stream.push(
                        seq, ts, pt, payload, _AUDIO, len(payload), now,
                        round((now - call.media_start) * RATE), call.base,
                    )  # fmt: skip
                    if outcome is not _ACCEPTED:
                        self.counters[f"rtp.{outcome.name.lower()}"] += 1
                    fast_frames += 1
                    continue
            self.counters["frames"] += 1
            for datagram in self.net.feed(Frame(now, batch.linktype, data[off : off + caplen])):
                self._datagram(datagram, out)
        self.counters["frames"] += fast_frames
        self.counters["frames.fast"] += fast_frames
        return out

    def advance(self, now: float) -> list[Event]:
        """Fire the timers due at capture time ``now`` and emit the audio that is ready."""
        self._next_tick = now + TICK
        out: list[Event] = []
        self.net.expire(now)
        for endpoint in self.media.expire(now):
            self._forget_endpoint(endpoint)
        self._apply(self.dialogs.advance(now), out)
        for call in list(self.calls.values()):
            reason = self._timed_out(call, now)
            if reason is not None:
                self._apply(self.dialogs.end(call.call_id, now, reason), out)
            else:
                out.extend(call.flush(now))
        return out

    def close(self, now: float) -> list[Event]:
        """End every open call (the capture is over) and return the remaining events."""
        out = self.advance(now)
        self._apply(self.dialogs.close(now), out)
        return out

    # -- dispatch ------------------------------------------------------------------------------------

    def _datagram(self, d: Datagram, out: list[Event]) -> None:
        payload = d.payload
        if not payload:
            return
        first = payload[0]
        if d.transport is Transport.UDP and 0x80 <= first <= 0xBF:
            self._rtp(d)
        elif 0x41 <= first <= 0x5A and _looks_like_sip(payload):
            self._sip(d, out)
        else:
            self.counters["udp.ignored"] += 1

    def _sip(self, d: Datagram, out: list[Event]) -> None:
        try:
            message = parse_sip(d.payload)
        except ParseError as e:
            self.counters[f"drop.{_reason(e)}"] += 1
            return
        self.counters["sip.messages"] += 1
        self._apply(self.dialogs.handle(d, message), out)

    def _rtp(self, d: Datagram) -> None:
        hit = self.media.lookup(d.src, d.sport, d.dst, d.dport)
        if hit is None:
            self.counters["rtp.unmapped"] += 1
            return
        if is_rtcp(d.payload):
            self.counters["rtcp.ignored"] += 1
            return
        call = self.calls.get(hit[0])
        if call is None:
            self.counters["rtp.unmapped"] += 1
            return
        try:
            packet = parse_rtp(d.payload)
            outcome, leg, kind = call.rtp(packet, hit[1], d)
        except ParseError as e:
            self.counters[f"drop.{_reason(e)}"] += 1
            return
        if outcome is None:
            self.counters["rtp.streams_full"] += 1
        elif outcome is not Outcome.ACCEPTED:
            self.counters[f"rtp.{outcome.name.lower()}"] += 1
        elif kind is Kind.AUDIO and leg is not None and len(d.src) == 4:
            self._remember_fast(call, leg, packet.pt, d)

    # -- the fast path's table -----------------------------------------------------------------------

    def _remember_fast(self, call: CallMedia, leg: Leg, pt: int, d: Datagram) -> None:
        key = (d.src + d.dst + d.sport.to_bytes(2, "big") + d.dport.to_bytes(2, "big"), leg.stream.ssrc)
        codec = call.codec_of(pt, leg.side)
        self._fast[key] = (call, leg.stream, pt, codec.encoding)
        self._fast_by_call.setdefault(call.call_id, set()).add(key)
        for endpoint in ((d.src, d.sport), (d.dst, d.dport)):
            self._fast_by_endpoint.setdefault(endpoint, set()).add(key)

    def _forget(self, keys: set[FastKey]) -> None:
        for key in keys:
            self._fast.pop(key, None)

    def _forget_call(self, call_id: str) -> None:
        self._forget(self._fast_by_call.pop(call_id, set()))

    def _forget_endpoint(self, endpoint: Endpoint) -> None:
        self._forget(self._fast_by_endpoint.pop(endpoint, set()))

    # -- call lifecycle ------------------------------------------------------------------------------

    def _apply(self, events: list[SipEvent], out: list[Event]) -> None:
        for event in events:
            out.append(event)
            if isinstance(event, CallStarted):
                self._started(event)
                continue
            call = self.calls.get(event.call_id)
            if call is None:
                continue
            if isinstance(event, MediaNegotiated):
                call.negotiated(event)  # may remap payload types: the call's fast entries go
                self._forget_call(event.call_id)
                self._forget_endpoint((event.ip, event.port))
                if not self.media.bind(
                    event.call_id, event.side, event.ip, event.port, event.ts, event.transaction
                ):
                    self.counters["rtp.media_map_full"] += 1
            elif isinstance(event, CallAnswered):
                call.answer_ts, call.sip_status = event.ts, event.status
                call.last_activity = event.ts
            elif isinstance(event, CallTransferred):
                call.transfers.append(event.refer_to)
            elif isinstance(event, CallEnded):
                out.extend(self._ended(call, event))

    def _started(self, event: CallStarted) -> None:
        site = self.config.site
        direction = site.classify(user_part(event.from_uri), user_part(event.to_uri), event.src, event.dst)
        self.calls[event.call_id] = CallMedia(event, direction, self.config)

    def _ended(self, call: CallMedia, event: CallEnded) -> list[Event]:
        self.media.unbind_call(call.call_id)
        self._forget_call(call.call_id)
        del self.calls[call.call_id]
        out = call.finish(event.ts, event.reason, event.sip_status)
        record = call.record(event.ts, event.reason, event.sip_status)
        out.append(CallFinished(event.ts, call.call_id, record))
        return out

    def _timed_out(self, call: CallMedia, now: float) -> EndReason | None:
        if now - call.started.ts > self.config.max_call_length:
            return EndReason.MAX_LENGTH
        answered_or_media = call.answer_ts is not None
        if answered_or_media and not call.on_hold:
            if now - call.last_activity > self.config.rtp_timeout:
                return EndReason.RTP_TIMEOUT
        return None
