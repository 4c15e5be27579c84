"""One call's media: its RTP streams, what is due to be written, and the record written when it ends.

Sample 0 of the recording is the capture time of the call's first media packet (early media included).
Each stream places its packets by RTP timestamp into the engine's stream table (see ``rtp/stream.py``);
the call decides when its audio is due: once every active stream has moved past a point by more than
the reorder window, so a late packet still lands in place, in blocks of at least a second, and never
more than :data:`MAX_LAG` behind the capture clock, so memory stays bounded. ``engine/mix.py`` writes
the due audio of all calls at once.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from recorderd.codecs import COMFORT_NOISE, TELEPHONE_EVENT, Codec, decoder_for
from recorderd.config import EngineConfig
from recorderd.events import (
    CallRecord,
    CallStarted,
    Datagram,
    Direction,
    DtmfDigit,
    EndReason,
    Gap,
    GapReason,
    LegRecord,
    MediaDirection,
    MediaNegotiated,
    PayloadFormat,
    Side,
    format_endpoint,
)
from recorderd.payloads import STATIC_PAYLOADS
from recorderd.rtp.packet import RtpPacket
from recorderd.rtp.stream import Kind, Outcome, Snapshot, StreamTable
from recorderd.rtp.view import RtpStream

RATE = 8000  # the recording's sample rate
BLOCK = RATE  # emit audio in blocks of about one second
ACTIVE = 1.0  # a stream that sent nothing for this long no longer holds back the mix
MAX_LAG = 3 * RATE // 2  # never hold more than this behind the capture clock
NO_MEDIA_GAP = RATE // 2  # a silence this long without lost packets is reported as a gap
SILENCE_CHUNK = 10 * RATE  # leading silence is emitted in blocks of at most this many samples


@dataclass(slots=True)
class Leg:
    side: Side
    stream: RtpStream
    src: str
    dst: str
    codec: str = ""
    decoded: bool = False
    undecodable: bool = False

    @property
    def slot(self) -> int:
        return self.stream.slot

    @property
    def channel(self) -> int:
        return 0 if self.side is Side.CALLER else 1


class CallMedia:
    """Media and metadata of one call; created at CallStarted, finished at CallEnded."""

    def __init__(
        self, started: CallStarted, direction: Direction, config: EngineConfig, table: StreamTable
    ) -> None:
        self.started = started
        self.table = table
        self.call_id = started.call_id
        self.direction = direction
        self.config = config
        self.window = int(config.reorder_window * RATE)
        self.resync = RATE  # re-anchor a stream whose timestamps drift a second from the capture clock
        self.answer_ts: float | None = None
        self.sip_status: int | None = None
        self.last_activity = started.ts
        self.media_start: float | None = None
        self.formats: dict[Side, dict[int, PayloadFormat]] = {Side.CALLER: {}, Side.CALLEE: {}}
        self.ptime: dict[Side, int] = {}
        self.directions: dict[Side, MediaDirection] = {}
        self.held_by: set[Side] = set()
        self.hold_start: float | None = None
        self.holds: list[tuple[float, float]] = []
        self.transfers: list[str] = []
        # one leg per RTP stream as RFC 3550 and tshark count them: SSRC, source and destination
        self.legs: dict[tuple[Side, int, bytes, int, bytes, int], Leg] = {}
        self.counters: Counter[str] = Counter()
        self.encodings: set[str] = set()  # how each decoded codec so far would be kept losslessly
        self.encoding: str | None = None  # the recording's, fixed when its first block is emitted
        self.emitted = 0  # samples handed out as AudioBlocks (once the recording has started)
        self.base = 0  # first sample not yet written out; what is before it is final
        # Audio already placed at and after ``base`` (packets that straddled the last write): linear
        # sums, or the codes of ``carry_law`` when passed through; how far each channel holds audio.
        self.carry: NDArray[np.int32] | NDArray[np.uint8] = np.zeros((0, 2), dtype=np.int32)
        self.carry_law: str | None = None
        self.carry_end = [0, 0]
        self._codecs: dict[tuple[int, Side], Codec] = {}
        self.audio_seen = False

    # -- signalling ---------------------------------------------------------------------------------

    def negotiated(self, event: MediaNegotiated) -> None:
        self.last_activity = event.ts
        self._codecs.clear()
        known = self.formats[event.side]
        for fmt in event.formats:
            known[fmt.pt] = fmt
        if event.ptime:
            self.ptime[event.side] = event.ptime
        previous = self.directions.get(event.side)
        self.directions[event.side] = event.direction
        if previous is MediaDirection.SENDRECV and event.direction is not MediaDirection.SENDRECV:
            if not self.held_by:
                self.hold_start = event.ts
            self.held_by.add(event.side)
        elif event.direction is MediaDirection.SENDRECV and event.side in self.held_by:
            self.held_by.discard(event.side)
            if not self.held_by and self.hold_start is not None:
                self.holds.append((self.hold_start, event.ts))
                self.hold_start = None

    @property
    def on_hold(self) -> bool:
        return bool(self.held_by)

    # -- media ---------------------------------------------------------------------------------------

    def position(self, ts: float) -> int:
        assert self.media_start is not None
        return round((ts - self.media_start) * RATE)

    def rtp(self, pkt: RtpPacket, side: Side, d: Datagram) -> tuple[Outcome | None, Leg | None, Kind]:
        """Place one RTP packet carrying ``side``'s voice: the outcome (None when the stream table is
        full), the packet's leg and how its payload was treated."""
        now = d.ts
        if self.media_start is None:
            self.media_start = now
        self.last_activity = now
        now_pos = self.position(now)
        key = (side, pkt.ssrc, d.src, d.sport, d.dst, d.dport)
        leg = self.legs.get(key)
        if leg is None:
            if len(self.legs) >= self.config.max_streams_per_call:
                return None, None, Kind.UNDECODABLE
            stream = RtpStream(
                pkt.ssrc, now, now_pos, RATE, self.resync, self.table, self.media_start, self.base
            )
            src, dst = format_endpoint(d.src, d.sport), format_endpoint(d.dst, d.dport)
            leg = Leg(side, stream, src, dst)
            self.legs[key] = leg
        kind, codec, duration = self._classify(pkt, side)
        if kind is Kind.AUDIO and codec is not None:
            leg.codec, leg.decoded = codec.name, True
            self.encodings.add(
                codec.encoding
            )  # packets of another law than the file's are counted when written
        elif kind is Kind.UNDECODABLE:
            leg.undecodable = True
            if not leg.codec:
                leg.codec = self._format(pkt.pt, side).name
        outcome = leg.stream.push(
            pkt.seq, pkt.ts, pkt.pt, pkt.payload, kind, duration, now, now_pos, self.base
        )
        return outcome, leg, kind

    def codec_of(self, pt: int, side: Side) -> Codec:
        """The decoder of an audio payload type already classified as decodable for ``side``."""
        codec = self._codecs.get((pt, side))
        if codec is None:
            codec = decoder_for(self._format(pt, side))
            assert codec is not None
            self._codecs[(pt, side)] = codec
        return codec

    def encoding_of(self, pt: int, side: Side) -> str:
        """How the store keeps payload type ``pt`` of ``side`` losslessly; "" if it is not audio."""
        codec = self._codecs.get((pt, side))
        if codec is None:
            codec = decoder_for(self._format(pt, side)) if pt >= 0 else None
            if codec is None:
                return ""
            self._codecs[(pt, side)] = codec
        return codec.encoding

    def _format(self, pt: int, side: Side) -> PayloadFormat:
        # The receiver's SDP defines the payload types it is sent (RFC 3264 5.1); fall back to the
        # sender's, then to the static table.
        fmt = self.formats[side.other].get(pt) or self.formats[side].get(pt)
        return fmt or STATIC_PAYLOADS.get(pt) or PayloadFormat(pt, f"PT{pt}", RATE)

    def _classify(self, pkt: RtpPacket, side: Side) -> tuple[Kind, Codec | None, int]:
        fmt = self._format(pkt.pt, side)
        if fmt.name == TELEPHONE_EVENT:
            return Kind.EVENT, None, 0
        if fmt.name == COMFORT_NOISE:
            return Kind.SILENCE, None, 0
        codec = decoder_for(fmt)
        if codec is None:
            ptime = self.ptime.get(side.other) or self.ptime.get(side) or 20
            return Kind.UNDECODABLE, None, ptime * fmt.rate // 1000
        return Kind.AUDIO, codec, len(pkt.payload) // codec.bytes_per_sample

    def activity(self, columns: Snapshot) -> float:
        """Capture time of the call's last signalling or media packet (``columns``: the table's, as
        read at this tick)."""
        seen = [columns.last_seen[leg.slot] for leg in self.legs.values()]
        return max(self.last_activity, float(max(seen))) if seen else self.last_activity

    def due(self, now: float, block: int, columns: Snapshot) -> int | None:
        """The sample before which audio is ready to be written at ``now``: what every active stream
        has moved past, less the reorder window; None until that is at least ``block`` samples
        (``columns``: the table's, as read at this tick)."""
        if self.media_start is None:
            return None
        now_pos = self.position(now)
        high, last_ts = columns.high, columns.last_ts
        active = [high[s] for s in (leg.slot for leg in self.legs.values()) if now - last_ts[s] < ACTIVE]
        upto = (int(min(active)) if active else now_pos) - self.window
        upto = max(upto, now_pos - MAX_LAG)
        if upto - self.base < block:
            return None
        return upto

    def end(self) -> int | None:
        """The sample after everything placed, when the call ends; None without media."""
        if self.media_start is None:
            return None
        return max([self.base, *(int(self.table.high[leg.slot]) for leg in self.legs.values())])

    def target_encoding(self) -> str:
        """How the recording keeps its audio: fixed by the first block with audio, as one G.711 law
        when every decoded codec so far is that law, otherwise 16-bit PCM (which loses nothing)."""
        if self.encoding is not None:
            return self.encoding
        return next(iter(self.encodings)) if len(self.encodings) == 1 else "pcm16"

    # -- the end -------------------------------------------------------------------------------------

    def finish(self, ts: float) -> None:
        """Close the hold still open at the end; the engine then writes out the rest of the audio."""
        if self.hold_start is not None:
            self.holds.append((self.hold_start, ts))
            self.hold_start = None

    def record(self, ts: float, reason: EndReason, sip_status: int | None) -> CallRecord:
        s = self.started
        origin = self.media_start if self.media_start is not None else s.ts
        return CallRecord(
            call_id=self.call_id,
            direction=self.direction,
            from_uri=s.from_uri,
            from_name=s.from_name,
            to_uri=s.to_uri,
            to_name=s.to_name,
            invite_ts=s.ts,
            answer_ts=self.answer_ts,
            end_ts=ts,
            end_reason=reason,
            sip_status=sip_status if sip_status is not None else self.sip_status,
            media_start_ts=self.media_start,
            samples=self.emitted,
            sample_rate=RATE,
            legs=tuple(self._leg_record(leg) for leg in self.legs.values()),
            dtmf=self._dtmf(),
            holds=tuple((a - origin, b - origin) for a, b in self.holds),
            transfers=tuple(self.transfers),
            counters=dict(self.counters) | self._stream_counters(),
        )

    def _stream_counters(self) -> dict[str, int]:
        late = sum(leg.stream.late for leg in self.legs.values())
        resyncs = sum(leg.stream.resyncs for leg in self.legs.values())
        return {k: v for k, v in (("late", late), ("resyncs", resyncs)) if v}

    def _dtmf(self) -> tuple[DtmfDigit, ...]:
        digits = [
            DtmfDigit(d.pos / RATE, d.digit, d.duration * 1000 // RATE, leg.side)
            for leg in self.legs.values()
            for d in leg.stream.digits()
        ]
        return tuple(sorted(digits, key=lambda d: d.t))

    def _leg_record(self, leg: Leg) -> LegRecord:
        stream = leg.stream
        return LegRecord(
            side=leg.side,
            ssrc=stream.ssrc,
            src=leg.src,
            dst=leg.dst,
            codec=leg.codec or self._format(max(stream.payload_type, 0), leg.side).name,
            payload_type=stream.payload_type,
            packets=stream.packets,
            lost=stream.lost,
            duplicates=stream.duplicates,
            decoded=leg.decoded,
            first_ts=stream.first_ts,
            last_ts=stream.last_ts,
            gaps=self._gaps(leg),
        )

    def _gaps(self, leg: Leg) -> tuple[Gap, ...]:
        stream = leg.stream
        if leg.undecodable and not leg.decoded:
            end = max(stream.high_pos, stream.first_pos)
            return (Gap(stream.first_pos / RATE, end / RATE, GapReason.UNDECODABLE),)
        origin = self.media_start or 0.0
        holds = [((a - origin) * RATE, (b - origin) * RATE) for a, b in self.holds]
        gaps = []
        for hole in stream.holes:
            if hole.lost:
                reason = GapReason.LOSS
            elif any(a < hole.end and hole.start < b for a, b in holds):
                reason = GapReason.HOLD
            elif hole.end - hole.start >= NO_MEDIA_GAP:
                reason = GapReason.NO_MEDIA
            else:
                continue
            gaps.append(Gap(hole.start / RATE, hole.end / RATE, reason))
        return tuple(gaps)
