from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorderd.errors import ParseError
from recorderd.events import (
    CallAnswered,
    CallEnded,
    CallStarted,
    CallTransferred,
    Datagram,
    EndReason,
    MediaNegotiated,
    SipEvent,
    Transport,
    format_ip,
)
from recorderd.sip.dialog import DialogTracker
from recorderd.sip.message import parse_sip
from tests.conftest import PCAPS
from tests.oracle import report_dialogs
from tests.sip.sip_pcap import ALL_PCAPS, sip_datagrams

Brief = tuple[object, ...]


def brief(event: SipEvent) -> Brief:
    """The fields a test cares about, without timestamps."""
    match event:
        case CallStarted():
            return ("started", event.call_id, event.from_uri, event.to_uri)
        case CallAnswered():
            return ("answered", event.call_id, event.status)
        case MediaNegotiated():
            ip = format_ip(event.ip)
            return ("media", event.call_id, event.side.value, ip, event.port, event.direction.value)
        case CallTransferred():
            return ("transferred", event.call_id, event.refer_to, event.replaces)
        case CallEnded():
            return ("ended", event.call_id, event.reason.value, event.sip_status)
    raise AssertionError(event)


# --------------------------------------------------------------------------------------------------
# Replays of the real captures


def replay(name: str, tracker: DialogTracker) -> list[tuple[float, SipEvent]]:
    """Every event with the ts of the frame (or timer) that caused it; close() at the last frame."""
    events: list[tuple[float, SipEvent]] = []
    ts = 0.0
    for _, dgram in sip_datagrams(name):
        ts = dgram.ts
        events += [(ts, e) for e in tracker.advance(ts)]
        try:
            msg = parse_sip(dgram.payload)
        except ParseError:  # the engine's boundary: NUL keep-alives are not SIP
            continue
        events += [(ts, e) for e in tracker.handle(dgram, msg)]
    events += [(ts, e) for e in tracker.close(ts)]
    return events


_OUTCOMES = {"COMPLETED": "bye", "IN_CALL": "capture-end", "REJECTED": "rejected"}


@pytest.mark.parametrize("name", ALL_PCAPS)
def test_replay_outcomes_match_the_tshark_report(name: str) -> None:
    events = [e for _, e in replay(name, DialogTracker(Counter()))]
    ended = {e.call_id: e for e in events if isinstance(e, CallEnded)}
    started = [e.call_id for e in events if isinstance(e, CallStarted)]
    dialogs = report_dialogs(PCAPS / f"{name}.tshark.txt")
    calls = [d for d in dialogs if d.is_invite]
    assert started == [d.call_id for d in calls]
    for dialog in calls:
        end = ended[dialog.call_id]
        assert end.reason.value == _OUTCOMES[dialog.state]
        assert end.sip_status == (dialog.status or 200)
    not_calls = {d.call_id for d in dialogs if not d.is_invite}
    assert not any(e.call_id in not_calls for e in events)


def test_replay_auth_retry_is_one_call() -> None:
    counters: Counter[str] = Counter()
    events = replay("onsip-testcall-nat-auth", DialogTracker(counters))
    cid = "a3d80213-f8bc-0789-b5fe-8d76314ebcb0"
    assert [brief(e) for _, e in events] == [
        ("started", cid, "sip:eim@upbsml.onsip.com", "sip:thetestcall@getonsip.com"),
        ("media", cid, "caller", "192.168.60.101", 48600, "sendrecv"),  # INVITE, challenged
        ("media", cid, "caller", "192.168.60.101", 48600, "sendrecv"),  # auth retry
        ("answered", cid, 200),
        ("media", cid, "callee", "199.7.173.72", 56416, "sendrecv"),
        ("ended", cid, "bye", 200),
    ]
    first = sip_datagrams("onsip-testcall-nat-auth")[0][1].ts
    times = [round(ts - first, 6) for ts, _ in events]
    # frames 10, 14, 17 and 175 in the tshark report
    assert times == [7.931704, 7.931704, 8.126452, 8.435284, 8.435284, 10.341609]
    started = events[0][1]
    assert isinstance(started, CallStarted)
    assert (started.src, started.dst) == ("192.168.60.101:46047", "199.7.175.101:5060")
    assert (started.from_name, started.to_name) == ("", "")
    media = events[1][1]
    assert isinstance(media, MediaNegotiated)
    assert [f.name for f in media.formats] == ["PCMU", "TELEPHONE-EVENT", "PCMA"]
    assert media.ptime == 20
    assert counters["sip.dialog.late"] == 1  # the 200 to the BYE
    assert counters["sip.dialog.not_a_call"] == 8  # REGISTER and its answers


