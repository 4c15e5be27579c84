"""Capture file -> CLI replay -> encrypted store -> export, against independent decoders.

The exported audio of every G.711 call must equal, sample for sample, libsndfile's own mu-law/A-law
decoding of the RTP payloads tshark finds in the capture, placed by RTP timestamp from each stream's
first packet; and the standard `age` tool must decrypt each recording to a Sun AU file that sox and
libsndfile read.
"""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile

from recorderd.cli import main
from tests.conftest import PCAPS, new_store
from tests.oracle import TsharkRtp, tshark_rtp_packets

G711_CAPTURES = [
    "sip-rtp-g711-pcmu-then-pcma",
    "sip-dtmf2-rfc2833-603",
    "onsip-testcall-nat-auth",
    "sip-tcp-call-rtp",
]
SUBTYPE = {0: "ULAW", 8: "ALAW"}
IDLE = {"ULAW": b"\xff", "ALAW": b"\xd5"}  # G.711 idle codes: what silence is in each law


def calls_json(store: Path, capsys: pytest.CaptureFixture[str]) -> list[dict]:  # type: ignore[type-arg]
    capsys.readouterr()
    assert main(["calls", "--store", str(store), "--json"]) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def libsndfile_decode(payload: bytes, pt: int) -> np.ndarray:
    samples, _ = soundfile.read(
        io.BytesIO(payload), format="RAW", subtype=SUBTYPE[pt], samplerate=8000, channels=1, dtype="int16"
    )
    return samples  # type: ignore[no-any-return]


def quantize(samples: np.ndarray, law: str) -> np.ndarray:
    """What a G.711 file can hold of ``samples``: the ITU reference encoder and decoder (CPython's
    audioop). Decoded G.711 values pass unchanged; only the sum of two streams on one side is
    rounded to a level."""
    audioop = pytest.importorskip("audioop")
    encode, decode = (
        (audioop.lin2ulaw, audioop.ulaw2lin) if law == "ULAW" else (audioop.lin2alaw, audioop.alaw2lin)
    )
    data = decode(encode(samples.astype("<i2").tobytes(), 2), 2)
    return np.frombuffer(data, dtype="<i2").reshape(samples.shape)


def expected_channel(
    packets: list[TsharkRtp], origin: float, end: float, length: int, channel: np.ndarray, covered: np.ndarray
) -> None:
    """Add one stream's audio into ``channel``: anchored at its first packet's capture time, then
    placed by RTP timestamp; duplicates once; packets after the call's end left out. ``covered``
    marks the samples that came from a packet."""
    kept = [p for p in packets if p.time <= end]
    first = kept[0]
    anchor = round((first.time - origin) * 8000)
    seen = set()
    for p in kept:
        if p.seq in seen or p.pt not in SUBTYPE:
            continue
        seen.add(p.seq)
        at = anchor + ((p.ts - first.ts) & 0xFFFFFFFF)
        audio = libsndfile_decode(p.payload, p.pt).astype(np.int32)
        n = max(0, min(len(audio), length - at))
        channel[at : at + n] += audio[:n]
        covered[at : at + n] = True


@pytest.mark.slow
@pytest.mark.parametrize("name", G711_CAPTURES)
def test_export_equals_independent_decode(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store, identity = new_store(tmp_path)
    pcap = PCAPS / f"{name}.pcap"
    assert main(["replay", str(pcap), "--store", str(store)]) == 0
    packets = tshark_rtp_packets(pcap)
    recorded = [c for c in calls_json(store, capsys) if c["recording"]]
    assert recorded
    for call in recorded:
        out = tmp_path / f"{call['id']}.wav"
        assert main(["export", call["id"], "--store", str(store), "--identity", str(identity),
                     "--format", "wav", "--out", str(out), "--reason", "test"]) == 0  # fmt: skip
        exported, rate = soundfile.read(out, dtype="int16", always_2d=True)
        assert rate == 8000 and exported.shape == (call["samples"], 2)
        streams = {leg["ssrc"]: packets[leg["ssrc"]] for leg in call["legs"]}
        origin = min(s[0].time for s in streams.values())  # the call's first media packet
        end = _epoch(call["end"])
        expected = np.zeros((len(exported), 2), dtype=np.int32)
        covered = np.zeros((len(exported), 2), dtype=bool)
        for leg in call["legs"]:
            if not leg["decoded"]:
                continue
            stream = streams[leg["ssrc"]]  # one stream per SSRC in these captures
            channel = 0 if leg["side"] == "caller" else 1
            column, mask = expected[:, channel].copy(), covered[:, channel].copy()
            expected_channel(stream, origin, end, len(exported), column, mask)
            expected[:, channel], covered[:, channel] = column, mask
        law = SUBTYPE[next(p.pt for leg in call["legs"] for p in streams[leg["ssrc"]] if p.pt in SUBTYPE)]
        expected[~covered] = libsndfile_decode(IDLE[law], 0 if law == "ULAW" else 8)[0]
        expected = quantize(np.clip(expected, -32768, 32767).astype(np.int16), law)
        assert np.count_nonzero(exported) > 0
        diff = np.flatnonzero((exported != expected).any(axis=1))
        assert not len(diff), (len(diff), diff[:5], exported[diff[:5]], expected[diff[:5]])


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@pytest.mark.slow
def test_age_tool_decrypts_recordings_that_sox_and_soundfile_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store, identity = new_store(tmp_path)
    assert main(["replay", str(PCAPS / "sip-dtmf2-rfc2833-603.pcap"), "--store", str(store)]) == 0
    (call,) = [c for c in calls_json(store, capsys) if c["recording"]]
    plain = tmp_path / "call.au"
    subprocess.run(["age", "-d", "-i", str(identity), "-o", str(plain), call["recording"]], check=True)
    info = subprocess.run(["soxi", str(plain)], check=True, capture_output=True, text=True).stdout
    assert "Channels       : 2" in info and "Sample Rate    : 8000" in info
    assert "A-law" in info
    data, rate = soundfile.read(plain, dtype="int16", always_2d=True)
    assert (rate, data.shape) == (8000, (call["samples"], 2))
