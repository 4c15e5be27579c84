"""Media for the crafted captures: a G.711 encoder, test tones, RTP senders and network impairments.

The encoder follows the segment tables of ITU-T G.711 (11/1988), tables 1a (A-law) and 2a (mu-law),
in the integer form of the CCITT/Sun reference ``g711.c``: mu-law works on 14-bit magnitudes with a
bias of 33, A-law on 13-bit magnitudes, even bits of A-law inverted (mask 0x55/0xD5).

RTP packets follow RFC 3550 section 5.1 (fixed header, no CSRC, no extension), telephone-events RFC
4733 section 2.3 (payload) and 2.5.1 (one timestamp per event, growing duration, the end packet sent
three times), comfort noise RFC 3389 section 3 (one-byte noise level). The RTP timestamp of every
packet is the sender's wall clock in samples (``ts0 + sample``), so silence, hold or DTMF leave a
timestamp jump but no sequence gap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from random import Random

from craft_wire import Endpoint

SAMPLE_RATE = 8000
SAMPLES_PER_PACKET = 160  # 20 ms
US_PER_SAMPLE = 125  # 1e6 / 8000, exact
PACKET_US = SAMPLES_PER_PACKET * US_PER_SAMPLE
AMPLITUDE = 8000  # about -12 dBFS: loud enough to measure, far from clipping

PT_PCMU = 0
PT_PCMA = 8
PT_CN = 13
PT_TELEPHONE_EVENT = 101
CODEC_PT = {"PCMU": PT_PCMU, "PCMA": PT_PCMA}

DTMF_EVENTS = {str(d): d for d in range(10)} | {"*": 10, "#": 11}
DTMF_VOLUME = 10  # -10 dBm0, a typical phone keypad level
DTMF_STEPS = 5  # progress packets before the three end packets

_ULAW_SEG_END = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_ALAW_SEG_END = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _segment(value: int, ends: tuple[int, ...]) -> int:
    for seg, end in enumerate(ends):
        if value <= end:
            return seg
    return len(ends)


def ulaw_encode(sample: int) -> int:
    """One signed 16-bit sample to a mu-law code (G.711 table 2a)."""
    value = sample >> 2
    mask = 0xFF
    if value < 0:
        value, mask = -value, 0x7F
    value = min(value, 8159) + 33
    seg = _segment(value, _ULAW_SEG_END)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((value >> (seg + 1)) & 0x0F)) ^ mask


def alaw_encode(sample: int) -> int:
    """One signed 16-bit sample to an A-law code (G.711 table 1a)."""
    value = sample >> 3
    mask = 0xD5
    if value < 0:
        value, mask = -value - 1, 0x55
    seg = _segment(value, _ALAW_SEG_END)
    if seg >= 8:
        return 0x7F ^ mask
    shift = 1 if seg < 2 else seg
    return ((seg << 4) | ((value >> shift) & 0x0F)) ^ mask


ENCODERS = {"PCMU": ulaw_encode, "PCMA": alaw_encode}


@dataclass(frozen=True, slots=True)
class Tone:
    """A sine of ``hz`` sampled at 8 kHz; periodic in ``8000 / gcd(8000, hz)`` samples."""

    hz: int
    amplitude: int = AMPLITUDE

    @property
    def period(self) -> int:
        return SAMPLE_RATE // math.gcd(SAMPLE_RATE, self.hz)

    def samples(self) -> list[int]:
        """One exact period; math.sin per sample keeps it free of vectorised-libm differences."""
        step = 2 * math.pi * self.hz / SAMPLE_RATE
        return [round(self.amplitude * math.sin(step * n)) for n in range(self.period)]


_ENCODED: dict[tuple[Tone, str], bytes] = {}


def encode_tone(tone: Tone, codec: str, first_sample: int, count: int) -> bytes:
    """G.711 bytes of ``tone`` for samples ``first_sample .. first_sample + count - 1``."""
    key = (tone, codec)
    if key not in _ENCODED:
        encode = ENCODERS[codec]
        _ENCODED[key] = bytes(encode(s) for s in tone.samples())
    period = _ENCODED[key]
    reps = count // len(period) + 2
    start = first_sample % len(period)
    return (period * reps)[start : start + count]


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP packet as sent: ``order`` is the sender's packet index (a sequence number that never
    wraps), ``t_us`` the capture time (send time until :func:`deliver` adds network delay)."""

    t_us: int
    src: Endpoint
    dst: Endpoint
    ssrc: int
    order: int
    seq: int
    ts: int
    pt: int
    marker: bool
    payload: bytes
    kind: str  # "audio", "event" or "cn"

    def to_bytes(self) -> bytes:
        head = bytes([0x80, (0x80 if self.marker else 0) | self.pt])
        return (
            head
            + self.seq.to_bytes(2, "big")
            + self.ts.to_bytes(4, "big")
            + self.ssrc.to_bytes(4, "big")
            + self.payload
        )


@dataclass(frozen=True, slots=True)
class DtmfSent:
    digit: str
    rtp_ts: int
    duration: int  # in timestamp units (8 kHz)


