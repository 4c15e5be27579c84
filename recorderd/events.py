"""Frozen value types shared by the stages of the pipeline.

Inputs flow down as :class:`Frame` (capture) and :class:`Datagram` (net); the signalling stage emits call
events (:class:`CallStarted`, :class:`CallAnswered`, :class:`MediaNegotiated`, :class:`CallEnded`); the
engine adds media events (:class:`RecordingStarted`, :class:`AudioBlock`) and closes every call with one
:class:`CallFinished` carrying its complete :class:`CallRecord`. Events are past tense; every one starts
with ``ts``, the capture timestamp that is the pipeline's only clock.

IP addresses travel as raw network-order bytes (4 or 16 long) so that the media demultiplexer can key on
them without formatting; :func:`format_ip` and :func:`format_endpoint` make them readable.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from functools import lru_cache
from typing import TypeAlias

import numpy as np
from numpy.typing import NDArray

# ---------------------------------------------------------------------------------------------------
# Capture and network layer


@dataclass(frozen=True, slots=True)
class Frame:
    """One captured link-layer frame; ``linktype`` is the pcap LINKTYPE_* number."""

    ts: float
    linktype: int
    data: bytes


@dataclass(frozen=True, slots=True)
class FrameBatch:
    """Frames as libpcap hands them over in one read: ``data`` holds them back to back and ``meta``
    one 16-byte record per frame, four native-endian uint32 (seconds, microseconds, offset into
    ``data``, captured length). Carrying the batch whole lets the engine skip a Python object per
    frame on its fast path."""

    linktype: int
    data: bytes
    meta: bytes

    @property
    def count(self) -> int:
        return len(self.meta) // FRAME_META.size

    @property
    def last_ts(self) -> float:
        sec, usec, _, _ = FRAME_META.unpack_from(self.meta, len(self.meta) - FRAME_META.size)
        return float(sec + usec / 1_000_000)

    def frames(self) -> list[Frame]:
        return [
            Frame(sec + usec / 1_000_000, self.linktype, self.data[off : off + caplen])
            for sec, usec, off, caplen in FRAME_META.iter_unpack(self.meta)
        ]


FRAME_META = struct.Struct("=4I")


class Transport(IntEnum):
    TCP = 6
    UDP = 17


@dataclass(frozen=True, slots=True)
class Datagram:
    """A UDP payload, or one complete SIP message framed out of a TCP stream."""

    ts: float
    transport: Transport
    src: bytes
    sport: int
    dst: bytes
    dport: int
    payload: bytes


def format_ip(raw: bytes) -> str:
    """Dotted IPv4 or compressed IPv6 text for a raw 4- or 16-byte address."""
    return str(ipaddress.ip_address(raw))


@lru_cache(maxsize=4096)  # the same signalling endpoints recur in every call
def format_endpoint(raw: bytes, port: int) -> str:
    """``192.0.2.1:5004`` or ``[2001:db8::1]:5004``."""
    text = format_ip(raw)
    return f"[{text}]:{port}" if len(raw) == 16 else f"{text}:{port}"


# ---------------------------------------------------------------------------------------------------
# Call (signalling) events


# Call-ID prefix of a call recorded from its media alone (engine/orphans.py): no SIP was seen for it.
UNSIGNALLED = "unsignalled:"


class Side(StrEnum):
    """The two parties of an INVITE dialog. The caller is recorded on the left channel."""

    CALLER = "caller"
    CALLEE = "callee"

    @property
    def other(self) -> Side:
        return Side.CALLEE if self is Side.CALLER else Side.CALLER


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    INTERNAL = "internal"
    UNKNOWN = "unknown"


class EndReason(StrEnum):
    BYE = "bye"
    CANCEL = "cancel"
    REJECTED = "rejected"  # a final 3xx-6xx answer to the INVITE
    RTP_TIMEOUT = "rtp-timeout"  # media stopped and no BYE was captured
    NO_ANSWER = "no-answer"  # INVITE never got a final answer
    EVICTED = "evicted"  # the calls table was full
    MAX_LENGTH = "max-length"
    CAPTURE_END = "capture-end"  # the replayed capture ended with the call still up


class MediaDirection(StrEnum):
    """SDP a=sendrecv/sendonly/recvonly/inactive, from the view of the party that wrote the SDP."""

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"


@dataclass(frozen=True, slots=True)
class PayloadFormat:
    """One payload type of an SDP m-line: ``a=rtpmap:<pt> <name>/<rate>`` or the RFC 3551 static one."""

    pt: int
    name: str  # upper case, e.g. "PCMU", "TELEPHONE-EVENT"
    rate: int


@dataclass(frozen=True, slots=True)
class CallStarted:
    """The first INVITE of a dialog was seen (retransmissions and auth retries do not repeat it)."""

    ts: float
    call_id: str
    from_uri: str
    from_name: str
    to_uri: str
    to_name: str
    src: str  # signalling source address of the INVITE, as text
    dst: str


@dataclass(frozen=True, slots=True)
class CallAnswered:
    ts: float
    call_id: str
    status: int


@dataclass(frozen=True, slots=True)
class MediaNegotiated:
    """A party announced (in an offer or an answer) where it receives audio.

    ``side`` is the party that wrote the SDP. RTP sent *to* ``ip:port`` is the other party's voice;
    with symmetric RTP (RFC 4961), RTP sent *from* it is this party's voice. ``transaction`` names the
    offer/answer exchange (requesting party, CSeq number and method): the same SDP exchange seen on two
    hops of a proxy shares it, a re-INVITE or UPDATE has a new one.
    """

    ts: float
    call_id: str
    side: Side
    ip: bytes
    port: int
    formats: tuple[PayloadFormat, ...]
    direction: MediaDirection
    ptime: int | None = None
    transaction: str = ""


@dataclass(frozen=True, slots=True)
class CallTransferred:
    """A REFER in the dialog: the recording is linked to the transfer target."""

    ts: float
    call_id: str
    refer_to: str
    replaces: str | None


@dataclass(frozen=True, slots=True)
class CallEnded:
    ts: float
    call_id: str
    reason: EndReason
    sip_status: int | None


# ---------------------------------------------------------------------------------------------------
# Media events and the final record


@dataclass(frozen=True, slots=True)
class RecordingStarted:
    """The first media of a call arrived; sample 0 of the recording is at ``ts``."""

    ts: float
    call_id: str
    encoding: str  # "ulaw", "alaw" or "pcm16": how the store should keep the samples
    sample_rate: int


Samples: TypeAlias = NDArray[np.int16]
Codes: TypeAlias = NDArray[np.uint8]


@dataclass(frozen=True, slots=True, eq=False)
class AudioBlock:
    """Stereo samples (shape ``(n, 2)``: caller left, callee right) from sample ``start`` on.

    Blocks of one call are contiguous and in order: each starts where the previous ended. ``samples``
    are linear 16-bit values when ``encoding`` is "pcm16", else the G.711 codes ("ulaw", "alaw": one
    byte each) the recording keeps, passed through from the wire without a decode and re-encode
    (``codecs.g711.to_pcm`` gives the linear values).
    """

    ts: float
    call_id: str
    start: int
    samples: Samples | Codes
    encoding: str = "pcm16"


class GapReason(StrEnum):
    LOSS = "loss"
    HOLD = "hold"
    NO_MEDIA = "no-media"
    UNDECODABLE = "undecodable"


@dataclass(frozen=True, slots=True)
class Gap:
    """An interval of the recording, in seconds from its start, with no audio from one leg."""

    start: float
    end: float
    reason: GapReason


@dataclass(frozen=True, slots=True)
class DtmfDigit:
    """An RFC 4733 telephone-event, at seconds from the recording start."""

    t: float
    digit: str
    duration_ms: int
    side: Side


@dataclass(frozen=True, slots=True)
class LegRecord:
    """One RTP stream (one SSRC) of a call and what became of it."""

    side: Side
    ssrc: int
    src: str
    dst: str
    codec: str
    payload_type: int
    packets: int
    lost: int
    duplicates: int
    decoded: bool
    first_ts: float
    last_ts: float
    gaps: tuple[Gap, ...] = ()


@dataclass(frozen=True, slots=True)
class CallRecord:
    """Everything the index keeps about a call; times are capture timestamps (UNIX seconds)."""

    call_id: str
    direction: Direction
    from_uri: str
    from_name: str
    to_uri: str
    to_name: str
    invite_ts: float
    answer_ts: float | None
    end_ts: float
    end_reason: EndReason
    sip_status: int | None
    media_start_ts: float | None  # sample 0 of the recording; None when no media was captured
    samples: int  # length of the recording in samples (0 when none)
    sample_rate: int
    legs: tuple[LegRecord, ...] = ()
    dtmf: tuple[DtmfDigit, ...] = ()
    holds: tuple[tuple[float, float], ...] = ()
    transfers: tuple[str, ...] = ()
    counters: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CallFinished:
    """The call is over and no further events will name it; ``record`` is final."""

    ts: float
    call_id: str
    record: CallRecord


SipEvent: TypeAlias = CallStarted | CallAnswered | MediaNegotiated | CallTransferred | CallEnded
Event: TypeAlias = SipEvent | RecordingStarted | AudioBlock | CallFinished
