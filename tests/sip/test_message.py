from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recorderd.errors import ParseError
from recorderd.sip.message import (
    _KNOWN_NAMES,
    _TOKEN,
    NameAddr,
    SipRequest,
    SipResponse,
    canonical_name,
    parse_name_addr,
    parse_sip,
    sdp_body,
    uri_headers,
    user_part,
)
from tests.sip.sip_pcap import ALL_PCAPS, sip_datagrams, tshark_sip


def payload(name: str, frame: int) -> bytes:
    return next(d.payload for n, d in sip_datagrams(name) if n == frame)


def real_messages() -> list[bytes]:
    return [d.payload for name in ALL_PCAPS for _, d in sip_datagrams(name) if len(d.payload) > 4]


# --------------------------------------------------------------------------------------------------
# Real captures against tshark


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL_PCAPS)
def test_every_sip_message_matches_tshark(name: str) -> None:
    oracle = tshark_sip(name)
    parsed: dict[int, tuple[str, ...]] = {}
    for frame, dgram in sip_datagrams(name):
        try:
            msg = parse_sip(dgram.payload)
        except ParseError:
            continue
        cseq = msg.cseq
        assert cseq is not None
        method = msg.method if isinstance(msg, SipRequest) else ""
        status = str(msg.status) if isinstance(msg, SipResponse) else ""
        parsed[frame] = (method, status, msg.call_id or "", str(cseq[0]), cseq[1])
    assert parsed == {frame: row[:5] for frame, row in oracle.items()}


def test_keepalives_are_not_messages() -> None:
    keepalives = [d.payload for _, d in sip_datagrams("onsip-testcall-nat-auth") if len(d.payload) <= 4]
    assert len(keepalives) == 5
    for data in keepalives:
        with pytest.raises(ParseError, match=r"^sip: not a SIP message$"):
            parse_sip(data)


def test_real_invite_fields() -> None:
    msg = parse_sip(payload("onsip-testcall-nat-auth", 10))
    assert isinstance(msg, SipRequest)
    assert (msg.method, msg.uri) == ("INVITE", "sip:thetestcall@getonsip.com")
    assert msg.call_id == "a3d80213-f8bc-0789-b5fe-8d76314ebcb0"
    assert msg.cseq == (620392281, "INVITE")
    assert msg.headers[0] == (
        "via",
        "SIP/2.0/UDP 192.168.60.101:46047;branch=z9hG4bK-90061787;rport",
    )
    assert msg.header("CONTENT-TYPE") == "application/sdp"
    assert msg.header("l") == "506"
    assert msg.header("x-missing") is None
    assert len(msg.body) == 506 and msg.body.startswith(b"v=0\r\n")
    assert sdp_body(msg) == msg.body
    assert msg.headers_all("allow") == [
        *"INVITE ACK CANCEL BYE MESSAGE OPTIONS NOTIFY PRACK UPDATE REFER".split()
    ]
    sender = parse_name_addr(msg.header("from") or "")
    assert sender == NameAddr("", "sip:eim@upbsml.onsip.com", "1090117420", (("tag", "1090117420"),))


def test_real_response_fields() -> None:
    msg = parse_sip(payload("sip-dtmf2-rfc2833-603", 20))
    assert isinstance(msg, SipResponse)
    assert (msg.status, msg.reason) == (200, "OK")
    assert msg.header("content-length") == "264"  # written "Content-Length:   264" on the wire
    assert msg.headers_all("via") == [
        "SIP/2.0/UDP 192.168.105.105:5060;branch=z9hG4bK48df8586c6abf.1",
        "SIP/2.0/UDP 192.168.105.110:5060;branch=z9hG4bK12840",
    ]
    to = parse_name_addr(msg.header("to") or "")
    assert (to.display_name, to.uri, to.tag) == ("", "sip:2504@192.168.105.110:5060", "12860")
    sender = parse_name_addr(msg.header("f") or "")
    assert (sender.display_name, sender.tag) == ("2502", "26598")


def test_real_reason_phrase_with_spaces() -> None:
    msg = parse_sip(payload("onsip-testcall-nat-auth", 12))
    assert isinstance(msg, SipResponse)
    assert (msg.status, msg.reason) == (407, "Proxy Authentication Required")


def test_every_prefix_of_real_messages_raises_parse_error() -> None:
    # Every real message has a Content-Length, so no strict prefix can be a complete message.
    for data in real_messages():
        head_end = data.index(b"\r\n\r\n") + 4
        for cut in range(len(data)):
            with pytest.raises(ParseError) as info:
                parse_sip(data[:cut])
            if cut >= head_end:
                assert str(info.value).startswith(f"sip: body truncated ({cut - head_end} < ")


