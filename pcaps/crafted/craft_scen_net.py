"""Scenarios about the network below SIP: VLAN/QinQ tags, IPv6 with extension headers and fragments,
IPv4 fragments, SIP over TCP, the pcap link types, and NAT with symmetric RTP.

Each builder takes the file's seeded generator and returns a :class:`Scenario`. Fragmentation
follows RFC 791 section 3.2 and RFC 8200 section 4.5; TCP segments RFC 9293 section 3.4; NAT
traversal RFC 3581 (Via received/rport) and symmetric RTP as in RFC 4961 / "comedia" latching (RFC
4145 sec 4).
"""

from __future__ import annotations

from random import Random

from craft_calls import (
    CALLEE_TO_CALLER,
    CALLER_TO_CALLEE,
    EPOCH_US,
    MS,
    PBX_AGENT,
    Call,
    Scenario,
    answer,
    basic_call,
    hangup,
    invite,
    media_end,
    new_call,
    phone,
    send_media,
    sig,
    two_way_media,
)
from craft_capture import Capture, TcpConnection
from craft_media import RtpPacket, random_sender
from craft_sip import CRLF, Message, sdp, token
from craft_wire import (
    LINKTYPE_ETHERNET,
    TOS_SIGNALLING,
    TPID_8021AD,
    TPID_8021Q,
    Endpoint,
    Tag,
    ipv4_fragments,
    ipv6_fragments,
    ipv6_udp_with_options,
    udp_packet,
)

VLAN = 100
SERVICE_VLAN = 200
PCP_VOICE = 5
PCP_SIGNALLING = 3


def vlan_qinq_call(rng: Random) -> Scenario:
    """All frames 802.1Q VLAN 100; every second caller->callee RTP frame also carries an 802.1ad
    service tag (0x88a8, VLAN 200) outside the customer tag, as when the mirror merges a trunk."""
    cap = Capture(rng, tags=(Tag(TPID_8021Q, VLAN, PCP_SIGNALLING),))
    caller = phone("201", "Reception", "192.0.2.11")
    callee = phone("202", "Dr Patel", "192.0.2.12")
    voice = Tag(TPID_8021Q, VLAN, PCP_VOICE)

    def tags(i: int, p: RtpPacket) -> tuple[Tag, ...]:
        if p.src.ip == caller.ip and i % 2 == 1:
            return (Tag(TPID_8021AD, SERVICE_VLAN, 0), voice)
        return (voice,)

    call = basic_call(
        cap,
        caller,
        callee,
        "PCMU",
        Endpoint(caller.ip, 40000),
        Endpoint(callee.ip, 50000),
        3.0,
        tags=tags,
    )
    return Scenario("vlan-qinq-call.pcap", vlan_qinq_call.__doc__ or "", LINKTYPE_ETHERNET, cap, [call])


def _ipv6_offer(call: Call, target: int) -> Message:
    """A softphone's long offer (many codecs, ICE host candidates) grown until the INVITE has at
    least ``target`` bytes: the a= lines are what makes it long."""
    codecs = ("PCMU", "PCMA", "G722", "opus", "iLBC", "speex-wb", "speex", "AMR-WB", "GSM")
    ip, port = call.caller_media.ip, call.caller_media.port
    rng = call.cap.rng
    extra = [f"a=ice-ufrag:{token(rng, 8)}", f"a=ice-pwd:{token(rng, 24)}"]
    cseq = call.dlg.cseq["caller"] + 1
    branch = token(rng, 16)
    while True:
        body = sdp(ip, port, call.session["caller"], 1, (*codecs, "telephone-event"), extra=(*extra,))
        msg = call.dlg.request("INVITE", body=body, cseq=cseq, branch=branch, in_dialog=False)
        if len(msg.render()) >= target:
            call.dlg.cseq["caller"] = cseq
            call.version["caller"] = 2
            return msg
        n = len(extra) - 2  # the first candidate is the c= address, the rest other host addresses
        addr = ip if n == 0 else f"2001:db8:10::{0x100 + n:x}"
        extra.append(f"a=candidate:{n + 1} 1 UDP {2130706431 - n * 256} {addr} {port} typ host")


