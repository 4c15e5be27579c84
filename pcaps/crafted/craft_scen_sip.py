"""Scenarios about call and media behaviour: RTP reorder/loss/duplicates, hold and resume with a
port move, rejection, CANCEL with early media, a lost BYE, overlapping calls, SSRC change with DTMF
and comfort noise, and digest authentication followed by a REFER transfer.

Each builder takes the file's seeded generator and returns a :class:`Scenario`. SIP flows follow RFC
3261 (sections 13-15), RFC 3665 (basic call flows: 486, CANCEL/487), RFC 3264 section 8.4 (hold with
sendonly/recvonly), RFC 3515 (REFER, 202, NOTIFY with message/sipfrag) and RFC 3891 (Replaces);
media follows RFC 3550 (SSRC change), RFC 4733 (telephone-events) and RFC 3389 (comfort noise).
"""

from __future__ import annotations

from random import Random
from urllib.parse import quote

from craft_calls import (
    EPOCH_US,
    MS,
    PBX_AGENT,
    Call,
    S,
    Scenario,
    answer,
    hangup,
    invite,
    media_end,
    new_call,
    phone,
    send_media,
    slot_sample,
    two_way_media,
)
from craft_capture import Capture, capture_time
from craft_media import DTMF_SLOTS, Impairments, RtpPacket, RtpSender
from craft_sip import Dialog, digest_response, token
from craft_wire import LINKTYPE_ETHERNET, Endpoint

# Positions in the caller's 150-packet stream. The sequence number wraps between positions 60 and
# 61, which is also one of the swapped pairs: reordering across the wrap.
REORDER = Impairments(
    swaps=(20, 60, 100),
    delays=((80, 3),),
    dups=((30, 0), (90, 2), (120, 0)),
    losses=(40, 41, 42, 70, 130),
)
SEQ_WRAP_AT = 60


def rtp_reorder_dup_loss(rng: Random) -> Scenario:
    """Caller->callee RTP (3 s) arrives with adjacent pairs swapped at three places (one across the
    16-bit sequence wrap), one packet 3 positions late, 3 duplicates and 5 losses (a burst of 3
    and 2 singles); callee->caller is clean."""
    cap = Capture(rng)
    call = new_call(
        cap,
        phone("201", "Reception", "192.0.2.31"),
        phone("203", "Dr Okafor", "192.0.2.33"),
        "PCMU",
        Endpoint("192.0.2.31", 40300),
        Endpoint("192.0.2.33", 50300),
    )
    ans = answer(call, invite(call, EPOCH_US), EPOCH_US)
    callee = call.sender(False, ans + 10 * MS)
    caller = call.sender(True, ans + 17 * MS)
    caller.seq0 = 0x10000 - 1 - SEQ_WRAP_AT  # packet 60 has seq 65535, packet 61 seq 0
    send_media(cap, callee.talk(0, 150))
    send_media(cap, caller.talk(0, 150), imp=REORDER)
    hangup(call, media_end(caller) + 20 * MS)
    return Scenario(
        "rtp-reorder-dup-loss.pcap",
        rtp_reorder_dup_loss.__doc__ or "",
        LINKTYPE_ETHERNET,
        cap,
        [call],
    )


def _reinvite(call: Call, t: int, direction: str, answer_direction: str, port: int | None) -> int:
    """Caller re-INVITE with ``direction`` (and maybe a new port), 200 OK, ACK; returns the 200's
    time."""
    offer = call.sdp(True, ("PCMU", "telephone-event"), direction, port)
    inv = call.send(t, call.dlg.request("INVITE", body=offer), True)
    t_ok = t + 20 * MS
    answer_sdp = call.sdp(False, ("PCMU", "telephone-event"), answer_direction)
    call.send(t_ok, call.dlg.response(inv, 200, answer_sdp), False)
    call.send(t_ok + 4 * MS, call.dlg.ack_2xx(inv), True)
    return t_ok