def test_replay_spiral_and_late_offer() -> None:
    counters: Counter[str] = Counter()
    events = replay("sip-dtmf2-rfc2833-603", DialogTracker(counters))
    rejected, up = "5514@192.168.105.110", "25672@192.168.105.110"
    assert [brief(e) for _, e in events] == [
        ("started", rejected, "sip:2502@192.168.105.105", "sip:2504@192.168.105.105"),
        ("ended", rejected, "rejected", 603),
        ("started", up, "sip:2502@192.168.105.105", "sip:2504@192.168.105.105"),
        ("answered", up, 200),
        # INVITE without SDP: the 200 carries the offer (once per hop of the spiral), the ACK the
        # answer (also once per hop).
        ("media", up, "callee", "192.168.105.110", 4376, "sendrecv"),
        ("media", up, "callee", "192.168.105.110", 4376, "sendrecv"),
        ("media", up, "caller", "192.168.105.110", 4374, "sendrecv"),
        ("media", up, "caller", "192.168.105.110", 4374, "sendrecv"),
        ("ended", up, "capture-end", 200),
    ]
    assert isinstance(events[2][1], CallStarted) and events[2][1].from_name == "2502"
    assert counters["sip.dialog.late"] == 1  # the ACK to the 603


def test_replay_two_calls_second_without_bye() -> None:
    events = replay("sip-rtp-g711-pcmu-then-pcma", DialogTracker(Counter()))
    first, second = "1-1966@10.0.2.20", "1-1968@10.0.2.20"
    assert [brief(e) for _, e in events] == [
        ("started", first, "sip:sipp@10.0.2.20:5060", "sip:test@10.0.2.15:5060"),
        ("media", first, "caller", "10.0.2.20", 6000, "recvonly"),
        ("answered", first, 200),
        ("media", first, "callee", "10.0.2.15", 27942, "sendonly"),
        ("ended", first, "bye", 200),  # the BYE comes from the callee
        ("started", second, "sip:sipp@10.0.2.20:5060", "sip:test@10.0.2.15:5060"),
        ("media", second, "caller", "10.0.2.20", 6000, "recvonly"),
        ("answered", second, 200),
        ("media", second, "callee", "10.0.2.15", 28102, "sendonly"),
        ("ended", second, "capture-end", 200),
    ]
    started = events[0][1]
    assert isinstance(started, CallStarted)
    assert (started.from_name, started.to_name) == ("PCMU/8000", "test")


# --------------------------------------------------------------------------------------------------
# Hand-written dialogs: Alice (192.0.2.1) calls Bob (192.0.2.2)

ALICE = bytes([192, 0, 2, 1])
BOB = bytes([192, 0, 2, 2])
CID = "c1@192.0.2.1"
ALICE_HDR = '"Alice" <sip:alice@example.com>;tag=a1'
BOB_URI = "<sip:bob@example.com>"


def sdp(ip: str, port: int, *extra: str) -> str:
    lines = ["v=0", f"o=- 1 1 IN IP4 {ip}", "s=-", f"c=IN IP4 {ip}", "t=0 0"]
    lines += [f"m=audio {port} RTP/AVP 0 8", *extra]
    return "\r\n".join(lines) + "\r\n"


def message(start: str, from_: str, to: str, cseq: str, body: str, call_id: str, extra: str) -> str:
    head = f"{start}\r\nVia: SIP/2.0/UDP x;branch=z9hG4bK1\r\nFrom: {from_}\r\nTo: {to}\r\n"
    head += f"Call-ID: {call_id}\r\nCSeq: {cseq}\r\n{extra}"
    if body:
        head += "Content-Type: application/sdp\r\n"
    return f"{head}Content-Length: {len(body)}\r\n\r\n{body}"


