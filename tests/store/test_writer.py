from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from recorderd.errors import StoreError
from recorderd.store import age, au
from recorderd.store.writer import RecordingWriter
from tests.store.helpers import real_stereo


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def write_blocks(writer: RecordingWriter, samples: np.ndarray, block: int = 160) -> None:
    for start in range(0, len(samples), block):
        writer.append(start, samples[start : start + block])


@pytest.mark.parametrize("encoding", ["ulaw", "pcm16"])
def test_finish_gives_final_file_and_its_digest(
    encoding: str, tmp_path: Path, identity: str, recipient: str
) -> None:
    samples = real_stereo("ulaw")
    writer = RecordingWriter(tmp_path / "r.au.age", [recipient], encoding, 8000)
    assert mode(writer.part) == 0o600
    write_blocks(writer, samples)
    info = writer.finish()
    assert info.path == tmp_path / "r.au.age" and not writer.part.exists()
    assert mode(info.path) == 0o600
    data = info.path.read_bytes()
    assert (info.sha256, info.size, info.samples) == (
        hashlib.sha256(data).hexdigest(),
        len(data),
        len(samples),
    )
    rate, channels, got_encoding, got = au.read_au(age.decrypt(data, [identity]))
    assert (rate, channels, got_encoding) == (8000, 2, encoding)
    assert np.array_equal(got, samples)


def test_append_contract(tmp_path: Path, recipient: str) -> None:
    writer = RecordingWriter(tmp_path / "r.au.age", [recipient], "ulaw", 8000)
    writer.append(0, np.zeros((160, 2), np.int16))
    with pytest.raises(ValueError, match="starts at 320, the recording is 160 long"):
        writer.append(320, np.zeros((160, 2), np.int16))
    with pytest.raises(ValueError, match="starts at 0"):
        writer.append(0, np.zeros((160, 2), np.int16))
    with pytest.raises(ValueError, match="must be int16"):
        writer.append(160, np.zeros((160, 2), np.float32))
    with pytest.raises(ValueError, match="must be int16"):
        writer.append(160, np.zeros(160, np.int16))
    writer.finish()
    with pytest.raises(ValueError, match="already closed"):
        writer.append(160, np.zeros((160, 2), np.int16))


def test_refuses_to_reuse_a_part_file(tmp_path: Path, recipient: str) -> None:
    (tmp_path / "r.au.age.part").write_bytes(b"left by a crash")
    with pytest.raises(StoreError, match="cannot create recording"):
        RecordingWriter(tmp_path / "r.au.age", [recipient], "ulaw", 8000)
    assert (tmp_path / "r.au.age.part").read_bytes() == b"left by a crash"


def test_bad_encoding_leaves_no_file(tmp_path: Path, recipient: str) -> None:
    with pytest.raises(ValueError):
        RecordingWriter(tmp_path / "r.au.age", [recipient], "g729", 8000)
    with pytest.raises(StoreError):
        RecordingWriter(tmp_path / "r.au.age", ["age1bad"], "ulaw", 8000)
    assert list(tmp_path.iterdir()) == []


def test_crash_leaves_a_playable_prefix(tmp_path: Path, identity: str, recipient: str) -> None:
    """Copy the .part while the writer is open, as a crash would leave it."""
    samples = real_stereo("ulaw")  # 68,000 frames = 136,000 bytes: two sealed chunks, one pending
    writer = RecordingWriter(tmp_path / "r.au.age", [recipient], "ulaw", 8000)
    write_blocks(writer, samples)
    crashed = tmp_path / "crashed.au.age"
    shutil.copyfile(writer.part, crashed)
    writer.abandon()
    plain = bytearray()
    with open(crashed, "rb") as f, pytest.raises(age.TruncatedError):
        for chunk in age.decrypt_chunks(f, [identity]):
            plain += chunk
    assert len(plain) == 2 * age.CHUNK
    # What was sealed is a valid AU file whose last frame may be cut in half.
    prefix_frames = (2 * age.CHUNK - au.DATA_OFFSET) // 2
    rate, channels, _, got = au.read_au(bytes(plain))
    assert (rate, channels) == (8000, 2)
    assert np.array_equal(got, samples[:prefix_frames])
    path = tmp_path / "prefix.au"
    path.write_bytes(plain)
    soxi = subprocess.run(["soxi", "-s", str(path)], capture_output=True, text=True, check=True)
    assert soxi.stdout.strip() == str(prefix_frames)
    data, rate = sf.read(str(path), dtype="int16")
    assert rate == 8000 and np.array_equal(data, samples[:prefix_frames])


def test_fsync_is_bounded_by_audio_time(
    tmp_path: Path, recipient: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        calls.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    samples = real_stereo("ulaw")  # 8.5 s in 425 blocks of 20 ms
    writer = RecordingWriter(tmp_path / "r.au.age", [recipient], "ulaw", 8000)
    write_blocks(writer, samples)
    during = len(calls)
    assert 1 <= during <= 2  # at most one per 5 s of audio, and only once a chunk is sealed
    writer.finish()
    assert len(calls) == during + 2  # the file and its directory


def test_discard_unlinks(tmp_path: Path, recipient: str) -> None:
    writer = RecordingWriter(tmp_path / "r.au.age", [recipient], "ulaw", 8000)
    writer.append(0, np.zeros((8000, 2), np.int16))
    writer.discard()
    writer.discard()
    assert list(tmp_path.iterdir()) == []
    finished = RecordingWriter(tmp_path / "f.au.age", [recipient], "ulaw", 8000)
    finished.finish()
    finished.discard()
    assert list(tmp_path.iterdir()) == []


def test_empty_recording_is_a_valid_file(tmp_path: Path, identity: str, recipient: str) -> None:
    info = RecordingWriter(tmp_path / "r.au.age", [recipient], "alaw", 8000).finish()
    plain = b"".join(age.decrypt_chunks(io.BytesIO(info.path.read_bytes()), [identity]))
    assert plain == au.au_header("alaw", 8000, 2)
    assert info.samples == 0
