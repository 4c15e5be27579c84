from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recorderd.errors import ParseError
from recorderd.events import MediaDirection, PayloadFormat
from recorderd.sip.message import parse_sip, sdp_body
from recorderd.sip.sdp import MediaDescription, SessionDescription, parse_sdp
from tests.sip.sip_pcap import ALL_PCAPS, sip_datagrams, tshark_sip

PCMU = PayloadFormat(0, "PCMU", 8000)
PCMA = PayloadFormat(8, "PCMA", 8000)


def ip(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


def real_sdp(name: str, frame: int) -> SessionDescription:
    data = next(d.payload for n, d in sip_datagrams(name) if n == frame)
    body = sdp_body(parse_sip(data))
    assert body is not None
    return parse_sdp(body)


def sdp(*lines: str) -> SessionDescription:
    return parse_sdp(("\r\n".join(("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", *lines)) + "\r\n").encode())


# --------------------------------------------------------------------------------------------------
# Real captures


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL_PCAPS)
def test_every_real_sdp_matches_tshark(name: str) -> None:
    oracle = {frame: row[5:7] for frame, row in tshark_sip(name).items() if row[6]}
    seen: dict[int, tuple[str, ...]] = {}
    for frame, dgram in sip_datagrams(name):
        try:
            body = sdp_body(parse_sip(dgram.payload))
        except ParseError:
            continue
        if body is not None:
            audio = parse_sdp(body).first_audio()
            assert audio is not None and audio.ip is not None
            seen[frame] = (str(ipaddress.ip_address(audio.ip)), str(audio.port))
    assert seen == oracle
    assert seen  # every capture has at least one offer and one answer


def test_real_offer_with_rtpmap_channels_and_ptime() -> None:
    desc = real_sdp("onsip-testcall-nat-auth", 10)
    assert desc.ip == ip("192.168.60.101")
    assert desc.direction is MediaDirection.SENDRECV
    assert desc.media == (
        MediaDescription(
            kind="audio",
            port=48600,
            proto="RTP/AVP",
            formats=(PCMU, PayloadFormat(101, "TELEPHONE-EVENT", 8000), PCMA),
            ip=ip("192.168.60.101"),
            direction=MediaDirection.SENDRECV,
            ptime=20,
        ),
    )


def test_real_recvonly_offer_and_sendonly_answer() -> None:
    offer = real_sdp("sip-rtp-g711-pcmu-then-pcma", 1).first_audio()
    answer = real_sdp("sip-rtp-g711-pcmu-then-pcma", 4).first_audio()
    assert offer is not None and answer is not None
    assert (offer.direction, offer.port, offer.formats, offer.ptime) == (
        MediaDirection.RECVONLY,
        6000,
        (PCMU,),
        None,
    )
    assert (answer.ip, answer.port, answer.direction) == (ip("10.0.2.15"), 27942, "sendonly")


def test_static_payload_without_rtpmap_takes_rfc3551_name() -> None:
    # "m=audio 6000 RTP/AVP 8 13 101" with rtpmaps for 8 and 101 only: 13 is comfort noise.
    audio = real_sdp("sip-tcp-call-rtp", 3).first_audio()
    assert audio is not None
    assert [f.name for f in audio.formats] == ["PCMA", "CN", "TELEPHONE-EVENT"]


def test_g729_and_g722_rtpmaps() -> None:
    g729 = real_sdp("sip-rtp-g729a", 4).first_audio()
    g722 = real_sdp("sip-rtp-g722", 1).first_audio()
    assert g729 is not None and g722 is not None
    assert g729.formats[0] == PayloadFormat(18, "G729", 8000)
    assert g722.formats == (PayloadFormat(9, "G722", 8000),)


# --------------------------------------------------------------------------------------------------
# Addresses


def test_ipv6_connection_and_media_level_override() -> None:
    desc = sdp(
        "c=IN IP6 2001:db8::1",
        "t=0 0",
        "m=audio 5004 RTP/AVP 0",
        "m=audio 5006 RTP/AVP 8",
        "c=IN IP4 198.51.100.7",
    )
    assert desc.ip == ip("2001:db8::1")
    assert [m.ip for m in desc.media] == [ip("2001:db8::1"), ip("198.51.100.7")]


def test_multicast_ttl_and_count_suffixes_are_ignored() -> None:
    assert sdp("c=IN IP4 224.2.1.1/127/3", "m=audio 5004 RTP/AVP 0").ip == ip("224.2.1.1")
    assert sdp("c=IN IP6 ff15::101/3", "m=audio 5004 RTP/AVP 0").ip == ip("ff15::101")


@pytest.mark.parametrize(
    "line", ["c=IN IP4 pbx.example.com", "c=IN IP4", "c=ATM NSAP 47.0005", "c=IN IP4 1.2.3"]
)
def test_unusable_connection_gives_no_ip(line: str) -> None:
    desc = sdp(line, "m=audio 5004 RTP/AVP 0")
    assert desc.ip is None
    assert desc.media[0].ip is None
    assert sdp("m=audio 5004 RTP/AVP 0").media[0].ip is None  # no c= at all


