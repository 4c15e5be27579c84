"""SIP framing on a byte stream (RFC 3261 18.3): the real TCP streams fed whole, bytewise and in pieces."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorderd.errors import NeedMoreData, ParseError
from recorderd.net import SipStreamFramer
from recorderd.net.sipframe import content_length, starts_sip_message
from tests.net.netcraft import tcp_segments

# Each segment of the capture carries exactly one message (tshark agrees): they are the expected output.
CLIENT = [s[5] for s in tcp_segments() if s[2] == 64802]  # INVITE, ACK, 200 (BYE)
SERVER = [s[5] for s in tcp_segments() if s[2] == 5060]  # 100, 180, 200 (INVITE), BYE
STREAMS = {"client": CLIENT, "server": SERVER}


def drain(framer: SipStreamFramer) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(framer.next_message())
        except NeedMoreData:
            return out


def frame_chunks(chunks: list[bytes], **limits: int) -> list[bytes]:
    framer = SipStreamFramer(**limits)
    out = []
    for chunk in chunks:
        framer.receive_data(chunk)
        out += drain(framer)
    return out


def test_the_capture_has_messages_with_and_without_bodies() -> None:
    assert [content_length(m) for m in CLIENT] == [228, 0, 0]
    assert [m.split(b" ", 2)[1] for m in SERVER] == [
        b"100",
        b"180",
        b"200",
        b"sip:101@10.33.6.100:5060;transport=tcp",
    ]


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_stream_fed_whole(name: str) -> None:
    messages = STREAMS[name]
    assert frame_chunks([b"".join(messages)]) == messages


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_stream_fed_byte_by_byte(name: str) -> None:
    stream = b"".join(STREAMS[name])
    assert frame_chunks([stream[i : i + 1] for i in range(len(stream))]) == STREAMS[name]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(STREAMS)), st.lists(st.integers(0, 4000), max_size=30))
def test_stream_fed_in_random_pieces(name: str, cuts: list[int]) -> None:
    stream = b"".join(STREAMS[name])
    bounds = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    chunks = [stream[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    assert frame_chunks(chunks) == STREAMS[name]


def test_split_inside_the_header_terminator() -> None:
    message = CLIENT[1]
    cut = message.index(b"\r\n\r\n") + 2
    assert frame_chunks([message[:cut], message[cut:]]) == [message]


def test_trailing_bytes_wait_for_the_rest() -> None:
    stream = b"".join(SERVER)
    framer = SipStreamFramer()
    framer.receive_data(stream[:-10])
    assert drain(framer) == SERVER[:-1]
    assert framer.buffered == len(SERVER[-1]) - 10
    framer.receive_data(stream[-10:])
    assert drain(framer) == SERVER[-1:]
    assert framer.buffered == 0


def test_body_split_from_headers() -> None:
    invite = CLIENT[0]
    head = invite.index(b"\r\n\r\n") + 4
    framer = SipStreamFramer()
    framer.receive_data(invite[:head])
    with pytest.raises(NeedMoreData):
        framer.next_message()
    framer.receive_data(invite[head:])
    assert framer.next_message() == invite


def test_keepalives_between_messages_are_skipped() -> None:
    stream = b"\r\n\r\n" + CLIENT[0] + b"\r\n" + b"\r\n\r\n" + CLIENT[1]
    assert frame_chunks([stream]) == CLIENT[:2]
    assert frame_chunks([b"\r\n\r\n", b"\r\n"]) == []


def test_compact_and_case_insensitive_content_length() -> None:
    body = b"v=0\r\n"
    for header in (b"l: 5", b"L:5", b"content-length:   5", b"CONTENT-LENGTH :5"):
        message = b"MESSAGE sip:a@b SIP/2.0\r\nCall-ID: x\r\n" + header + b"\r\n\r\n" + body
        assert frame_chunks([message + b"OPTIONS sip:a@b SIP/2.0\r\n\r\n"]) == [
            message,
            b"OPTIONS sip:a@b SIP/2.0\r\n\r\n",
        ]


def test_header_names_that_only_start_like_content_length() -> None:
    message = b"SIP/2.0 200 OK\r\nLocation: 12\r\nContent-Length-X: 9\r\nl : 2\r\n\r\nok"
    assert frame_chunks([message]) == [message]


def test_missing_content_length_means_no_body() -> None:
    stream = b"SIP/2.0 100 Trying\r\nCall-ID: y\r\n\r\nSIP/2.0 180 Ringing\r\n\r\n"
    assert frame_chunks([stream]) == [
        b"SIP/2.0 100 Trying\r\nCall-ID: y\r\n\r\n",
        b"SIP/2.0 180 Ringing\r\n\r\n",
    ]


def test_bare_lf_line_ends_are_accepted() -> None:
    head, body = CLIENT[0].split(b"\r\n\r\n", 1)
    message = head.replace(b"\r\n", b"\n") + b"\n\n" + body  # Content-Length counts the body only
    assert frame_chunks([message + CLIENT[1]]) == [message, CLIENT[1]]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"HTTP/1.1 200 OK\r\n\r\n", "sip-tcp: not a SIP message"),
        (b"INVITE sip:a SIP/2.0\r\nl: 1\r\nl: 2\r\n\r\n", "sip-tcp: conflicting Content-Length"),
        (b"INVITE sip:a SIP/2.0\r\nl: -1\r\n\r\n", "sip-tcp: bad Content-Length"),
        (b"INVITE sip:a SIP/2.0\r\nl: 1e3\r\n\r\n", "sip-tcp: bad Content-Length"),
        (
            b"INVITE sip:a SIP/2.0\r\nl: 99999999999999999999\r\n\r\n",
            "sip-tcp: message too large (20 digits of Content-Length)",
        ),
        (
            b"INVITE sip:a SIP/2.0\r\nl: 300000\r\n\r\n",
            "sip-tcp: message too large (300035 > 262144 bytes)",
        ),
    ],
)
def test_unframeable_input_raises_and_empties_the_buffer(data: bytes, message: str) -> None:
    framer = SipStreamFramer()
    framer.receive_data(data + CLIENT[1])
    with pytest.raises(ParseError) as info:
        framer.next_message()
    assert str(info.value) == message
    assert not isinstance(info.value, NeedMoreData)
    assert framer.buffered == 0


def test_headers_are_bounded() -> None:
    framer = SipStreamFramer(max_header=1024)
    framer.receive_data(b"INVITE sip:a SIP/2.0\r\n" + b"X-Pad: " + b"a" * 1000 + b"\r\n")
    with pytest.raises(ParseError, match=r"^sip-tcp: headers too long \(> 1024 bytes\)$"):
        framer.next_message()
    framer.receive_data(CLIENT[1])  # starts afresh
    assert framer.next_message() == CLIENT[1]
    framer.receive_data(b"INVITE sip:a SIP/2.0\r\n" + b"X-Pad: " + b"a" * 1000 + b"\r\n\r\n")
    with pytest.raises(ParseError, match=r"^sip-tcp: headers too long \(1029 > 1024 bytes\)$"):
        framer.next_message()


def test_reset_forgets_a_partial_message() -> None:
    framer = SipStreamFramer()
    framer.receive_data(CLIENT[0][:100])
    framer.reset()
    framer.receive_data(CLIENT[1])
    assert drain(framer) == [CLIENT[1]]


def test_start_line_detection() -> None:
    for good in (b"INVITE sip:a@b SIP/2.0\r\n", b"\r\n\r\nBYE sip:x SIP/2.0\n", b"SIP/2.0 200 OK"):
        assert starts_sip_message(good)
    assert starts_sip_message(b"sip/2.0 486 Busy Here\r\n")
    for bad in (b"GET / HTTP/1.1\r\n", b"INVITE sip:a@b SIP/2.0 trailing\r\n", b"", b"\r\n", b"SIP/2.0 20"):
        assert not starts_sip_message(bad)
