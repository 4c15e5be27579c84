from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from recorderd.codecs.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from recorderd.errors import StoreError
from recorderd.store import au
from tests.store.helpers import real_stereo

SUBTYPES = {"ulaw": "ULAW", "alaw": "ALAW", "pcm16": "PCM_16"}
SOX_ENCODINGS = {"ulaw": "u-law", "alaw": "A-law", "pcm16": "Signed Integer PCM"}


def test_header_bytes() -> None:
    assert au.au_header("ulaw", 8000, 2) == bytes.fromhex(
        "2e736e64 0000001c ffffffff 00000001 00001f40 00000002 00000000"
    )
    assert au.au_header("alaw", 8000, 2)[12:16] == (27).to_bytes(4, "big")
    assert au.au_header("pcm16", 16000, 1)[12:24] == bytes.fromhex("00000003 00003e80 00000001")
    with pytest.raises(ValueError):
        au.au_header("g729", 8000, 2)


def test_encode_frames_interleaves() -> None:
    samples = np.array([[0, 8], [-8, 1000]], dtype=np.int16)
    assert au.encode_frames(samples, "pcm16") == bytes.fromhex("0000 0008 fff8 03e8")
    assert au.encode_frames(samples, "ulaw") == ulaw_encode(samples.reshape(-1)).tobytes()
    assert au.encode_frames(samples, "alaw") == alaw_encode(samples.reshape(-1)).tobytes()
    assert au.encode_frames(np.array([[0, 0]], np.int16), "ulaw") == b"\xff\xff"
    assert au.encode_frames(np.array([[8, 8]], np.int16), "alaw") == b"\xd5\xd5"


@pytest.mark.parametrize("encoding", ["ulaw", "alaw", "pcm16"])
def test_read_au_round_trip_on_real_audio(encoding: str) -> None:
    samples = real_stereo("alaw" if encoding == "alaw" else "ulaw")
    data = au.au_header(encoding, 8000, 2) + au.encode_frames(samples, encoding)
    rate, channels, got_encoding, got = au.read_au(data)
    assert (rate, channels, got_encoding) == (8000, 2, encoding)
    # G.711 input re-encoded as G.711 is lossless, as is 16-bit PCM.
    assert np.array_equal(got, samples)


def test_read_au_drops_partial_frame_and_honours_known_size() -> None:
    samples = np.arange(20, dtype=np.int16).reshape(10, 2)
    data = au.au_header("pcm16", 8000, 2) + au.encode_frames(samples, "pcm16")
    assert np.array_equal(au.read_au(data[:-1])[3], samples[:9])
    assert np.array_equal(au.read_au(data[:-4])[3], samples[:9])
    sized = data[:8] + (12).to_bytes(4, "big") + data[12:]
    assert np.array_equal(au.read_au(sized)[3], samples[:3])
    assert au.read_au(data[: au.DATA_OFFSET])[3].shape == (0, 2)


def test_read_au_errors() -> None:
    header = au.au_header("ulaw", 8000, 2)
    cases = [
        (header[:10], "recording: AU header truncated (10 < 24 bytes)"),
        (b"RIFF" + header[4:], "recording: not a Sun AU file"),
        (
            header[:12] + (2).to_bytes(4, "big") + header[16:],
            "recording: unsupported AU encoding 2",
        ),
        (header[:4] + (8).to_bytes(4, "big") + header[8:], "recording: malformed AU header"),
        (header[:26], "recording: AU header truncated (26 < 28 bytes)"),
    ]
    for data, message in cases:
        with pytest.raises(StoreError) as err:
            au.read_au(data)
        assert str(err.value) == message


@pytest.mark.parametrize("encoding", ["ulaw", "alaw", "pcm16"])
def test_sox_and_soundfile_read_our_files(encoding: str, tmp_path: Path) -> None:
    samples = real_stereo("alaw" if encoding == "alaw" else "ulaw")[:12345]
    path = tmp_path / "r.au"
    # A trailing partial frame, as a file cut mid-write has.
    path.write_bytes(au.au_header(encoding, 8000, 2) + au.encode_frames(samples, encoding) + b"\1")
    soxi = subprocess.run(["soxi", str(path)], capture_output=True, text=True, check=True)
    assert "WARN" not in soxi.stderr
    assert "Channels       : 2" in soxi.stdout
    assert "Sample Rate    : 8000" in soxi.stdout
    assert f"Sample Encoding: {'16-bit ' if encoding == 'pcm16' else '8-bit '}" in soxi.stdout
    assert SOX_ENCODINGS[encoding] in soxi.stdout
    assert "= 12345 samples" in soxi.stdout
    info = sf.info(str(path))
    assert (info.format, info.subtype) == ("AU", SUBTYPES[encoding])
    assert (info.samplerate, info.channels, info.frames) == (8000, 2, 12345)
    data, _ = sf.read(str(path), dtype="int16")
    decode = {"ulaw": ulaw_decode, "alaw": alaw_decode}.get(encoding)
    expected = samples if decode is None else decode(au.encode_frames(samples, encoding))
    assert np.array_equal(data.reshape(-1), np.asarray(expected).reshape(-1))
