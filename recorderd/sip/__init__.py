"""Pure SIP signalling: parse messages and SDP, follow INVITE dialogs, emit call events.

``message`` parses one SIP message (RFC 3261 section 7), ``sdp`` one session description (RFC 4566,
RFC 3264), and ``dialog`` turns a stream of parsed messages into ``CallStarted`` / ``CallAnswered``
/ ``MediaNegotiated`` / ``CallTransferred`` / ``CallEnded`` per Call-ID. No I/O and no clock: the
engine passes every message with its :class:`~recorderd.events.Datagram` and drives timers via
``advance``.
"""

from recorderd.sip.dialog import DialogState, DialogTracker
from recorderd.sip.message import (
    NameAddr,
    SipRequest,
    SipResponse,
    parse_name_addr,
    parse_sip,
    sdp_body,
    user_part,
)
from recorderd.sip.sdp import MediaDescription, SessionDescription, parse_sdp

__all__ = [
    "DialogState",
    "DialogTracker",
    "MediaDescription",
    "NameAddr",
    "SessionDescription",
    "SipRequest",
    "SipResponse",
    "parse_name_addr",
    "parse_sdp",
    "parse_sip",
    "sdp_body",
    "user_part",
]
