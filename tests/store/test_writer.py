from __future__ import annotations

import errno
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

from recorderd.codecs.g711 import ulaw_encode
from recorderd.errors import StoreError
from recorderd.store import age, au
from recorderd.store import writer as writer_module
from recorderd.store.writer import Durability, RecordingWriter, syncfs
from tests.store.helpers import real_stereo
from tests.store.sync_calls import failing_syncfs, sync_calls


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


def test_append_never_syncs_and_finish_syncs_once(
    tmp_path: Path, recipient: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = sync_calls(monkeypatch)
    samples = real_stereo("ulaw")  # 8.5 s in 425 blocks of 20 ms: two chunks sealed
    writer = RecordingWriter(tmp_path / "r.au.age", [recipient], "ulaw", 8000)
    assert not writer.unsynced
    write_blocks(writer, samples)
    assert calls == []  # durability is the sink's wall-clock pass (Durability), not the writer's
    assert writer.unsynced
    writer.finish()
    assert calls == ["fdatasync", "fsync"]  # the file's data, then the directory holding its new name


def sealed_writers(directory: Path, recipient: str, n: int) -> list[RecordingWriter]:
    writers = [RecordingWriter(directory / f"r{i}.au.age", [recipient], "ulaw", 8000) for i in range(n)]
    for writer in writers:
        write_blocks(writer, real_stereo("ulaw")[:40000], block=8000)  # 80,000 bytes: one chunk sealed
        assert writer.unsynced
    return writers


@pytest.mark.skipif(writer_module._SYNCFS is None, reason="no syncfs(2) here")
def test_one_syncfs_makes_every_writer_durable(
    tmp_path: Path, recipient: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    writers = sealed_writers(tmp_path, recipient, 3)
    calls = sync_calls(monkeypatch)
    durability = Durability(tmp_path)
    assert durability.sync(writers) == []
    assert calls == ["syncfs"]
    assert not any(w.unsynced for w in writers)
    assert durability.sync([]) == [] and calls == ["syncfs"]
    durability.close()


def test_fdatasync_each_where_there_is_no_syncfs(
    tmp_path: Path, recipient: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    writers = sealed_writers(tmp_path, recipient, 3)
    calls = sync_calls(monkeypatch)
    monkeypatch.setattr(writer_module, "_SYNCFS", None)
    durability = Durability(tmp_path)
    assert durability.sync(writers) == []
    assert calls == ["fdatasync"] * 3
    assert not any(w.unsynced for w in writers)
    with pytest.raises(OSError, match="not implemented"):
        syncfs(durability.fd)
    durability.close()


def test_a_syncfs_error_is_pinpointed_by_each_files_own_sync(
    tmp_path: Path, recipient: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    writers = sealed_writers(tmp_path, recipient, 3)
    monkeypatch.setattr(writer_module, "_SYNCFS", failing_syncfs(errno.EIO))
    durability = Durability(tmp_path)
    with pytest.raises(OSError, match="Input/output error"):
        syncfs(durability.fd)
    # No file's own fdatasync fails: the error was another file's on that filesystem.
    ((who, error),) = durability.sync(writers)
    assert who is None and error.errno == errno.EIO
    assert not any(w.unsynced for w in writers)  # each one's fdatasync succeeded
    more = real_stereo("ulaw")[40000:68000]
    for writer in writers:
        writer.append(40000, more)  # one more chunk each
        assert writer.unsynced
    bad = writers[1].fd
    real_fdatasync = os.fdatasync

    def fdatasync(fd: int) -> None:
        if fd == bad:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    ((who, error),) = durability.sync(writers)
    assert who is writers[1] and error.errno == errno.EIO
    assert [w.unsynced for w in writers] == [False, True, False]
    durability.close()


def test_g711_codes_are_written_as_they_are(tmp_path: Path, identity: str, recipient: str) -> None:
    """uint8 blocks are codes of the recording's law (the engine passes G.711 through)."""
    samples = real_stereo("ulaw")[:16000]
    codes = ulaw_encode(samples.reshape(-1)).reshape(-1, 2)
    writer = RecordingWriter(tmp_path / "r.au.age", [recipient], "ulaw", 8000)
    writer.append(0, codes[:8000])
    writer.append(8000, samples[8000:])  # linear blocks still work
    info = writer.finish()
    plain = age.decrypt(info.path.read_bytes(), [identity])
    assert plain[au.DATA_OFFSET :] == codes.tobytes()
    pcm = RecordingWriter(tmp_path / "p.au.age", [recipient], "pcm16", 8000)
    with pytest.raises(ValueError, match="must be int16"):
        pcm.append(0, codes)
    pcm.discard()


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


@pytest.mark.parametrize(
    ("dtype", "shape", "encoding", "ok"),
    [
        (np.int16, (4, 2), "ulaw", True),
        (np.int16, (4, 2), "pcm16", True),
        (np.uint8, (4, 2), "ulaw", True),
        (np.uint8, (4, 2), "alaw", True),
        (np.uint8, (4, 2), "pcm16", False),  # codes only for a G.711 recording
        (np.int8, (4, 2), "ulaw", False),
        (np.uint16, (4, 2), "ulaw", False),
        (np.int32, (4, 2), "pcm16", False),
        (np.float32, (4, 2), "pcm16", False),
        (np.int16, (4, 1), "ulaw", False),
        (np.int16, (4, 2, 1), "ulaw", False),
        (np.uint8, (8,), "ulaw", False),
    ],
)
def test_check_block_types(dtype: type, shape: tuple[int, ...], encoding: str, ok: bool) -> None:
    samples: np.ndarray = np.zeros(shape, dtype)
    if ok:
        writer_module.check_block(0, encoding, 0, samples)
    else:
        with pytest.raises(ValueError, match="must be int16"):
            writer_module.check_block(0, encoding, 0, samples)


def test_code_blocks_that_are_views_are_written_as_they_are(
    tmp_path: Path, identity: str, recipient: str
) -> None:
    """Codes handed over as views (contiguous or strided), as the engine's blocks are, and changed by
    their owner after append: the recording keeps what they held at append."""
    codes = ulaw_encode(real_stereo("ulaw")[:24000].reshape(-1)).reshape(-1, 2)
    wide = np.repeat(codes, 2, axis=0)  # every frame twice: [::2] is a strided view of codes
    writer = RecordingWriter(tmp_path / "r.au.age", [recipient], "ulaw", 8000)
    block = codes[:8000].copy()
    writer.append(0, block)
    block[:] = 0xFF  # the owner reuses its array
    writer.append(8000, wide[16000:32000:2])
    writer.append(16000, codes[16000:])
    info = writer.finish()
    assert age.decrypt(info.path.read_bytes(), [identity])[au.DATA_OFFSET :] == codes.tobytes()


def test_a_missing_directory_is_made_when_asked(tmp_path: Path, recipient: str) -> None:
    made: list[Path] = []

    def make_parent(path: Path) -> None:
        made.append(path)
        path.mkdir(0o700, parents=True)

    writer = RecordingWriter(tmp_path / "a" / "b" / "r.au.age", [recipient], "ulaw", 8000, make_parent)
    assert made == [tmp_path / "a" / "b"] and writer.part.exists()
    writer.finish()
    RecordingWriter(tmp_path / "a" / "b" / "s.au.age", [recipient], "ulaw", 8000, make_parent).discard()
    assert made == [tmp_path / "a" / "b"]  # an existing directory is not made again
    with pytest.raises(StoreError, match="cannot create recording .*: No such file or directory"):
        RecordingWriter(tmp_path / "c" / "r.au.age", [recipient], "ulaw", 8000)
