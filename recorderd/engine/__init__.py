"""The engine: pure glue from captured frames to call and recording events.

``feed(frame)`` runs one frame through net -> sip | rtp -> codecs and returns the events it caused;
``advance(now)`` fires timers (RTP silence, maximum call length, unanswered INVITEs) from the capture
clock; ``close(now)`` ends every call still open when a replay runs out. No sockets, files, threads or
clocks: live capture and pcap replay drive the very same object, and a replay is deterministic.

This is the one error boundary of the pure core: a :class:`ParseError` from any stage is counted under
its stage and dropped, so hostile or broken traffic never stops the pipeline.
"""

from __future__ import annotations

from collections import Counter

from recorderd.config import EngineConfig
from recorderd.engine.call import CallMedia
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
    MediaNegotiated,
    SipEvent,
    Transport,
)
from recorderd.net import NetDecoder
from recorderd.rtp.demux import MediaMap
from recorderd.rtp.packet import is_rtcp, parse_rtp
from recorderd.rtp.stream import Outcome
from recorderd.sip.dialog import DialogTracker
from recorderd.sip.message import parse_sip, user_part

TICK = 0.25  # seconds of capture time between housekeeping passes


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

    # -- inputs --------------------------------------------------------------------------------------

    def feed(self, frame: Frame) -> list[Event]:
        out: list[Event] = []
        if frame.ts >= self._next_tick:
            out.extend(self.advance(frame.ts))
        self.counters["frames"] += 1
        for datagram in self.net.feed(frame):
            self._datagram(datagram, out)
        return out

    def advance(self, now: float) -> list[Event]:
        """Fire the timers due at capture time ``now`` and emit the audio that is ready."""
        self._next_tick = now + TICK
        out: list[Event] = []
        self.net.expire(now)
        self.media.expire(now)
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
            outcome = call.rtp(parse_rtp(d.payload), hit[1], d)
        except ParseError as e:
            self.counters[f"drop.{_reason(e)}"] += 1
            return
        if outcome is None:
            self.counters["rtp.streams_full"] += 1
        elif outcome is not Outcome.ACCEPTED:
            self.counters[f"rtp.{outcome.name.lower()}"] += 1

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
                call.negotiated(event)
                if not self.media.bind(event.call_id, event.side, event.ip, event.port, event.ts):
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
