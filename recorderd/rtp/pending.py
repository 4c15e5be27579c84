"""Packets placed but not yet written out, for every stream of an engine together.

Two parts: :class:`Pending`, their columns (slot, position, extended sequence number, packed type and
duration, payload position), appended a batch at a time and merged only when the mixer takes some;
and :class:`Ring`, their payload bytes, copied in as they arrive and read back by position. Columns
and one ring rather than an object per packet: at 5,000 calls over a million packets are pending.
Beside them, the column operations the stream table runs on such rows: runs of equal slots, running
maxima per slot, and the order by slot, position and sequence number.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided
from numpy.typing import NDArray

I64 = NDArray[np.int64]
U8 = NDArray[np.uint8]

FREE = 4  # the ring doubles before pending payloads would leave less than 1/FREE of it free
_GROUP = 1 << 44  # separates streams when running maxima are computed over several at once


def concat_ranges(starts: I64, sizes: I64) -> I64:
    """The indices of the ranges ``[start, start + size)``, one range after another."""
    before = np.cumsum(sizes) - sizes  # where each range begins in the output
    index: I64 = np.arange(int(sizes.sum()), dtype=np.int64) + np.repeat(starts - before, sizes)
    return index


def group_starts(keys: I64) -> NDArray[np.bool_]:
    """True where a run of equal ``keys`` (sorted) begins."""
    first = np.empty(len(keys), dtype=bool)
    if len(keys):
        first[0] = True
        np.not_equal(keys[1:], keys[:-1], out=first[1:])
    return first


def running_max(values: I64, group: I64) -> I64:
    """The running maximum of ``values`` restarting at every new ``group`` (sorted, small ints)."""
    shift = group * _GROUP
    out: I64 = np.maximum.accumulate(values + shift) - shift
    return out


def by_slot_pos_seq(slot: I64, pos: I64, seq: I64) -> I64:
    """The order of rows by slot, then position, then sequence number.

    Rows are pending in arrival order, so each stream's are nearly always in order already: a stable
    sort by slot alone (a radix sort when slots fit in 16 bits) gives the answer, checked in one pass;
    a stream with a reordered or duplicate packet sends the whole sort to ``lexsort``."""
    keys = slot.astype(np.uint16) if len(slot) and int(slot.max()) < 1 << 16 else slot
    order: I64 = np.argsort(keys, kind="stable")
    s, p, q = slot[order], pos[order], seq[order]
    same = s[1:] == s[:-1]
    if (same & ((p[1:] < p[:-1]) | ((p[1:] == p[:-1]) & (q[1:] <= q[:-1])))).any():
        order = np.lexsort((seq, pos, slot))
    return order


class Ring:
    """Payload bytes of pending packets: one array written round and round.

    A payload is stored whole and contiguous at a position that only grows (``at``); its bytes are at
    ``at % size``. The table reports the oldest position still pending (its ``tail``), and the ring
    doubles before the pending bytes would leave less than a quarter of it free (:data:`FREE`), so it
    never overwrites any.

    Why not let it fill up: under a steady load the pending bytes rise and fall with the mixer's
    ticks (at 5,000 calls between 96 and 128 MB). A ring grown only when full can be just big enough
    for the ramp-up and then grow under full load, where the copy and the first touch of the new
    pages (0.15-0.3 s for 256 MB on a VM whose host backs memory lazily) stall every call. With the
    headroom it grows while the load is still rising. The price: a peak in the top quarter below a
    power of two gets a ring twice that size (at 5,000 calls 256 MB either way).
    """

    def __init__(self, size: int = 1 << 20) -> None:
        self.buf: U8 = np.zeros(size, dtype=np.uint8)
        self.head = 0  # next free position
        self.tail = 0  # oldest position still needed

    def _room(self, n: int) -> int:
        """A position where ``n`` contiguous bytes fit, growing the ring if needed."""
        size = len(self.buf)
        at = self.head
        if at % size + n > size:  # never split a payload over the end: skip to the start
            at += size - at % size
        while at + n - self.tail > len(self.buf) - len(self.buf) // FREE:
            self._grow()
            size = len(self.buf)
            at = self.head if self.head % size + n <= size else self.head + size - self.head % size
        self.head = at + n
        return at

    def _grow(self) -> None:
        old, size = self.buf, len(self.buf)
        new = np.zeros(2 * size, dtype=np.uint8)
        for at in range(self.tail - self.tail % size, self.head, size):  # live bytes, a lap at a time
            lo, hi = max(at, self.tail), min(at + size, self.head)
            if lo < hi:
                new[lo % (2 * size) : lo % (2 * size) + hi - lo] = old[lo % size : lo % size + hi - lo]
        self.buf = new

    def put(self, payload: bytes) -> int:
        at = self._room(len(payload))
        start = at % len(self.buf)
        self.buf[start : start + len(payload)] = np.frombuffer(payload, dtype=np.uint8)
        return at

    def put_rows(self, rows: U8) -> I64:
        """Store equal-length payloads (a 2-D array, one row each); their positions."""
        count, width = rows.shape
        at = self._room(count * width)
        start = at % len(self.buf)
        self.buf[start : start + count * width] = rows.ravel()
        positions: I64 = at + width * np.arange(count, dtype=np.int64)
        return positions

    def rows(self, at: I64, width: int) -> U8:
        """Payloads of ``width`` bytes at positions ``at``, one row each."""
        size = len(self.buf)
        view = as_strided(self.buf, shape=(size - width + 1, width), strides=(1, 1), writeable=False)
        out: U8 = view[at % size]
        return out

    def gather(self, at: I64, width: I64) -> U8:
        """Payloads of any lengths at positions ``at``, concatenated."""
        if len(at) and (width == width[0]).all():
            return self.rows(at, int(width[0])).ravel()
        out: U8 = self.buf[concat_ranges(at % len(self.buf), width)]
        return out


class Pending:
    """Growable columns of pending packets: slot, position, extended sequence number, info, ring
    position; ``info`` packs duration << 16 | kind << 8 | payload type."""

    def __init__(self) -> None:
        self.parts: list[tuple[I64, I64, I64, I64, I64]] = []
        self.one: list[tuple[int, int, int, int, int]] = []

    def add(self, slot: I64, pos: I64, seq: I64, info: I64, at: I64) -> None:
        self.parts.append((slot, pos, seq, info, at))

    def add_one(self, slot: int, pos: int, seq: int, info: int, at: int) -> None:
        self.one.append((slot, pos, seq, info, at))

    def __len__(self) -> int:
        return sum(len(p[0]) for p in self.parts) + len(self.one)

    def merged(self) -> tuple[I64, I64, I64, I64, I64]:
        """All pending rows as five columns (merged into one part, so the next call is cheap)."""
        if self.one:
            rows = np.array(self.one, dtype=np.int64).reshape(-1, 5)
            self.parts.append((rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3], rows[:, 4]))
            self.one = []
        if not self.parts:
            empty = np.empty(0, dtype=np.int64)
            return empty, empty, empty, empty, empty
        if len(self.parts) > 1:
            slot, pos, seq, info, at = (np.concatenate(column) for column in zip(*self.parts, strict=True))
            self.parts = [(slot, pos, seq, info, at)]
        return self.parts[0]
