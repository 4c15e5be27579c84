"""Calls nobody signalled: audio RTP both ways between two hosts, at endpoints no SDP named.

A recorder started or restarted while calls are up, or one that cannot read the signalling (SIP over
TLS to a hosted PBX), sees those calls' media without an INVITE. The engine counts such packets as
``rtp.unmapped`` and notes them here, per one-way stream of IPv4 endpoints (``address << 16 | port``,
the form of ``rtp.demux.ipv4_key``). A stream qualifies once it has carried :data:`MIN_PACKETS`
packets of one static audio payload type (RFC 3551 table 4, those with a decoder: PCMU, PCMA) and was
seen within :data:`IDLE` seconds. Two qualifying streams are one call when they run between the same
two hosts in opposite directions and share an endpoint: one party sends from where it receives
(symmetric RTP, RFC 4961), the other may not (``a:4374 -> b:4376`` with ``b:4376 -> a:4376`` is
common). :meth:`Orphans.ready` hands such pairs over, only when the match is unambiguous, and the
engine records them as calls without SIP, ended by RTP silence. One-way streams (paging, music on
hold, multicast) never pair.

Only order-free totals are kept (counts per payload type, first and last time) and pairs are sought
in key order, so the batch path, which notes a run of frames at once, and the frame-by-frame path
agree exactly. The table is bounded: streams idle for :data:`IDLE` seconds are dropped at each
``ready``, and new streams beyond ``max_streams`` are not noted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from recorderd.codecs import decoder_for
from recorderd.events import (
    UNSIGNALLED,
    CallStarted,
    MediaDirection,
    MediaNegotiated,
    Side,
    SipEvent,
    format_endpoint,
)
from recorderd.payloads import STATIC_PAYLOADS
from recorderd.rtp.demux import ipv4_endpoint

MIN_PACKETS = 25  # each way: half a second of 20 ms packets
IDLE = 2.0  # seconds without a packet after which a stream is forgotten (or not adopted)

# Static payload types with a decoder: the only audio a packet without SDP can be known to carry.
AUDIO_TYPES = frozenset(pt for pt, fmt in STATIC_PAYLOADS.items() if decoder_for(fmt) is not None)
_AUDIO = np.array(sorted(AUDIO_TYPES), dtype=np.int64)

Stream = tuple[int, int]  # source and destination endpoint keys


@dataclass(frozen=True, slots=True)
class Orphan:
    """Two streams that make a call: ``one`` and ``other`` (source, destination; ``one`` sorts
    first), the payload type each carried most, and when the pair was first and last seen."""

    one: Stream
    other: Stream
    pt_one: int
    pt_other: int
    first: float
    last: float


@dataclass(slots=True)
class _Tally:
    first: float
    last: float
    counts: dict[int, int] = field(default_factory=dict)  # payload type -> packets

    def audio_type(self) -> int | None:
        """The payload type carried most, if it reached MIN_PACKETS (ties: the lower type)."""
        best = max(((n, -pt) for pt, n in self.counts.items()), default=None)
        return -best[1] if best is not None and best[0] >= MIN_PACKETS else None


def is_audio_type(pt: int) -> bool:
    return pt in AUDIO_TYPES


def _host(endpoint: int) -> int:
    return endpoint >> 16


class Orphans:
    def __init__(self, max_streams: int = 16_384) -> None:
        self.max_streams = max_streams
        self._streams: dict[Stream, _Tally] = {}

    def __len__(self) -> int:
        return len(self._streams)

    def note(self, src: int, dst: int, pt: int, ts: float, count: int = 1, last: float | None = None) -> None:
        """``count`` packets of audio type ``pt`` from ``src`` to ``dst``, the first at ``ts`` and the
        last at ``last`` (default ``ts``)."""
        end = ts if last is None else last
        tally = self._streams.get((src, dst))
        if tally is None:
            if len(self._streams) >= self.max_streams:
                return
            tally = self._streams[(src, dst)] = _Tally(ts, end)
        tally.first, tally.last = min(tally.first, ts), max(tally.last, end)
        tally.counts[pt] = tally.counts.get(pt, 0) + count

    def note_many(self, src: NDArray[np.uint64], dst: NDArray[np.uint64], pt: NDArray[np.int64],
                  ts: NDArray[np.float64]) -> None:  # fmt: skip
        """:meth:`note` for every packet of the arrays (other payload types than audio ones are
        skipped), one call per stream and type."""
        audio = np.isin(pt, _AUDIO)
        if not audio.any():
            return
        src, dst, pt, ts = src[audio], dst[audio], pt[audio], ts[audio]
        order = np.lexsort((pt, dst, src))
        src, dst, pt, ts = src[order], dst[order], pt[order], ts[order]
        cut = np.flatnonzero((src[1:] != src[:-1]) | (dst[1:] != dst[:-1]) | (pt[1:] != pt[:-1])) + 1
        starts = np.concatenate(([0], cut))
        counts = np.diff(np.concatenate((starts, [len(src)])))
        first, last = np.minimum.reduceat(ts, starts), np.maximum.reduceat(ts, starts)
        for s, d, p, n, a, b in zip(src[starts].tolist(), dst[starts].tolist(), pt[starts].tolist(),
                                    counts.tolist(), first.tolist(), last.tolist(), strict=True):  # fmt: skip
            self.note(s, d, p, a, n, b)

    def ready(self, now: float) -> list[Orphan]:
        """The calls to record now, their streams taken out of the table; idle streams dropped."""
        for stream, tally in list(self._streams.items()):
            if now - tally.last > IDLE:
                del self._streams[stream]
        audio = {s: pt for s, tally in self._streams.items() if (pt := tally.audio_type()) is not None}
        by_src: dict[int, list[Stream]] = {}
        by_dst: dict[int, list[Stream]] = {}
        for stream in audio:
            by_src.setdefault(stream[0], []).append(stream)
            by_dst.setdefault(stream[1], []).append(stream)
        out: list[Orphan] = []
        for one in sorted(audio):
            if one not in self._streams:
                continue  # paired already
            partners = _partners(one, by_src, by_dst)
            if len(partners) != 1 or partners[0] not in self._streams:
                continue
            (other,) = partners
            if _partners(other, by_src, by_dst) != [one]:
                continue  # ambiguous from the other side
            a, b = self._streams.pop(one), self._streams.pop(other)
            out.append(
                Orphan(one, other, audio[one], audio[other], min(a.first, b.first), max(a.last, b.last))
            )
        return out


def _partners(
    stream: Stream, by_src: dict[int, list[Stream]], by_dst: dict[int, list[Stream]]
) -> list[Stream]:
    """The qualifying streams going back between the same two hosts and sharing an endpoint."""
    src, dst = stream
    back = {s for s in by_src.get(dst, ()) if _host(s[1]) == _host(src)}  # dst sends where it receives
    back |= {s for s in by_dst.get(src, ()) if _host(s[0]) == _host(dst)}  # src receives where it sends
    back.discard(stream)
    return sorted(back)


def orphan_events(orphan: Orphan, now: float) -> tuple[str, list[SipEvent]]:
    """The call id and the events of recording ``orphan`` as a call without SIP: the party sending
    ``orphan.one`` is the caller side, and each party receives where the other's stream goes."""
    (caller_ip, caller_port), (callee_ip, callee_port) = (
        ipv4_endpoint(orphan.other[1]),
        ipv4_endpoint(orphan.one[1]),
    )
    caller, callee = format_endpoint(caller_ip, caller_port), format_endpoint(callee_ip, callee_port)
    call_id = f"{UNSIGNALLED}{caller}-{callee}@{orphan.first:.3f}"
    events: list[SipEvent] = [CallStarted(orphan.first, call_id, "", "", "", "", caller, callee)]
    for side, ip, port, pt in (
        (Side.CALLER, caller_ip, caller_port, orphan.pt_other),
        (Side.CALLEE, callee_ip, callee_port, orphan.pt_one),
    ):
        fmt = (STATIC_PAYLOADS[pt],)
        events.append(
            MediaNegotiated(now, call_id, side, ip, port, fmt, MediaDirection.SENDRECV, None, "unsignalled")
        )
    return call_id, events
