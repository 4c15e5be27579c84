"""Per-Call-ID INVITE dialog tracking: parsed SIP messages in, call events out.

Follows RFC 3261 sections 12-17 (dialogs, INVITE and its transactions), RFC 3264 (offer/answer),
RFC 3262 (PRACK), RFC 3311 (UPDATE), RFC 3515 (REFER), RFC 3891 (Replaces) and RFC 6026 (2xx
retransmissions).

Theory of operation
-------------------
The tracker is a passive observer on a mirror port: it never sends anything and it may see a message
twice (retransmissions, a proxy forwarding the same request on another hop), out of order, or not at
all. It therefore keys everything on the Call-ID and tolerates what an endpoint would reject.

A *call* is a Call-ID whose first tracked message is an INVITE without a To tag. That INVITE emits
``CallStarted``; its From is the caller. Every later INVITE with the same Call-ID is one of: a
retransmission, a spiral (the same INVITE forwarded by a proxy through another hop), an auth retry
after 401/407 (RFC 3261 section 22.2, same Call-ID, higher CSeq), or a re-INVITE inside the dialog.
None of them starts a new call. REGISTER, OPTIONS, SUBSCRIBE and other non-INVITE Call-IDs never
become calls; in-dialog messages for an unknown Call-ID are counted and ignored (capture started
mid-call).

Each message is reduced to a :class:`Kind` (request method, or for a response its status class and
the method in its CSeq). The pair (state, kind) looks up one row of :data:`TRANSITIONS`, which gives
the next state and an :class:`Action` (what to emit). A pair not in the table is counted as
``sip.dialog.unexpected.<state>.<kind>`` and ignored. Rule: every state change happens through the
table; the code around it only classifies messages and carries out actions.

States::

    INVITED ---1xx---> EARLY ---2xx---> CONFIRMED ---BYE / 481---> TERMINATED
      |  |               |  |                                        ^
      |  +--401/407--> CHALLENGED --INVITE (auth retry)--> INVITED   |
      |                  |  timer: challenge_timeout ----------------+ REJECTED 401/407
      +--CANCEL--> CANCELLING --487 / timer--------------------------+ CANCEL
      |                  +--2xx (the CANCEL lost the race, section 9.1)--> CONFIRMED
      +--3xx-6xx-----------------------------------------------------+ REJECTED
      +--timer: invite_timeout without a final answer----------------+ NO_ANSWER

* A CANCEL moves the call to CANCELLING and the call ends at the 487 that answers the INVITE
  (``CallEnded(CANCEL, 487)``), or after ``challenge_timeout`` if the 487 is never seen
  (``CallEnded(CANCEL, None)``). Waiting for the 487 keeps the call when the callee's 200 crossed
  the CANCEL on the wire: then the call is answered and goes on. A 487 seen without a CANCEL also
  ends the call as CANCEL (the CANCEL was missed; 487 answers nothing else).
* A final error to a re-INVITE or UPDATE leaves the call up (RFC 3261 section 14.1), except 481
  (Call Does Not Exist): the far end no longer knows the dialog, so the call ends with reason BYE
  and ``sip_status`` 481 (RFC 5057 section 5.1). That is the one case where ``sip_status`` is not
  the final status of the initial INVITE.
* Otherwise ``CallEnded.sip_status`` is the final status of the initial INVITE transaction(s) (the
  last one before the dialog was confirmed), or ``None`` if none was seen.

Sides and media (RFC 3264): a request comes from the caller when its From tag is the caller's tag
(or it has no To tag yet), otherwise from the callee. SDP in a request was written by the requester,
SDP in a 1xx/2xx response by the other side. Every SDP body with an audio m-line in INVITE, ACK
(late offer), UPDATE, PRACK or their 1xx/2xx responses emits ``MediaNegotiated``, repeats included
(the engine dedups). The first audio m-line with a port is used; a rejected audio stream (port 0) or
RFC 2543 hold (c=0.0.0.0) is reported as ``inactive`` at the side's previous address and port.

Timers run only from :meth:`DialogTracker.advance` with capture timestamps. Ended calls linger for
``terminated_linger`` seconds so late retransmissions (200 to BYE, ACK to an error) are recognised
and dropped; a *new* INVITE (no To tag, higher CSeq) in that window, as a UAC sends after a 3xx
redirect (RFC 3261 section 8.1.3.4), starts a new call with the same Call-ID. The table of open
calls is bounded by ``max_calls``: the oldest open call is ended with ``EVICTED`` to make room, and
the linger table is bounded likewise (its oldest entries are forgotten).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import Enum

from recorderd.errors import ParseError
from recorderd.events import (
    CallAnswered,
    CallEnded,
    CallStarted,
    CallTransferred,
    Datagram,
    EndReason,
    MediaDirection,
    MediaNegotiated,
    Side,
    SipEvent,
    format_endpoint,
)
from recorderd.sip.message import (
    NameAddr,
    SipRequest,
    SipResponse,
    parse_name_addr,
    sdp_body,
    uri_headers,
)
from recorderd.sip.sdp import UNSPECIFIED_IPS, MediaDescription, parse_sdp

SipMessage = SipRequest | SipResponse
_INF = float("inf")


def _transaction(requester: Side, msg: SipMessage) -> str:
    """The offer/answer exchange ``msg`` belongs to: requesting party, CSeq number and method (an ACK
    completes its INVITE's exchange, RFC 3261 17.1.1.3)."""
    number, method = msg.cseq or (0, "")
    return f"{requester} {number} {'INVITE' if method == 'ACK' else method}"


class DialogState(Enum):
    INVITED = "invited"  # INVITE sent, no provisional answer beyond 100 yet
    EARLY = "early"  # a 101-199 answer arrived (ringing, early media)
    CHALLENGED = "challenged"  # 401/407 to the INVITE; an auth retry is expected
    CANCELLING = "cancelling"  # CANCEL seen; waiting for the INVITE's final answer (487)
    CONFIRMED = "confirmed"  # 2xx seen: the call is up
    TERMINATED = "terminated"


class Kind(Enum):
    INVITE = "invite"
    ACK = "ack"
    BYE = "bye"
    CANCEL = "cancel"
    UPDATE = "update"
    PRACK = "prack"
    REFER = "refer"
    OTHER_REQUEST = "other-request"  # INFO, NOTIFY, OPTIONS, MESSAGE ... inside the dialog
    TRYING = "100"  # responses to INVITE from here to FAILURE
    PROVISIONAL = "1xx"
    SUCCESS = "2xx"
    CHALLENGE = "401-407"
    REQUEST_TERMINATED = "487"
    GONE = "481"  # to INVITE or UPDATE
    FAILURE = "3xx-6xx"
    OTHER_RESPONSE = "other-response"  # responses to non-INVITE requests
    TIMEOUT = "timeout"  # from advance(), never from a message


class Action(Enum):
    NONE = "none"
    ANSWER = "answer"  # CallAnswered
    RETRY = "retry"  # auth retry: restart the no-answer clock
    TRANSFER = "transfer"  # CallTransferred
    END_BYE = "end-bye"
    END_GONE = "end-gone"  # 481 in the dialog: BYE with sip_status 481
    END_CANCEL = "end-cancel"
    END_REJECTED = "end-rejected"
    END_NO_ANSWER = "end-no-answer"


_S = DialogState
_K = Kind
_A = Action

# What leaves a calling state (INVITED, EARLY) as it is and emits nothing but SDP.
_CALLING_QUIET = (
    _K.INVITE,  # retransmission or spiral
    _K.UPDATE,
    _K.PRACK,
    _K.OTHER_REQUEST,
    _K.OTHER_RESPONSE,
    _K.TRYING,
)

TRANSITIONS: dict[tuple[DialogState, Kind], tuple[DialogState, Action]] = {
    **{(_S.INVITED, kind): (_S.INVITED, _A.NONE) for kind in _CALLING_QUIET},
    (_S.INVITED, _K.PROVISIONAL): (_S.EARLY, _A.NONE),
    **{(_S.EARLY, kind): (_S.EARLY, _A.NONE) for kind in _CALLING_QUIET},
    (_S.EARLY, _K.PROVISIONAL): (_S.EARLY, _A.NONE),
    **{
        (state, kind): row
        for state in (_S.INVITED, _S.EARLY)
        for kind, row in {
            _K.SUCCESS: (_S.CONFIRMED, _A.ANSWER),
            _K.CHALLENGE: (_S.CHALLENGED, _A.NONE),
            _K.CANCEL: (_S.CANCELLING, _A.NONE),
            _K.BYE: (_S.TERMINATED, _A.END_BYE),  # BYE on an early dialog (section 15)
            _K.REQUEST_TERMINATED: (_S.TERMINATED, _A.END_CANCEL),
            _K.GONE: (_S.TERMINATED, _A.END_REJECTED),
            _K.FAILURE: (_S.TERMINATED, _A.END_REJECTED),
            _K.TIMEOUT: (_S.TERMINATED, _A.END_NO_ANSWER),
        }.items()
    },
    (_S.CHALLENGED, _K.INVITE): (_S.INVITED, _A.RETRY),
    (_S.CHALLENGED, _K.ACK): (_S.CHALLENGED, _A.NONE),  # ACK to the 401/407
    (_S.CHALLENGED, _K.TRYING): (_S.CHALLENGED, _A.NONE),
    (_S.CHALLENGED, _K.CHALLENGE): (_S.CHALLENGED, _A.NONE),
    (_S.CHALLENGED, _K.SUCCESS): (_S.CONFIRMED, _A.ANSWER),  # another fork answered
    (_S.CHALLENGED, _K.OTHER_REQUEST): (_S.CHALLENGED, _A.NONE),
    (_S.CHALLENGED, _K.OTHER_RESPONSE): (_S.CHALLENGED, _A.NONE),
    (_S.CHALLENGED, _K.TIMEOUT): (_S.TERMINATED, _A.END_REJECTED),
    (_S.CANCELLING, _K.INVITE): (_S.CANCELLING, _A.NONE),
    (_S.CANCELLING, _K.CANCEL): (_S.CANCELLING, _A.NONE),
    (_S.CANCELLING, _K.TRYING): (_S.CANCELLING, _A.NONE),
    (_S.CANCELLING, _K.PROVISIONAL): (_S.CANCELLING, _A.NONE),
    (_S.CANCELLING, _K.OTHER_REQUEST): (_S.CANCELLING, _A.NONE),
    (_S.CANCELLING, _K.OTHER_RESPONSE): (_S.CANCELLING, _A.NONE),  # 200 to the CANCEL
    (_S.CANCELLING, _K.SUCCESS): (_S.CONFIRMED, _A.ANSWER),
    (_S.CANCELLING, _K.REQUEST_TERMINATED): (_S.TERMINATED, _A.END_CANCEL),
    (_S.CANCELLING, _K.CHALLENGE): (_S.TERMINATED, _A.END_CANCEL),
    (_S.CANCELLING, _K.GONE): (_S.TERMINATED, _A.END_CANCEL),
    (_S.CANCELLING, _K.FAILURE): (_S.TERMINATED, _A.END_CANCEL),
    (_S.CANCELLING, _K.BYE): (_S.TERMINATED, _A.END_CANCEL),
    (_S.CANCELLING, _K.TIMEOUT): (_S.TERMINATED, _A.END_CANCEL),
    **{
        (_S.CONFIRMED, kind): (_S.CONFIRMED, _A.NONE)
        for kind in (
            _K.INVITE,  # re-INVITE, or the initial INVITE retransmitted when the 200 was lost
            _K.ACK,
            _K.CANCEL,  # lost the race against the 2xx, or cancels a re-INVITE: no effect
            _K.UPDATE,
            _K.PRACK,
            _K.OTHER_REQUEST,
            _K.TRYING,
            _K.PROVISIONAL,
            _K.SUCCESS,  # retransmitted 2xx (RFC 6026) or 2xx to a re-INVITE
            _K.CHALLENGE,
            _K.REQUEST_TERMINATED,
            _K.FAILURE,  # re-INVITE refused, or a late answer from another fork
            _K.OTHER_RESPONSE,
        )
    },
    (_S.CONFIRMED, _K.REFER): (_S.CONFIRMED, _A.TRANSFER),
    (_S.CONFIRMED, _K.BYE): (_S.TERMINATED, _A.END_BYE),
    (_S.CONFIRMED, _K.GONE): (_S.TERMINATED, _A.END_GONE),
}

_END_REASONS: dict[Action, EndReason] = {
    _A.END_BYE: EndReason.BYE,
    _A.END_GONE: EndReason.BYE,
    _A.END_CANCEL: EndReason.CANCEL,
    _A.END_REJECTED: EndReason.REJECTED,
    _A.END_NO_ANSWER: EndReason.NO_ANSWER,
}

_REQUEST_KINDS: dict[str, Kind] = {
    "INVITE": _K.INVITE,
    "ACK": _K.ACK,
    "BYE": _K.BYE,
    "CANCEL": _K.CANCEL,
    "UPDATE": _K.UPDATE,
    "PRACK": _K.PRACK,
    "REFER": _K.REFER,
}

# Methods whose requests, and whose 1xx/2xx responses, may carry an SDP offer or answer.
_SDP_METHODS = frozenset({"INVITE", "ACK", "UPDATE", "PRACK"})


@dataclass(slots=True)
class _Call:
    """Mutable per-call state; private to the tracker."""

    call_id: str
    caller_tag: str | None
    caller_uri: str
    invite_ts: float  # latest initial INVITE (restarts on an auth retry): the no-answer clock
    invite_cseq: int  # highest INVITE CSeq seen
    state: DialogState = DialogState.INVITED
    deadline: float = _INF
    final_status: int | None = None
    last_media: dict[Side, tuple[bytes, int]] = field(default_factory=dict)


def _classify(msg: SipMessage) -> Kind | None:
    """The table key for ``msg``; ``None`` for a response whose CSeq cannot be read."""
    if isinstance(msg, SipRequest):
        return _REQUEST_KINDS.get(msg.method.upper(), _K.OTHER_REQUEST)
    cseq = msg.cseq
    if cseq is None:
        return None
    method = cseq[1].upper()
    if method == "INVITE":
        return _classify_invite_response(msg.status)
    if method == "UPDATE" and msg.status == 481:
        return _K.GONE
    return _K.OTHER_RESPONSE


def _classify_invite_response(status: int) -> Kind:
    if status == 100:
        return _K.TRYING
    if status < 200:
        return _K.PROVISIONAL
    if status < 300:
        return _K.SUCCESS
    return {401: _K.CHALLENGE, 407: _K.CHALLENGE, 481: _K.GONE, 487: _K.REQUEST_TERMINATED}.get(
        status, _K.FAILURE
    )


def _name_addr(msg: SipMessage, name: str) -> NameAddr | None:
    value = msg.header(name)
    if value is None:
        return None
    try:
        return parse_name_addr(value)
    except ParseError:
        return None


def _may_carry_sdp(msg: SipMessage) -> bool:
    if not msg.body:
        return False
    if isinstance(msg, SipRequest):
        return msg.method.upper() in _SDP_METHODS
    cseq = msg.cseq
    return 100 < msg.status < 300 and cseq is not None and cseq[1].upper() in _SDP_METHODS


def _is_new_invite(msg: SipMessage) -> bool:
    """An INVITE outside any dialog: no To tag (RFC 3261 section 12.1)."""
    if not isinstance(msg, SipRequest) or msg.method.upper() != "INVITE":
        return False
    to = _name_addr(msg, "to")
    return to is not None and to.tag is None


class DialogTracker:
    """Follows INVITE dialogs by Call-ID and turns SIP messages into call events.

    ``invite_timeout``: an INVITE without a final answer for this long ends as NO_ANSWER.
    ``challenge_timeout``: how long a challenged INVITE waits for its auth retry, and a CANCEL for
    the 487 (RFC 3261 Timer B, 64*T1).
    ``terminated_linger``: how long an ended Call-ID is remembered.
    """

    def __init__(
        self,
        counters: Counter[str],
        *,
        max_calls: int = 10_000,
        invite_timeout: float = 300.0,
        challenge_timeout: float = 32.0,
        terminated_linger: float = 32.0,
    ) -> None:
        self._counters = counters
        self._max_calls = max(1, max_calls)
        self._invite_timeout = invite_timeout
        self._challenge_timeout = challenge_timeout
        self._linger = terminated_linger
        self._calls: dict[str, _Call] = {}  # open calls, oldest first
        self._ended: dict[str, tuple[float, int]] = {}  # call_id -> (forget at, INVITE CSeq)
        self._next_deadline = _INF  # no timer of an open call fires before this

    def __len__(self) -> int:
        return len(self._calls)

    # -- inputs ------------------------------------------------------------------------------------

    def handle(self, dgram: Datagram, msg: SipRequest | SipResponse) -> list[SipEvent]:
        """Events caused by one parsed message; never raises on odd but parseable messages."""
        call_id = msg.call_id
        if not call_id:
            self._counters["sip.dialog.no_call_id"] += 1
            return []
        call = self._calls.get(call_id)
        if call is None:
            return self._handle_unknown(dgram, msg, call_id)
        kind = _classify(msg)
        if kind is None:
            self._counters["sip.dialog.no_cseq"] += 1
            return []
        if kind is _K.INVITE:
            cseq = msg.cseq
            call.invite_cseq = max(call.invite_cseq, cseq[0] if cseq else 0)
        return self._step(call, kind, dgram.ts, msg)

    def advance(self, now: float) -> list[SipEvent]:
        """Fire the timers due at capture time ``now`` (at or after their deadline)."""
        events: list[SipEvent] = []
        if now >= self._next_deadline:
            self._next_deadline = _INF
            for call in list(self._calls.values()):
                if call.deadline <= now:
                    events += self._step(call, _K.TIMEOUT, now, None)
                else:
                    self._next_deadline = min(self._next_deadline, call.deadline)
        self._forget_ended(now)
        return events

    def end(self, call_id: str, now: float, reason: EndReason) -> list[SipEvent]:
        """End an open call for a reason found outside signalling (RTP timeout, maximum length)."""
        call = self._calls.get(call_id)
        if call is None:
            return []
        return [self._finish(call, now, reason, call.final_status)]

    def close(self, now: float) -> list[SipEvent]:
        """End every open call (the capture is over); the tracker is empty afterwards."""
        events: list[SipEvent] = [
            self._finish(call, now, EndReason.CAPTURE_END, call.final_status)
            for call in list(self._calls.values())
        ]
        self._ended.clear()
        self._next_deadline = _INF
        return events

    # -- the state machine -------------------------------------------------------------------------

    def _step(self, call: _Call, kind: Kind, ts: float, msg: SipMessage | None) -> list[SipEvent]:
        row = TRANSITIONS.get((call.state, kind))
        if row is None:
            self._counters[f"sip.dialog.unexpected.{call.state.value}.{kind.value}"] += 1
            return []
        new_state, action = row
        if isinstance(msg, SipResponse) and msg.status >= 200 and kind is not _K.OTHER_RESPONSE:
            if call.state is not _S.CONFIRMED:
                call.final_status = msg.status  # final answer to the initial INVITE
        if new_state is _S.TERMINATED:
            status = 481 if action is _A.END_GONE else call.final_status
            return [self._finish(call, ts, _END_REASONS[action], status)]
        events = self._act(call, action, ts, msg)
        if new_state is not call.state or action is _A.RETRY:
            call.state = new_state
            self._arm_timer(call, ts)
        if msg is not None and _may_carry_sdp(msg):
            events += self._media(call, ts, msg)
        return events

    def _act(self, call: _Call, action: Action, ts: float, msg: SipMessage | None) -> list[SipEvent]:
        if action is _A.ANSWER and isinstance(msg, SipResponse):
            return [CallAnswered(ts, call.call_id, msg.status)]
        if action is _A.RETRY:
            call.invite_ts = ts
        elif action is _A.TRANSFER and isinstance(msg, SipRequest):
            return self._transfer(call, ts, msg)
        return []

    def _arm_timer(self, call: _Call, ts: float) -> None:
        if call.state in (_S.INVITED, _S.EARLY):
            call.deadline = call.invite_ts + self._invite_timeout
        elif call.state in (_S.CHALLENGED, _S.CANCELLING):
            call.deadline = ts + self._challenge_timeout
        else:
            call.deadline = _INF
        self._next_deadline = min(self._next_deadline, call.deadline)

    def _finish(self, call: _Call, ts: float, reason: EndReason, status: int | None) -> CallEnded:
        """Close ``call``: it leaves the open table and lingers so late retransmissions drop."""
        del self._calls[call.call_id]
        self._ended.pop(call.call_id, None)  # re-insert at the end: the linger table stays in order
        self._ended[call.call_id] = (ts + self._linger, call.invite_cseq)
        if len(self._ended) > self._max_calls:
            del self._ended[next(iter(self._ended))]
        return CallEnded(ts, call.call_id, reason, status)

    def _forget_ended(self, now: float) -> None:
        while self._ended:
            call_id, (forget_at, _) = next(iter(self._ended.items()))
            if forget_at > now:
                break
            del self._ended[call_id]

    # -- new and unknown Call-IDs ------------------------------------------------------------------

    def _handle_unknown(self, dgram: Datagram, msg: SipMessage, call_id: str) -> list[SipEvent]:
        if not _is_new_invite(msg):
            self._count_stray(msg, call_id)
            return []
        cseq = msg.cseq
        ended = self._ended.get(call_id)
        if ended is not None and (cseq is None or cseq[0] <= ended[1]):
            self._counters["sip.dialog.late"] += 1  # retransmission or spiral of the ended INVITE
            return []
        return self._start(dgram, msg, call_id, cseq[0] if cseq else 0)

    def _count_stray(self, msg: SipMessage, call_id: str) -> None:
        if call_id in self._ended:
            key = "late"
        elif isinstance(msg, SipRequest):
            to = _name_addr(msg, "to")
            key = "unknown_dialog" if to is not None and to.tag is not None else "not_a_call"
        else:
            cseq = msg.cseq
            key = "unknown_dialog" if cseq and cseq[1].upper() == "INVITE" else "not_a_call"
        self._counters[f"sip.dialog.{key}"] += 1

    def _start(self, dgram: Datagram, msg: SipMessage, call_id: str, cseq: int) -> list[SipEvent]:
        caller = _name_addr(msg, "from")
        callee = _name_addr(msg, "to")
        if caller is None or callee is None:
            self._counters["sip.dialog.bad_from_to"] += 1
            return []
        events = self._make_room(dgram.ts)
        self._ended.pop(call_id, None)
        call = _Call(call_id, caller.tag, caller.uri, dgram.ts, cseq)
        self._calls[call_id] = call
        self._arm_timer(call, dgram.ts)
        src = format_endpoint(dgram.src, dgram.sport)
        dst = format_endpoint(dgram.dst, dgram.dport)
        events.append(
            CallStarted(
                dgram.ts,
                call_id,
                caller.uri,
                caller.display_name,
                callee.uri,
                callee.display_name,
                src,
                dst,
            )
        )
        return events + self._media(call, dgram.ts, msg)

    def _make_room(self, ts: float) -> list[SipEvent]:
        """End the oldest open call if the table is full."""
        if len(self._calls) < self._max_calls:
            return []
        oldest = next(iter(self._calls.values()))
        self._counters["sip.dialog.evicted"] += 1
        return [self._finish(oldest, ts, EndReason.EVICTED, oldest.final_status)]

    def adopt(self, call_id: str, ts: float) -> list[SipEvent]:
        """Open a call that was never signalled (``engine/orphans.py``), as answered: no message
        moves it on; it ends through :meth:`end` (RTP silence), eviction or :meth:`close`. The
        events of making room for it."""
        events = self._make_room(ts)
        self._ended.pop(call_id, None)
        self._calls[call_id] = _Call(call_id, None, "", ts, 0, state=_S.CONFIRMED)
        return events

    # -- payload of the actions --------------------------------------------------------------------

    def _requester(self, call: _Call, msg: SipMessage) -> Side:
        """Which party sent the request ``msg`` is (or answers): see the module docstring."""
        sender = _name_addr(msg, "from")
        to = _name_addr(msg, "to")
        if sender is None or to is None or to.tag is None:
            return Side.CALLER
        if sender.tag is not None and call.caller_tag is not None:
            return Side.CALLER if sender.tag == call.caller_tag else Side.CALLEE
        # RFC 2543 peers may send no tags: fall back to the From URI.
        return Side.CALLER if sender.uri == call.caller_uri else Side.CALLEE

    def _media(self, call: _Call, ts: float, msg: SipMessage) -> list[SipEvent]:
        try:
            raw = sdp_body(msg)
            sdp = parse_sdp(raw) if raw is not None else None
        except ParseError:
            self._counters["sip.dialog.bad_sdp"] += 1
            return []
        if sdp is None:
            return []
        audio = [m for m in sdp.media if m.kind == "audio"]
        if not audio:
            self._counters["sip.dialog.sdp_without_audio"] += 1
            return []
        requester = self._requester(call, msg)
        side = requester.other if isinstance(msg, SipResponse) else requester
        return self._negotiated(call, ts, side, sdp.first_audio() or audio[0], _transaction(requester, msg))

    def _negotiated(
        self, call: _Call, ts: float, side: Side, media: MediaDescription, transaction: str
    ) -> list[SipEvent]:
        on_hold = media.port == 0 or media.ip in UNSPECIFIED_IPS
        previous = call.last_media.get(side)
        if on_hold:
            ip, port = previous or (media.ip or bytes(4), media.port)
            direction = MediaDirection.INACTIVE
        elif media.ip is None:
            self._counters["sip.dialog.sdp_without_ip"] += 1  # hostname or no c= line
            return []
        else:
            ip, port, direction = media.ip, media.port, media.direction
            call.last_media[side] = (ip, port)
        formats = media.formats
        return [
            MediaNegotiated(ts, call.call_id, side, ip, port, formats, direction, media.ptime, transaction)
        ]

    def _transfer(self, call: _Call, ts: float, msg: SipRequest) -> list[SipEvent]:
        target = _name_addr(msg, "refer-to")
        if target is None:
            self._counters["sip.dialog.refer_without_target"] += 1
            return []
        uri, _, _ = target.uri.partition("?")
        replaces = dict(uri_headers(target.uri)).get("replaces")
        return [CallTransferred(ts, call.call_id, uri, replaces)]