class Scenario:
    """Feeds hand-written messages to one tracker and keeps the events (as briefs)."""

    def __init__(self, **options: Any) -> None:
        self.counters: Counter[str] = Counter()
        self.tracker = DialogTracker(self.counters, **options)
        self.events: list[Brief] = []

    def feed(self, ts: float, text: str, *, from_alice: bool) -> list[Brief]:
        src, dst = (ALICE, BOB) if from_alice else (BOB, ALICE)
        dgram = Datagram(ts, Transport.UDP, src, 5060, dst, 5060, text.encode())
        new = [brief(e) for e in self.tracker.handle(dgram, parse_sip(dgram.payload))]
        self.events += new
        return new

    def alice(
        self,
        ts: float,
        method: str,
        cseq: int,
        *,
        body: str = "",
        to_tag: bool = True,
        call_id: str = CID,
        extra: str = "",
    ) -> list[Brief]:
        """A request from Alice (the caller)."""
        to = BOB_URI + (";tag=b1" if to_tag else "")
        text = message(
            f"{method} sip:bob@example.com SIP/2.0",
            ALICE_HDR,
            to,
            f"{cseq} {method}",
            body,
            call_id,
            extra,
        )
        return self.feed(ts, text, from_alice=True)

    def bob(self, ts: float, method: str, cseq: int, *, body: str = "", extra: str = "") -> list[Brief]:
        """A request from Bob (the callee) inside the dialog."""
        text = message(
            f"{method} sip:alice@192.0.2.1 SIP/2.0",
            BOB_URI + ";tag=b1",
            ALICE_HDR,
            f"{cseq} {method}",
            body,
            CID,
            extra,
        )
        return self.feed(ts, text, from_alice=False)

    def to_alice(
        self,
        ts: float,
        status: int,
        cseq: int,
        method: str = "INVITE",
        *,
        body: str = "",
        to_tag: bool = True,
        call_id: str = CID,
    ) -> list[Brief]:
        """A response from Bob's side to one of Alice's requests."""
        to = BOB_URI + (";tag=b1" if to_tag else "")
        text = message(f"SIP/2.0 {status} Whatever", ALICE_HDR, to, f"{cseq} {method}", body, call_id, "")
        return self.feed(ts, text, from_alice=False)

    def to_bob(self, ts: float, status: int, cseq: int, method: str, *, body: str = "") -> list[Brief]:
        """A response from Alice to one of Bob's requests."""
        text = message(
            f"SIP/2.0 {status} OK",
            BOB_URI + ";tag=b1",
            ALICE_HDR,
            f"{cseq} {method}",
            body,
            CID,
            "",
        )
        return self.feed(ts, text, from_alice=True)

    def establish(self) -> None:
        """INVITE with offer, 180, 200 with answer, ACK: leaves the call CONFIRMED at ts 2."""
        self.alice(0.0, "INVITE", 1, body=sdp("192.0.2.1", 4000), to_tag=False)
        self.to_alice(0.1, 180, 1)
        self.to_alice(2.0, 200, 1, body=sdp("192.0.2.2", 5000))
        self.alice(2.1, "ACK", 1)


STARTED = ("started", CID, "sip:alice@example.com", "sip:bob@example.com")
ALICE_MEDIA = ("media", CID, "caller", "192.0.2.1", 4000, "sendrecv")
BOB_MEDIA = ("media", CID, "callee", "192.0.2.2", 5000, "sendrecv")


def test_basic_call_hung_up_by_the_callee() -> None:
    s = Scenario()
    s.establish()
    assert len(s.tracker) == 1
    assert s.bob(10.0, "BYE", 1) == [("ended", CID, "bye", 200)]
    assert len(s.tracker) == 0
    assert s.to_bob(10.1, 200, 1, "BYE") == []
    assert s.events == [STARTED, ALICE_MEDIA, ("answered", CID, 200), BOB_MEDIA, s.events[-1]]
    assert s.counters["sip.dialog.late"] == 1