def test_trailing_bytes_after_content_length_are_cut() -> None:
    data = payload("sip-tcp-call-rtp", 9)
    msg = parse_sip(data + b"garbage after the body")
    assert msg.body == parse_sip(data).body
    assert len(msg.body) == 225


# --------------------------------------------------------------------------------------------------
# Syntax variants real phones produce


def test_compact_forms_are_expanded() -> None:
    data = (
        b"INVITE sip:bob@example.com SIP/2.0\r\n"
        b"v: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\n"
        b"f: Alice <sip:alice@example.com>;tag=a1\r\n"
        b"t: <sip:bob@example.com>\r\n"
        b"i: abc@192.0.2.1\r\n"
        b"CSeq: 1 INVITE\r\n"
        b"m: <sip:alice@192.0.2.1>\r\n"
        b"k: replaces\r\n"
        b"r: <sip:carol@example.com>\r\n"
        b"b: <sip:alice@example.com>\r\n"
        b"x: 1800\r\n"
        b"o: refer\r\n"
        b"u: talk\r\n"
        b"s: hello\r\n"
        b"c: application/sdp\r\n"
        b"l: 0\r\n"
        b"\r\n"
    )
    msg = parse_sip(data)
    assert [name for name, _ in msg.headers] == [
        "via",
        "from",
        "to",
        "call-id",
        "cseq",
        "contact",
        "supported",
        "refer-to",
        "referred-by",
        "session-expires",
        "event",
        "allow-events",
        "subject",
        "content-type",
        "content-length",
    ]
    assert msg.call_id == "abc@192.0.2.1"
    assert msg.header("Call-ID") == msg.header("I") == "abc@192.0.2.1"


def test_folded_headers_bare_lf_and_sloppy_spacing() -> None:
    data = (
        b"SIP/2.0 180 Ringing\n"
        b"VIA : SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1,\n"
        b"  SIP/2.0/UDP 192.0.2.2;branch=z9hG4bK2   \n"
        b"Subject: a long\n"
        b"\tsubject line\n"
        b"Call-Id:x1 \n"
        b"cseq: 7 INVITE\n"
        b"\n"
    )
    msg = parse_sip(data)
    assert isinstance(msg, SipResponse)
    assert msg.header("subject") == "a long subject line"
    assert msg.call_id == "x1"
    assert msg.cseq == (7, "INVITE")
    assert msg.headers_all("v") == [
        "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1",
        "SIP/2.0/UDP 192.0.2.2;branch=z9hG4bK2",
    ]
    assert msg.body == b""


def test_repeated_and_comma_separated_list_headers_are_kept_in_order() -> None:
    data = (
        b"BYE sip:b@x SIP/2.0\r\n"
        b"Route: <sip:p1;lr>, <sip:p2;lr>\r\n"
        b"Route: <sip:p3;lr>\r\n"
        b'Contact: "Doe, John" <sip:j@x>\r\n'
        b'Authorization: Digest username="a", realm="b"\r\n'
        b"\r\n"
    )
    msg = parse_sip(data)
    assert msg.headers_all("route") == ["<sip:p1;lr>", "<sip:p2;lr>", "<sip:p3;lr>"]
    assert msg.headers_all("contact") == ['"Doe, John" <sip:j@x>']
    assert msg.headers_all("authorization") == ['Digest username="a", realm="b"']


def test_body_without_content_length_is_the_rest_of_the_datagram() -> None:
    msg = parse_sip(b"MESSAGE sip:b@x SIP/2.0\r\nCall-ID: 1\r\n\r\nhello")
    assert msg.body == b"hello"


def test_leading_crlf_is_ignored_and_version_case_is_free() -> None:
    msg = parse_sip(b"\r\n\r\nOPTIONS sip:x sip/2.0\r\n\r\n")
    assert isinstance(msg, SipRequest)
    assert msg.method == "OPTIONS"


