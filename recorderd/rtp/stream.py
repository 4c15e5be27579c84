"""RTP streams (one SSRC in one direction of a call): placement in time, order, loss and duplicates.

Theory of operation. A call's recording has its own sample clock: sample 0 is the capture time of the
call's first media packet. A stream is *anchored* by its first packet: that packet's RTP timestamp is
placed at the sample matching its capture time, and every later packet is placed by RTP timestamp
difference (RFC 3550 5.1: the timestamp advances by the sampling clock). Placing by timestamp, not by
arrival, is what makes reordering harmless (a packet lands where it belongs as long as that part of the
recording has not been written yet), fills loss with exactly the missing span of silence, and keeps the
two directions aligned as the mirror port saw them. If the timestamp and the capture clock disagree by
more than ``resync`` samples (a sender restarted its clock, a B2BUA switched sources under one SSRC) the
stream is re-anchored and the event counted. Sequence numbers and timestamps are unwrapped (RFC 3550
A.1) to the integer nearest the highest sequence number and the previous timestamp. Duplicates are found
by extended sequence number over a bounded window; anything arriving for a span already written out is
*late* and dropped. Loss follows RFC 3550 A.3: expected = highest - lowest extended sequence number + 1,
lost = expected - unique packets received.

Data layout. Thousands of streams each take fifty packets a second, so the state of every stream lives
in one :class:`StreamTable` as columns (a NumPy array per field, a row per stream, called its *slot*),
and the packets placed but not yet written out live in one :class:`Pending` table of columns for all
streams together, their payload bytes copied into one ring of bytes. That lets a whole capture batch of
packets be placed with a few dozen array operations (:meth:`StreamTable.push_many`) instead of a Python
call per packet, and lets the call mixer take every call's packets due at a tick in one sort
(:meth:`StreamTable.take`). :meth:`StreamTable.push` is the same placement for one packet, for
everything the batch path does not take; :meth:`push_many` hands it every stream whose packets in the
batch are not simply the next ones in order (a duplicate, a reordering, a late packet, a resync), so
the two give the same result packet for packet, which the tests check on random input.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from recorderd.rtp.dtmf import parse_telephone_event
from recorderd.rtp.pending import Pending, Ring, by_slot_pos_seq, group_starts, running_max

# Extended sequence numbers remembered for duplicate detection (a power of 2): 2.5 s of 20 ms packets,
# more than the reorder window, so an older copy is dropped as late instead.
DUPLICATE_WINDOW = 128
_WINDOW_MASK = DUPLICATE_WINDOW - 1
NO_TAKE = np.iinfo(np.int64).min  # "take nothing of this stream"

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]
U8 = NDArray[np.uint8]


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


@dataclass(frozen=True, slots=True)
class Digit:
    pos: int  # sample position of the event start
    digit: str
    duration: int  # RTP timestamp units


@dataclass(frozen=True, slots=True, eq=False)
class Taken:
    """Packets handed out by :meth:`StreamTable.take`, as columns, ordered by slot, then time.

    ``at`` is where each payload starts in the pending ring; :meth:`StreamTable.payloads` reads them.
    """

    slot: I64
    pos: I64
    seq: I64
    kind: I64
    pt: I64
    duration: I64
    at: I64

    def __len__(self) -> int:
        return len(self.pos)


class StreamTable:
    """The state of every RTP stream of an engine, a slot each, and their pending packets."""

    _INT = (
        "ssrc", "packets", "duplicates", "late", "resyncs", "payload_type", "first_pos", "anchor",
        "anchored", "ts_ref", "seq_max", "seq_min", "taken_end", "taken_seq", "high", "floor", "resync",
    )  # fmt: skip
    _FLOAT = ("first_ts", "last_ts", "last_seen", "media_start")

    def __init__(self, capacity: int = 64) -> None:
        self.capacity = 0
        self.count = 0  # slots ever handed out; slots below it may be free
        self._free: list[int] = []
        self.holes: list[list[Hole]] = []
        self.events: list[dict[int, Digit]] = []
        self.ring = Ring()
        self.pending = Pending()
        self.ssrc = self.packets = self.duplicates = self.late = self.resyncs = np.empty(0, np.int64)
        self.payload_type = self.first_pos = self.anchor = self.anchored = np.empty(0, np.int64)
        self.ts_ref = self.seq_max = self.seq_min = self.taken_end = np.empty(0, np.int64)
        self.taken_seq = self.high = self.floor = self.resync = np.empty(0, np.int64)
        self.first_ts = self.last_ts = self.last_seen = self.media_start = np.empty(0, np.float64)
        self.seen = np.empty((0, DUPLICATE_WINDOW), np.int64)
        self._grow(capacity)

    def _grow(self, capacity: int) -> None:
        old = self.capacity
        for name in self._INT + self._FLOAT:
            column = getattr(self, name)
            grown = np.zeros(capacity, dtype=column.dtype)
            grown[:old] = column
            setattr(self, name, grown)
        seen = np.full((capacity, DUPLICATE_WINDOW), -1, dtype=np.int64)
        seen[:old] = self.seen
        self.seen = seen
        self.holes += [[] for _ in range(capacity - old)]
        self.events += [{} for _ in range(capacity - old)]
        self.capacity = capacity

    # -- slots ---------------------------------------------------------------------------------------

    def open(self, ssrc: int, now: float, now_pos: int, resync: int, media_start: float, floor: int) -> int:
        """A new stream's slot; ``now_pos`` is the sample of capture time ``now`` in its call."""
        if self._free:
            slot = self._free.pop()
        else:
            if self.count == self.capacity:
                self._grow(2 * self.capacity)
            slot = self.count
            self.count += 1
        for name in self._INT + self._FLOAT:
            getattr(self, name)[slot] = 0
        self.seen[slot] = -1
        self.ssrc[slot], self.resync[slot], self.floor[slot] = ssrc, resync, floor
        self.first_ts[slot] = self.last_ts[slot] = self.last_seen[slot] = now
        self.media_start[slot] = media_start
        self.payload_type[slot] = self.seq_max[slot] = self.seq_min[slot] = -1
        self.taken_end[slot] = self.taken_seq[slot] = -1
        self.first_pos[slot] = self.high[slot] = now_pos
        self.holes[slot] = []
        self.events[slot] = {}
        return slot

    def close(self, slots: list[int]) -> None:
        """Free ``slots`` (their call has ended and taken everything) for reuse."""
        self._free.extend(slots)

    # -- arrival, one packet -------------------------------------------------------------------------

    def push(
        self,
        slot: int,
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
        """Place one packet captured at ``now`` (sample ``now_pos``) covering ``duration`` samples;
        ``floor`` is the first sample not yet written out, so anything placed before it is late."""
        outcome, pos, ext = self._place(slot, seq, ts, pt, kind, now, now_pos, floor, payload)
        if outcome is _ACCEPTED:
            at = self.ring.put(payload) if kind == Kind.AUDIO else 0
            self._accept(slot, pos, ext, duration << 16 | kind << 8 | pt, at, now, duration)
        return outcome

    def _place(
        self,
        slot: int,
        seq: int,
        ts: int,
        pt: int,
        kind: Kind,
        now: float,
        now_pos: int,
        floor: int,
        payload: bytes | None,
    ) -> tuple[Outcome, int, int]:
        self.last_seen[slot] = now
        high = int(self.seq_max[slot])
        if high >= 0:
            delta = (seq - high) & 0xFFFF
            seq = high + delta if delta < 0x8000 else high + delta - 0x10000
            if self.seen[slot, seq & _WINDOW_MASK] == seq:
                self.duplicates[slot] += 1
                return _DUPLICATE, 0, seq
        if not self.anchored[slot]:
            self.ts_ref[slot], self.anchored[slot] = ts, 1
            self.anchor[slot] = now_pos - ts
            pos = now_pos
        else:
            ts_ref = int(self.ts_ref[slot])
            delta = (ts - ts_ref) & 0xFFFFFFFF
            ext = ts_ref + (delta if delta < 0x80000000 else delta - 0x100000000)
            pos = int(self.anchor[slot]) + ext
            if kind is not _EVENT:
                # Telephone events keep their start timestamp for the whole key press: no resync.
                resync = int(self.resync[slot])
                if pos - now_pos > resync or now_pos - pos > resync:
                    self.resyncs[slot] += 1
                    self.anchor[slot] = now_pos - ext
                    pos = now_pos
                self.ts_ref[slot] = ext
        if pos < floor:
            self.late[slot] += 1
            return _LATE, pos, seq
        if kind is _EVENT:
            assert payload is not None
            self._event(slot, payload, pos)  # may raise ParseError: the packet is then not counted
        else:
            self.payload_type[slot] = pt
        if seq > high:
            self.seq_max[slot] = seq
        if seq < self.seq_min[slot] or not self.packets[slot]:  # extended numbers may be negative
            self.seq_min[slot] = seq
        self.seen[slot, seq & _WINDOW_MASK] = seq
        return _ACCEPTED, pos, seq

    def _accept(self, slot: int, pos: int, ext: int, info: int, at: int, now: float, duration: int) -> None:
        self.packets[slot] += 1
        self.last_ts[slot] = now
        if pos + duration > self.high[slot]:
            self.high[slot] = pos + duration
        self.pending.add_one(slot, pos, ext, info, at)

    def _event(self, slot: int, payload: bytes, pos: int) -> None:
        event = parse_telephone_event(payload)
        known = self.events[slot].get(pos)
        if known is None or event.duration > known.duration:
            self.events[slot][pos] = Digit(pos, event.digit, event.duration)

    # -- arrival, a batch ----------------------------------------------------------------------------

    def push_many(
        self,
        slots: I64,
        seq: I64,
        ts: I64,
        pt: I64,
        now: F64,
        sample_rate: int,
        payloads: U8,
    ) -> Counter[Outcome]:
        """Place audio packets of known streams, in arrival order: exactly what :meth:`push` packet by
        packet would do. ``payloads`` holds one payload per row (all the same length, one sample per
        byte, so that length is every packet's duration); ``pt`` is each packet's payload type.

        A stream whose packets here are simply the next ones (each sequence number above the last by
        less than half the sequence space, each placed within the resync bound and after the floor)
        is placed with array operations; any other stream goes through the one-packet path in arrival
        order. Returns how many packets were not accepted, by outcome."""
        order = np.argsort(slots, kind="stable")
        s = slots[order]
        first = group_starts(s)
        group = np.cumsum(first) - 1
        o_seq, o_ts, o_now = seq[order], ts[order], now[order]
        # sequence numbers, each unwrapped against the previous packet of its stream
        high = self.seq_max[s]
        prev = np.empty_like(high)
        prev[1:] = o_seq[:-1]
        prev[first] = high[first] & 0xFFFF
        step = (o_seq - prev) & 0xFFFF
        total = np.cumsum(step)
        ext = (high - (total - step))[first][group] + total
        # timestamps, each unwrapped against the previous packet of its stream (RFC 3550 A.1)
        ts_ref = self.ts_ref[s]
        prev = np.empty_like(ts_ref)
        prev[1:] = o_ts[:-1]
        prev[first] = ts_ref[first]
        tstep = (o_ts - prev) & 0xFFFFFFFF
        tstep -= (tstep >= 0x80000000) * 0x100000000
        total = np.cumsum(tstep)
        ext_ts = (ts_ref - (total - tstep))[first][group] + total
        pos = self.anchor[s] + ext_ts
        now_pos = np.round((o_now - self.media_start[s]) * sample_rate).astype(np.int64)
        resync = self.resync[s]
        odd = (
            (step == 0)
            | (step >= 0x8000)
            | (high < 0)
            | (self.anchored[s] == 0)
            | (pos - now_pos > resync)
            | (now_pos - pos > resync)
            | (pos < self.floor[s])
        )
        outcomes: Counter[Outcome] = Counter()
        if odd.any():
            odd_stream = np.zeros(int(group[-1]) + 1, dtype=bool)
            odd_stream[group[odd]] = True
            odd = odd_stream[group]
            for i in np.sort(order[odd]).tolist():
                outcome = self._push_audio(int(slots[i]), int(seq[i]), int(ts[i]), int(pt[i]), float(now[i]),
                                           sample_rate, payloads[i])  # fmt: skip
                if outcome is not _ACCEPTED:
                    outcomes[outcome] += 1
            keep = np.flatnonzero(~odd)
            if not len(keep):
                return outcomes
            order, s, ext, ext_ts, pos = (a[keep] for a in (order, s, ext, ext_ts, pos))
            o_now = o_now[keep]
            first = group_starts(s)
        starts = np.flatnonzero(first)
        last = np.append(starts[1:] - 1, len(s) - 1)
        duration = payloads.shape[1]
        slot = s[starts]
        self.seq_max[slot] = ext[last]
        self.ts_ref[slot] = ext_ts[last]
        self.last_ts[slot] = self.last_seen[slot] = o_now[last]
        self.payload_type[slot] = pt[order[last]]
        self.packets[slot] += np.diff(np.append(starts, len(s)))
        self.high[slot] = np.maximum(self.high[slot], np.maximum.reduceat(pos, starts) + duration)
        # The duplicate window: every sequence number here is above all those in it, so in each cell
        # the newest is the largest.
        np.maximum.at(self.seen.reshape(-1), s * DUPLICATE_WINDOW + (ext & _WINDOW_MASK), ext)
        at = self.ring.put_rows(payloads[order])
        info = duration << 16 | int(Kind.AUDIO) << 8 | pt[order]
        self.pending.add(s, pos, ext, info, at)
        return outcomes

    def _push_audio(
        self, slot: int, seq: int, ts: int, pt: int, now: float, sample_rate: int, payload: U8
    ) -> Outcome:
        now_pos = round((now - float(self.media_start[slot])) * sample_rate)
        floor = int(self.floor[slot])
        return self.push(slot, seq, ts, pt, payload.tobytes(), Kind.AUDIO, len(payload), now, now_pos, floor)

    def snapshot(self) -> Snapshot:
        """The columns a timer tick reads for every call, as lists."""
        return Snapshot(self.last_seen.tolist(), self.last_ts.tolist(), self.high.tolist())

    # -- departure -----------------------------------------------------------------------------------

    @property
    def pending_count(self) -> int:
        return len(self.pending)

    def take(self, before: I64) -> Taken | None:
        """Hand out the pending packets of every slot placed before ``before[slot]`` (nothing for
        :data:`NO_TAKE`), ordered by slot, then position, then sequence number; note the holes
        between them. None when there are none."""
        columns = self.pending.merged()
        slot, pos = columns[0], columns[1]
        ready = pos < before[slot]
        chosen = np.flatnonzero(ready)
        if not len(chosen):
            return None
        # Index lists, not boolean masks: a mask gathers each of the five columns several times
        # slower, and at thousands of calls these columns hold a million rows.
        rest = np.flatnonzero(~ready)
        kept = tuple(column.take(rest) for column in columns)
        self.pending.parts = [kept]  # type: ignore[list-item]
        audio = (kept[3] >> 8 & 0xFF) == Kind.AUDIO
        self.ring.tail = int(np.where(audio, kept[4], self.ring.head).min()) if len(rest) else self.ring.head
        slot, pos, seq, info, at = (column.take(chosen) for column in columns)
        order = by_slot_pos_seq(slot, pos, seq)
        slot, pos, seq, info, at = (column.take(order) for column in (slot, pos, seq, info, at))
        taken = Taken(slot, pos, seq, (info >> 8) & 0xFF, info & 0xFF, info >> 16, at)
        self._note_holes(taken)
        return taken

    def _note_holes(self, t: Taken) -> None:
        first = group_starts(t.slot)
        group = np.cumsum(first) - 1
        starts = np.flatnonzero(first)
        slot = t.slot[starts]
        taken_end = self.taken_end[t.slot]
        ends = running_max(np.maximum(t.pos + t.duration, taken_end), group)
        before_end = np.empty_like(ends)
        before_end[1:] = ends[:-1]
        before_end[first] = taken_end[first]
        before_seq = np.empty_like(ends)
        before_seq[1:] = t.seq[:-1]
        before_seq[first] = self.taken_seq[slot]
        for i in np.flatnonzero((t.pos > before_end) & (before_end >= 0)).tolist():
            hole = Hole(int(before_end[i]), int(t.pos[i]), bool(t.seq[i] - before_seq[i] > 1))
            self.holes[int(t.slot[i])].append(hole)
        last = np.append(starts[1:] - 1, len(t) - 1)
        self.taken_end[slot] = ends[last]
        self.taken_seq[slot] = t.seq[last]

    def payloads(self, taken: Taken, rows: I64) -> U8:
        """The payload bytes of ``taken``'s audio ``rows``, concatenated."""
        return self.ring.gather(taken.at[rows], taken.duration[rows])

    def digits(self, slot: int) -> list[Digit]:
        return sorted(self.events[slot].values(), key=lambda d: d.pos)


class Snapshot(NamedTuple):
    """Per-slot columns read once per timer tick as Python lists: the tick looks at every call's
    streams one element at a time, which costs a list far less than an array."""

    last_seen: list[float]
    last_ts: list[float]
    high: list[int]