def hold_resume_reinvite(rng: Random) -> Scenario:
    """Answered call, 2 s of media both ways; caller re-INVITEs with a=sendonly (hold: the caller
    keeps sending music-on-hold, the callee, answering a=recvonly, stops); 1.5 s later the caller
    re-INVITEs a=sendrecv and moves its media to a new port (a new SSRC from the new port); both
    resume, 1.5 s, BYE. The callee's stream keeps its SSRC and sequence, sending to the new port."""
    cap = Capture(rng)
    call = new_call(
        cap,
        phone("201", "Reception", "192.0.2.41"),
        phone("204", "Dr Evans", "198.51.100.44"),
        "PCMU",
        Endpoint("192.0.2.41", 40400),
        Endpoint("198.51.100.44", 50400),
    )
    ans = answer(call, invite(call, EPOCH_US), EPOCH_US)
    origin = ans + 10 * MS
    callee = call.sender(False, origin)
    caller = call.sender(True, origin + 7 * MS)
    send_media(cap, callee.talk(0, 100))
    t_hold = origin + 2 * S + 30 * MS
    t_hold_ok = _reinvite(call, t_hold, "sendonly", "recvonly", None)
    t_resume = t_hold + 1500 * MS
    new_port = Endpoint(call.caller_media.ip, call.caller_media.port + 2)
    call.caller_media = new_port
    t_resume_ok = _reinvite(call, t_resume, "sendrecv", "sendrecv", new_port.port)
    resume_slot = (t_resume_ok + 20 * MS - origin) // (20 * MS)
    send_media(cap, caller.talk(0, resume_slot))
    moved = call.sender(True, caller.origin_us)
    send_media(cap, moved.talk(slot_sample(resume_slot), 75))
    callee.dst = new_port
    send_media(cap, callee.talk(slot_sample(resume_slot), 75))
    hangup(call, media_end(moved) + 20 * MS)
    call.holds.append(
        {
            "by": "caller",
            "start": capture_time(t_hold),
            "end": capture_time(t_resume),
            "start_answered": capture_time(t_hold_ok),
            "end_answered": capture_time(t_resume_ok),
        }
    )
    return Scenario(
        "hold-resume-reinvite.pcap",
        hold_resume_reinvite.__doc__ or "",
        LINKTYPE_ETHERNET,
        cap,
        [call],
    )


def busy_486(rng: Random) -> Scenario:
    """INVITE, 100 Trying, 486 Busy Here, ACK (same branch as the INVITE). No media."""
    cap = Capture(rng)
    call = new_call(
        cap,
        phone("201", "Reception", "192.0.2.51"),
        phone("206", "Dr Singh", "192.0.2.56"),
        "PCMU",
        Endpoint("192.0.2.51", 40500),
        Endpoint("192.0.2.56", 50500),
    )
    inv = invite(call, EPOCH_US)
    call.send(EPOCH_US + 2 * MS, call.dlg.response(inv, 100, tag=False), False)
    call.end_t, call.status, call.end = EPOCH_US + 40 * MS, 486, "rejected"
    call.send(call.end_t, call.dlg.response(inv, 486, extra=(("Retry-After", "60"),)), False)
    call.send(call.end_t + 3 * MS, call.dlg.ack_non2xx(inv), True)
    return Scenario("busy-486.pcap", busy_486.__doc__ or "", LINKTYPE_ETHERNET, cap, [call])


def cancel_before_answer(rng: Random) -> Scenario:
    """INVITE, 100, 183 Session Progress with SDP, 1 s of early media from the callee (an
    announcement; the caller sends none), CANCEL, 200 (CANCEL), 487 (INVITE), ACK."""
    cap = Capture(rng)
    call = new_call(
        cap,
        phone("201", "Reception", "192.0.2.61"),
        phone("800", "Appointments", "198.51.100.80", agent=PBX_AGENT),
        "PCMA",
        Endpoint("192.0.2.61", 40600),
        Endpoint("198.51.100.80", 50600),
    )
    t = EPOCH_US
    inv = invite(call, t)
    call.send(t + 2 * MS, call.dlg.response(inv, 100, tag=False), False)
    t_183 = t + 250 * MS
    call.send(t_183, call.dlg.response(inv, 183, call.sdp(False, ("PCMA", "telephone-event"))), False)
    announcement = call.sender(False, t_183 + 15 * MS)
    send_media(cap, announcement.talk(0, 50))
    t_cancel = media_end(announcement) + 60 * MS
    cancel = call.send(t_cancel, call.dlg.cancel(inv), True)
    call.send(t_cancel + 3 * MS, call.dlg.response(cancel, 200, tag=True), False)
    call.end_t, call.status, call.end = t_cancel, 487, "cancel"
    call.send(t_cancel + 5 * MS, call.dlg.response(inv, 487), False)
    call.send(t_cancel + 8 * MS, call.dlg.ack_non2xx(inv), True)
    return Scenario(
        "cancel-before-answer.pcap",
        cancel_before_answer.__doc__ or "",
        LINKTYPE_ETHERNET,
        cap,
        [call],
    )


OPTIONS_GAP_US = 40 * S


