import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recorderd.errors import ParseError
from recorderd.rtp.dtmf import parse_telephone_event
from recorderd.rtp.packet import is_rtcp, parse_rtp
from tests.conftest import PCAPS, read_frames


def first_rtp(pcap: str, udp_offset: int = 14 + 20 + 8) -> bytes:
    """The first RTP payload (byte 0 = 0x80) of a real capture, sliced below Ethernet/IPv4/UDP."""
    for _, frame in read_frames(PCAPS / pcap):
        payload = frame[udp_offset:]
        if payload[:1] == b"\x80" and len(payload) > 12:
            return payload
    raise AssertionError("no RTP")


def test_real_pcmu_packet() -> None:
    data = first_rtp("sip-rtp-g711-pcmu-then-pcma.pcap")
    pkt = parse_rtp(data)
    assert pkt.pt == 0
    assert pkt.ssrc == 0x343DA99B
    assert len(pkt.payload) == 160
    assert pkt.payload == data[12:]


def test_every_truncated_prefix_raises_a_stable_message() -> None:
    data = first_rtp("sip-rtp-g711-pcmu-then-pcma.pcap")
    for n in range(12):
        with pytest.raises(ParseError, match=rf"^rtp: header truncated \({n} < 12 bytes\)$"):
            parse_rtp(data[:n])
    assert parse_rtp(data[:12]).payload == b""


def test_csrc_extension_and_padding() -> None:
    header = struct.pack("!BBHII", 0x80 | 0x30 | 2, 8, 1, 160, 7)  # P, X, CC=2
    body = struct.pack("!II", 11, 12) + struct.pack("!HH", 0xBEDE, 1) + b"\0" * 4
    pkt = parse_rtp(header + body + b"abc" + b"\0\0\x03")
    assert pkt.payload == b"abc"
    with pytest.raises(ParseError, match="^rtp: truncated CSRC list$"):
        parse_rtp(header + body[:4])
    with pytest.raises(ParseError, match="^rtp: truncated header extension$"):
        parse_rtp(header + body[:10])
    with pytest.raises(ParseError, match="^rtp: bad padding length$"):
        parse_rtp(header + body + b"\x00")


def test_version_and_rtcp() -> None:
    with pytest.raises(ParseError, match="^rtp: version 1 is not 2$"):
        parse_rtp(b"\x40" + b"\0" * 11)
    assert is_rtcp(b"\x80\xc8\x00\x06")  # sender report
    assert not is_rtcp(b"\x80\x08\x00\x06")


def test_telephone_event() -> None:
    event = parse_telephone_event(bytes([11, 0x80 | 10, 0x03, 0x20]))
    assert (event.digit, event.end, event.volume, event.duration) == ("#", True, 10, 800)
    with pytest.raises(ParseError, match=r"^rtp: telephone-event truncated \(3 < 4 bytes\)$"):
        parse_telephone_event(b"\x01\x02\x03")


@given(st.binary(max_size=80))
def test_parse_rtp_raises_only_parse_error(data: bytes) -> None:
    try:
        parse_rtp(data)
    except ParseError:
        pass
