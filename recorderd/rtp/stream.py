"""One RTP stream (one SSRC in one direction of a call): placement in time, order, loss and duplicates.

Theory of operation. A call's recording has its own sample clock: sample 0 is the capture time of the
call's first media packet. A stream is *anchored* by its first packet: that packet's RTP timestamp is
placed at the sample matching its capture time, and every later packet is placed by RTP timestamp
difference (RFC 3550 5.1: the timestamp advances by the sampling clock). Placing by timestamp, not by
arrival, is what makes reordering harmless (a packet lands where it belongs as long as that part of the
recording has not been written yet), fills loss with exactly the missing span of silence, and keeps the
two directions aligned as the mirror port saw them. If the timestamp and the capture clock disagree by
more than ``resync`` samples (a sender restarted its clock, a B2BUA switched sources under one SSRC) the
stream is re-anchored and the event counted.

Packets are held in ``pending`` until the call asks for everything before some sample (``take``);
anything arriving for a span already taken is *late* and dropped. Duplicates are found by extended
sequence number over a bounded window. Loss follows RFC 3550 A.3: expected = highest - lowest extended
sequence number + 1, lost = expected - unique packets received.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from enum import IntEnum

from recorderd.rtp.dtmf import parse_telephone_event
from recorderd.rtp.packet import RtpPacket
from recorderd.rtp.wrap import extend_seq, extend_ts

DUPLICATE_WINDOW = 1024  # extended sequence numbers remembered for duplicate detection


class Kind(IntEnum):
    AUDIO = 0
    SILENCE = 1  # comfort noise (RFC 3389): the sender is deliberately silent
    EVENT = 2  # RFC 4733 telephone-event
    UNDECODABLE = 3


class Outcome(IntEnum):
    ACCEPTED = 0
    DUPLICATE = 1
    LATE = 2


@dataclass(frozen=True, slots=True)
class Hole:
    """A span of samples inside the stream with no packet; ``lost`` when sequence numbers are missing."""

    start: int
    end: int
    lost: bool


@dataclass(frozen=True, slots=True)
class Digit:
    pos: int  # sample position of the event start
    digit: str
    duration: int  # RTP timestamp units


class RtpStream:
    """State of one SSRC. ``kind_of`` maps a payload type to how its payload is treated."""

    __slots__ = (
        "ssrc",
        "samples_per_second",
        "resync",
        "packets",
        "duplicates",
        "late",
        "resyncs",
        "first_ts",
        "last_ts",
        "payload_type",
        "first_pos",
        "_anchor",
        "_ts_ref",
        "_seq_max",
        "_seq_min",
        "_seen",
        "pending",
        "_taken_end",
        "_taken_seq",
        "holes",
        "_events",
    )

    def __init__(self, ssrc: int, now: float, now_pos: int, rate: int, resync: int) -> None:
        self.ssrc = ssrc
        self.samples_per_second = rate
        self.resync = resync
        self.packets = 0
        self.duplicates = 0
        self.late = 0
        self.resyncs = 0
        self.first_ts = now
        self.last_ts = now
        self.payload_type = -1
        self.first_pos = now_pos
        self._anchor: int | None = None  # recording sample of extended RTP timestamp 0
        self._ts_ref = 0
        self._seq_max = -1
        self._seq_min = -1
        self._seen: set[int] = set()
        self.pending: list[tuple[int, int, int, int, int, bytes]] = []  # pos, seq, kind, pt, dur, payload
        self._taken_end = -1  # end sample of the last packet handed out
        self._taken_seq = -1
        self.holes: list[Hole] = []
        self._events: dict[int, Digit] = {}

    # -- arrival -------------------------------------------------------------------------------------

    def push(
        self, pkt: RtpPacket, kind: Kind, duration: int, now: float, now_pos: int, floor: int
    ) -> Outcome:
        """Take one packet captured at ``now`` (sample ``now_pos``) that covers ``duration`` samples;
        ``floor`` is the first sample not yet written out, so anything placed before it is late."""
        seq = self._extend_seq(pkt.seq)
        if seq in self._seen:
            self.duplicates += 1
            return Outcome.DUPLICATE
        pos = self._place(pkt.ts, kind, now_pos)
        if pos < floor:
            self.late += 1
            return Outcome.LATE
        if kind is Kind.EVENT:
            self._event(pkt, pos)  # may raise ParseError: the packet is then not counted
        else:
            self.payload_type = pkt.pt
        self._remember(seq)
        self.packets += 1
        self.last_ts = now
        self.pending.append((pos, seq, kind, pkt.pt, duration, pkt.payload))
        return Outcome.ACCEPTED

    def _extend_seq(self, seq: int) -> int:
        if self._seq_max < 0:
            return seq
        return extend_seq(seq, self._seq_max)

    def _remember(self, seq: int) -> None:
        if self._seq_max < 0 or seq > self._seq_max:
            self._seq_max = seq
        if self._seq_min < 0 or seq < self._seq_min:
            self._seq_min = seq
        self._seen.add(seq)
        if len(self._seen) > 2 * DUPLICATE_WINDOW:
            horizon = self._seq_max - DUPLICATE_WINDOW
            self._seen = {s for s in self._seen if s > horizon}

    def _place(self, ts: int, kind: Kind, now_pos: int) -> int:
        if self._anchor is None:
            self._ts_ref = ts
            self._anchor = now_pos - ts
            return now_pos
        ext = extend_ts(ts, self._ts_ref)
        pos = self._anchor + ext
        # Telephone events keep their start timestamp for the whole key press: no resync on them.
        if kind is not Kind.EVENT and abs(pos - now_pos) > self.resync:
            self.resyncs += 1
            self._anchor = now_pos - ext
            pos = now_pos
        if kind is not Kind.EVENT:
            self._ts_ref = ext
        return pos

    def _event(self, pkt: RtpPacket, pos: int) -> None:
        event = parse_telephone_event(pkt.payload)
        known = self._events.get(pos)
        if known is None or event.duration > known.duration:
            self._events[pos] = Digit(pos, event.digit, event.duration)

    # -- departure -----------------------------------------------------------------------------------

    def take(self, before: int) -> list[tuple[int, int, int, bytes]]:
        """Hand out, in time order, the pending packets placed before sample ``before``, as
        (pos, kind, pt, payload); note the holes between consecutive packets on the way."""
        if not self.pending:
            return []
        self.pending.sort()
        cut = bisect.bisect_left(self.pending, (before,))
        ready, self.pending = self.pending[:cut], self.pending[cut:]
        out = []
        for pos, seq, kind, pt, duration, payload in ready:
            self._note_hole(pos, seq)
            self._taken_end = max(self._taken_end, pos + duration)
            self._taken_seq = seq
            out.append((pos, kind, pt, payload))
        return out

    def _note_hole(self, pos: int, seq: int) -> None:
        if self._taken_end < 0 or pos <= self._taken_end:
            return
        self.holes.append(Hole(self._taken_end, pos, seq - self._taken_seq > 1))

    # -- reporting -----------------------------------------------------------------------------------

    @property
    def expected(self) -> int:
        return 0 if self._seq_max < 0 else self._seq_max - self._seq_min + 1

    @property
    def lost(self) -> int:
        return self.expected - self.packets

    @property
    def high_pos(self) -> int:
        """Sample just after the furthest audio placed so far (pending or taken)."""
        ends = [p[0] + p[4] for p in self.pending]
        return max([self._taken_end, *ends])

    def digits(self) -> list[Digit]:
        return sorted(self._events.values(), key=lambda d: d.pos)