def missing_bye(rng: Random) -> Scenario:
    """Answered call, 3 s of media both ways, then nothing more for it (the BYE was not captured);
    40 s after the last RTP an unrelated OPTIONS keepalive (PBX to another phone) and its 200 OK
    move the capture clock past any RTP timeout."""
    cap = Capture(rng)
    pbx = phone("pbx", "", "192.0.2.10", agent=PBX_AGENT)
    call = new_call(
        cap,
        phone("201", "Reception", "192.0.2.71"),
        phone("207", "Dr Brown", "192.0.2.77"),
        "PCMU",
        Endpoint("192.0.2.71", 40700),
        Endpoint("192.0.2.77", 50700),
    )
    ans = answer(call, invite(call, EPOCH_US), EPOCH_US)
    two_way_media(call, ans, 3.0)
    call.end = "rtp-timeout"
    last = max(p.t_us for p in cap.rtp)
    ping = Dialog(rng, pbx, phone("209", "", "192.0.2.79"))
    options = ping.request("OPTIONS", body=b"", in_dialog=False)
    t = last + OPTIONS_GAP_US
    cap.send_sip(t, options, Endpoint(pbx.ip, 5060), Endpoint("192.0.2.79", 5060))
    cap.send_sip(
        t + 2 * MS,
        ping.response(options, 200),
        Endpoint("192.0.2.79", 5060),
        Endpoint(pbx.ip, 5060),
    )
    return Scenario("missing-bye.pcap", missing_bye.__doc__ or "", LINKTYPE_ETHERNET, cap, [call])


def overlapping_calls(rng: Random) -> Scenario:
    """Call A (201->202, PCMU, 440/1000 Hz) from t=0 to its BYE at t=4 s; call B (203->204, PCMA,
    600/1400 Hz) from t=1 s to t=5 s, hung up by its callee; the callee stream of B wraps its
    sequence number. Packets of both calls interleave by time."""
    cap = Capture(rng)
    a = new_call(
        cap,
        phone("201", "Reception", "192.0.2.91"),
        phone("202", "Dr Patel", "192.0.2.92"),
        "PCMU",
        Endpoint("192.0.2.91", 40800),
        Endpoint("192.0.2.92", 50800),
    )
    b = new_call(
        cap,
        phone("203", "Dispensary", "192.0.2.93"),
        phone("204", "Dr Jones", "192.0.2.94"),
        "PCMA",
        Endpoint("192.0.2.93", 40900),
        Endpoint("192.0.2.94", 50900),
    )
    b.tones = {"caller->callee": 600, "callee->caller": 1400}
    for call, start, by_caller in ((a, EPOCH_US, True), (b, EPOCH_US + S, False)):
        ans = answer(call, invite(call, start), start, ring_us=100 * MS, answer_us=500 * MS)
        callee = call.sender(False, ans + 10 * MS)
        caller = call.sender(True, ans + 17 * MS)
        if call is b:
            callee.seq0 = 0x10000 - 36
        count = (start + 4 * S - 40 * MS - (ans + 17 * MS)) // (20 * MS)
        send_media(cap, callee.talk(0, count))
        send_media(cap, caller.talk(0, count))
        hangup(call, start + 4 * S, by_caller)
    return Scenario("overlapping-calls.pcap", overlapping_calls.__doc__ or "", LINKTYPE_ETHERNET, cap, [a, b])


DIGITS = {50: "1", 100: "5", 150: "#"}  # slot of the caller's stream -> digit


def _caller_with_digits(sender: RtpSender, slots: int) -> list[RtpPacket]:
    out: list[RtpPacket] = []
    slot = 0
    while slot < slots:
        if slot in DIGITS:
            out += sender.digit(slot_sample(slot), DIGITS[slot])
            slot += DTMF_SLOTS
        else:
            out.append(sender.audio(slot_sample(slot), marker=slot == 0))
            slot += 1
    return out


def _callee_after_change(sender: RtpSender) -> list[RtpPacket]:
    """Slots 100-199 under the new SSRC: audio, then 0.5 s of silence (slots 140-164) sent as
    comfort noise every 200 ms, then audio again opening a talkspurt (marker)."""
    out = sender.talk(slot_sample(100), 40)
    out += [sender.comfort_noise(slot_sample(s)) for s in (140, 150, 160)]
    out += sender.talk(slot_sample(165), 35)
    return out


def ssrc_change_dtmf(rng: Random) -> Scenario:
    """One call, 4 s each way. The callee's stream changes SSRC, sequence and timestamp base after
    2 s (as a B2BUA does after a transfer) and sends comfort noise (PT 13) for a silent 0.5 s;
    the caller sends RFC 4733 telephone-events (PT 101) "1", "5", "#", each 5 progress packets
    and 3 end packets, and its RTP timestamp wraps past 2^32 after 0.7 s."""
    cap = Capture(rng)
    call = new_call(
        cap,
        phone("201", "Reception", "192.0.2.101"),
        phone("250", "Switchboard", "198.51.100.101", agent=PBX_AGENT),
        "PCMU",
        Endpoint("192.0.2.101", 41100),
        Endpoint("198.51.100.101", 51100),
    )
    codecs = ("PCMU", "CN", "telephone-event")
    inv = invite(call, EPOCH_US, call.sdp(True, codecs))
    ans = answer(call, inv, EPOCH_US, codecs=codecs)
    origin = ans + 10 * MS
    before = call.sender(False, origin)
    caller = call.sender(True, origin + 7 * MS)
    caller.ts0 = 0x100000000 - 35 * 160  # the timestamp wraps between slots 34 and 35
    send_media(cap, before.talk(0, 100))
    after = call.sender(False, origin)
    send_media(cap, _callee_after_change(after))
    send_media(cap, _caller_with_digits(caller, 200))
    hangup(call, media_end(caller) + 20 * MS)
    return Scenario("ssrc-change-dtmf.pcap", ssrc_change_dtmf.__doc__ or "", LINKTYPE_ETHERNET, cap, [call])