def ipv6_call(rng: Random) -> Scenario:
    """SIP and RTP over IPv6 (c=IN IP6). The ~3000-byte INVITE carries a Hop-by-Hop header
    (unfragmentable part) and a Destination Options header (first header of the fragmentable
    part), and is sent as three fragments in the order 2nd, 3rd, 1st."""
    cap = Capture(rng)
    caller = phone("201", "Nurse Station", "2001:db8:10::11")
    callee = phone("202", "Pharmacy", "2001:db8:20::22")
    call = new_call(
        cap,
        caller,
        callee,
        "PCMU",
        Endpoint(caller.ip, 40000),
        Endpoint(callee.ip, 50000),
    )
    inv = _ipv6_offer(call, 3000)
    call.invite_t = EPOCH_US
    cap.sip.append(inv)
    whole = ipv6_udp_with_options(sig(caller), sig(callee), inv.render(), TOS_SIGNALLING)
    frags = ipv6_fragments(whole, rng.randrange(1, 1 << 32))
    for i, k in enumerate((1, 2, 0)):
        cap.add(EPOCH_US + 150 * i, frags[k], caller.ip, callee.ip, None)
    answered = answer(call, inv, EPOCH_US)
    caller_s, _ = two_way_media(call, answered, 2.0)
    hangup(call, media_end(caller_s) + 20 * MS)
    return Scenario("ipv6-call.pcap", ipv6_call.__doc__ or "", LINKTYPE_ETHERNET, cap, [call])


