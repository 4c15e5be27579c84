"""UDP and TCP headers of real packets; lengths, zero checksums and bad header sizes."""

from __future__ import annotations

from collections import Counter

import pytest

from recorderd.errors import ParseError
from recorderd.events import Datagram, Transport
from recorderd.net import NetDecoder, parse_tcp, parse_udp
from recorderd.net.transport import TCP_SYN
from tests.net.netcraft import eth_frame, frames, ip_packet, ipv4, tcp, udp, udp_segment


def rtp_packet() -> bytes:
    return ip_packet(frames("sip-rtp-g711-pcmu-then-pcma.pcap")[-1])


def test_real_udp_header() -> None:
    segment = udp_segment(rtp_packet())
    sport, dport, start, end = parse_udp(segment)
    assert (start, end) == (8, len(segment))
    (got,) = NetDecoder(Counter()).feed(frames("sip-rtp-g711-pcmu-then-pcma.pcap")[-1])
    assert (got.sport, got.dport, got.payload) == (sport, dport, segment[8:])


def test_udp_length_bounds_the_payload_and_zero_checksum_is_fine() -> None:
    segment = udp(4000, 4002, b"hello") + b"trailer"
    assert segment[6:8] == b"\0\0"
    assert parse_udp(segment) == (4000, 4002, 8, 13)
    assert parse_udp(b"xx" + segment, 2, 2 + 13) == (4000, 4002, 10, 15)


def test_udp_errors() -> None:
    for n in range(8):
        with pytest.raises(ParseError) as info:
            parse_udp(udp(1, 2, b"")[:n])
        assert str(info.value) == f"udp: header truncated ({n} < 8 bytes)"
    with pytest.raises(ParseError, match=r"^udp: bad length \(7 < 8 bytes\)$"):
        parse_udp(udp(1, 2, b"x", length=7))
    with pytest.raises(ParseError, match=r"^udp: truncated \(9 < 30 bytes\)$"):
        parse_udp(udp(1, 2, b"x", length=30))


def test_udp_length_zero_takes_the_ip_length() -> None:
    assert parse_udp(udp(1, 2, b"abcd", length=0)) == (1, 2, 8, 12)


def test_empty_udp_payload_is_a_datagram() -> None:
    packet = ipv4(b"\x0a\0\0\x01", b"\x0a\0\0\x02", 17, udp(1, 2, b""))
    assert NetDecoder(Counter()).feed(eth_frame(packet, ts=3.0)) == [
        Datagram(3.0, Transport.UDP, b"\x0a\0\0\x01", 1, b"\x0a\0\0\x02", 2, b"")
    ]


def test_real_tcp_header() -> None:
    packet = ip_packet(frames("sip-tcp-call-rtp.pcap")[2])  # the INVITE, 788 bytes of data
    sport, dport, seq, flags, start, end = parse_tcp(packet, 20)
    assert (sport, dport, seq, flags) == (64802, 5060, 2441615629, 0x18)
    assert end - start == 788
    assert packet[start:].startswith(b"INVITE ")


def test_tcp_errors() -> None:
    header = tcp(1, 2, 3, TCP_SYN)
    for n in range(20):
        with pytest.raises(ParseError) as info:
            parse_tcp(header[:n])
        assert str(info.value) == f"tcp: header truncated ({n} < 20 bytes)"
    bad = header[:12] + b"\x40" + header[13:]
    with pytest.raises(ParseError, match=r"^tcp: bad header length \(16 < 20 bytes\)$"):
        parse_tcp(bad)
    long = header[:12] + b"\x80" + header[13:]
    with pytest.raises(ParseError, match=r"^tcp: header truncated \(20 < 32 bytes\)$"):
        parse_tcp(long)


def test_tcp_options_are_skipped() -> None:
    header = tcp(1, 2, 3, 0)
    with_options = header[:12] + b"\x60" + header[13:] + b"\x01\x01\x01\x00" + b"data"
    assert parse_tcp(with_options)[4:] == (24, 28)
