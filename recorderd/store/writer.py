"""One call's recording on disk: AU frames, age-encrypted as they arrive, in ``<name>.part``; and how
the store makes what its writers wrote durable.

Lifecycle: created by the store when a call's first media arrives; ``append`` for every audio
block; then ``seal`` (the final chunk), ``datasync`` or a :class:`Durability` pass, ``publish`` (rename
to the final name) and an fsync of the directory; ``finish`` does those four for one writer. Or
``discard`` (opt-out: unlink). The sink runs seal, sync, rename and directory fsync for every call
that ended in a batch at once (sink.py), so a batch costs one sync, not one per call.

Durability is by wall clock, not per writer: from ``flush()`` the sink runs a sync pass over every
writer that sealed a chunk since the previous pass, once per :data:`FSYNC_EVERY_S` seconds of wall time
(``time.monotonic``): no more often, and (flush being called often enough, sink.py) no later. A pass
is one ``syncfs(2)`` on the recordings' filesystem (all its files in one system call) where the kernel
has it, else an ``fdatasync`` per writer.

What a crash can lose (the bound the design promises):

* the process dies: only the unsealed chunk, at most 64 KiB of AU data, which is about 4.1 s of
  stereo G.711 (16,000 bytes/s) or 2.0 s of stereo 16-bit PCM at 8 kHz. Every sealed chunk is handed
  to the OS at once (the file is unbuffered), so what the process wrote survives it. (Audio the sink
  holds for a recording whose file it has not opened yet is less than one chunk: the sink flushes
  before it would reach one.)
* the machine loses power: in addition, the chunks sealed since the last sync pass, at most
  :data:`FSYNC_EVERY_S` seconds of wall time, which in live capture are that many seconds of audio.

Either way the ``.part`` file holds a header and whole sealed chunks, so it decrypts to a valid,
playable AU prefix (see ``store.py`` ``recover``).
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from recorderd.errors import StoreError
from recorderd.store.age import AgeWriter
from recorderd.store.au import BYTES_PER_SAMPLE, au_header, encode_frames

FSYNC_EVERY_S = 5.0  # wall-clock seconds between sync passes (the power-loss bound); a chunk is 2-4 s
CHANNELS = 2
PART_SUFFIX = ".part"
_G711 = ("ulaw", "alaw")


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


def check_block(length: int, encoding: str, start: int, samples: NDArray[np.generic]) -> None:
    """ValueError unless ``samples`` may extend a recording of ``length`` frames: shape (n, 2),
    starting at ``length``; int16 linear samples, or uint8 codes of the recording's G.711 law."""
    if start != length:
        raise ValueError(f"audio block starts at {start}, the recording is {length} long")
    kind = samples.dtype.char  # a one-letter str: cheaper to compare than the dtype itself
    if (
        samples.ndim != 2
        or samples.shape[1] != CHANNELS
        or not (kind == "h" or (kind == "B" and encoding in _G711))
    ):
        raise ValueError(f"audio block must be int16 (n, 2), got {samples.dtype} {samples.shape}")


def block_bytes(encoding: str, frames: int) -> int:
    """AU data bytes of ``frames`` stereo frames in ``encoding``."""
    return frames * CHANNELS * BYTES_PER_SAMPLE[encoding]


def _encode(samples: NDArray[np.generic], encoding: str) -> bytes | memoryview:
    if samples.dtype.char == "B":
        # G.711 codes of the recording's law (check_block), passed through without a copy
        return samples.data if samples.flags.c_contiguous else samples.tobytes()
    return encode_frames(samples.astype(np.int16, copy=False), encoding)