def test_call_started_carries_names_and_addresses() -> None:
    tracker = DialogTracker(Counter())
    text = message(
        "INVITE sip:bob@example.com SIP/2.0",
        ALICE_HDR,
        '"Bob B." <sip:bob@example.com>',
        "1 INVITE",
        "",
        CID,
        "",
    )
    dgram = Datagram(5.0, Transport.UDP, ALICE, 5062, bytes(15) + b"\x01", 5060, text.encode())
    [started] = tracker.handle(dgram, parse_sip(dgram.payload))
    assert started == CallStarted(
        5.0,
        CID,
        "sip:alice@example.com",
        "Alice",
        "sip:bob@example.com",
        "Bob B.",
        "192.0.2.1:5062",
        "[::1]:5060",
    )


def test_busy() -> None:
    s = Scenario()
    s.alice(0.0, "INVITE", 1, body=sdp("192.0.2.1", 4000), to_tag=False)
    s.to_alice(0.1, 100, 1, to_tag=False)
    assert s.to_alice(0.5, 486, 1) == [("ended", CID, "rejected", 486)]
    assert s.alice(0.6, "ACK", 1) == []
    assert s.events == [STARTED, ALICE_MEDIA, ("ended", CID, "rejected", 486)]


def test_redirect_ends_the_call_and_the_follow_up_invite_is_a_new_call() -> None:
    s = Scenario()
    s.alice(0.0, "INVITE", 1, to_tag=False)
    assert s.to_alice(0.2, 302, 1) == [("ended", CID, "rejected", 302)]
    assert s.alice(0.3, "ACK", 1) == []
    assert s.alice(0.4, "INVITE", 1, to_tag=False) == []  # a late retransmission: not a new call
    assert s.alice(0.5, "INVITE", 2, to_tag=False) == [STARTED]  # RFC 3261 8.1.3.4 retry
    assert s.to_alice(0.9, 200, 2) == [("answered", CID, 200)]


def test_cancel_before_answer_ends_at_the_487() -> None:
    s = Scenario()
    s.alice(0.0, "INVITE", 1, body=sdp("192.0.2.1", 4000), to_tag=False)
    s.to_alice(0.1, 180, 1)
    assert s.alice(3.0, "CANCEL", 1, to_tag=False) == []
    assert s.to_alice(3.1, 200, 1, "CANCEL", to_tag=False) == []
    assert s.to_alice(3.2, 487, 1) == [("ended", CID, "cancel", 487)]
    assert s.alice(3.3, "ACK", 1) == []
    assert s.tracker.advance(100.0) == []
    assert len(s.tracker) == 0


def test_cancel_without_487_ends_after_the_challenge_timeout() -> None:
    s = Scenario()
    s.alice(0.0, "INVITE", 1, to_tag=False)
    s.alice(3.0, "CANCEL", 1, to_tag=False)
    assert s.tracker.advance(34.9) == []
    [ended] = s.tracker.advance(35.0)
    assert ended == CallEnded(35.0, CID, EndReason.CANCEL, None)


def test_487_without_a_captured_cancel_is_a_cancel() -> None:
    s = Scenario()
    s.alice(0.0, "INVITE", 1, to_tag=False)
    assert s.to_alice(3.2, 487, 1) == [("ended", CID, "cancel", 487)]


def test_cancel_that_loses_the_race_against_200() -> None:
    s = Scenario()
    s.alice(0.0, "INVITE", 1, to_tag=False)
    s.alice(3.0, "CANCEL", 1, to_tag=False)
    assert s.to_alice(3.01, 200, 1) == [("answered", CID, 200)]
    assert s.to_alice(3.02, 200, 1, "CANCEL") == []
    assert s.tracker.advance(100.0) == []  # no CANCEL timer left behind
    assert s.alice(3.1, "BYE", 2) == [("ended", CID, "bye", 200)]


def test_early_media_in_183() -> None:
    s = Scenario()
    s.alice(0.0, "INVITE", 1, body=sdp("192.0.2.1", 4000), to_tag=False)
    assert s.to_alice(0.2, 183, 1, body=sdp("192.0.2.2", 5000)) == [BOB_MEDIA]
    assert s.to_alice(0.3, 180, 1, body=sdp("192.0.2.2", 5002)) == [
        ("media", CID, "callee", "192.0.2.2", 5002, "sendrecv")
    ]
    assert s.to_alice(5.0, 200, 1, body=sdp("192.0.2.2", 5000)) == [
        ("answered", CID, 200),
        BOB_MEDIA,
    ]


