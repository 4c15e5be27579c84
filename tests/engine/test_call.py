"""Engine behaviour the captures do not show: mixed laws, clock jumps, capture gaps, bounds, timeouts."""

from __future__ import annotations

import numpy as np

from recorderd.codecs.g711 import alaw_encode, to_pcm, ulaw_encode
from recorderd.config import EngineConfig
from recorderd.engine import Engine
from recorderd.engine.call import SILENCE_CHUNK
from recorderd.events import AudioBlock, CallFinished, CallRecord, EndReason, Event, RecordingStarted
from tests.engine.frames import CALLEE, CALLER, rtp, sdp, sip, udp_frame

T0 = 1_767_600_000.0
CID = "engine-test@clinic.example"


def tone(n: int, hz: float, start: int = 0) -> np.ndarray:
    t = np.arange(start, start + n)
    return (6000 * np.sin(2 * np.pi * hz * t / 8000)).astype(np.int16)


class Call:
    """Drives one answered call through an Engine, frame by frame."""

    def __init__(
        self, caller_codec: tuple[int, str], callee_codec: tuple[int, str], config: EngineConfig | None = None
    ):
        self.engine = Engine(config)
        self.events: list[Event] = []
        self.feed(T0, CALLER, 5060, CALLEE, 5060, sip(f"INVITE sip:2002@{CALLEE} SIP/2.0", CID, "1 INVITE",
                  tagged=False, body=sdp(CALLER, 4000, *caller_codec)))  # fmt: skip
        self.feed(T0 + 0.5, CALLEE, 5060, CALLER, 5060, sip("SIP/2.0 200 OK", CID, "1 INVITE",
                  body=sdp(CALLEE, 6000, *callee_codec)))  # fmt: skip
        self.feed(T0 + 0.51, CALLER, 5060, CALLEE, 5060, sip(f"ACK sip:2002@{CALLEE} SIP/2.0", CID, "1 ACK"))

    def feed(self, ts: float, src: str, sport: int, dst: str, dport: int, payload: bytes) -> None:
        self.events += self.engine.feed(udp_frame(ts, src, sport, dst, dport, payload))

    def media(
        self,
        ts: float,
        caller: bytes | None,
        callee: bytes | None,
        seq: int,
        rtp_ts: int,
        pts: tuple[int, int],
    ) -> None:
        if caller is not None:
            self.feed(ts, CALLER, 4000, CALLEE, 6000, rtp(seq, rtp_ts, 0x1111, pts[0], caller))
        if callee is not None:
            self.feed(ts, CALLEE, 6000, CALLER, 4000, rtp(seq, rtp_ts, 0x2222, pts[1], callee))

    def bye(self, ts: float) -> CallRecord:
        self.feed(ts, CALLER, 5060, CALLEE, 5060, sip(f"BYE sip:2002@{CALLEE} SIP/2.0", CID, "2 BYE"))
        (finished,) = [e for e in self.events if isinstance(e, CallFinished)]
        return finished.record

    def audio(self) -> np.ndarray:
        blocks = [e for e in self.events if isinstance(e, AudioBlock)]
        return np.concatenate([to_pcm(e.samples, e.encoding) for e in blocks])


def test_a_call_mixing_laws_is_kept_as_16_bit_pcm_without_loss() -> None:
    call = Call((0, "PCMU"), (8, "PCMA"))
    left, right = tone(8000 * 3, 440), tone(8000 * 3, 1000)
    codes_l, codes_r = ulaw_encode(left).tobytes(), alaw_encode(right).tobytes()
    for i in range(150):
        chunk = slice(160 * i, 160 * (i + 1))
        call.media(T0 + 1 + 0.02 * i, codes_l[chunk], codes_r[chunk], i, 160 * i, (0, 8))
    record = call.bye(T0 + 4.5)
    (started,) = [e for e in call.events if isinstance(e, RecordingStarted)]
    assert started.encoding == "pcm16"
    audio = call.audio()
    from recorderd.codecs.g711 import alaw_decode, ulaw_decode

    assert np.array_equal(audio[:, 0], ulaw_decode(codes_l))
    assert np.array_equal(audio[:, 1], alaw_decode(codes_r))
    assert record.samples == len(audio) == 24000