def test_old_style_hold_is_inactive() -> None:
    held = sdp("c=IN IP4 0.0.0.0", "m=audio 5004 RTP/AVP 0", "a=sendrecv").media[0]
    assert (held.ip, held.direction) == (bytes(4), MediaDirection.INACTIVE)
    held6 = sdp("c=IN IP6 ::", "m=audio 5004 RTP/AVP 0").media[0]
    assert held6.direction is MediaDirection.INACTIVE


# --------------------------------------------------------------------------------------------------
# Media lines and attributes


def test_several_media_lines_video_and_rejected_audio() -> None:
    desc = sdp(
        "c=IN IP4 192.0.2.1",
        "a=sendonly",
        "a=ptime:30",
        "m=video 0 RTP/AVP 96",
        "a=rtpmap:96 H264/90000",
        "m=audio 0 RTP/AVP 0",
        "m=audio 49170/2 RTP/AVP 0 96 97 127 128 x",
        "a=rtpmap:96 opus/48000/2",
        "a=inactive",
        "a=ptime:20.5",
        "m=image 6000 udptl t38",
    )
    assert [(m.kind, m.port) for m in desc.media] == [
        ("video", 0),
        ("audio", 0),
        ("audio", 49170),
        ("image", 6000),
    ]
    assert desc.direction is MediaDirection.SENDONLY
    audio = desc.first_audio()
    assert audio is desc.media[2]
    assert audio.formats == (
        PCMU,
        PayloadFormat(96, "OPUS", 48000),
        PayloadFormat(97, "", 0),  # dynamic and unmapped
        PayloadFormat(127, "", 0),
    )
    assert (audio.direction, audio.ptime) == (MediaDirection.INACTIVE, 20)
    assert (desc.media[1].direction, desc.media[1].ptime) == (MediaDirection.SENDONLY, 30)
    assert desc.media[3].formats == ()


def test_no_audio_at_all() -> None:
    assert sdp("c=IN IP4 192.0.2.1", "m=video 5000 RTP/AVP 31").first_audio() is None
    assert sdp("c=IN IP4 192.0.2.1").media == ()


@pytest.mark.parametrize(
    "attribute",
    [
        "a=rtpmap:96",
        "a=rtpmap:x PCMU/8000",
        "a=rtpmap:200 X/8000",
        "a=rtpmap:96 X/fast",
        "a=ptime:",
    ],
)
def test_malformed_attributes_are_ignored(attribute: str) -> None:
    audio = sdp("c=IN IP4 192.0.2.1", "m=audio 4000 RTP/AVP 96", attribute).media[0]
    assert audio.formats == (PayloadFormat(96, "", 0),)
    assert audio.ptime is None


def test_bare_lf_and_trailing_spaces() -> None:
    body = b"v=0\nc=IN IP4 192.0.2.9  \nm=audio 7078 RTP/AVP 8 \na=sendrecv \n"
    audio = parse_sdp(body).first_audio()
    assert audio is not None
    assert (audio.ip, audio.port, audio.formats) == (ip("192.0.2.9"), 7078, (PCMA,))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "sdp: missing v= line"),
        (b"o=- 1 1 IN IP4 192.0.2.1\r\nv=0\r\n", "sdp: missing v= line"),
        (b"v=0\r\nm=audio\r\n", "sdp: bad m= line"),
        (b"v=0\r\nm=audio 5004\r\n", "sdp: bad m= line"),
        (b"v=0\r\nm=audio x RTP/AVP 0\r\n", "sdp: bad port in m= line"),
        (b"v=0\r\nm=audio 70000 RTP/AVP 0\r\n", "sdp: bad port in m= line"),
        (b"v=0\r\n" + b"m=audio 1 RTP/AVP 0\r\n" * 17, "sdp: too many m= lines (> 16)"),
    ],
)
def test_error_messages(body: bytes, message: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_sdp(body)
    assert str(info.value) == message


@given(st.binary(max_size=400))
def test_parse_sdp_raises_only_parse_error(body: bytes) -> None:
    try:
        parse_sdp(body)
    except ParseError:
        pass


@given(
    st.lists(
        st.tuples(
            st.sampled_from("vcmab"),
            st.text(alphabet="audio RTP/AVP IN IP4 IP6 0123456789.:/ rtpmap ptime sendonly", max_size=30),
        ),
        max_size=12,
    )
)
def test_sdp_shaped_input_raises_only_parse_error(lines: list[tuple[str, str]]) -> None:
    body = "v=0\r\n" + "".join(f"{kind}={value}\r\n" for kind, value in lines)
    try:
        desc = parse_sdp(body.encode())
    except ParseError:
        return
    for media in desc.media:
        assert 0 <= media.port <= 65535
        assert media.ip is None or len(media.ip) in (4, 16)