def test_reinvite_hold_and_resume() -> None:
    s = Scenario()
    s.establish()
    held = s.alice(5.0, "INVITE", 2, body=sdp("192.0.2.1", 4000, "a=sendonly"))
    assert held == [("media", CID, "caller", "192.0.2.1", 4000, "sendonly")]
    assert s.to_alice(5.1, 200, 2, body=sdp("192.0.2.2", 5000, "a=recvonly")) == [
        ("media", CID, "callee", "192.0.2.2", 5000, "recvonly")
    ]
    assert s.alice(5.2, "ACK", 2) == []
    assert s.alice(9.0, "INVITE", 3, body=sdp("192.0.2.1", 4000)) == [ALICE_MEDIA]
    assert s.to_alice(9.1, 200, 3, body=sdp("192.0.2.2", 5000)) == [BOB_MEDIA]
    assert ("answered", CID, 200) not in s.events[4:]


def test_old_style_hold_and_rejected_stream_keep_the_old_address() -> None:
    s = Scenario()
    s.establish()
    inactive = [("media", CID, "callee", "192.0.2.2", 5000, "inactive")]
    assert s.bob(5.0, "INVITE", 1, body=sdp("0.0.0.0", 5000)) == inactive
    assert s.bob(6.0, "INVITE", 2, body=sdp("192.0.2.2", 0)) == inactive
    assert s.bob(7.0, "INVITE", 3, body=sdp("192.0.2.2", 5008)) == [
        ("media", CID, "callee", "192.0.2.2", 5008, "sendrecv")
    ]
    assert s.to_bob(7.1, 200, 3, "INVITE", body=sdp("192.0.2.1", 4000)) == [ALICE_MEDIA]


def test_failed_reinvite_keeps_the_call_but_481_ends_it() -> None:
    s = Scenario()
    s.establish()
    s.alice(5.0, "INVITE", 2, body=sdp("192.0.2.1", 4002))
    assert s.to_alice(5.1, 488, 2) == []
    assert s.to_alice(5.2, 491, 2) == []
    assert len(s.tracker) == 1
    s.alice(6.0, "INVITE", 3, body=sdp("192.0.2.1", 4002))
    assert s.to_alice(6.1, 481, 3) == [("ended", CID, "bye", 481)]


def test_update_offer_and_answer_and_481_to_update() -> None:
    s = Scenario()
    s.establish()
    assert s.bob(5.0, "UPDATE", 1, body=sdp("192.0.2.2", 5010)) == [
        ("media", CID, "callee", "192.0.2.2", 5010, "sendrecv")
    ]
    assert s.to_bob(5.1, 200, 1, "UPDATE", body=sdp("192.0.2.1", 4010)) == [
        ("media", CID, "caller", "192.0.2.1", 4010, "sendrecv")
    ]
    assert s.alice(6.0, "UPDATE", 2, body=sdp("192.0.2.1", 4000)) == [ALICE_MEDIA]
    assert s.to_alice(6.1, 481, 2, "UPDATE") == [("ended", CID, "bye", 481)]


def test_update_and_prack_in_the_early_dialog() -> None:
    s = Scenario()
    s.alice(0.0, "INVITE", 1, to_tag=False, extra="Supported: 100rel\r\n")
    assert s.to_alice(0.2, 183, 1, body=sdp("192.0.2.2", 5000)) == [BOB_MEDIA]
    assert s.alice(0.3, "PRACK", 2, body=sdp("192.0.2.1", 4000)) == [ALICE_MEDIA]
    assert s.to_alice(0.4, 200, 2, "PRACK") == []
    assert s.alice(1.0, "UPDATE", 3, body=sdp("192.0.2.1", 4004)) == [
        ("media", CID, "caller", "192.0.2.1", 4004, "sendrecv")
    ]
    assert s.to_alice(1.1, 200, 3, "UPDATE", body=sdp("192.0.2.2", 5000)) == [BOB_MEDIA]