def test_a_sender_clock_jump_is_resynced_to_the_capture_clock() -> None:
    call = Call((0, "PCMU"), (0, "PCMU"))
    payload = ulaw_encode(tone(160, 440)).tobytes()
    for i in range(100):
        rtp_ts = 160 * i if i < 50 else 9_000_000 + 160 * i
        call.media(T0 + 1 + 0.02 * i, payload, None, i, rtp_ts, (0, 0))
    record = call.bye(T0 + 3.5)
    assert record.counters.get("resyncs") == 1
    assert record.samples == 100 * 160  # placed by capture time across the jump: no gap, no overlap


def test_a_long_capture_gap_is_emitted_as_bounded_blocks() -> None:
    config = EngineConfig(rtp_timeout=7200.0)
    call = Call((0, "PCMU"), (0, "PCMU"), config)
    payload = ulaw_encode(tone(160, 440)).tobytes()
    for i in range(10):
        call.media(T0 + 1 + 0.02 * i, payload, payload, i, 160 * i, (0, 0))
    later = T0 + 1 + 3600  # one hour with no packets at all, then the call goes on
    for i in range(10, 20):
        call.media(later + 0.02 * i, payload, payload, i, 160 * i + 3600 * 8000, (0, 0))
    record = call.bye(later + 1)
    blocks = [e for e in call.events if isinstance(e, AudioBlock)]
    assert max(len(b.samples) for b in blocks) <= SILENCE_CHUNK
    assert record.samples == round((later + 0.02 * 19 - (T0 + 1)) * 8000) + 160


def test_rtp_timeout_ends_an_answered_call_but_not_one_on_hold() -> None:
    for hold in (False, True):
        call = Call((0, "PCMU"), (0, "PCMU"), EngineConfig(rtp_timeout=10.0))
        payload = ulaw_encode(tone(160, 440)).tobytes()
        for i in range(50):
            call.media(T0 + 1 + 0.02 * i, payload, payload, i, 160 * i, (0, 0))
        if hold:
            offer = sdp(CALLER, 4000, 0, "PCMU", "sendonly")
            call.feed(
                T0 + 2.5,
                CALLER,
                5060,
                CALLEE,
                5060,
                sip(f"INVITE sip:2002@{CALLEE} SIP/2.0", CID, "2 INVITE", body=offer),
            )
            answer = sdp(CALLEE, 6000, 0, "PCMU", "recvonly")
            call.feed(
                T0 + 2.6, CALLEE, 5060, CALLER, 5060, sip("SIP/2.0 200 OK", CID, "2 INVITE", body=answer)
            )
        call.feed(
            T0 + 60,
            "192.0.2.99",
            5060,
            "192.0.2.98",
            5060,
            b"OPTIONS sip:x SIP/2.0\r\nContent-Length: 0\r\n\r\n",
        )
        ended = [e.record for e in call.events if isinstance(e, CallFinished)]
        if hold:
            assert ended == []
        else:
            assert [r.end_reason for r in ended] == [EndReason.RTP_TIMEOUT]


def test_streams_per_call_are_bounded() -> None:
    call = Call((0, "PCMU"), (0, "PCMU"), EngineConfig(max_streams_per_call=4))
    for ssrc in range(10):
        call.feed(T0 + 1 + 0.001 * ssrc, CALLER, 4000, CALLEE, 6000, rtp(1, 0, ssrc, 0, b"\xff" * 160))
    record = call.bye(T0 + 2)
    assert len(record.legs) == 4
    assert call.engine.counters["rtp.streams_full"] == 6