def _create(part: str, make_parent: Callable[[Path], None] | None) -> int:
    """Create ``part`` 0600 and exclusively. When its directory is missing and ``make_parent`` is
    given, make the directory and try again: a directory that exists costs no extra system call."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        return os.open(part, flags, 0o600)
    except FileNotFoundError:
        if make_parent is None:
            raise
    make_parent(Path(part).parent)
    return os.open(part, flags, 0o600)


class RecordingWriter:
    """Writes one stereo recording to ``path`` + ".part"; the module docstring says what is lost.

    ``make_parent``: creates the directory when it does not exist yet (Store.open_recording).
    """

    def __init__(
        self,
        path: Path,
        recipients: list[str],
        encoding: str,
        sample_rate: int,
        make_parent: Callable[[Path], None] | None = None,
    ) -> None:
        self.path = path
        self._part = f"{path}{PART_SUFFIX}"
        self.encoding = encoding
        self.sample_rate = sample_rate
        self.samples = 0
        self._synced_chunks = 0
        self._sealed = False  # the final chunk is written: no more audio
        self._done = False  # the descriptor is closed
        header = au_header(encoding, sample_rate, CHANNELS)  # ValueError before any file exists
        try:
            fd = _create(self._part, make_parent)
        except OSError as exc:
            raise StoreError(f"cannot create recording {self._part}: {exc.strerror}") from None
        self._file = _HashingFile(fd)
        try:
            self.dev = os.fstat(fd).st_dev  # which filesystem a syncfs must cover
            self._age = AgeWriter(self._file, recipients)
            self._age.write(header)
        except BaseException:
            os.close(fd)
            os.unlink(self._part)
            raise

    @property
    def part(self) -> Path:
        """Where the recording is while it is written."""
        return Path(self._part)

    @property
    def fd(self) -> int:
        return self._file.fd

    @property
    def unsynced(self) -> bool:
        """Has a chunk been sealed (handed to the OS) since the last sync that covered this file?"""
        return not self._done and self._age.chunks > self._synced_chunks

    def synced(self) -> None:
        """Note that a sync covered everything written so far (``Durability.sync`` succeeded)."""
        self._synced_chunks = self._age.chunks

    def append(self, start: int, samples: NDArray[np.generic]) -> None:
        """Add ``samples`` (shape (n, 2)) starting at frame ``start``, the current length."""
        if self._sealed or self._done:
            raise ValueError(f"recording {self.path.name} is already closed")
        check_block(self.samples, self.encoding, start, samples)
        try:
            self._age.write(_encode(samples, self.encoding))
            self.samples += len(samples)
        except OSError as exc:
            # The chunk being sealed may be half on disk: writing on would misalign the stream.
            # Stop here; the sealed chunks before it stay a valid prefix that recovery keeps.
            self.abandon()
            raise write_error(f"cannot write recording {self._part}", exc) from None

    def seal(self) -> None:
        """Write the final chunk; the ``.part`` then holds the whole recording (not yet durable)."""
        if self._sealed or self._done:
            raise ValueError(f"recording {self.path.name} is already closed")
        try:
            self._age.close()
            self._sealed = True
        except OSError as exc:
            self.abandon()
            raise write_error(f"cannot finish recording {self.path}", exc) from None

    def datasync(self) -> None:
        """fdatasync(2) the ``.part``: its data on stable storage. OSError as the kernel says."""
        os.fdatasync(self._file.fd)

    def publish(self) -> RecordingInfo:
        """Close the sealed, synced ``.part`` and rename it to the final name; the caller fsyncs the
        directory (once for every recording published in it)."""
        if not self._sealed or self._done:
            raise ValueError(f"recording {self.path.name} is not sealed, or already closed")
        self._done = True
        try:
            os.close(self._file.fd)
            os.rename(self._part, self.path)
        except OSError as exc:
            raise write_error(f"cannot finish recording {self.path}", exc) from None
        return RecordingInfo(self.path, self._file.sha256.hexdigest(), self._file.size, self.samples)

    def finish(self) -> RecordingInfo:
        """Seal the final chunk, make it durable and give the recording its final name."""
        self.seal()
        try:
            self.datasync()
        except OSError as exc:
            self.abandon()
            raise write_error(f"cannot finish recording {self.path}", exc) from None
        info = self.publish()
        try:
            fsync_dir(self.path.parent)
        except OSError as exc:
            raise write_error(f"cannot finish recording {self.path}", exc) from None
        return info

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


# --------------------------------------------------------------------------------------------------
# Durability: one syncfs for every file of the store


def _load_syncfs() -> Callable[[int], int] | None:
    """libc's syncfs(2) (Linux 2.6.39, glibc 2.14), or None where it does not exist."""
    try:
        function = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int]
    function.restype = ctypes.c_int
    return function


_SYNCFS = _load_syncfs()


def syncfs(fd: int) -> None:
    """syncfs(2) on the filesystem holding ``fd``; OSError when it returns -1.

    Since Linux 5.8 it also reports a writeback error on any file of that filesystem that happened
    since ``fd`` was opened (once per descriptor), so ``fd`` should be an old one.
    """
    if _SYNCFS is None:
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))
    if _SYNCFS(fd) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class Durability:
    """Makes recordings durable in as few system calls as the kernel allows.

    Holds a descriptor of ``directory`` (the store's ``recordings/``), opened before any writer, as
    the handle for ``syncfs(2)``: one call writes back every file on that filesystem. Writers on
    another filesystem (a mount below ``recordings/``), or every writer where syncfs does not exist,
    get an ``fdatasync`` each. Caller closes.
    """

    def __init__(self, directory: Path) -> None:
        self.fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        self.dev = os.fstat(self.fd).st_dev

    @property
    def whole_filesystem(self) -> bool:
        """Does a sync write back every writer on the recordings' filesystem, asked for or not?"""
        return _SYNCFS is not None

    def sync(self, writers: Sequence[RecordingWriter]) -> list[tuple[RecordingWriter | None, OSError]]:
        """Put what ``writers`` wrote on stable storage; the failures, each (writer, error), or
        (None, error) for a syncfs error that no writer's own fdatasync repeated. Every writer not
        named in a failure is marked synced."""
        if not writers:
            return []
        each = list(writers)
        fs_error: OSError | None = None
        if self.whole_filesystem and any(w.dev == self.dev for w in each):
            try:
                syncfs(self.fd)
                each = [w for w in each if w.dev != self.dev]
            except OSError as exc:
                # The error is the filesystem's: each file's own fdatasync says which writer it hit
                # (a file's error stays pending for its own descriptor after syncfs reported it).
                fs_error = exc
        failures: list[tuple[RecordingWriter | None, OSError]] = []
        for writer in each:
            try:
                writer.datasync()
            except OSError as exc:
                failures.append((writer, exc))
        if fs_error is not None and not failures:
            failures.append((None, fs_error))
        failed = {id(w) for w, _ in failures}
        for writer in writers:
            if id(writer) not in failed:
                writer.synced()
        return failures

    def close(self) -> None:
        os.close(self.fd)