def test_refer_with_replaces() -> None:
    s = Scenario()
    s.establish()
    target = "<sip:carol@example.com?Replaces=x9%40192.0.2.3%3Bto-tag%3Dt%3Bfrom-tag%3Df>"
    assert s.bob(5.0, "REFER", 2, extra=f"Refer-To: {target}\r\nReferred-By: {BOB_URI}\r\n") == [
        ("transferred", CID, "sip:carol@example.com", "x9@192.0.2.3;to-tag=t;from-tag=f")
    ]
    assert s.alice(5.1, "REFER", 3, extra="r: sip:dave@example.com\r\n") == [
        ("transferred", CID, "sip:dave@example.com", None)
    ]
    assert s.alice(5.2, "REFER", 4) == []
    assert s.counters["sip.dialog.refer_without_target"] == 1
    assert len(s.tracker) == 1


def test_invite_with_replaces_is_an_ordinary_new_call() -> None:
    s = Scenario()
    s.establish()
    other = "c2@192.0.2.3"
    started = s.alice(
        6.0,
        "INVITE",
        1,
        to_tag=False,
        call_id=other,
        extra=f"Replaces: {CID};to-tag=b1;from-tag=a1\r\n",
    )
    assert started == [("started", other, "sip:alice@example.com", "sip:bob@example.com")]
    assert len(s.tracker) == 2


def test_retransmitted_invite_and_200() -> None:
    s = Scenario()
    s.alice(0.0, "INVITE", 1, body=sdp("192.0.2.1", 4000), to_tag=False)
    assert s.alice(0.5, "INVITE", 1, body=sdp("192.0.2.1", 4000), to_tag=False) == [ALICE_MEDIA]
    s.to_alice(2.0, 200, 1, body=sdp("192.0.2.2", 5000))
    assert s.to_alice(2.5, 200, 1, body=sdp("192.0.2.2", 5000)) == [BOB_MEDIA]
    assert s.events.count(STARTED) == 1
    assert s.events.count(("answered", CID, 200)) == 1


def test_eviction_at_max_calls() -> None:
    s = Scenario(max_calls=2)
    for n in range(3):
        s.alice(float(n), "INVITE", 1, to_tag=False, call_id=f"c{n}")
    assert [e[:3] for e in s.events] == [
        ("started", "c0", "sip:alice@example.com"),
        ("started", "c1", "sip:alice@example.com"),
        ("ended", "c0", "evicted"),
        ("started", "c2", "sip:alice@example.com"),
    ]
    assert len(s.tracker) == 2
    assert s.to_alice(3.0, 200, 1, call_id="c0") == []  # the evicted call stays gone


def test_invite_timeout() -> None:
    s = Scenario(invite_timeout=60.0)
    s.alice(0.0, "INVITE", 1, to_tag=False)
    s.to_alice(0.1, 180, 1)
    assert s.tracker.advance(59.9) == []
    assert s.tracker.advance(60.0) == [CallEnded(60.0, CID, EndReason.NO_ANSWER, None)]
    assert s.tracker.advance(61.0) == []


def test_challenge_timeout_and_auth_retry() -> None:
    s = Scenario(challenge_timeout=32.0)
    s.alice(0.0, "INVITE", 1, to_tag=False)
    assert s.to_alice(0.1, 407, 1) == []
    assert s.alice(0.2, "ACK", 1) == []
    assert s.tracker.advance(32.0) == []
    assert s.tracker.advance(32.1) == [CallEnded(32.1, CID, EndReason.REJECTED, 407)]

    s = Scenario(invite_timeout=60.0)
    s.alice(0.0, "INVITE", 1, to_tag=False)
    s.to_alice(0.1, 401, 1)
    assert s.alice(40.0, "INVITE", 2, to_tag=False) == []  # the retry restarts the no-answer clock
    assert s.tracker.advance(99.0) == []
    assert s.tracker.advance(100.0) == [CallEnded(100.0, CID, EndReason.NO_ANSWER, 401)]


