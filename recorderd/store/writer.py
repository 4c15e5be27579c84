"""One call's recording on disk: AU frames, age-encrypted as they arrive, in ``<name>.part``.

Lifecycle: created by the store when a call's first media arrives; ``append`` for every audio
block; then ``finish`` (seal the final chunk, fsync, rename to the final name, fsync the directory)
or ``discard`` (opt-out: unlink).

What a crash can lose (the bound the design promises):

* the process dies: only the unsealed chunk, at most 64 KiB of AU data, which is about 4.1 s of
  stereo G.711 (16,000 bytes/s) or 2.0 s of stereo 16-bit PCM at 8 kHz. Every sealed chunk is handed
  to the OS at once (the file is unbuffered), so what the process wrote survives it.
* the machine loses power: in addition, what the OS had not yet written of the chunks sealed since
  the last fsync, at most :data:`FSYNC_EVERY_S` seconds of audio plus one chunk.

Either way the ``.part`` file holds a header and whole sealed chunks, so it decrypts to a valid,
playable AU prefix (see ``store.py`` ``recover``).
"""

from __future__ import annotations

import errno
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from recorderd.errors import StoreError
from recorderd.store.age import AgeWriter
from recorderd.store.au import au_header, encode_frames

FSYNC_EVERY_S = 5.0  # seconds of audio between fsyncs; a chunk is about 2-4 s, so every chunk or two
CHANNELS = 2
PART_SUFFIX = ".part"


@dataclass(frozen=True, slots=True)
class RecordingInfo:
    path: Path
    sha256: str  # of the ciphertext, hex
    size: int  # ciphertext bytes
    samples: int  # frames of audio in the recording


class _HashingFile:
    """An unbuffered file that hashes what it writes, so the digest needs no second read."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes, /) -> int:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]
        self.sha256.update(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        """Nothing is buffered in the process."""

    def fileno(self) -> int:
        return self.fd


def write_error(what: str, exc: OSError) -> StoreError:
    """A StoreError for a failed write; a full disk is said in plain words."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreError(f"disk full: {what} (free space on the store's disk; what was saved is kept)")
    return StoreError(f"{what}: {exc.strerror}")


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in ``path`` durable (POSIX needs the directory itself synced)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class RecordingWriter:
    """Writes one stereo recording to ``path`` + ".part"; the module docstring says what is lost."""

    def __init__(self, path: Path, recipients: list[str], encoding: str, sample_rate: int) -> None:
        self.path = path
        self.part = path.with_name(path.name + PART_SUFFIX)
        self.encoding = encoding
        self.sample_rate = sample_rate
        self.samples = 0
        self._fsync_every = int(FSYNC_EVERY_S * sample_rate)
        self._synced_at = 0
        self._done = False
        header = au_header(encoding, sample_rate, CHANNELS)  # ValueError before any file exists
        try:
            fd = os.open(self.part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot create recording {self.part}: {exc.strerror}") from None
        self._file = _HashingFile(fd)
        try:
            self._age = AgeWriter(self._file, recipients)
            self._age.write(header)
        except BaseException:
            os.close(fd)
            self.part.unlink()
            raise

    def append(self, start: int, samples: NDArray[np.int16]) -> None:
        """Add ``samples`` (shape (n, 2)) starting at frame ``start``, the current length."""
        if self._done:
            raise ValueError(f"recording {self.path.name} is already closed")
        if start != self.samples:
            raise ValueError(f"audio block starts at {start}, the recording is {self.samples} long")
        if samples.ndim != 2 or samples.shape[1] != CHANNELS or samples.dtype != np.int16:
            raise ValueError(f"audio block must be int16 (n, 2), got {samples.dtype} {samples.shape}")
        try:
            self._age.write(encode_frames(samples, self.encoding))
            self.samples += len(samples)
            if self.samples - self._synced_at >= self._fsync_every and self._age.chunks:
                os.fsync(self._file.fd)
                self._synced_at = self.samples
        except OSError as exc:
            # The chunk being sealed may be half on disk: writing on would misalign the stream.
            # Stop here; the sealed chunks before it stay a valid prefix that recovery keeps.
            self.abandon()
            raise write_error(f"cannot write recording {self.part}", exc) from None

    def finish(self) -> RecordingInfo:
        """Seal the final chunk, make it durable and give the recording its final name."""
        if self._done:
            raise ValueError(f"recording {self.path.name} is already closed")
        try:
            self._age.close()
            os.fsync(self._file.fd)
            self._done = True
            os.close(self._file.fd)
            os.rename(self.part, self.path)
            fsync_dir(self.path.parent)
        except OSError as exc:
            self.abandon()
            raise write_error(f"cannot finish recording {self.path}", exc) from None
        return RecordingInfo(self.path, self._file.sha256.hexdigest(), self._file.size, self.samples)

    def discard(self) -> None:
        """Remove the recording, finished or not (opt-out). Idempotent."""
        if not self._done:
            self._done = True
            os.close(self._file.fd)
        for path in (self.part, self.path):
            path.unlink(missing_ok=True)
        fsync_dir(self.path.parent)

    def abandon(self) -> None:
        """Close the file descriptor and leave the ``.part`` as a crash would (tests, shutdown)."""
        if not self._done:
            self._done = True
            os.close(self._file.fd)