def test_unusable_cseq_is_none() -> None:
    assert parse_sip(b"ACK sip:x SIP/2.0\r\nCSeq: one ACK\r\n\r\n").cseq is None
    assert parse_sip(b"ACK sip:x SIP/2.0\r\n\r\n").cseq is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "sip: empty message"),
        (b"\r\n\r\n", "sip: empty message"),
        (b"INVITE sip:x SIP/2.0\r\nCall-ID: 1\r\n", "sip: no end of headers"),
        (b"\x00\x00\x00\x00", "sip: not a SIP message"),
        (b" INVITE sip:x SIP/2.0\r\n\r\n", "sip: not a SIP message"),
        (b"INVITE sip:x SIP/3.0\r\n\r\n", "sip: not SIP/2.0"),
        (b"HTTP/1.1 200 OK\r\n\r\n", "sip: not SIP/2.0"),
        (b"INVITE  SIP/2.0\r\n\r\n", "sip: bad request line"),
        (b"INV(TE sip:x SIP/2.0\r\n\r\n", "sip: bad method"),
        (b"SIP/2.0 2OO OK\r\n\r\n", "sip: bad status code"),
        (b"SIP/2.0 099 Odd\r\n\r\n", "sip: status code out of range (99)"),
        (b"SIP/2.0 700 Odd\r\n\r\n", "sip: status code out of range (700)"),
        (b"SIP/2.0 200 OK\r\nno colon here\r\n\r\n", "sip: bad header line"),
        (b"SIP/2.0 200 OK\r\nBad Name: x\r\n\r\n", "sip: bad header line"),
        (b"SIP/2.0 200 OK\r\n folded: x\r\n\r\n", "sip: continuation line before any header"),
        (b"SIP/2.0 200 OK\r\nContent-Length: -1\r\n\r\n", "sip: bad Content-Length"),
        (b"SIP/2.0 200 OK\r\nl: 10\r\n\r\nabc", "sip: body truncated (3 < 10 bytes)"),
        (b"SIP/2.0 200 OK\r\n" + b"X: y\r\n" * 257 + b"\r\n", "sip: too many header lines (> 256)"),
    ],
)
def test_error_messages(data: bytes, message: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_sip(data)
    assert str(info.value) == message


# --------------------------------------------------------------------------------------------------
# name-addr, URIs


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            '"PCMU/8000" <sip:sipp@10.0.2.20:5060>;tag=1',
            NameAddr("PCMU/8000", "sip:sipp@10.0.2.20:5060", "1", (("tag", "1"),)),
        ),
        (
            "test <sip:test@10.0.2.15:5060>",
            NameAddr("test", "sip:test@10.0.2.15:5060", None, ()),
        ),
        (
            '"A \\"quoted\\" name" <sip:a@x;user=phone> ; TAG = t1 ;lr',
            NameAddr('A "quoted" name', "sip:a@x;user=phone", "t1", (("tag", "t1"), ("lr", ""))),
        ),
        (
            "sip:sipp@10.0.2.20:5060;tag=9;expires=60",
            NameAddr("", "sip:sipp@10.0.2.20:5060", "9", (("tag", "9"), ("expires", "60"))),
        ),
        (
            '<sip:eim@192.168.60.101:46047>;language="en,fr";+g.3gpp.smsip',
            NameAddr(
                "",
                "sip:eim@192.168.60.101:46047",
                None,
                (("language", "en,fr"), ("+g.3gpp.smsip", "")),
            ),
        ),
        ("Anonymous <sip:anonymous@anonymous.invalid>", None),
    ],
)
def test_parse_name_addr(value: str, expected: NameAddr | None) -> None:
    parsed = parse_name_addr(value)
    if expected is None:
        assert (parsed.display_name, parsed.uri) == ("Anonymous", "sip:anonymous@anonymous.invalid")
    else:
        assert parsed == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "sip: empty name-addr"),
        ("   ", "sip: empty name-addr"),
        ('"Alice <sip:a@x>', "sip: unclosed quote"),
        ('"Alice" sip:a@x', "sip: name-addr without <uri>"),
        ("Alice <sip:a@x", "sip: name-addr unclosed <"),
        ("Alice <>", "sip: name-addr without uri"),
    ],
)
def test_parse_name_addr_errors(value: str, message: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_name_addr(value)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("uri", "user"),
    [
        ("sip:07700900123@x;user=phone", "07700900123"),
        ("sips:+441632960000@gw.example.com:5061", "+441632960000"),
        ("<sip:2504@192.168.105.105>", "2504"),
        ("sip:alice:secret@example.com", "alice"),
        ("sip:%2B44123@x", "+44123"),
        ("sip:+4412;npdi@x", "+4412"),
        ("tel:+441632960000;phone-context=example.com", "+441632960000"),
        ("TEL:07700900123", "07700900123"),
        ("sip:10.0.2.20:5060", ""),
        ("sip:example.com?Subject=a@b", ""),
        ("101@10.33.6.100", "101"),
        ("", ""),
    ],
)
def test_user_part(uri: str, user: str) -> None:
    assert user_part(uri) == user


def test_uri_headers_unescape_replaces() -> None:
    uri = "sip:bob@example.com?Replaces=12345%40192.0.2.3%3Bto-tag%3D1%3Bfrom-tag%3D2&Priority=x"
    assert uri_headers(uri) == (
        ("replaces", "12345@192.0.2.3;to-tag=1;from-tag=2"),
        ("priority", "x"),
    )
    assert uri_headers("sip:bob@example.com") == ()


# --------------------------------------------------------------------------------------------------
# SDP bodies, plain and multipart (RFC 2046)

SDP = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\n"


def with_body(content_type: str | None, body: bytes) -> SipRequest | SipResponse:
    head = b"INVITE sip:b@x SIP/2.0\r\nCall-ID: 1\r\n"
    if content_type is not None:
        head += f"Content-Type: {content_type}\r\n".encode()
    return parse_sip(head + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)


