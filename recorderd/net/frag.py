"""Bounded IP fragment reassembly for IPv4 (RFC 791 section 3.2) and IPv6 (RFC 8200 section 4.5).

SIP over UDP is fragmented whenever an INVITE with a large SDP exceeds the path MTU, so a recorder must
reassemble. Fragments of one datagram share the key ``(src, dst, protocol, identification)``; they may
come in any order, repeated, or overlapping.

Overlaps are checked byte for byte: bytes that agree with what is already held are accepted (a resend
with different fragmentation), bytes that disagree drop the whole datagram. That is RFC 5722's rule for
IPv6 and today's Linux behaviour for IPv4, and it closes the classic evasion where two overlapping
fragments carry different data and the recorder would keep a different message from the phone.

Everything is bounded: the number of datagrams being reassembled (the oldest is evicted), the bytes held
in total, the fragments per datagram, and the size of a datagram (65535 bytes of payload). A datagram
still incomplete ``timeout`` seconds after its first fragment is dropped by :meth:`Reassembler.expire`,
which the caller drives with capture timestamps. Every drop is counted under ``net.frag.*``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

MAX_DATAGRAM = 65535

FragmentKey = tuple[bytes, bytes, int, int]  # src, dst, protocol, identification


@dataclass(slots=True)
class _Pending:
    """The fragments of one datagram received so far."""

    first_ts: float
    fragments: list[tuple[int, bytes]] = field(default_factory=list)  # (offset, payload)
    held: int = 0  # payload bytes in fragments
    total: int = -1  # payload length, known once the last fragment (no More Fragments flag) is in


class Reassembler:
    """Collects fragments by key and returns each datagram's payload once it is complete."""

    def __init__(
        self,
        counters: Counter[str],
        *,
        max_sets: int = 1024,
        max_bytes: int = 16 * 1024 * 1024,
        max_fragments: int = 128,
        timeout: float = 30.0,
    ) -> None:
        self._counters = counters
        self._max_sets = max_sets
        self._max_bytes = max_bytes
        self._max_fragments = max_fragments
        self._timeout = timeout
        self._pending: dict[FragmentKey, _Pending] = {}  # insertion order = age
        self._held = 0

    def __len__(self) -> int:
        """Datagrams being reassembled."""
        return len(self._pending)

    @property
    def held_bytes(self) -> int:
        return self._held

    def add(self, key: FragmentKey, offset: int, more: bool, payload: bytes, now: float) -> bytes | None:
        """Take one fragment; the whole payload when this one completes its datagram, else None."""
        counters = self._counters
        end = offset + len(payload)
        if end > MAX_DATAGRAM:
            self._drop(key, "net.frag.too_big")
            return None
        pending = self._pending.get(key)
        if pending is None:
            self._make_room()
            pending = self._pending[key] = _Pending(now)
        if not more:
            if pending.total not in (-1, end) or any(o + len(p) > end for o, p in pending.fragments):
                self._drop(key, "net.frag.inconsistent")
                return None
            pending.total = end
        elif pending.total != -1 and end > pending.total:
            self._drop(key, "net.frag.inconsistent")
            return None
        verdict = _compare(pending.fragments, offset, payload)
        if verdict == _CONFLICT:
            self._drop(key, "net.frag.overlap_conflict")
            return None
        if verdict == _COVERED:
            counters["net.frag.duplicate"] += 1
        else:
            if len(pending.fragments) >= self._max_fragments:
                self._drop(key, "net.frag.too_many")
                return None
            pending.fragments.append((offset, payload))
            pending.held += len(payload)
            self._held += len(payload)
            if self._held > self._max_bytes:
                self._evict_for_bytes()
                if key not in self._pending:
                    return None
        if pending.total == -1 or not _covers(pending.fragments, pending.total):
            return None
        del self._pending[key]
        self._held -= pending.held
        counters["net.frag.reassembled"] += 1
        return _assemble(pending.fragments, pending.total)

    def expire(self, now: float) -> None:
        """Drop datagrams whose first fragment is older than the timeout."""
        deadline = now - self._timeout
        while self._pending:
            key, pending = next(iter(self._pending.items()))
            if pending.first_ts > deadline:
                break
            self._drop(key, "net.frag.expired")

    def _make_room(self) -> None:
        while len(self._pending) >= self._max_sets:
            self._drop(next(iter(self._pending)), "net.frag.evicted")

    def _evict_for_bytes(self) -> None:
        # Oldest first; the datagram being added to goes too if it alone is over budget.
        while self._held > self._max_bytes and self._pending:
            self._drop(next(iter(self._pending)), "net.frag.evicted")

    def _drop(self, key: FragmentKey, reason: str) -> None:
        pending = self._pending.pop(key, None)
        if pending is not None:
            self._held -= pending.held
        self._counters[reason] += 1


_NEW, _COVERED, _CONFLICT = 0, 1, 2


def _compare(fragments: list[tuple[int, bytes]], offset: int, payload: bytes) -> int:
    """Whether ``payload`` at ``offset`` brings new bytes, repeats held ones, or contradicts them."""
    end = offset + len(payload)
    covered = False
    for held_offset, held in fragments:
        lo = max(offset, held_offset)
        hi = min(end, held_offset + len(held))
        if lo >= hi:
            continue
        if payload[lo - offset : hi - offset] != held[lo - held_offset : hi - held_offset]:
            return _CONFLICT
        if lo == offset and hi == end:
            covered = True
    return _COVERED if covered else _NEW


def _covers(fragments: list[tuple[int, bytes]], total: int) -> bool:
    reached = 0
    for offset, payload in sorted(fragments, key=lambda f: f[0]):
        if offset > reached:
            return False
        reached = max(reached, offset + len(payload))
    return reached >= total


def _assemble(fragments: list[tuple[int, bytes]], total: int) -> bytes:
    whole = bytearray(total)
    for offset, payload in fragments:
        whole[offset : offset + len(payload)] = payload
    return bytes(whole)
