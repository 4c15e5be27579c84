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

Packets are held pending until the call asks for everything before some sample (``take``), in columns
(arrays of positions, sequence numbers and packed kind/type/duration, and a list of payloads) rather than
a tuple per packet: thousands of streams hold a million packets between them, and tuples would all be
objects the garbage collector walks again and again;
anything arriving for a span already taken is *late* and dropped. Duplicates are found by extended
sequence number over a bounded window. Loss follows RFC 3550 A.3: expected = highest - lowest extended
sequence number + 1, lost = expected - unique packets received.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from numpy.typing import NDArray

from recorderd.rtp.dtmf import parse_telephone_event

# Extended sequence numbers remembered for duplicate detection (a power of 2): 2.5 s of 20 ms packets,
# more than the reorder window, so an older copy is dropped as late instead. Kept small and in one
# contiguous array because thousands of streams share the CPU cache.
DUPLICATE_WINDOW = 128
_WINDOW_MASK = DUPLICATE_WINDOW - 1


class Kind(IntEnum):
    AUDIO = 0
    SILENCE = 1  # comfort noise (RFC 3389): the sender is deliberately silent
    EVENT = 2  # RFC 4733 telephone-event
    UNDECODABLE = 3


class Outcome(IntEnum):
    ACCEPTED = 0
    DUPLICATE = 1
    LATE = 2


_EVENT = Kind.EVENT
_ACCEPTED, _DUPLICATE, _LATE = Outcome.ACCEPTED, Outcome.DUPLICATE, Outcome.LATE


@dataclass(frozen=True, slots=True)
class Hole:
    """A span of samples inside the stream with no packet; ``lost`` when sequence numbers are missing."""

    start: int
    end: int
    lost: bool


@dataclass(frozen=True, slots=True, eq=False)
class Taken:
    """Packets handed out by :meth:`RtpStream.take`, in time order, as columns."""

    pos: NDArray[np.int64]
    seq: NDArray[np.int64]
    kind: NDArray[np.int64]
    pt: NDArray[np.int64]
    duration: NDArray[np.int64]
    payloads: list[bytes]


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
        "_pos",
        "_seq",
        "_info",
        "_payloads",
        "_taken_end",
        "high",
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
        # extended sequence numbers by their low bits: a packet is a duplicate when its slot holds it
        self._seen = array("q", [-1]) * DUPLICATE_WINDOW
        self._pos = array("q")  # pending packets: sample position,
        self._seq = array("q")  # extended sequence number,
        self._info = array("q")  # duration << 16 | kind << 8 | payload type,
        self._payloads: list[bytes] = []  # and payload
        self._taken_end = -1  # end sample of the last packet handed out
        self.high = now_pos  # end sample of the furthest packet placed
        self._taken_seq = -1
        self.holes: list[Hole] = []
        self._events: dict[int, Digit] = {}

    # -- arrival -------------------------------------------------------------------------------------

    def push(
        self,
        seq: int,
        ts: int,
        pt: int,
        payload: bytes,
        kind: Kind,
        duration: int,
        now: float,
        now_pos: int,
        floor: int,
    ) -> Outcome:
        """Take one packet captured at ``now`` (sample ``now_pos``) that covers ``duration`` samples;
        ``floor`` is the first sample not yet written out, so anything placed before it is late.

        This runs once per RTP packet, so it is written for speed. The one place in recorderd that
        unwraps 16-bit sequence numbers and 32-bit timestamps (RFC 3550 A.1): each is extended to the
        integer nearest the highest one seen, so a wrap from 65535 to 0 continues at 65536."""
        high = self._seq_max
        seen = self._seen
        if high >= 0:
            delta = (seq - high) & 0xFFFF
            seq = high + delta if delta < 0x8000 else high + delta - 0x10000
            if seen[seq & _WINDOW_MASK] == seq:
                self.duplicates += 1
                return _DUPLICATE
        anchor = self._anchor
        if anchor is None:
            self._ts_ref = ts
            self._anchor = anchor = now_pos - ts
            pos = now_pos
        else:
            delta = (ts - self._ts_ref) & 0xFFFFFFFF
            ext = self._ts_ref + (delta if delta < 0x80000000 else delta - 0x100000000)
            pos = anchor + ext
            if kind is not _EVENT:
                # Telephone events keep their start timestamp for the whole key press: no resync.
                if pos - now_pos > self.resync or now_pos - pos > self.resync:
                    self.resyncs += 1
                    self._anchor = now_pos - ext
                    pos = now_pos
                self._ts_ref = ext
        if pos < floor:
            self.late += 1
            return _LATE
        if kind is _EVENT:
            self._event(payload, pos)  # may raise ParseError: the packet is then not counted
        else:
            self.payload_type = pt
        if seq > high:
            self._seq_max = seq
        if seq < self._seq_min or self._seq_min < 0:
            self._seq_min = seq
        seen[seq & _WINDOW_MASK] = seq
        self.packets += 1
        self.last_ts = now
        end = pos + duration
        if end > self.high:
            self.high = end
        self._pos.append(pos)
        self._seq.append(seq)
        self._info.append(duration << 16 | kind << 8 | pt)
        self._payloads.append(payload)
        return _ACCEPTED

    def _event(self, payload: bytes, pos: int) -> None:
        event = parse_telephone_event(payload)
        known = self._events.get(pos)
        if known is None or event.duration > known.duration:
            self._events[pos] = Digit(pos, event.digit, event.duration)

    # -- departure -----------------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        return len(self._pos)

    def take(self, before: int) -> Taken | None:
        """Hand out, in time order, the pending packets placed before sample ``before``, and note the
        holes between them; None when there are none."""
        if not self._pos:
            return None
        pos, seq, info = (np.array(a, dtype=np.int64) for a in (self._pos, self._seq, self._info))
        order = np.lexsort((seq, pos))
        cut = int(np.searchsorted(pos[order], before))
        if cut == 0:
            return None
        ready, rest = order[:cut], order[cut:]
        payloads = self._payloads
        taken = Taken(
            pos[ready], seq[ready], (info[ready] >> 8) & 0xFF, info[ready] & 0xFF, info[ready] >> 16,
            [payloads[i] for i in ready.tolist()],
        )  # fmt: skip
        keep = rest.tolist()
        self._pos, self._seq, self._info = (array("q", a[rest].tobytes()) for a in (pos, seq, info))
        self._payloads = [payloads[i] for i in keep]
        self._note_holes(taken)
        return taken

    def _note_holes(self, t: Taken) -> None:
        ends = np.maximum.accumulate(np.maximum(t.pos + t.duration, self._taken_end))
        before_end = np.concatenate(([self._taken_end], ends[:-1]))
        before_seq = np.concatenate(([self._taken_seq], t.seq[:-1]))
        gaps = np.flatnonzero((t.pos > before_end) & (before_end >= 0))
        for i in gaps.tolist():
            self.holes.append(Hole(int(before_end[i]), int(t.pos[i]), bool(t.seq[i] - before_seq[i] > 1)))
        self._taken_end, self._taken_seq = int(ends[-1]), int(t.seq[-1])

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
        return self.high

    def digits(self) -> list[Digit]:
        return sorted(self._events.values(), key=lambda d: d.pos)