def test_sdp_body_plain_missing_and_other_types() -> None:
    assert sdp_body(with_body("application/SDP; charset=utf-8", SDP)) == SDP
    assert sdp_body(with_body(None, SDP)) == SDP  # sloppy sender without Content-Type
    assert sdp_body(with_body(None, b"hello")) is None
    assert sdp_body(with_body("application/sdp", b"")) is None
    assert sdp_body(with_body("text/plain", SDP)) is None


@pytest.mark.parametrize("subtype", ["mixed", "alternative"])
def test_sdp_body_in_multipart(subtype: str) -> None:
    body = (
        b"--unique-boundary-1\r\n"
        b"Content-Type: application/isup;version=nxv3\r\n"
        b"\r\n"
        b"\x01\x00\x49--unique-boundary-1 not at a line start\r\n"
        b"--unique-boundary-1\r\n"
        b"Content-Type: application/sdp\r\n"
        b"\r\n" + SDP + b"\r\n--unique-boundary-1--\r\n"
    )
    msg = with_body(f'multipart/{subtype}; boundary="unique-boundary-1"', body)
    assert sdp_body(msg) == SDP


def test_sdp_body_in_nested_multipart_with_bare_lf() -> None:
    inner = b"--in\nContent-Type: application/sdp\n\n" + SDP + b"\n--in--\n"
    outer = (
        b"preamble\n--out\nContent-Type: text/plain\n\nhi\n"
        b"--out\nContent-Type: multipart/alternative;boundary=in\n\n" + inner + b"--out--"
    )
    assert sdp_body(with_body("multipart/mixed;boundary=out", outer)) == SDP


def test_multipart_without_sdp_or_boundary() -> None:
    body = b"--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b--\r\n"
    assert sdp_body(with_body("multipart/mixed; boundary=b", body)) is None
    with pytest.raises(ParseError, match="^sip: multipart without boundary$"):
        sdp_body(with_body("multipart/mixed", body))
    with pytest.raises(ParseError, match="^sip: multipart boundary not found$"):
        sdp_body(with_body("multipart/mixed; boundary=zzz", body))


# --------------------------------------------------------------------------------------------------
# Fuzzing: only ParseError may escape


@given(st.binary(max_size=600))
def test_parse_sip_raises_only_parse_error(data: bytes) -> None:
    try:
        msg = parse_sip(data)
    except ParseError:
        return
    _ = (msg.call_id, msg.cseq, msg.headers_all("via"))


@given(st.sampled_from(real_messages()), st.integers(0, 2000), st.binary(min_size=1, max_size=8))
def test_mutated_real_messages_raise_only_parse_error(data: bytes, at: int, junk: bytes) -> None:
    at %= len(data)
    try:
        msg = parse_sip(data[:at] + junk + data[at + len(junk) :])
        sdp_body(msg)
        for name in ("from", "to", "contact"):
            value = msg.header(name)
            if value is not None:
                parse_name_addr(value)
    except ParseError:
        pass


@given(st.text(max_size=200))
def test_name_addr_and_uri_helpers_raise_only_parse_error(text: str) -> None:
    user_part(text)
    uri_headers(text)
    try:
        parse_name_addr(text)
    except ParseError:
        pass


@given(st.text(alphabet='-;="ab \r\n', max_size=40), st.binary(max_size=200))
def test_sdp_body_raises_only_parse_error(params: str, body: bytes) -> None:
    msg = with_body("multipart/mixed;boundary=b" + params.replace("\r", "").replace("\n", ""), body)
    try:
        sdp_body(msg)
    except ParseError:
        pass


def test_the_common_header_spellings_map_to_what_the_general_rule_gives() -> None:
    # The table skips the token check and lower-casing for the usual names; it must not change them.
    for spelling, name in _KNOWN_NAMES.items():
        assert _TOKEN.fullmatch(spelling)
        assert canonical_name(spelling) == name


@pytest.mark.parametrize("line", ["Via", "Call-ID", "i", "Content-Length"])
def test_a_known_header_name_without_a_colon_is_still_a_bad_line(line: str) -> None:
    with pytest.raises(ParseError, match="bad header line"):
        parse_sip(f"OPTIONS sip:a@b SIP/2.0\r\n{line}\r\n\r\n".encode())


def test_repeated_name_addr_values_give_the_same_immutable_value() -> None:
    first = parse_name_addr('"Reception" <sip:200@pbx.example>;tag=abc')
    assert parse_name_addr('"Reception" <sip:200@pbx.example>;tag=abc') == first
    with pytest.raises(ParseError):
        parse_name_addr('"unterminated <sip:a@b>')  # errors are raised every time, never cached
    with pytest.raises(ParseError):
        parse_name_addr('"unterminated <sip:a@b>')
