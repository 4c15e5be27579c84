"""One RTP stream seen on its own: :class:`RtpStream`, a view of its slot in a
:class:`~recorderd.rtp.stream.StreamTable`.

The table holds every stream's state as columns (``rtp/stream.py`` says why and how packets are
placed); a call keeps one view per stream to read its counters, and the tests drive a single stream
through :meth:`RtpStream.push` and :meth:`RtpStream.take`, which are the table's own placement for
that one slot.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from recorderd.rtp.stream import NO_TAKE, Digit, Hole, Kind, Outcome, StreamTable, Taken

I64 = NDArray[np.int64]


class _Column:
    """An integer of a stream read from its row in the table: ``RtpStream.packets`` and the like."""

    def __init__(self, column: str) -> None:
        self.column = column

    def __get__(self, stream: RtpStream, owner: type | None = None) -> int:
        return stream._get(self.column)


class RtpStream:
    """One stream's view of its slot in a table: what the call and the tests read, and :meth:`push`
    and :meth:`take` for a stream on its own."""

    __slots__ = ("table", "slot")

    def __init__(
        self,
        ssrc: int,
        now: float,
        now_pos: int,
        rate: int,
        resync: int,
        table: StreamTable | None = None,
        media_start: float | None = None,
        floor: int = 0,
    ) -> None:
        self.table = table if table is not None else StreamTable()
        start = media_start if media_start is not None else now - now_pos / rate
        self.slot = self.table.open(ssrc, now, now_pos, resync, start, floor)

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
        return self.table.push(self.slot, seq, ts, pt, payload, kind, duration, now, now_pos, floor)

    def take(self, before: int) -> Taken | None:
        limit = np.full(self.table.capacity, NO_TAKE, dtype=np.int64)
        limit[self.slot] = before
        return self.table.take(limit)

    def _get(self, name: str) -> int:
        column: I64 = getattr(self.table, name)
        return int(column[self.slot])

    ssrc = _Column("ssrc")
    packets = _Column("packets")
    duplicates = _Column("duplicates")
    late = _Column("late")
    resyncs = _Column("resyncs")
    payload_type = _Column("payload_type")
    first_pos = _Column("first_pos")
    high_pos = _Column("high")

    @property
    def first_ts(self) -> float:
        return float(self.table.first_ts[self.slot])

    @property
    def last_ts(self) -> float:
        return float(self.table.last_ts[self.slot])

    @property
    def expected(self) -> int:
        high = self._get("seq_max")
        return 0 if high < 0 else high - self._get("seq_min") + 1

    @property
    def lost(self) -> int:
        return self.expected - self.packets

    @property
    def holes(self) -> list[Hole]:
        return self.table.holes[self.slot]

    def digits(self) -> list[Digit]:
        return self.table.digits(self.slot)
