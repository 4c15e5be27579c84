"""The fast path's table: which streams a batch's frames may be placed for without the general path.

An entry maps a stream's key as it is on the wire (source and destination IPv4 addresses; ports and
SSRC) to its slot in the stream table and the payload type and size its packets must have. The
entries live in NumPy columns beside a dictionary from key to row, so a whole batch is matched with
one sorted search (:meth:`FastTable.match`) however many streams there are: at 5,000 calls a batch
holds some 3,000 distinct streams, and a dictionary probe for each cost more than placing them. A
removed entry leaves a dead row (slot -1), revived if its key comes back, until the rows are
compacted; the search order is rebuilt only after rows were added.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

I64 = NDArray[np.int64]
U64 = NDArray[np.uint64]
FastKey = tuple[int, int]  # source and destination addresses; ports << 32 | SSRC
_MIX = np.uint64(0x9E3779B97F4A7C15)  # spreads the second key word before the two are combined


def combine(key: U64, key2: U64) -> U64:
    """One 64-bit word per stream key, to sort and search by (equal keys, equal words)."""
    out: U64 = key ^ (key2 * _MIX)
    return out


class FastTable:
    def __init__(self, capacity: int = 64) -> None:
        self.rows: dict[FastKey, int] = {}
        self._dead: dict[FastKey, int] = {}  # removed entries' rows, revived if the key comes back
        self._key = np.zeros(capacity, dtype=np.uint64)
        self._key2 = np.zeros(capacity, dtype=np.uint64)
        self._entry = np.full((capacity, 3), -1, dtype=np.int64)  # slot, payload type, size
        self._used = 0
        self._order: I64 | None = None  # rows by combined key; None: to be rebuilt
        self._sorted: U64 = np.zeros(0, dtype=np.uint64)

    def __len__(self) -> int:
        return len(self.rows)

    def __contains__(self, key: FastKey) -> bool:
        return key in self.rows

    def put(self, key: FastKey, slot: int, pt: int, size: int) -> bool:
        """Add or update an entry; True when the key is new."""
        row = self.rows.get(key)
        if row is not None:
            self._entry[row] = (slot, pt, size)
            return False
        row = self._dead.pop(key, None)
        if row is not None:  # one row per key, so a search never finds a dead twin first
            self._entry[row] = (slot, pt, size)
            self.rows[key] = row
            return True
        if self._used == len(self._key):
            self._compact_or_grow()
        row = self._used
        self._used += 1
        self._key[row], self._key2[row] = key
        self._entry[row] = (slot, pt, size)
        self.rows[key] = row
        self._order = None
        return True

    def pop(self, key: FastKey) -> int | None:
        """Remove an entry; its slot, or None if there was none."""
        row = self.rows.pop(key, None)
        if row is None:
            return None
        slot = int(self._entry[row, 0])
        self._entry[row, 0] = -1
        self._dead[key] = row
        return slot

    def match(self, hashed: U64, key: U64, key2: U64, pt: I64, size: I64) -> I64:
        """The slot of each frame's stream (-1: no entry, or not of the entry's payload type and size)."""
        if self._order is None:
            self._order = np.argsort(
                combine(self._key[: self._used], self._key2[: self._used]), kind="stable"
            )
            self._sorted = combine(self._key[: self._used], self._key2[: self._used])[self._order]
        if not len(self._order) or not len(hashed):
            return np.full(len(hashed), -1, dtype=np.int64)
        at = np.minimum(np.searchsorted(self._sorted, hashed), len(self._order) - 1)
        row = self._order[at]
        entry = self._entry[row]
        hit = (
            (key == self._key[row]) & (key2 == self._key2[row]) & (pt == entry[:, 1]) & (size == entry[:, 2])
        )
        slots: I64 = np.where(hit, entry[:, 0], -1)
        return slots

    def _compact_or_grow(self) -> None:
        live = list(self.rows.items())
        if len(live) * 2 < self._used:  # mostly dead rows: keep the live ones, in place
            rows = np.array([row for _, row in live], dtype=np.int64)
            self._key[: len(rows)] = self._key[rows]
            self._key2[: len(rows)] = self._key2[rows]
            self._entry[: len(rows)] = self._entry[rows]
            self._entry[len(rows) :] = -1
            self.rows = {key: k for k, (key, _) in enumerate(live)}
            self._dead = {}
            self._used = len(rows)
        else:
            grown = 2 * len(self._key)
            self._key = np.concatenate((self._key, np.zeros(grown - len(self._key), dtype=np.uint64)))
            self._key2 = np.concatenate((self._key2, np.zeros(grown - len(self._key2), dtype=np.uint64)))
            self._entry = np.concatenate(
                (self._entry, np.full((grown - len(self._entry), 3), -1, dtype=np.int64))
            )
        self._order = None