REALM = "clinic.example"
PASSWORD = "crafted-secret"


def auth_407_refer(rng: Random) -> Scenario:
    """INVITE, 407 Proxy Authentication Required, ACK, INVITE again (CSeq + 1, digest
    Proxy-Authorization), 100, 180, 200, ACK, 2 s of media; then the callee (the PBX, for an
    attended transfer) sends REFER with Refer-To carrying a Replaces parameter, the caller answers
    202 Accepted and NOTIFY (message/sipfrag "SIP/2.0 200 OK"), 200 OK, then the callee sends
    BYE."""
    cap = Capture(rng)
    pbx = phone("202", "Dr Patel", "192.0.2.10", agent=PBX_AGENT)
    call = new_call(
        cap,
        phone("201", "Reception", "192.0.2.111"),
        pbx,
        "PCMU",
        Endpoint("192.0.2.111", 41200),
        Endpoint(pbx.ip, 17000),
    )
    t = EPOCH_US
    dlg = call.dlg
    answer_tag, dlg.to_tag = dlg.to_tag, token(rng, 10)  # the challenge has the proxy's tag
    offer = call.sdp(True, ("PCMU", "PCMA", "telephone-event"))
    first = invite(call, t, offer)
    nonce = token(rng, 32)
    challenge = f'Digest realm="{REALM}", nonce="{nonce}", qop="auth", algorithm=MD5'
    call.send(t + 3 * MS, dlg.response(first, 407, extra=(("Proxy-Authenticate", challenge),)), False)
    call.send(t + 5 * MS, dlg.ack_non2xx(first), True)
    call.auth_challenges.append(407)
    dlg.to_tag = answer_tag

    uri = first.start.split(" ")[1]
    cnonce = token(rng, 16)
    digest = digest_response("201", REALM, PASSWORD, "INVITE", uri, nonce, cnonce)
    credentials = (
        f'Digest username="201", realm="{REALM}", nonce="{nonce}", uri="{uri}", '
        f'response="{digest}", algorithm=MD5, cnonce="{cnonce}", qop=auth, nc=00000001'
    )
    retry = dlg.request("INVITE", body=offer, extra=(("Proxy-Authorization", credentials),), in_dialog=False)
    t_retry = t + 12 * MS
    call.send(t_retry, retry, True)
    ans = answer(call, retry, t_retry)
    caller, _ = two_way_media(call, ans, 2.0)
    t_refer = media_end(caller) + 10 * MS
    _transfer(call, t_refer)
    return Scenario("auth-407-refer.pcap", auth_407_refer.__doc__ or "", LINKTYPE_ETHERNET, cap, [call])


def _transfer(call: Call, t: int) -> None:
    """REFER from the callee with Replaces (RFC 3891 section 6.1 escaping), 202, NOTIFY, 200,
    then BYE from the callee."""
    rng = call.cap.rng
    dlg = call.dlg
    other_call = f"{token(rng, 24)}@clinic.example"
    to_tag, from_tag = token(rng, 10), token(rng, 10)
    replaces = f"{other_call};to-tag={to_tag};from-tag={from_tag}"
    target = "sip:203@clinic.example"
    refer_to = f"<{target}?Replaces={quote(replaces, safe='')}>"
    refer = dlg.request(
        "REFER",
        by_caller=False,
        extra=(("Refer-To", refer_to), ("Referred-By", f"<{dlg.callee.aor}>")),
    )
    call.send(t, refer, False)
    call.send(t + 3 * MS, dlg.response(refer, 202), True)
    notify = dlg.request(
        "NOTIFY",
        body=b"SIP/2.0 200 OK\r\n",
        content_type="message/sipfrag;version=2.0",
        extra=(("Event", "refer"), ("Subscription-State", "terminated;reason=noresource")),
    )
    call.send(t + 60 * MS, notify, True)
    call.send(t + 63 * MS, dlg.response(notify, 200), False)
    hangup(call, t + 100 * MS, by_caller=False)
    call.transfer = {
        "by": "callee",
        "refer_to": target,
        "refer_to_header": refer_to,
        "replaces": replaces,
        "time": capture_time(t),
    }