def test_linger_expiry_forgets_the_call_id() -> None:
    s = Scenario(terminated_linger=10.0)
    s.establish()
    s.alice(3.0, "BYE", 2)
    s.tracker.advance(12.9)
    assert s.to_alice(12.9, 200, 2, "BYE") == []
    assert s.counters["sip.dialog.late"] == 1
    s.tracker.advance(13.0)
    assert s.to_alice(13.1, 200, 2, "BYE") == []
    assert s.counters["sip.dialog.late"] == 1
    assert s.counters["sip.dialog.not_a_call"] == 1


def test_non_invite_and_unknown_dialogs_never_become_calls() -> None:
    s = Scenario()
    s.alice(0.0, "REGISTER", 1, to_tag=False)
    s.alice(0.1, "OPTIONS", 1, to_tag=False, call_id="o1")
    s.alice(0.2, "SUBSCRIBE", 1, to_tag=False, call_id="s1")
    s.alice(0.3, "BYE", 7, call_id="mid-call")
    s.alice(0.4, "INVITE", 8, call_id="mid-call")  # a re-INVITE of a dialog we never saw
    s.to_alice(0.5, 200, 8, call_id="mid-call")
    assert s.events == []
    assert len(s.tracker) == 0
    assert s.counters["sip.dialog.not_a_call"] == 3
    assert s.counters["sip.dialog.unknown_dialog"] == 3


def test_unexpected_pairs_are_counted_and_ignored() -> None:
    s = Scenario()
    s.alice(0.0, "INVITE", 1, to_tag=False)
    s.to_alice(0.1, 180, 1)
    assert s.bob(0.2, "REFER", 1, extra="Refer-To: <sip:x@y>\r\n") == []
    assert s.alice(0.3, "ACK", 1) == []
    assert s.counters["sip.dialog.unexpected.early.refer"] == 1
    assert s.counters["sip.dialog.unexpected.early.ack"] == 1


def test_odd_messages_are_counted_not_raised() -> None:
    s = Scenario()
    s.feed(
        0.0,
        "INVITE sip:b@x SIP/2.0\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\n\r\n",
        from_alice=True,
    )
    assert s.counters["sip.dialog.no_call_id"] == 1
    s.feed(0.1, "INVITE sip:b@x SIP/2.0\r\nCall-ID: q\r\nTo: <sip:b@x>\r\n\r\n", from_alice=True)
    assert s.counters["sip.dialog.bad_from_to"] == 1
    s.alice(1.0, "INVITE", 1, to_tag=False)
    s.feed(1.1, f"SIP/2.0 200 OK\r\nCall-ID: {CID}\r\n\r\n", from_alice=False)
    assert s.counters["sip.dialog.no_cseq"] == 1
    s.alice(
        1.2,
        "INVITE",
        1,
        to_tag=False,
        body="v=0\r\nc=IN IP4 pbx.example\r\nm=audio 1 RTP/AVP 0\r\n",
    )
    assert s.counters["sip.dialog.sdp_without_ip"] == 1
    s.alice(1.3, "INVITE", 1, to_tag=False, body="v=0\r\nm=video 1 RTP/AVP 31\r\n")
    assert s.counters["sip.dialog.sdp_without_audio"] == 1
    s.alice(1.4, "INVITE", 1, to_tag=False, body="v=0\r\nm=audio x RTP/AVP 0\r\n")
    assert s.counters["sip.dialog.bad_sdp"] == 1
    assert s.events == [STARTED]


def test_tagless_rfc2543_peer_is_told_apart_by_from_uri() -> None:
    # RFC 2543 phones send no From tag; the callee's re-INVITE then only differs by its From URI.
    s = Scenario()
    alice, bob = "<sip:alice@example.com>", "<sip:bob@example.com>"
    invite = message("INVITE sip:b@x SIP/2.0", alice, bob, "1 INVITE", "", CID, "")
    ok = message("SIP/2.0 200 OK", alice, bob + ";tag=b1", "1 INVITE", "", CID, "")
    body = sdp("192.0.2.2", 5004)
    reinvite = message("INVITE sip:a@x SIP/2.0", bob, alice + ";tag=x", "9 INVITE", body, CID, "")
    s.feed(0.0, invite, from_alice=True)
    s.feed(1.0, ok, from_alice=False)
    assert s.feed(5.0, reinvite, from_alice=False) == [
        ("media", CID, "callee", "192.0.2.2", 5004, "sendrecv")
    ]