PIDF_HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf"
  xmlns:gp="urn:ietf:params:xml:ns:pidf:geopriv10"
  xmlns:ca="urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr"
  xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
  entity="sip:201@clinic.example">
 <dm:device id="reception-phone">
  <gp:geopriv>
   <gp:location-info>
    <ca:civicAddress xml:lang="en">
     <ca:country>GB</ca:country>
     <ca:A1>England</ca:A1>
     <ca:A3>Exampleton</ca:A3>
     <ca:RD>Example Road</ca:RD>
     <ca:HNO>1</ca:HNO>
     <ca:NAM>Example Health Centre</ca:NAM>
     <ca:FLR>Ground</ca:FLR>
     <ca:ROOM>Reception</ca:ROOM>
     <ca:PC>EX1 1AA</ca:PC>
    </ca:civicAddress>
   </gp:location-info>
   <gp:usage-rules/>
   <gp:method>Manual</gp:method>
  </gp:geopriv>
  <dm:deviceID>mac:02a1b2c3d4e5</dm:deviceID>
  <dm:timestamp>2026-01-05T09:00:00Z</dm:timestamp>
 </dm:device>
 <dm:note>"""
PIDF_TAIL = "</dm:note>\n</presence>\n"
NOTE_TEXT = "Crafted location note for recorderd fragment tests. "


def _multipart_invite(call: Call, target: int) -> Message:
    """An INVITE with a multipart/mixed body (RFC 5621): the SDP offer, then a PIDF-LO location
    object (RFC 6442) whose note is padded so that the whole message is exactly ``target`` bytes."""
    boundary = f"boundary-{token(call.cap.rng, 12)}"
    cid = f"loc-{token(call.cap.rng, 8)}@clinic.example"
    offer = call.sdp(True, ("PCMU", "PCMA", "telephone-event")).decode()
    extra = (("Geolocation", f"<cid:{cid}>"), ("Geolocation-Routing", "no"))
    cseq = call.dlg.cseq["caller"] + 1

    def build(pad: int) -> Message:
        note = (NOTE_TEXT * (pad // len(NOTE_TEXT) + 1))[:pad]
        parts = [
            f"--{boundary}",
            "Content-Type: application/sdp",
            "",
            offer,
            f"--{boundary}",
            "Content-Type: application/pidf+xml",
            f"Content-ID: <{cid}>",
            "",
            PIDF_HEAD + note + PIDF_TAIL,
            f"--{boundary}--",
            "",
        ]
        body = CRLF.join(parts).encode()
        return call.dlg.request(
            "INVITE",
            body=body,
            content_type=f"multipart/mixed;boundary={boundary}",
            extra=extra,
            cseq=cseq,
            in_dialog=False,
        )

    pad = 0
    msg = build(pad)
    # Content-Length gains a digit as the body grows, so converge instead of computing once.
    while len(msg.render()) != target:
        pad += target - len(msg.render())
        msg = build(pad)
    call.dlg.cseq["caller"] = cseq
    return msg


def ipv4_fragmented_invite(rng: Random) -> Scenario:
    """A 4000-byte INVITE (multipart/mixed: SDP + PIDF-LO) in three IPv4 fragments sent last
    first, the first fragment duplicated: wire order 3rd, 1st, 1st again, 2nd."""
    cap = Capture(rng)
    caller = phone("201", "Reception", "192.0.2.21")
    callee = phone("205", "Duty Doctor", "198.51.100.25")
    call = new_call(cap, caller, callee, "PCMU", Endpoint(caller.ip, 40100), Endpoint(callee.ip, 50100))
    inv = _multipart_invite(call, 4000)
    call.invite_t = EPOCH_US
    whole = udp_packet(sig(caller), sig(callee), inv.render(), cap.ip_id(caller.ip), TOS_SIGNALLING)
    frags = ipv4_fragments(whole)
    assert len(frags) == 3
    cap.send_sip_fragments(EPOCH_US, inv, frags, caller.ip, callee.ip, (2, 0, 0, 1))
    answered = answer(call, inv, EPOCH_US)
    caller_s, _ = two_way_media(call, answered, 2.0)
    hangup(call, media_end(caller_s) + 20 * MS)
    return Scenario(
        "ipv4-fragmented-invite.pcap",
        ipv4_fragmented_invite.__doc__ or "",
        LINKTYPE_ETHERNET,
        cap,
        [call],
    )


def _split_points(data: bytes) -> tuple[int, int]:
    """Cut an INVITE inside its headers: in the middle of the From value, and between "Content"
    and "-Length" in the Content-Length header name."""
    first = data.index(b"\r\nFrom: ") + 14
    second = data.index(b"\r\nContent-Length") + 9
    return first, second


def tcp_sip_split(rng: Random) -> Scenario:
    """SIP over one TCP connection (3-way handshake first). The INVITE is cut into three segments
    inside its headers and the third segment arrives before the second; one segment carries both
    100 Trying and 180 Ringing; the 200 OK segment is retransmitted after 210 ms (the tap saw the
    original, the phone did not); RTP is UDP; BYE and its 200 OK go over the same connection."""
    cap = Capture(rng)
    caller = phone("201", "Front Desk", "192.0.2.81", transport="TCP")
    callee = phone("300", "Surgery Line", "198.51.100.5", agent=PBX_AGENT, transport="TCP")
    call = new_call(cap, caller, callee, "PCMA", Endpoint(caller.ip, 41000), Endpoint(callee.ip, 20000))
    conn = TcpConnection(cap, Endpoint(caller.ip, 49732), sig(callee))
    t = EPOCH_US
    conn.send(t, True, b"", "S")
    conn.send(t + 400, False, b"", "SA")
    conn.send(t + 800, True, b"", "A")

    call.invite_t = t + 1200
    inv = call.dlg.invite(call.sdp(True, ("PCMA", "PCMU", "telephone-event")))
    cap.sip.append(inv)
    data = inv.render()
    cut1, cut2 = _split_points(data)
    segs = [conn.segment(True, "PA", part) for part in (data[:cut1], data[cut1:cut2], data[cut2:])]
    first_end = segs[1][1]
    conn.emit(t + 1200, segs[0], ack=conn.nxt[False])
    conn.emit(t + 1500, segs[2], ack=conn.nxt[False])
    conn.emit(t + 1700, conn.segment(False, "A"), ack=first_end)  # duplicate ACK for the hole
    conn.emit(t + 2000, segs[1], ack=conn.nxt[False])
    conn.send(t + 2300, False, b"", "A")

    provisional = [call.dlg.response(inv, 100, tag=False), call.dlg.response(inv, 180)]
    cap.sip.extend(provisional)
    conn.send(t + 150 * MS, False, b"".join(m.render() for m in provisional))
    conn.send(t + 150 * MS + 300, True, b"", "A")

    call.answer_t = t + 1200 * MS
    call.status = 200
    ok = call.dlg.response(inv, 200, call.sdp(False, ("PCMA", "telephone-event")))
    cap.sip.append(ok)
    ok_seg = conn.segment(False, "PA", ok.render())
    conn.emit(call.answer_t, ok_seg)
    conn.emit(call.answer_t + 210 * MS, ok_seg)  # the retransmission
    ack = call.dlg.ack_2xx(inv)
    cap.sip.append(ack)
    conn.send(call.answer_t + 213 * MS, True, ack.render())
    conn.send(call.answer_t + 213 * MS + 300, False, b"", "A")

    callee_s = call.sender(False, call.answer_t + 10 * MS)
    caller_s = call.sender(True, call.answer_t + 220 * MS)
    send_media(cap, callee_s.talk(0, 110))
    send_media(cap, caller_s.talk(0, 100))

    t_bye = media_end(caller_s) + 20 * MS
    bye = call.dlg.request("BYE")
    bye_ok = call.dlg.response(bye, 200)
    cap.sip.extend([bye, bye_ok])
    conn.send(t_bye, True, bye.render())
    conn.send(t_bye + 3 * MS, False, bye_ok.render())
    conn.send(t_bye + 3 * MS + 300, True, b"", "A")
    call.end_t, call.end = t_bye, "bye"
    return Scenario("tcp-sip-split.pcap", tcp_sip_split.__doc__ or "", LINKTYPE_ETHERNET, cap, [call])


def linktype_call(rng: Random, file: str, linktype: int) -> Scenario:
    """The same short call (1 s of media each way) on another pcap link type; the cooked (SLL)
    captures are taken on the PBX, so its own frames are marked outgoing."""
    pbx = phone("202", "Practice Manager", "192.0.2.10", agent=PBX_AGENT)
    cap = Capture(rng, capture_host=pbx.ip)
    caller = phone("201", "Reception", "192.0.2.71")
    call = basic_call(cap, caller, pbx, "PCMU", Endpoint(caller.ip, 40200), Endpoint(pbx.ip, 16384), 1.0)
    return Scenario(file, linktype_call.__doc__ or "", linktype, cap, [call])


NAT_PUBLIC = "203.0.113.7"
NAT_SIP_PORT = 5062
NAT_RTP_PORT = 61000


def _nat_response(msg: Message) -> Message:
    """RFC 3581: the server records where the request really came from in the top Via."""
    via = msg.headers[0][1].replace(";rport", f";received={NAT_PUBLIC};rport={NAT_SIP_PORT}")
    msg.headers[0] = ("Via", via)
    return msg


def nat_symmetric_rtp(rng: Random) -> Scenario:
    """Caller behind NAT: its SDP says c=10.0.0.5 m=audio 4000, but its SIP arrives from
    203.0.113.7:5062 and its RTP from 203.0.113.7:61000. The callee (a PBX doing symmetric RTP)
    starts sending only after the caller's first packet, to 203.0.113.7:61000, never to the SDP
    address."""
    cap = Capture(rng)
    caller = phone("201", "Home Visit", "10.0.0.5")
    pbx = phone("202", "Surgery", "198.51.100.60", agent=PBX_AGENT)
    call = new_call(cap, caller, pbx, "PCMU", Endpoint(caller.ip, 4000), Endpoint(pbx.ip, 30000))
    call.caller_src = Endpoint(NAT_PUBLIC, NAT_SIP_PORT)
    t = EPOCH_US
    inv = invite(call, t)
    for dt, code in ((2, 100), (300, 180)):
        response = call.dlg.response(inv, code, tag=code != 100)
        call.send(t + dt * MS, _nat_response(response), False)
    call.answer_t, call.status = t + 1500 * MS, 200
    ok = call.dlg.response(inv, 200, call.sdp(False, ("PCMU", "telephone-event")))
    call.send(call.answer_t, _nat_response(ok), False)
    call.send(call.answer_t + 4 * MS, call.dlg.ack_2xx(inv), True)

    public = Endpoint(NAT_PUBLIC, NAT_RTP_PORT)
    caller_s = cap.sender(
        random_sender(
            rng,
            call.call_id,
            CALLER_TO_CALLEE,
            "PCMU",
            440,
            call.answer_t + 12 * MS,
            public,
            call.callee_media,
        )
    )
    caller_in = send_media(cap, caller_s.talk(0, 125))
    latched = caller_in[0].t_us + 1 * MS
    callee_s = cap.sender(
        random_sender(rng, call.call_id, CALLEE_TO_CALLER, "PCMU", 1000, latched, call.callee_media, public)
    )
    send_media(cap, callee_s.talk(0, 124))
    t_bye = media_end(caller_s) + 20 * MS
    bye = call.send(t_bye, call.dlg.request("BYE"), True)
    call.send(t_bye + 3 * MS, _nat_response(call.dlg.response(bye, 200)), False)
    call.end_t, call.end = t_bye, "bye"
    return Scenario("nat-symmetric-rtp.pcap", nat_symmetric_rtp.__doc__ or "", LINKTYPE_ETHERNET, cap, [call])