@dataclass
class RtpSender:
    """One RTP stream (one SSRC) of one party; records every packet it sends in ``sent``.

    ``origin_us`` is the wall-clock time of sample 0 of the party's audio, shared by the streams
    of a party that changes SSRC or port, so the tone continues in phase across the change.
    """

    call_id: str
    direction: str  # "caller->callee" or "callee->caller"
    codec: str
    tone: Tone
    ssrc: int
    seq0: int
    ts0: int
    origin_us: int
    src: Endpoint
    dst: Endpoint
    pt: int = -1
    sent: list[RtpPacket] = field(default_factory=list)
    dtmf: list[DtmfSent] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.pt < 0:
            self.pt = CODEC_PT[self.codec]

    def _packet(self, sample: int, pt: int, marker: bool, payload: bytes, kind: str) -> RtpPacket:
        return self._packet_ts(sample, sample, pt, marker, payload, kind)

    def _packet_ts(
        self, sample: int, ts_sample: int, pt: int, marker: bool, payload: bytes, kind: str
    ) -> RtpPacket:
        order = len(self.sent)
        pkt = RtpPacket(
            t_us=self.origin_us + sample * US_PER_SAMPLE,
            src=self.src,
            dst=self.dst,
            ssrc=self.ssrc,
            order=order,
            seq=(self.seq0 + order) & 0xFFFF,
            ts=(self.ts0 + ts_sample) & 0xFFFFFFFF,
            pt=pt,
            marker=marker,
            payload=payload,
            kind=kind,
        )
        self.sent.append(pkt)
        return pkt

    def audio(self, sample: int, marker: bool = False) -> RtpPacket:
        payload = encode_tone(self.tone, self.codec, sample, SAMPLES_PER_PACKET)
        return self._packet(sample, self.pt, marker, payload, "audio")

    def talk(self, first_sample: int, count: int, marker: bool = True) -> list[RtpPacket]:
        """``count`` consecutive 20 ms audio packets; the first carries the marker (talkspurt)."""
        return [self.audio(first_sample + i * SAMPLES_PER_PACKET, marker and i == 0) for i in range(count)]

    def digit(self, start_sample: int, digit: str) -> list[RtpPacket]:
        """One RFC 4733 event: DTMF_STEPS progress packets then three end packets, 20 ms apart.

        All carry the event's start timestamp; the end packets report the final duration.
        """
        event = DTMF_EVENTS[digit]
        final = (DTMF_STEPS + 1) * SAMPLES_PER_PACKET
        self.dtmf.append(DtmfSent(digit, (self.ts0 + start_sample) & 0xFFFFFFFF, final))
        out = []
        for step in range(DTMF_STEPS + 3):
            end = step >= DTMF_STEPS
            duration = final if end else (step + 1) * SAMPLES_PER_PACKET
            payload = bytes([event, (0x80 if end else 0) | DTMF_VOLUME]) + duration.to_bytes(2, "big")
            at = start_sample + step * SAMPLES_PER_PACKET
            out.append(self._packet_ts(at, start_sample, PT_TELEPHONE_EVENT, step == 0, payload, "event"))
        return out

    def comfort_noise(self, sample: int, level: int = 60) -> RtpPacket:
        """An RFC 3389 CN packet with noise level ``-level`` dBov."""
        return self._packet(sample, PT_CN, False, bytes([level]), "cn")


DTMF_SLOTS = DTMF_STEPS + 3  # 20 ms slots one digit occupies in the caller's stream


def random_sender(
    rng: Random,
    call_id: str,
    direction: str,
    codec: str,
    tone_hz: int,
    origin_us: int,
    src: Endpoint,
    dst: Endpoint,
) -> RtpSender:
    """A sender with seeded random SSRC, initial sequence number and initial timestamp."""
    return RtpSender(
        call_id=call_id,
        direction=direction,
        codec=codec,
        tone=Tone(tone_hz),
        ssrc=rng.randrange(0x01000000, 0xFFFFFFFF),
        seq0=rng.randrange(0, 0x10000),
        ts0=rng.randrange(0, 0x100000000),
        origin_us=origin_us,
        src=src,
        dst=dst,
    )


def deliver(packets: list[RtpPacket], rng: Random) -> list[RtpPacket]:
    """Add 0.8-2.5 ms of network delay per packet: jitter well inside the 20 ms packet spacing."""
    return [replace(p, t_us=p.t_us + rng.randrange(800, 2500)) for p in packets]


@dataclass(frozen=True, slots=True)
class Impairments:
    """Positions (indices into the delivered list) to disturb, as a network between sender and tap.

    ``swaps``: packet k arrives just after k+1. ``delays``: (k, n) packet k arrives just after
    k+n. ``dups``: (k, n) a second copy of k arrives just after k+n (n=0: right after k).
    ``losses``: never arrive.
    """

    swaps: tuple[int, ...] = ()
    delays: tuple[tuple[int, int], ...] = ()
    dups: tuple[tuple[int, int], ...] = ()
    losses: tuple[int, ...] = ()


def impair(packets: list[RtpPacket], imp: Impairments) -> list[RtpPacket]:
    """Apply ``imp`` and return the packets in arrival order (arrival times stay monotonic)."""
    arrival = [p.t_us for p in packets]
    for k in imp.swaps:
        arrival[k] = packets[k + 1].t_us + 400
    for k, n in imp.delays:
        arrival[k] = packets[k + n].t_us + 400
    out = [replace(p, t_us=arrival[i]) for i, p in enumerate(packets) if i not in imp.losses]
    for k, n in imp.dups:
        out.append(replace(packets[k], t_us=packets[k + n].t_us + 200))
    out.sort(key=lambda p: p.t_us)
    return out
