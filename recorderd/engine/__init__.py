"""The engine: pure glue from captured frames to call and recording events.

``feed(frame)`` runs one frame through net -> sip | rtp -> codecs and returns the events it caused;
``advance(now)`` fires timers (RTP silence, maximum call length, unanswered INVITEs) from the capture
clock; ``close(now)`` ends every call still open when a replay runs out. No sockets, files, threads or
clocks: live capture and pcap replay drive the very same object, and a replay is deterministic.

This is the one error boundary of the pure core: a :class:`ParseError` from any stage is counted under
its stage and dropped, so hostile or broken traffic never stops the pipeline.

Fast path. Nearly every frame on a mirror port is an RTP packet of a stream already known: G.711 in
UDP in an option-less IPv4 packet in an Ethernet frame, untagged or with one 802.1Q tag.
:meth:`Engine.feed_batch` takes a whole libpcap batch at once: it reads every frame's headers with a
few NumPy gathers, finds the known streams by their raw address bytes and SSRC with one sorted search
(``engine/fast.py``), and places such frames together with :meth:`StreamTable.push_many`, held back
until something could depend on them (:meth:`Engine._flush_held`). Anything else, and the first packet
of every stream, takes the general path (:meth:`Engine.feed`) in its place in the batch, which also
fills the fast path's table; timers fire between frames exactly where they would frame by frame. An
entry is dropped whenever the general path could decide differently for it: its call ended or
renegotiated media, or a binding of one of its endpoints changed; frames of the batch already matched
to it are then sent the general way. The tests replay every capture both ways and require the same
events for every call.

RTP-looking frames that no call's SDP names at either end (calls that were up before capture began,
media of other systems on the mirror port) would each be counted as ``rtp.unmapped`` and tallied for
``engine/orphans.py``, and nothing else; the batch marks them ``UNBOUND`` with one set probe each and
counts and tallies them together, so such traffic costs about what a known stream's does. A binding
made later in the batch sends its frames back to the general path.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from numpy.typing import NDArray

from recorderd.config import EngineConfig
from recorderd.engine import mix
from recorderd.engine.call import BLOCK, RATE, CallMedia, Leg
from recorderd.engine.fast import (
    GENERAL,
    UNBOUND,
    FastKey,
    FastTable,
    Matched,
    bound_again,
    endpoint_keys,
    mark_unbound,
    payload_rows,
    read_headers,
)
from recorderd.engine.orphans import Orphan, Orphans, is_audio_type, orphan_events
from recorderd.errors import ParseError
from recorderd.events import (
    UNSIGNALLED,
    CallAnswered,
    CallEnded,
    CallFinished,
    CallStarted,
    CallTransferred,
    Datagram,
    Direction,
    EndReason,
    Event,
    Frame,
    FrameBatch,
    MediaNegotiated,
    SipEvent,
    Transport,
)
from recorderd.net import NetDecoder
from recorderd.rtp.demux import MediaMap, ipv4_key
from recorderd.rtp.packet import RtpPacket, is_rtcp, parse_rtp
from recorderd.rtp.stream import Kind, Outcome, Snapshot, StreamTable
from recorderd.sip.dialog import DialogTracker
from recorderd.sip.message import parse_sip, user_part

TICK = 0.5  # seconds of capture time between housekeeping passes (timers, writing audio out)
REMATCH = 256  # frames between matches of a batch's rest while new streams join the fast path
ALIGN_CALLS = 64  # up to this many calls, audio half a block from due is written with the due

Endpoint = tuple[bytes, int]
I64 = NDArray[np.int64]


def _reason(error: ParseError) -> str:
    """A counter key from a parse error: its stable prefix, e.g. "rtp: version 1 is not 2" -> "rtp"."""
    return str(error).split(":", 1)[0].strip().replace(" ", "_") or "unknown"


def _looks_like_sip(payload: bytes) -> bool:
    """A SIP start line (RFC 3261 7.1, 7.2): "METHOD uri SIP/2.0" or "SIP/2.0 code reason"."""
    end = payload.find(b"\n", 0, 2048)
    line = payload[: end if end >= 0 else 2048].rstrip()
    return line.startswith(b"SIP/2.0 ") or line.endswith(b" SIP/2.0")


class Engine:
    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self.counters: Counter[str] = Counter()
        self.net = NetDecoder(self.counters)
        self.dialogs = DialogTracker(self.counters, max_calls=self.config.max_calls)
        self.media = MediaMap()
        self.orphans = Orphans() if self.config.record_unsignalled else None
        self._noted = 0  # frames of the current batch whose UNBOUND ones the orphans have seen
        self.streams = StreamTable()
        self.calls: dict[str, CallMedia] = {}
        self._next_tick = 0.0
        # fast path: stream key -> (slot, payload type, payload length); slots whose entry went
        # since the current batch was matched
        self._fast = FastTable()
        self._fast_gone: list[int] = []
        self._fast_added = 0  # entries made since the current batch was matched
        self._ending: list[tuple[CallMedia, CallEnded]] = []  # ended calls not yet written out
        # fast frames of the current batch not yet placed: those in [from, to) that have a slot
        self._held: tuple[Matched, NDArray[np.float64]] | None = None
        self._held_from = self._held_to = 0
        self._fast_by_call: dict[str, set[FastKey]] = {}
        self._fast_by_endpoint: dict[Endpoint, set[FastKey]] = {}

    # -- inputs --------------------------------------------------------------------------------------

    def feed(self, frame: Frame) -> list[Event]:
        out: list[Event] = []
        if frame.ts >= self._next_tick:
            out.extend(self.advance(frame.ts))
        self.counters["frames"] += 1
        for datagram in self.net.feed(frame):
            self._datagram(datagram, out)
        self._finish(out)
        return out

    def feed_batch(self, batch: FrameBatch) -> list[Event]:
        """The events of every frame in ``batch``, exactly as :meth:`feed` frame by frame would give."""
        out: list[Event] = []
        n = batch.count
        if not n:
            return out
        meta = np.frombuffer(batch.meta, dtype=np.uint32).reshape(n, 4)
        now = meta[:, 0] + meta[:, 1] / 1_000_000  # as Frame.ts: the same double arithmetic
        if batch.linktype != 1 or len(batch.data) < 58:
            self._general(batch, meta, now, 0, n, out)
            self._finish(out)
            return out
        m = self._match(batch, meta)
        self.media.take_fresh()  # the marking below sees every binding made so far
        self._mark_unbound(m, 0)
        self._noted = 0
        self._held, self._held_from, self._held_to = (m, now), 0, 0
        self._fast_gone.clear()
        self._fast_added = 0
        matched_at = 0
        tick = self._tick_index(now, 0)
        slow = np.flatnonzero(m.slots == GENERAL)
        k = i = 0
        while i < n:
            if i == tick:
                self._note_unbound(m, now, i)
                out.extend(self.advance(float(now[i])))
                tick = self._tick_index(now, i + 1)
            elif k < len(slow) and slow[k] == i:
                self._general(batch, meta, now, i, i + 1, out)
                k += 1
                i += 1
            else:
                i = min(tick, int(slow[k]) if k < len(slow) else n)
                self._held_to = i  # fast frames wait until something could depend on them
                continue
            rematch = self._fast_added and i - matched_at >= min(REMATCH, (n - i) // 4)
            fresh = self.media.take_fresh()
            if not (self._fast_gone or rematch or fresh is None or fresh):
                continue
            if self._fast_gone:  # frames matched to an entry now gone take the general path
                rest = m.slots[i:]
                rest[np.isin(rest, self._fast_gone)] = GENERAL
                self._fast_gone.clear()
            if fresh is None or fresh:
                bound_again(m, i, fresh, self.media.ipv4_keys)
            if rematch:
                self._lookup(m, i)  # streams that started in this batch: match the rest again
                matched_at, self._fast_added = i, 0
            slow = i + np.flatnonzero(m.slots[i:] == GENERAL)
            k = 0
        self._flush_held()
        self._held = None
        self._note_unbound(m, now, n)
        unbound = int(np.count_nonzero(m.slots == UNBOUND))
        if unbound:
            self.counters["frames"] += unbound
            self.counters["rtp.unmapped"] += unbound
        self._finish(out)
        return out

    def _flush_held(self) -> None:
        """Place the fast frames held back so far in this batch.

        Fast frames are placed together, in as few array passes as possible, at the last moment that
        keeps the result that of frame-by-frame order: before a timer tick, before a call's last audio
        is written, and before the general path places a packet of a stream it already has (which is
        also how a stream whose entry went continues). A frame in between that does none of these
        (SIP, other streams' first packets) cannot change how a held frame is placed."""
        if self._held is None or self._held_to <= self._held_from:
            return
        m, now = self._held
        chosen = self._held_from + np.flatnonzero(m.slots[self._held_from : self._held_to] >= 0)
        self._held_from = self._held_to
        if len(chosen):
            self._place(m, now, chosen)

    def _tick_index(self, now: NDArray[np.float64], start: int) -> int:
        """The first frame from ``start`` on that is due to fire the timers (len(now) if none)."""
        due = now[start:] >= self._next_tick
        return start + int(due.argmax()) if due.any() else len(now)

    def _general(
        self, batch: FrameBatch, meta: NDArray[np.uint32], now: NDArray[np.float64], start: int, end: int,
        out: list[Event],
    ) -> None:  # fmt: skip
        data, linktype = batch.data, batch.linktype
        for i in range(start, end):
            ts = float(now[i])
            if ts >= self._next_tick:
                out.extend(self.advance(ts))
            self.counters["frames"] += 1
            off, caplen = int(meta[i, 2]), int(meta[i, 3])
            for datagram in self.net.feed(Frame(ts, linktype, data[off : off + caplen])):
                self._datagram(datagram, out)

    def _match(self, batch: FrameBatch, meta: NDArray[np.uint32]) -> Matched:
        """Every frame's headers as the fast path reads them, and its stream if known."""
        m = read_headers(batch, meta)
        self._lookup(m, 0)
        return m

    def _mark_unbound(self, m: Matched, first: int) -> None:
        mark_unbound(m, first, self.media.ipv4_keys)

    def _note_unbound(self, m: Matched, now: NDArray[np.float64], upto: int) -> None:
        """Tell the orphans about the UNBOUND frames not yet noted before frame ``upto`` (before a
        timer tick, where they may be adopted, and at the end of the batch)."""
        start, self._noted = self._noted, max(self._noted, upto)
        if self.orphans is None or upto <= start:
            return
        chosen = start + np.flatnonzero(m.slots[start:upto] == UNBOUND)
        if len(chosen):
            src, dst = endpoint_keys(m, chosen)
            self.orphans.note_many(src, dst, m.pt[chosen], now[chosen])

    def _lookup(self, m: Matched, first: int) -> None:
        """Find the streams of the frames from ``first`` on that could take the fast path and have
        none yet, with one sorted search (``engine/fast.py``)."""
        chosen = first + np.flatnonzero(m.candidate[first:] & (m.slots[first:] == GENERAL))
        if len(chosen) and len(self._fast):
            m.slots[chosen] = self._fast.match(
                m.hashed[chosen], m.key[chosen], m.key2[chosen], m.pt[chosen], m.size[chosen]
            )

    def _place(self, m: Matched, now: NDArray[np.float64], chosen: I64) -> None:
        """Frames ``chosen`` of the batch, all audio of fast-path streams, into the stream table."""
        self.counters["frames"] += len(chosen)
        self.counters["frames.fast"] += len(chosen)
        size = m.size[chosen]
        smallest, largest = int(size.min()), int(size.max())
        for length in [smallest] if smallest == largest else np.unique(size).tolist():
            pick = chosen if smallest == largest else chosen[size == length]
            rows = payload_rows(m.data, m.at[pick], length)
            outcomes = self.streams.push_many(
                m.slots[pick], m.seq[pick], m.ts[pick], m.pt[pick], now[pick], RATE, rows
            )
            for outcome, count in outcomes.items():
                self.counters[f"rtp.{outcome.name.lower()}"] += count

    def advance(self, now: float) -> list[Event]:
        """Fire the timers due at capture time ``now`` and emit the audio that is ready."""
        return self._advance(now, adopt=True)

    def _advance(self, now: float, adopt: bool) -> list[Event]:
        self._flush_held()
        self._next_tick = now + TICK
        out: list[Event] = []
        self.net.expire(now)
        for endpoint in self.media.expire(now):
            self._forget_endpoint(endpoint)
        self._apply(self.dialogs.advance(now), out)
        if adopt and self.orphans is not None:
            for orphan in self.orphans.ready(now):
                self._adopt(orphan, now, out)
        due: list[tuple[CallMedia, int, float]] = []
        nearly: list[tuple[CallMedia, int, float]] = []
        few = len(self.calls) <= ALIGN_CALLS
        columns = self.streams.snapshot()
        for call in list(self.calls.values()):
            reason = self._timed_out(call, now, columns)
            if reason is not None:
                self._apply(self.dialogs.end(call.call_id, now, reason), out)
                continue
            upto = call.due(now, BLOCK // 2 if few else BLOCK, columns)
            if upto is None:
                continue
            (due if upto - call.base >= BLOCK else nearly).append((call, upto, now))
        if due:
            # A write costs much the same for one call as for many: with few calls, those half a
            # block from due go along, so the calls fall into step and most ticks write nothing.
            due += nearly
        self._finish(out)
        out.extend(mix.write(self.streams, due))
        return out

    def close(self, now: float) -> list[Event]:
        """End every open call (the capture is over) and return the remaining events."""
        out = self._advance(now, adopt=False)  # a call adopted now would have no audio left
        self._apply(self.dialogs.close(now), out)
        self._finish(out)
        return out

    # -- dispatch ------------------------------------------------------------------------------------

    def _datagram(self, d: Datagram, out: list[Event]) -> None:
        payload = d.payload
        if not payload:
            return
        first = payload[0]
        if d.transport is Transport.UDP and 0x80 <= first <= 0xBF:
            self._rtp(d)
        elif 0x41 <= first <= 0x5A and _looks_like_sip(payload):
            self._sip(d, out)
        else:
            self.counters["udp.ignored"] += 1

    def _sip(self, d: Datagram, out: list[Event]) -> None:
        try:
            message = parse_sip(d.payload)
        except ParseError as e:
            self.counters[f"drop.{_reason(e)}"] += 1
            return
        self.counters["sip.messages"] += 1
        self._apply(self.dialogs.handle(d, message), out)

    def _rtp(self, d: Datagram) -> None:
        hit = self.media.lookup(d.src, d.sport, d.dst, d.dport)
        if hit is None:
            self.counters["rtp.unmapped"] += 1
            self._note_orphan(d)
            return
        if is_rtcp(d.payload):
            self.counters["rtcp.ignored"] += 1
            return
        call = self.calls.get(hit[0])
        if call is None:
            self.counters["rtp.unmapped"] += 1
            return
        try:
            packet = parse_rtp(d.payload)
            if (hit[1], packet.ssrc, d.src, d.sport, d.dst, d.dport) in call.legs:
                self._flush_held()  # held frames of this stream go first
            outcome, leg, kind = call.rtp(packet, hit[1], d)
        except ParseError as e:
            self.counters[f"drop.{_reason(e)}"] += 1
            return
        if outcome is None:
            self.counters["rtp.streams_full"] += 1
        elif outcome is not Outcome.ACCEPTED:
            self.counters[f"rtp.{outcome.name.lower()}"] += 1
        elif kind is Kind.AUDIO and leg is not None and len(d.src) == 4:
            self._remember_fast(call, leg, packet, d)

    # -- calls nobody signalled (engine/orphans.py) -------------------------------------------------

    def _note_orphan(self, d: Datagram) -> None:
        """An unmapped packet shaped as the batch's UNBOUND frames are (IPv4, RTP version 2 without
        padding, extension or CSRCs): the orphans count it if its payload type is static audio."""
        payload = d.payload
        if self.orphans is None or len(payload) < 12 or payload[0] != 0x80:
            return
        pt = payload[1] & 0x7F
        src, dst = ipv4_key((d.src, d.sport)), ipv4_key((d.dst, d.dport))
        if is_audio_type(pt) and src is not None and dst is not None:
            self.orphans.note(src, dst, pt, d.ts)

    def _adopt(self, orphan: Orphan, now: float, out: list[Event]) -> None:
        """Record ``orphan`` as a call without SIP, unless signalling named one of its ends meanwhile."""
        if {*orphan.one, *orphan.other} & self.media.ipv4_keys:
            return
        call_id, events = orphan_events(orphan, now)
        if call_id in self.calls:
            return
        self.counters["rtp.unsignalled_calls"] += 1
        self._apply([*self.dialogs.adopt(call_id, orphan.first), *events], out)
        # In media already, so treated as answered (ends by RTP silence), with no SIP status.
        self.calls[call_id].answer_ts = orphan.first

    # -- the fast path's table -----------------------------------------------------------------------

    def _remember_fast(self, call: CallMedia, leg: Leg, packet: RtpPacket, d: Datagram) -> None:
        key = (int.from_bytes(d.src + d.dst, "big"), (d.sport << 16 | d.dport) << 32 | packet.ssrc)
        self._fast_added += self._fast.put(key, leg.slot, packet.pt, len(packet.payload))
        self._fast_by_call.setdefault(call.call_id, set()).add(key)
        for endpoint in ((d.src, d.sport), (d.dst, d.dport)):
            self._fast_by_endpoint.setdefault(endpoint, set()).add(key)

    def _forget(self, keys: set[FastKey]) -> None:
        for key in keys:
            slot = self._fast.pop(key)
            if slot is not None:
                self._fast_gone.append(slot)

    def _forget_call(self, call_id: str) -> None:
        self._forget(self._fast_by_call.pop(call_id, set()))

    def _forget_endpoint(self, endpoint: Endpoint) -> None:
        self._forget(self._fast_by_endpoint.pop(endpoint, set()))

    # -- call lifecycle ------------------------------------------------------------------------------

    def _apply(self, events: list[SipEvent], out: list[Event]) -> None:
        for event in events:
            if isinstance(event, CallStarted):
                self._finish(out)  # a Call-ID may come back: its last call's events go first
                out.append(event)
                self._started(event)
                continue
            out.append(event)
            call = self.calls.get(event.call_id)
            if call is None:
                continue
            if isinstance(event, MediaNegotiated):
                call.negotiated(event)  # may remap payload types: the call's fast entries go
                self._forget_call(event.call_id)
                self._forget_endpoint((event.ip, event.port))
                if not self.media.bind(
                    event.call_id, event.side, event.ip, event.port, event.ts, event.transaction
                ):
                    self.counters["rtp.media_map_full"] += 1
            elif isinstance(event, CallAnswered):
                call.answer_ts, call.sip_status = event.ts, event.status
                call.last_activity = event.ts
            elif isinstance(event, CallTransferred):
                call.transfers.append(event.refer_to)
            elif isinstance(event, CallEnded):
                self._ended(call, event)

    def _started(self, event: CallStarted) -> None:
        site = self.config.site
        direction = site.classify(user_part(event.from_uri), user_part(event.to_uri), event.src, event.dst)
        if event.call_id.startswith(UNSIGNALLED):
            direction = Direction.UNKNOWN  # who called whom is not in the media: keep the default retention
        self.calls[event.call_id] = CallMedia(event, direction, self.config, self.streams)

    def _ended(self, call: CallMedia, event: CallEnded) -> None:
        self.media.unbind_call(call.call_id)
        self._forget_call(call.call_id)
        del self.calls[call.call_id]
        call.finish(event.ts)
        self._ending.append((call, event))

    def _finish(self, out: list[Event]) -> None:
        """The last audio and the CallFinished of every call ended since the last time, all at once:
        one pass over the pending packets for a whole batch's hangups rather than one per call."""
        if not self._ending:
            return
        self._flush_held()
        ending, self._ending = self._ending, []
        due = [(call, end, event.ts) for call, event in ending if (end := call.end()) is not None]
        blocks = mix.write(self.streams, due, everything=True)
        by_call: dict[str, list[Event]] = {}
        for block in blocks:
            by_call.setdefault(block.call_id, []).append(block)
        for call, event in ending:
            out.extend(by_call.get(call.call_id, ()))
            record = call.record(event.ts, event.reason, event.sip_status)
            self.streams.close([leg.slot for leg in call.legs.values()])
            out.append(CallFinished(event.ts, call.call_id, record))

    def _timed_out(self, call: CallMedia, now: float, columns: Snapshot) -> EndReason | None:
        if now - call.started.ts > self.config.max_call_length:
            return EndReason.MAX_LENGTH
        answered_or_media = call.answer_ts is not None
        if answered_or_media and not call.on_hold:
            if now - call.activity(columns) > self.config.rtp_timeout:
                return EndReason.RTP_TIMEOUT
        return None
