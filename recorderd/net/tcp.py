"""TCP stream reassembly for SIP (RFC 9293 section 3.4 sequence numbers; RFC 3261 section 18.3 framing).

Only SIP is worth following, so a flow (one direction of a connection, keyed by its 4-tuple) is tracked
when a segment's payload begins with a SIP start line, or from its SYN when that flow's first data then
turns out to be SIP. SYN-only flows wait in a separate, smaller table so that a burst of other TCP
connections can never push live SIP flows out of the main one.

Bytes are delivered in sequence-number order (32-bit, wrapping): a segment already delivered is a
retransmission and is dropped, a partly delivered one contributes its new tail, and one ahead of the
next expected byte waits in a bounded queue. A mirror port that lost a segment will never show its
retransmission (the phone received the original), so a gap is skipped once the queue is full or older
than ``gap_timeout`` seconds, or when the flow closes. After a gap, or any framing error, the flow
delivers nothing until a segment begins with a SIP start line again.

Bounded: flows (least recently used evicted), queued segments per flow, bytes per flow (over the cap the
flow's buffer is reset) and idle time (:meth:`TcpReassembler.expire`, driven by capture timestamps).
Everything unusual is counted under ``net.tcp.*``.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field

from recorderd.errors import NeedMoreData, ParseError
from recorderd.events import Datagram, Transport
from recorderd.net.drops import drop_key
from recorderd.net.sipframe import SipStreamFramer, start_line_pending, starts_sip_message
from recorderd.net.transport import TCP_FIN, TCP_RST, TCP_SYN

FlowKey = tuple[bytes, int, bytes, int]  # src, sport, dst, dport

_SEQ_MASK = 0xFFFFFFFF
_SEQ_HALF = 0x80000000


def seq_diff(a: int, b: int) -> int:
    """``a - b`` in 32-bit sequence space: negative when ``a`` is before ``b``."""
    return ((a - b + _SEQ_HALF) & _SEQ_MASK) - _SEQ_HALF


@dataclass(slots=True, eq=False)
class _Flow:
    next_seq: int
    last_ts: float
    framer: SipStreamFramer
    synced: bool  # the stream position is a SIP message boundary
    confirmed: bool  # has carried SIP (False: SYN seen, no data yet)
    pending: dict[int, bytes] = field(default_factory=dict)  # out-of-order segments by seq
    pending_bytes: int = 0
    isn: int = -1  # the SYN's sequence number, when the SYN was seen
    probe: bytes = b""  # the start of data while not synced, until it holds a whole line
    gap_since: float = 0.0  # capture time the oldest queued segment arrived


class TcpReassembler:
    """Turns TCP segments into SIP messages, one :class:`Datagram` each."""

    def __init__(
        self,
        counters: Counter[str],
        *,
        max_flows: int = 1024,
        max_syn_flows: int = 256,
        max_pending: int = 64,
        gap_timeout: float = 1.0,
        buffer_cap: int = 256 * 1024,
        max_header: int = 64 * 1024,
        idle_timeout: float = 900.0,
    ) -> None:
        self._counters = counters
        self._max_flows = max_flows
        self._max_syn_flows = max_syn_flows
        self._max_pending = max_pending
        self._gap_timeout = gap_timeout
        self._buffer_cap = buffer_cap
        self._max_header = max_header
        self._idle_timeout = idle_timeout
        self._flows: OrderedDict[FlowKey, _Flow] = OrderedDict()  # least recently used first
        self._syn: OrderedDict[FlowKey, _Flow] = OrderedDict()

    def __len__(self) -> int:
        """SIP flows being followed."""
        return len(self._flows)

    @property
    def syn_flows(self) -> int:
        """Flows seen opening that have sent no data yet."""
        return len(self._syn)

    @property
    def buffered_bytes(self) -> int:
        """Bytes held in partial messages and out-of-order queues."""
        flows = (*self._flows.values(), *self._syn.values())
        return sum(f.framer.buffered + f.pending_bytes + len(f.probe) for f in flows)

    def segment(
        self,
        ts: float,
        src: bytes,
        sport: int,
        dst: bytes,
        dport: int,
        seq: int,
        flags: int,
        payload: bytes,
    ) -> list[Datagram]:
        """Take one segment; the SIP messages it completes."""
        key = (src, sport, dst, dport)
        if flags & TCP_SYN:
            flow: _Flow | None = self._open_syn(key, ts, seq)
            seq += 1  # the SYN takes one sequence number; data (TCP Fast Open) follows it
        else:
            flow = self._lookup(key, ts, seq, payload)
        if flow is None:
            return []
        flow.last_ts = ts
        if flags & TCP_RST:
            self._forget(key, "net.tcp.reset")
            return []
        out: list[Datagram] = []
        if payload:
            self._accept(key, flow, ts, seq, payload, out)
        elif flow.pending and ts - flow.gap_since >= self._gap_timeout:
            self._skip_gap(flow)
            self._drain(key, flow, ts, out)
        if flags & TCP_FIN and self._is_tracked(key, flow):
            if flow.pending:  # the rest will never come: deliver what there is
                self._skip_gap(flow)
                self._drain(key, flow, ts, out)
            self._forget(key, "net.tcp.closed")
        return out

    def expire(self, now: float) -> None:
        """Forget flows idle for longer than the idle timeout."""
        deadline = now - self._idle_timeout
        for table in (self._flows, self._syn):
            while table:
                key, flow = next(iter(table.items()))
                if flow.last_ts > deadline:
                    break
                del table[key]
                self._counters["net.tcp.expired"] += 1

    # -- flow table ------------------------------------------------------------------------------

    def _lookup(self, key: FlowKey, ts: float, seq: int, payload: bytes) -> _Flow | None:
        flow = self._flows.get(key)
        if flow is not None:
            self._flows.move_to_end(key)
            return flow
        flow = self._syn.get(key)
        if flow is not None:
            self._syn.move_to_end(key)
            return flow
        if not payload:
            return None  # an ACK of a connection we do not follow
        if not starts_sip_message(payload):
            self._counters["net.tcp.not_sip"] += 1
            return None
        flow = self._new_flow(ts, seq, confirmed=True)
        self._insert(self._flows, key, flow, self._max_flows, "net.tcp.evicted")
        self._counters["net.tcp.opened"] += 1
        return flow

    def _open_syn(self, key: FlowKey, ts: float, seq: int) -> _Flow:
        known = self._syn.get(key) or self._flows.get(key)
        if known is not None:
            if known.isn == seq:
                return known  # the same SYN again: resent, or mirrored twice
            # A new SYN starts a new connection on a 4-tuple in use: forget the old one.
            self._forget(key, "net.tcp.restarted")
        flow = self._new_flow(ts, (seq + 1) & _SEQ_MASK, confirmed=False)
        flow.isn = seq
        self._insert(self._syn, key, flow, self._max_syn_flows, "net.tcp.syn_evicted")
        return flow

    def _new_flow(self, ts: float, next_seq: int, *, confirmed: bool) -> _Flow:
        framer = SipStreamFramer(self._max_header, self._buffer_cap)
        return _Flow(next_seq, ts, framer, synced=confirmed, confirmed=confirmed)

    def _insert(
        self, table: OrderedDict[FlowKey, _Flow], key: FlowKey, flow: _Flow, cap: int, counter: str
    ) -> None:
        while len(table) >= cap:
            table.popitem(last=False)
            self._counters[counter] += 1
        table[key] = flow

    def _is_tracked(self, key: FlowKey, flow: _Flow) -> bool:
        return (self._flows.get(key) or self._syn.get(key)) is flow

    def _forget(self, key: FlowKey, counter: str) -> None:
        flow = self._flows.pop(key, None) or self._syn.pop(key, None)
        if flow is not None:
            self._counters[counter] += 1

    def _promote(self, key: FlowKey, flow: _Flow) -> None:
        del self._syn[key]
        flow.confirmed = True
        self._insert(self._flows, key, flow, self._max_flows, "net.tcp.evicted")
        self._counters["net.tcp.opened"] += 1

    # -- byte stream -----------------------------------------------------------------------------

    def _accept(
        self, key: FlowKey, flow: _Flow, ts: float, seq: int, payload: bytes, out: list[Datagram]
    ) -> None:
        ahead = seq_diff(seq, flow.next_seq)
        if ahead < 0:
            if ahead + len(payload) <= 0:
                self._counters["net.tcp.retransmission"] += 1
                return
            payload = payload[-ahead:]  # a resend that overlaps what was delivered: keep the tail
            ahead = 0
        if ahead == 0:
            if not self._deliver(key, flow, ts, payload, out):
                return
        else:
            self._queue(flow, ts, seq, payload)
            if not self._gap_is_hopeless(flow, ts):
                self._check_cap(flow)
                return
            self._skip_gap(flow)
        self._drain(key, flow, ts, out)

    def _queue(self, flow: _Flow, ts: float, seq: int, payload: bytes) -> None:
        self._counters["net.tcp.out_of_order"] += 1
        if not flow.pending:
            flow.gap_since = ts
        old = flow.pending.get(seq, b"")
        if len(payload) > len(old):
            flow.pending[seq] = payload
            flow.pending_bytes += len(payload) - len(old)

    def _gap_is_hopeless(self, flow: _Flow, ts: float) -> bool:
        return len(flow.pending) > self._max_pending or ts - flow.gap_since >= self._gap_timeout

    def _skip_gap(self, flow: _Flow) -> None:
        """Continue from the earliest queued segment; the message spanning the gap is lost."""
        self._counters["net.tcp.gap"] += 1
        flow.next_seq = min(flow.pending, key=lambda s: seq_diff(s, flow.next_seq))
        flow.framer.reset()
        flow.probe = b""
        flow.synced = False

    def _drain(self, key: FlowKey, flow: _Flow, ts: float, out: list[Datagram]) -> None:
        """Deliver queued segments that have become in order."""
        progressed = True
        while flow.pending and progressed:
            progressed = False
            for seq in list(flow.pending):
                behind = -seq_diff(seq, flow.next_seq)
                if behind < 0:
                    continue
                chunk = flow.pending.pop(seq)
                flow.pending_bytes -= len(chunk)
                if behind >= len(chunk):
                    self._counters["net.tcp.retransmission"] += 1
                    continue
                if not self._deliver(key, flow, ts, chunk[behind:], out):
                    return
                progressed = True

    def _deliver(self, key: FlowKey, flow: _Flow, ts: float, chunk: bytes, out: list[Datagram]) -> bool:
        """Feed in-order bytes to the framer; False when the flow turned out not to be SIP."""
        flow.next_seq = (flow.next_seq + len(chunk)) & _SEQ_MASK
        if not flow.synced:
            synced = self._sync(key, flow, chunk)
            if synced is None:
                return self._is_tracked(key, flow)
            chunk = synced
        flow.framer.receive_data(chunk)
        src, sport, dst, dport = key
        while True:
            try:
                message = flow.framer.next_message()
            except NeedMoreData:
                break
            except ParseError as err:  # the framer has dropped its buffer
                self._counters[drop_key(err)] += 1
                flow.synced = False
                break
            out.append(Datagram(ts, Transport.TCP, src, sport, dst, dport, message))
        self._check_cap(flow)
        return True

    def _sync(self, key: FlowKey, flow: _Flow, chunk: bytes) -> bytes | None:
        """While not synced: the bytes to frame once a message starts here, else None."""
        data = flow.probe + chunk
        flow.probe = b""
        if start_line_pending(data):
            flow.probe = data  # too short to tell whether a start line begins here
            return None
        # Held-back bytes that do not begin a message may still be followed by one in this chunk.
        for candidate in (data, chunk) if len(data) > len(chunk) else (data,):
            if starts_sip_message(candidate):
                flow.synced = True
                if not flow.confirmed:
                    self._promote(key, flow)
                return candidate
        if flow.confirmed:
            self._counters["net.tcp.resync_skipped"] += 1
        else:
            self._forget(key, "net.tcp.not_sip_flow")
        return None

    def _check_cap(self, flow: _Flow) -> None:
        if flow.framer.buffered + flow.pending_bytes > self._buffer_cap:
            self._counters["net.tcp.buffer_overflow"] += 1
            flow.framer.reset()
            flow.pending.clear()
            flow.pending_bytes = 0
            flow.probe = b""
            flow.synced = False
