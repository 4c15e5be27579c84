"""The fast path: reading a whole batch's headers, and the table of streams its frames may be placed
for without the general path.

:func:`read_headers` reads every frame's Ethernet, optional 802.1Q, IPv4, UDP and RTP header fields
with a few NumPy gathers (a structured dtype laid over 54 bytes from each frame's start) and marks
the frames that could take the fast path: option-less, unfragmented IPv4 UDP carrying RTP version 2
without padding or extensions, whole in the capture.

An entry maps a stream's key as it is on the wire (source and destination IPv4 addresses; ports and
SSRC) to its slot in the stream table and the payload type and size its packets must have. The
entries live in NumPy columns beside a dictionary from key to row, so a whole batch is matched with
one sorted search (:meth:`FastTable.match`) however many streams there are: at 5,000 calls a batch
holds some 3,000 distinct streams, and a dictionary probe for each cost more than placing them. A
removed entry leaves a dead row (slot -1), revived if its key comes back, until the rows are
compacted; the search order is rebuilt only after rows were added.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import as_strided
from numpy.typing import NDArray

from recorderd.events import FrameBatch

I64 = NDArray[np.int64]
U64 = NDArray[np.uint64]
FastKey = tuple[int, int]  # source and destination addresses; ports << 32 | SSRC
GENERAL, UNBOUND = -1, -2  # Matched.slots of frames without a stream: the general path; only counted
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
        self._ordered = 0  # rows below this are in _order; the ones above are merged in at the next match

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
        self._sort()
        assert self._order is not None
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

    def _sort(self) -> None:
        """Bring the search order up to date: rebuilt when None, else the rows added since merged
        in (after equal combined keys, as a stable sort of all rows would put them)."""
        if self._order is None:
            hashed = combine(self._key[: self._used], self._key2[: self._used])
            self._order = np.argsort(hashed, kind="stable")
            self._sorted = hashed[self._order]
        elif self._ordered < self._used:
            added = combine(self._key[self._ordered : self._used], self._key2[self._ordered : self._used])
            order = np.argsort(added, kind="stable")
            at = np.searchsorted(self._sorted, added[order], side="right")
            self._sorted = np.insert(self._sorted, at, added[order])
            self._order = np.insert(self._order, at, self._ordered + order)
        self._ordered = self._used

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


# An Ethernet frame from its start to the end of a 12-byte RTP header (offset 54), as the fast path
# reads it (after an 802.1Q tag, from 4 bytes further on): EtherType; IPv4 version/IHL, total length,
# flags/fragment offset, protocol; source and destination addresses; UDP ports and length; RTP first
# byte, marker/payload type, sequence number, timestamp, SSRC.
_HEADER = np.dtype(
    {
        "names": [
            "etype",
            "vihl",
            "length",
            "frag",
            "proto",
            "addrs",
            "ports",
            "ulen",
            "b0",
            "b1",
            "seq",
            "ts",
            "ssrc",
        ],
        "formats": [">u2", "u1", ">u2", ">u2", "u1", ">u8", ">u4", ">u2", "u1", "u1", ">u2", ">u4", ">u4"],
        "offsets": [12, 14, 16, 20, 23, 26, 34, 38, 42, 43, 44, 46, 50],
        "itemsize": 54,
    }
)
_ETH_IPV4 = 0x0800


@dataclass(frozen=True, slots=True, eq=False)
class Matched:
    """A batch's frames as the fast path sees them: stream slot (-1: take the general path), RTP
    sequence number, timestamp and payload type, and where the payload is in ``data`` and its size."""

    slots: I64
    candidate: NDArray[np.bool_]  # IPv4 UDP carrying RTP version 2 without options or padding
    key: NDArray[np.uint64]  # source and destination addresses
    key2: NDArray[np.uint64]  # ports << 32 | SSRC
    hashed: NDArray[np.uint64]  # both keys in one, for sorting and searching
    seq: I64
    ts: I64
    pt: I64
    at: I64
    size: I64
    data: NDArray[np.uint8]


def endpoint_keys(m: Matched, chosen: I64) -> tuple[U64, U64]:
    """Source and destination endpoints of frames ``chosen`` as ``address << 16 | port``, the form
    of ``rtp.demux.ipv4_key``."""
    addrs, ports = m.key[chosen], m.key2[chosen] >> np.uint64(32)
    src = (addrs >> np.uint64(32)) << np.uint64(16) | ports >> np.uint64(16)
    dst = (addrs & np.uint64(0xFFFFFFFF)) << np.uint64(16) | ports & np.uint64(0xFFFF)
    return src, dst


def mark_unbound(m: Matched, first: int, bound: set[int]) -> None:
    """Mark UNBOUND the frames from ``first`` on that look like RTP, have no stream and whose ends
    are not in ``bound`` (``MediaMap.ipv4_keys``): frame by frame each would only be counted as
    ``rtp.unmapped`` and tallied for the orphans (``engine/orphans.py``)."""
    chosen = first + np.flatnonzero(m.candidate[first:] & (m.slots[first:] == GENERAL))
    if not len(chosen):
        return
    if bound:
        src, dst = endpoint_keys(m, chosen)
        free = [s not in bound and d not in bound for s, d in zip(src.tolist(), dst.tolist(), strict=True)]
        chosen = chosen[np.array(free, dtype=bool)]
    m.slots[chosen] = UNBOUND


def bound_again(m: Matched, i: int, fresh: list[int] | None, bound: set[int]) -> None:
    """Bindings ``fresh`` (endpoint keys) were made before frame ``i``, the first not yet taken: the
    UNBOUND frames from it on that they name go back to the general path (None: too many to list,
    so every frame is checked against ``bound``)."""
    chosen = i + np.flatnonzero(m.slots[i:] == UNBOUND)
    if not len(chosen):
        return
    if fresh is None:
        m.slots[chosen] = GENERAL
        mark_unbound(m, i, bound)
        return
    src, dst = endpoint_keys(m, chosen)
    keys = np.array(fresh, dtype=np.uint64)
    m.slots[chosen[np.isin(src, keys) | np.isin(dst, keys)]] = GENERAL


def payload_rows(data: NDArray[np.uint8], at: I64, length: int) -> NDArray[np.uint8]:
    """The ``length`` bytes at each of ``at``, one row each (a copy)."""
    view = as_strided(data, shape=(len(data) - length + 1, length), strides=(1, 1), writeable=False)
    rows: NDArray[np.uint8] = view[at]
    return rows


def read_headers(batch: FrameBatch, meta: NDArray[np.uint32]) -> Matched:
    """Every frame's headers as the fast path reads them (a few NumPy gathers for the whole batch);
    no stream matched yet."""
    data = np.frombuffer(batch.data, dtype=np.uint8)
    off, caplen = meta[:, 2].astype(np.int64), meta[:, 3].astype(np.int64)
    start = np.where(caplen >= 54, off, 0)
    vlan = (data[start + 12] == 0x81) & (data[start + 13] == 0x00) & (caplen >= 58)
    start += 4 * vlan
    if len(data) < 54:  # a batch of runts: nothing here is a fast frame, but the rows need 54 bytes
        data = np.concatenate([data, np.zeros(54 - len(data), dtype=np.uint8)])
    h = payload_rows(data, np.minimum(start, len(data) - 54), 54).view(_HEADER).ravel()
    length = h["length"].astype(np.int64)
    ok = (
        (caplen >= 54)
        & (h["etype"] == _ETH_IPV4)
        & (h["vihl"] == 0x45)
        & ((h["frag"] & 0x3FFF) == 0)
        & (h["proto"] == 17)
        & (h["b0"] == 0x80)
        & (h["ulen"] == length - 20)
        & (length >= 40)  # the whole RTP header inside the packet
        & (start + 14 + length <= off + caplen)
    )
    key = h["addrs"].astype(np.uint64)
    key2 = h["ports"].astype(np.uint64) << np.uint64(32) | h["ssrc"]
    m = Matched(
        slots=np.full(len(h), -1, dtype=np.int64),
        candidate=ok,
        key=key,
        key2=key2,
        hashed=combine(key, key2),
        seq=h["seq"].astype(np.int64),
        ts=h["ts"].astype(np.int64),
        pt=(h["b1"] & 0x7F).astype(np.int64),
        at=start + 54,
        size=length - 40,  # IPv4, UDP and RTP headers
        data=data,
    )
    return m
