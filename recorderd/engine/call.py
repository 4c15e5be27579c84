"""One call's media: its RTP streams, the stereo mix, and the record written when it ends.

Sample 0 of the recording is the capture time of the call's first media packet (early media included).
Each stream places its packets by RTP timestamp (see ``rtp/stream.py``); this module decodes them in
blocks, one NumPy table lookup per payload type, and adds them into a two-channel accumulator (caller
left, callee right; two streams of one side, as after an SSRC change or through a media relay, are summed).
The accumulator is emitted as contiguous :class:`AudioBlock`s once every active stream has moved past a
point by more than the reorder window, so a late packet still lands in place, and memory stays bounded
by the window plus one block per call.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from recorderd.codecs import COMFORT_NOISE, TELEPHONE_EVENT, Codec, decoder_for
from recorderd.config import EngineConfig
from recorderd.events import (
    AudioBlock,
    CallRecord,
    CallStarted,
    Datagram,
    Direction,
    DtmfDigit,
    EndReason,
    Event,
    Gap,
    GapReason,
    LegRecord,
    MediaDirection,
    MediaNegotiated,
    PayloadFormat,
    RecordingStarted,
    Side,
    format_endpoint,
)
from recorderd.payloads import STATIC_PAYLOADS
from recorderd.rtp.packet import RtpPacket
from recorderd.rtp.stream import Kind, Outcome, RtpStream, Taken

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


class CallMedia:
    """Media and metadata of one call; created at CallStarted, finished at CallEnded."""

    def __init__(self, started: CallStarted, direction: Direction, config: EngineConfig) -> None:
        self.started = started
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
        self.base = 0  # recording sample at index 0 of the accumulator
        self.mix = np.zeros((2 * BLOCK, 2), dtype=np.int32)
        self.audio_seen = False

    # -- signalling ---------------------------------------------------------------------------------

    def negotiated(self, event: MediaNegotiated) -> None:
        self.last_activity = event.ts
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
            stream = RtpStream(pkt.ssrc, now, now_pos, RATE, self.resync)
            src, dst = format_endpoint(d.src, d.sport), format_endpoint(d.dst, d.dport)
            leg = Leg(side, stream, src, dst)
            self.legs[key] = leg
        kind, codec, duration = self._classify(pkt, side)
        if kind is Kind.AUDIO and codec is not None:
            leg.codec, leg.decoded = codec.name, True
            self.encodings.add(codec.encoding)
            if self.encoding not in (None, "pcm16", codec.encoding):
                # the file's law was fixed before this codec appeared (a mid-call codec change)
                self.counters["transcoded_packets"] += 1
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
        codec = decoder_for(self._format(pt, side))
        assert codec is not None
        return codec

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

    def flush(self, now: float) -> list[Event]:
        """Emit the audio every active stream has moved past, in blocks of at least a second."""
        if self.media_start is None:
            return []
        now_pos = self.position(now)
        active = [leg.stream.high_pos for leg in self.legs.values() if now - leg.stream.last_ts < ACTIVE]
        upto = (min(active) if active else now_pos) - self.window
        upto = max(upto, now_pos - MAX_LAG)
        if upto - self.base < BLOCK:
            return []
        return self._emit(upto, now)

    def _emit(self, upto: int, now: float) -> list[Event]:
        for leg in self.legs.values():
            channel = 0 if leg.side is Side.CALLER else 1
            self._mix_in(leg, channel, leg.stream.take(upto))
        out: list[Event] = []
        while self.base < upto:  # in bounded pieces: a long capture gap is a long silence
            n = min(upto - self.base, SILENCE_CHUNK)
            self._reserve(n)
            block = np.clip(self.mix[:n], -32768, 32767).astype(np.int16)
            self._shift(n)
            out.extend(self._blocks(block, now))
        return out

    def _mix_in(self, leg: Leg, channel: int, taken: Taken | None) -> None:
        if taken is None:
            return
        audio = taken.kind == Kind.AUDIO
        if not audio.any():
            return
        for pt in np.unique(taken.pt[audio]).tolist():
            chosen = np.flatnonzero(audio & (taken.pt == pt))
            codec = self.codec_of(pt, leg.side)
            samples = codec.decode(b"".join([taken.payloads[i] for i in chosen.tolist()])).astype(np.int32)
            starts = taken.pos[chosen] - self.base
            sizes = taken.duration[chosen]
            self._reserve(int((starts + sizes).max()))
            self._scatter(channel, starts, sizes, samples)
            self.audio_seen = True

    def _scatter(self, channel: int, starts: np.ndarray, sizes: np.ndarray, samples: np.ndarray) -> None:
        """Add packet after packet of ``samples`` into ``channel`` at ``starts`` (sorted)."""
        size = int(sizes[0])
        if (sizes == size).all() and (np.diff(starts) >= size).all():
            # the usual case, equal packets that do not overlap: one vectorised add
            index = (starts[:, None] + np.arange(size)).ravel()
            self.mix[index, channel] += samples
            return
        offset = 0
        for at, n in zip(starts.tolist(), sizes.tolist(), strict=True):
            self.mix[at : at + n, channel] += samples[offset : offset + n]
            offset += n

    def _reserve(self, length: int) -> None:
        if length > len(self.mix):
            grown = np.zeros((max(length, 2 * len(self.mix)), 2), dtype=np.int32)
            grown[: len(self.mix)] = self.mix
            self.mix = grown

    def _shift(self, n: int) -> None:
        rest = len(self.mix) - n
        self.mix[:rest] = self.mix[n:]
        self.mix[rest:] = 0
        self.base += n

    def _blocks(self, block: np.ndarray, now: float) -> list[Event]:
        """AudioBlocks for ``block`` (ending at ``self.base``), once the recording has audio."""
        if not self.audio_seen:
            return []
        out: list[Event] = []
        start = self.base - len(block)
        if self.encoding is None:
            # One G.711 law for every leg so far: keep it as is; otherwise 16-bit PCM loses nothing.
            self.encoding = next(iter(self.encodings)) if len(self.encodings) == 1 else "pcm16"
            out.append(RecordingStarted(self.media_start or now, self.call_id, self.encoding, RATE))
        # Sample 0 is the first media packet; if decodable audio came later, the recording opens with
        # silence for the span before it (undecodable or comfort-noise packets, ringing).
        while self.emitted < start:
            n = min(SILENCE_CHUNK, start - self.emitted)
            silence = np.zeros((n, 2), dtype=np.int16)
            out.append(AudioBlock(now, self.call_id, self.emitted, silence))
            self.emitted += n
        out.append(AudioBlock(now, self.call_id, start, block))
        self.emitted = self.base
        return out

    # -- the end -------------------------------------------------------------------------------------

    def finish(self, ts: float, reason: EndReason, sip_status: int | None) -> list[Event]:
        """Emit the rest of the audio; the caller follows with the CallFinished from :meth:`record`."""
        if self.hold_start is not None:
            self.holds.append((self.hold_start, ts))
            self.hold_start = None
        if self.media_start is None:
            return []
        end = max([self.base, *(leg.stream.high_pos for leg in self.legs.values())])
        if end <= self.base:
            return []
        return self._emit(end, ts)

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