def test_multipart_offer() -> None:
    s = Scenario()
    body = (
        "--b1\r\nContent-Type: application/isup\r\n\r\nxx\r\n"
        f"--b1\r\nContent-Type: application/sdp\r\n\r\n{sdp('192.0.2.1', 4000)}\r\n--b1--\r\n"
    )
    text = message(
        "INVITE sip:bob@example.com SIP/2.0",
        ALICE_HDR,
        BOB_URI,
        "1 INVITE",
        "",
        CID,
        "Content-Type: multipart/mixed;boundary=b1\r\n",
    )
    text = text.replace("Content-Length: 0\r\n\r\n", f"Content-Length: {len(body)}\r\n\r\n{body}")
    assert s.feed(0.0, text, from_alice=True) == [STARTED, ALICE_MEDIA]


def test_end_and_close() -> None:
    s = Scenario()
    s.establish()
    s.alice(3.0, "INVITE", 1, to_tag=False, call_id="c2")
    assert s.tracker.end(CID, 9.0, EndReason.RTP_TIMEOUT) == [CallEnded(9.0, CID, EndReason.RTP_TIMEOUT, 200)]
    assert s.tracker.end(CID, 9.5, EndReason.RTP_TIMEOUT) == []
    assert s.tracker.close(10.0) == [CallEnded(10.0, "c2", EndReason.CAPTURE_END, None)]
    assert len(s.tracker) == 0
    assert s.tracker.advance(1000.0) == []


# --------------------------------------------------------------------------------------------------
# The tracker never raises, whatever order parseable messages come in


def _message_pool() -> list[tuple[str, bool]]:
    s = Scenario()
    pool: list[tuple[str, bool]] = []
    original = s.feed

    def record(ts: float, text: str, *, from_alice: bool) -> list[Brief]:
        pool.append((text, from_alice))
        return original(ts, text, from_alice=from_alice)

    s.feed = record  # type: ignore[method-assign]
    s.establish()
    s.alice(3.0, "INVITE", 2, body=sdp("0.0.0.0", 4000, "a=inactive"))
    s.to_alice(3.1, 407, 2)
    s.to_alice(3.2, 487, 2)
    s.alice(3.3, "CANCEL", 2, to_tag=False)
    s.bob(3.4, "REFER", 3, extra="Refer-To: <sip:c@x?Replaces=%>\r\n")
    s.bob(3.5, "UPDATE", 4, body=sdp("192.0.2.2", 0))
    s.to_bob(3.6, 481, 4, "UPDATE")
    s.alice(3.7, "BYE", 5)
    s.alice(3.8, "INVITE", 9, to_tag=False, call_id="other")
    pool.append(("SIP/2.0 200 OK\r\nCall-ID: " + CID + "\r\nCSeq: x\r\n\r\n", False))
    pool += [(d.payload.decode(), True) for _, d in sip_datagrams("sip-dtmf2-rfc2833-603")]
    return pool


POOL = _message_pool()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, len(POOL) - 1), st.floats(0, 400), st.booleans()),
        max_size=40,
    ),
    st.integers(1, 3),
)
def test_tracker_never_raises_and_stays_bounded(steps: list[tuple[int, float, bool]], cap: int) -> None:
    counters: Counter[str] = Counter()
    tracker = DialogTracker(counters, max_calls=cap, invite_timeout=100, challenge_timeout=10)
    open_calls: set[str] = set()
    for index, ts, tick in steps:
        text, from_alice = POOL[index]
        src, dst = (ALICE, BOB) if from_alice else (BOB, ALICE)
        dgram = Datagram(ts, Transport.UDP, src, 5060, dst, 5060, text.encode())
        events = tracker.advance(ts) if tick else []
        events += tracker.handle(dgram, parse_sip(dgram.payload))
        for event in events:
            if isinstance(event, CallStarted):
                assert event.call_id not in open_calls
                open_calls.add(event.call_id)
            elif isinstance(event, CallEnded):
                open_calls.remove(event.call_id)
            else:
                assert event.call_id in open_calls
        assert len(tracker) == len(open_calls) <= cap
    assert {e.call_id for e in tracker.close(500.0)} == open_calls
