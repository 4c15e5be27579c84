"""NetDecoder over the real captures, with tshark as the oracle."""

from __future__ import annotations

from collections import Counter

import pytest

from recorderd.events import Datagram, Frame, Transport, format_ip
from recorderd.net import NetDecoder
from tests.conftest import PCAPS
from tests.net.netcraft import ALL_PCAPS, ether, frames, ip_packet, tshark


def decode_all(name: str) -> tuple[list[tuple[int, Datagram]], Counter[str]]:
    counters: Counter[str] = Counter()
    decoder = NetDecoder(counters)
    out = [(n, d) for n, f in enumerate(frames(name), start=1) for d in decoder.feed(f)]
    return out, counters


@pytest.mark.parametrize("name", ALL_PCAPS)
def test_every_frame_of_every_capture_decodes(name: str) -> None:
    out, counters = decode_all(name)
    drops = {k: v for k, v in counters.items() if k.startswith("net.drop") or k == "net.link.non_ip"}
    assert drops == {}
    numbers = {n for n, _ in out}
    udp = [f for f in frames(name) if f.data[23] == 17]
    assert len([d for _, d in out if d.transport is Transport.UDP]) == len(udp)
    assert numbers  # every capture holds traffic


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL_PCAPS)
def test_udp_datagrams_match_tshark(name: str) -> None:
    rows = tshark(
        PCAPS / name,
        "udp",
        "frame.number",
        "ip.src",
        "udp.srcport",
        "ip.dst",
        "udp.dstport",
        "udp.length",
    )
    expected = [(int(n), s, int(sp), d, int(dp), int(length) - 8) for n, s, sp, d, dp, length in rows]
    out, _ = decode_all(name)
    got = [
        (n, format_ip(d.src), d.sport, format_ip(d.dst), d.dport, len(d.payload))
        for n, d in out
        if d.transport is Transport.UDP
    ]
    assert got == expected


@pytest.mark.parametrize("name", ALL_PCAPS)
def test_fast_path_agrees_with_the_general_path(name: str) -> None:
    """The same IP packets as raw-IP frames take the general path; results must be identical."""
    fast, general = NetDecoder(Counter()), NetDecoder(Counter())
    for frame in frames(name):
        as_raw = Frame(frame.ts, 101, ip_packet(frame))
        assert fast.feed(frame) == general.feed(as_raw)


@pytest.mark.parametrize("tags", [(0x8100,), (0x88A8, 0x8100)])
def test_tagged_frames_give_the_untagged_result(tags: tuple[int, ...]) -> None:
    decoder = NetDecoder(Counter())
    for frame in frames("sip-rtp-g711-pcmu-then-pcma.pcap"):
        tagged = Frame(frame.ts, 1, ether(ip_packet(frame), 0x0800, tags))
        assert decoder.feed(tagged) == decoder.feed(frame)


def test_padding_and_trailers_do_not_change_the_payload() -> None:
    frame = frames("sip-rtp-g729a.pcap")[-1]
    padded = Frame(frame.ts, 1, frame.data + b"\0" * 18)
    decoder = NetDecoder(Counter())
    assert decoder.feed(padded) == decoder.feed(frame)


def test_datagram_fields_of_a_real_rtp_frame() -> None:
    frame = frames("sip-tcp-call-rtp.pcap")[76]  # frame 77: RTP 10.33.6.101:6050 -> 10.33.6.100:6000
    (got,) = NetDecoder(Counter()).feed(frame)
    assert got.ts == frame.ts and got.transport is Transport.UDP
    assert (format_ip(got.src), got.sport, format_ip(got.dst), got.dport) == (
        "10.33.6.101",
        6050,
        "10.33.6.100",
        6000,
    )
    assert got.payload == frame.data[42:]
    assert got.payload[0] == 0x80  # RTP version 2


def test_table_sizes_start_empty() -> None:
    decoder = NetDecoder(Counter())
    sizes = (
        decoder.fragment_sets,
        decoder.fragment_bytes,
        decoder.tcp_flows,
        decoder.tcp_syn_flows,
        decoder.tcp_buffered_bytes,
    )
    assert sizes == (0, 0, 0, 0, 0)


def test_malformed_frames_are_counted_by_reason() -> None:
    counters: Counter[str] = Counter()
    decoder = NetDecoder(counters)
    good = frames("sip-rtp-g722.pcap")[0]
    cases = [
        Frame(1.0, 1, b""),
        Frame(1.0, 1, good.data[:20]),
        Frame(1.0, 1, good.data[:-4]),
        Frame(1.0, 1, ether(b"\x60" + bytes(10), 0x86DD)),
        Frame(1.0, 1, ether(b"\x45" + bytes(19), 0x0800)),
    ]
    for frame in cases:
        assert decoder.feed(frame) == []
    assert counters == Counter(
        {
            "net.drop.ethernet.header_truncated": 1,
            "net.drop.ipv4.header_truncated": 1,
            "net.drop.ipv4.truncated": 1,
            "net.drop.ipv6.header_truncated": 1,
            "net.drop.ipv4.bad_total_length": 1,
        }
    )
