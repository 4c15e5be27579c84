"""SIP over TCP: the real connection of sip-tcp-call-rtp.pcap, and segments sliced from its streams."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorderd.events import Datagram, Frame, Transport
from recorderd.net import NetDecoder, NetLimits
from recorderd.net.tcp import seq_diff
from recorderd.net.transport import TCP_FIN, TCP_RST, TCP_SYN
from tests.conftest import PCAPS
from tests.net.netcraft import TCP_PCAP, eth_frame, frames, ipv4, tcp, tcp_segments, tcp_stream, tshark

ACK, PSH = 0x10, 0x08
CLIENT_IP, SERVER_IP = bytes([10, 33, 6, 100]), bytes([10, 33, 6, 101])
ISN, STREAM = tcp_stream()
MESSAGES = [s[5] for s in tcp_segments() if s[2] == 64802]  # one message per segment in the capture


def segment(
    seq: int, payload: bytes = b"", flags: int = ACK | PSH, ts: float = 1.0, sport: int = 64802
) -> Frame:
    src, dst = (CLIENT_IP, SERVER_IP) if sport == 64802 else (SERVER_IP, CLIENT_IP)
    return eth_frame(ipv4(src, dst, 6, tcp(sport, 5060, seq & 0xFFFFFFFF, flags, payload)), ts)


def pieces(cuts: list[int], isn: int = ISN) -> list[tuple[int, bytes]]:
    """The client stream cut at ``cuts``: (seq, payload) per piece."""
    bounds = sorted({0, len(STREAM), *(c % len(STREAM) for c in cuts)})
    return [(isn + a, STREAM[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]


def run(
    frames_in: list[Frame], counters: Counter[str] | None = None, limits: NetLimits | None = None
) -> list[Datagram]:
    decoder = NetDecoder(Counter() if counters is None else counters, limits=limits)
    return [d for f in frames_in for d in decoder.feed(f)]


def payloads(datagrams: list[Datagram]) -> list[bytes]:
    return [d.payload for d in datagrams]


# -- the real capture ------------------------------------------------------------------------------


@pytest.mark.slow
def test_messages_match_tshark() -> None:
    rows = tshark(PCAPS / TCP_PCAP, "sip", "frame.number", "sip.Method", "sip.Status-Code")
    expected = [(int(n), method or status) for n, method, status in rows]
    decoder = NetDecoder(Counter())
    got = []
    for number, frame in enumerate(frames(TCP_PCAP), start=1):
        for d in decoder.feed(frame):
            if d.transport is Transport.TCP:
                first = d.payload.split(b"\r\n", 1)[0].decode()
                got.append((number, first.split()[1] if first.startswith("SIP/") else first.split()[0]))
    assert got == expected
    assert len(got) == 7


def test_real_connection_datagrams() -> None:
    counters: Counter[str] = Counter()
    out = [d for d in run(list(frames(TCP_PCAP)), counters) if d.transport is Transport.TCP]
    invite = out[0]
    assert (invite.src, invite.sport, invite.dst, invite.dport) == (CLIENT_IP, 64802, SERVER_IP, 5060)
    assert invite.ts == frames(TCP_PCAP)[2].ts
    assert [d.payload for d in out if d.sport == 64802] == MESSAGES
    assert counters["net.tcp.opened"] == 2  # both directions, followed from their SYNs
    assert not [k for k in counters if k.startswith("net.drop")]


# -- segments sliced from the stream ---------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 10_000), max_size=25), st.randoms(use_true_random=False))
def test_any_segmentation_in_any_order_yields_the_messages_once(cuts: list[int], rnd: object) -> None:
    parts = pieces(cuts)
    shuffled = parts[:]
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    # the first segment to arrive must start a message for an untracked flow: send a SYN first
    frames_in = [segment(ISN - 1, flags=TCP_SYN)] + [segment(s, p) for s, p in shuffled]
    assert payloads(run(frames_in)) == MESSAGES


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 10_000), max_size=20), st.lists(st.integers(0, 30), max_size=10))
def test_retransmissions_are_dropped(cuts: list[int], repeats: list[int]) -> None:
    parts = pieces(cuts)
    sent = []
    for i, part in enumerate(parts):  # after some pieces, resend one already delivered
        sent.append(part)
        sent += [parts[i // 2] for r in repeats if r % len(parts) == i]
    counters: Counter[str] = Counter()
    frames_in = [segment(ISN - 1, flags=TCP_SYN)] + [segment(s, p) for s, p in sent]
    assert payloads(run(frames_in, counters)) == MESSAGES
    assert counters["net.tcp.retransmission"] == len(repeats)


def test_retransmission_with_new_segmentation_keeps_only_new_bytes() -> None:
    counters: Counter[str] = Counter()
    frames_in = [
        segment(ISN, STREAM[:500]),
        segment(ISN, STREAM[:300]),  # entirely old
        segment(ISN + 400, STREAM[400:1200]),  # 100 old bytes, 700 new
        segment(ISN + 1200, STREAM[1200:]),
    ]
    assert payloads(run(frames_in, counters)) == MESSAGES
    assert counters["net.tcp.retransmission"] == 1


@pytest.mark.parametrize("isn", [0xFFFFFFFF - 300, 0xFFFFFFFF, 0x7FFFFFFF - 10])
def test_sequence_numbers_wrap(isn: int) -> None:
    parts = pieces(list(range(0, len(STREAM), 97)), isn)
    frames_in = [segment(s, p) for s, p in parts]
    frames_in[1], frames_in[2] = frames_in[2], frames_in[1]
    assert payloads(run(frames_in)) == MESSAGES


def test_seq_diff() -> None:
    assert seq_diff(5, 0xFFFFFFFE) == 7
    assert seq_diff(0xFFFFFFFE, 5) == -7
    assert seq_diff(100, 100) == 0


def test_flow_is_picked_up_at_the_next_message_start() -> None:
    counters: Counter[str] = Counter()
    start = len(MESSAGES[0])
    frames_in = [
        segment(ISN + 300, STREAM[300:start]),  # the tail of the INVITE: not a start, not tracked
        segment(ISN + start, STREAM[start:]),
    ]
    assert payloads(run(frames_in, counters)) == MESSAGES[1:]
    assert counters["net.tcp.not_sip"] == 1


def test_non_sip_tcp_is_ignored() -> None:
    counters: Counter[str] = Counter()
    http = segment(1000, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert run([http, segment(2000, flags=ACK)], counters) == []
    assert counters["net.tcp.not_sip"] == 1


def test_syn_started_flow_survives_a_reordered_first_segment() -> None:
    frames_in = [
        segment(ISN - 1, flags=TCP_SYN),
        segment(ISN + 600, STREAM[600:]),
        segment(ISN, STREAM[:600]),
    ]
    assert payloads(run(frames_in)) == MESSAGES


def test_syn_started_flow_that_is_not_sip_is_forgotten() -> None:
    counters: Counter[str] = Counter()
    decoder = NetDecoder(counters)
    decoder.feed(segment(99, flags=TCP_SYN, sport=40000))
    assert decoder.tcp_syn_flows == 1
    assert decoder.feed(segment(100, b"\x16\x03\x01 tls hello", sport=40000)) == []
    assert decoder.tcp_syn_flows == 0 and decoder.tcp_flows == 0
    assert counters["net.tcp.not_sip_flow"] == 1


def test_syn_table_cannot_push_out_sip_flows() -> None:
    counters: Counter[str] = Counter()
    decoder = NetDecoder(counters, limits=NetLimits(tcp_flows=4, tcp_syn_flows=2))
    decoder.feed(segment(ISN, MESSAGES[0]))
    for port in range(30000, 30010):
        decoder.feed(segment(1, flags=TCP_SYN, sport=port))
    assert (decoder.tcp_flows, decoder.tcp_syn_flows) == (1, 2)
    assert counters["net.tcp.syn_evicted"] == 8
    assert payloads(decoder.feed(segment(ISN + len(MESSAGES[0]), MESSAGES[1]))) == MESSAGES[1:2]


def test_fin_closes_the_flow_after_its_data() -> None:
    counters: Counter[str] = Counter()
    decoder = NetDecoder(counters)
    assert payloads(decoder.feed(segment(ISN, STREAM, flags=ACK | PSH | TCP_FIN))) == MESSAGES
    assert decoder.tcp_flows == 0 and counters["net.tcp.closed"] == 1


def test_fin_delivers_what_waits_behind_a_gap() -> None:
    m0, m1, m2 = (len(m) for m in MESSAGES)
    frames_in = [
        segment(ISN, MESSAGES[0]),
        # MESSAGES[1] was lost by the mirror port
        segment(ISN + m0 + m1, MESSAGES[2], flags=ACK | PSH | TCP_FIN),
    ]
    counters: Counter[str] = Counter()
    assert payloads(run(frames_in, counters)) == [MESSAGES[0], MESSAGES[2]]
    assert counters["net.tcp.gap"] == 1 and counters["net.tcp.closed"] == 1


def test_rst_closes_the_flow_and_drops_its_buffer() -> None:
    counters: Counter[str] = Counter()
    decoder = NetDecoder(counters)
    decoder.feed(segment(ISN, STREAM[:100]))
    assert decoder.tcp_buffered_bytes == 100
    decoder.feed(segment(ISN + 100, flags=TCP_RST))
    assert decoder.tcp_flows == 0 and counters["net.tcp.reset"] == 1
    assert decoder.feed(segment(ISN + 100, STREAM[100:])) == []  # not a message start


def test_syn_on_a_followed_4_tuple_starts_afresh() -> None:
    counters: Counter[str] = Counter()
    frames_in = [
        segment(ISN, STREAM[:100]),
        segment(5000, flags=TCP_SYN),
        segment(5001, MESSAGES[1]),
    ]
    assert payloads(run(frames_in, counters)) == MESSAGES[1:2]
    assert counters["net.tcp.restarted"] == 1


def test_repeated_syn_is_not_a_new_connection() -> None:
    counters: Counter[str] = Counter()
    frames_in = [
        segment(ISN - 1, flags=TCP_SYN),
        segment(ISN - 1, flags=TCP_SYN),  # a SPAN port that mirrors both directions shows it twice
        segment(ISN, STREAM[:10]),
        segment(ISN - 1, flags=TCP_SYN),
        segment(ISN + 10, STREAM[10:]),
    ]
    assert payloads(run(frames_in, counters)) == MESSAGES
    assert counters["net.tcp.restarted"] == 0


def test_gap_is_skipped_after_the_gap_timeout() -> None:
    m0, m1, m2 = (len(m) for m in MESSAGES)
    counters: Counter[str] = Counter()
    decoder = NetDecoder(counters, limits=NetLimits(tcp_gap_timeout=1.0))
    assert payloads(decoder.feed(segment(ISN, MESSAGES[0], ts=1.0))) == MESSAGES[:1]
    assert decoder.feed(segment(ISN + m0 + m1, MESSAGES[2], ts=1.1)) == []
    assert decoder.feed(segment(ISN + m0 + m1 + m2, flags=ACK, ts=1.5)) == []
    assert payloads(decoder.feed(segment(ISN + m0 + m1 + m2, flags=ACK, ts=2.1))) == MESSAGES[2:]
    assert counters["net.tcp.gap"] == 1


def test_gap_is_skipped_when_the_queue_is_full() -> None:
    parts = pieces(list(range(0, len(STREAM), 40)))  # 46 pieces
    lost = next(i for i, (s, _) in enumerate(parts) if s - ISN > len(MESSAGES[0]) + 10)
    counters: Counter[str] = Counter()
    frames_in = [segment(ISN - 1, flags=TCP_SYN)]
    frames_in += [segment(s, p) for i, (s, p) in enumerate(parts) if i != lost]
    got = payloads(run(frames_in, counters, NetLimits(tcp_pending=8)))
    # The ACK is lost with its piece; the piece holding the ACK's final CRLF and the start of the
    # 200 (BYE) is recognised as a message start (CRLFs skipped as keep-alives).
    assert got == [MESSAGES[0], MESSAGES[2]]
    assert counters["net.tcp.gap"] == 1
    assert counters["net.tcp.resync_skipped"] > 0


# -- bounds ------------------------------------------------------------------------------------------


def test_least_recently_used_flow_is_evicted() -> None:
    counters: Counter[str] = Counter()
    decoder = NetDecoder(counters, limits=NetLimits(tcp_flows=2))
    for port in (1001, 1002, 1003):
        decoder.feed(segment(ISN, STREAM[:100], sport=port))
    assert decoder.tcp_flows == 2 and counters["net.tcp.evicted"] == 1
    assert decoder.feed(segment(ISN + 100, STREAM[100 : len(MESSAGES[0])], sport=1001)) == []
    assert decoder.feed(segment(ISN + 100, STREAM[100 : len(MESSAGES[0])], sport=1003))


def test_flow_buffer_is_capped() -> None:
    counters: Counter[str] = Counter()
    decoder = NetDecoder(counters, limits=NetLimits(tcp_flow_buffer=1024))
    decoder.feed(segment(ISN, b"INVITE sip:a SIP/2.0\r\nX: " + b"a" * 1100))
    assert counters["net.tcp.buffer_overflow"] == 1
    assert decoder.tcp_buffered_bytes == 0
    for i in range(3):  # out-of-order data counts too
        decoder.feed(segment(ISN + 5000 + 600 * i, b"b" * 600))
    assert counters["net.tcp.buffer_overflow"] == 2


def test_oversized_header_drops_the_buffer() -> None:
    counters: Counter[str] = Counter()
    decoder = NetDecoder(counters, limits=NetLimits(sip_max_header=256))
    decoder.feed(segment(ISN, b"INVITE sip:a SIP/2.0\r\nX: " + b"a" * 300))
    assert counters["net.drop.sip-tcp.headers_too_long"] == 1
    assert decoder.tcp_buffered_bytes == 0


def test_idle_flows_expire() -> None:
    counters: Counter[str] = Counter()
    decoder = NetDecoder(counters, limits=NetLimits(tcp_idle_timeout=60.0))
    decoder.feed(segment(ISN, STREAM[:100], ts=10.0))
    decoder.feed(segment(1, flags=TCP_SYN, ts=20.0, sport=5060))
    decoder.expire(69.9)
    assert (decoder.tcp_flows, decoder.tcp_syn_flows) == (1, 1)
    decoder.expire(70.0)
    assert (decoder.tcp_flows, decoder.tcp_syn_flows) == (0, 1)
    decoder.expire(80.0)
    assert decoder.tcp_syn_flows == 0 and counters["net.tcp.expired"] == 2
