"""Export one recording as WAV, FLAC or MP3 for a stated reason, and log the access.

Order of work: find the call; check the ciphertext against the SHA-256 kept in the index (anyone
with the public recipient can mint a valid age file, so authentication alone does not show the file
is the one recorded); decrypt chunk by chunk, decode the AU frames and hand them to libsndfile
(``soundfile``) as they come, so memory stays bounded by a chunk; write ``<out>.part`` (0600) ->
fsync -> rename; then append an audit entry (audit.py) carrying the SHA-256 of the output.

An incomplete recording (cut by a crash) exports the prefix that authenticates, and the result says
so. WAV and FLAC are 16-bit PCM, sample-exact against the recording. MP3 is MPEG Layer III at the
recording's own rate: libsndfile's LAME encodes 8 kHz (MPEG 2.5) without resampling.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import soundfile as sf

from recorderd.errors import StoreError
from recorderd.store.age import TruncatedError, decrypt_chunks
from recorderd.store.au import HEADER_SIZE, AuHeader, decode_frames, parse_header
from recorderd.store.store import Store, file_sha256
from recorderd.store.writer import PART_SUFFIX, fsync_dir

FORMATS: dict[str, tuple[str, str]] = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}
_HASH_BLOCK = 1 << 20


@dataclass(frozen=True, slots=True)
class ExportResult:
    path: Path
    call: str  # the call's uuid
    format: str
    sha256: str  # of the exported file
    samples: int
    sample_rate: int
    complete: bool  # False: the recording ended without its final chunk; the prefix was exported
    recording_state: str  # the index's: 'complete' or 'incomplete'


def export_call(
    store: Store,
    call_ref: str,
    identities: Sequence[str],
    fmt: str,
    out: Path,
    reason: str,
    user: str,
    now: float | None = None,
) -> ExportResult:
    """Decrypt call ``call_ref``'s recording into ``out`` as ``fmt`` and log who did it and why."""
    if fmt not in FORMATS:
        raise StoreError(f"unknown export format {fmt!r} (choose wav, flac or mp3)")
    if not reason.strip():
        raise StoreError("an export needs a reason; it is kept in the access log")
    call = store.find(call_ref)
    samples, rate, complete, sha256 = write_audio(call, identities, fmt, Path(out))
    ts = time.time() if now is None else now
    store.index.log_access(ts, user, f"export-{fmt}", call["id"], reason, sha256)
    return ExportResult(Path(out), call["id"], fmt, sha256, samples, rate, complete, call["recording_state"])


def write_audio(
    call: dict[str, Any], identities: Sequence[str], fmt: str, out: Path
) -> tuple[int, int, bool, str]:
    """Decrypt a call's recording into ``out`` (not audited: the caller logs the access).

    Returns (frames, sample rate, stream complete, SHA-256 of ``out``).
    """
    if out.exists():
        raise StoreError(f"{out} already exists; not overwriting")
    with _open_source(call) as f:
        _check_digest(f, call)
        part = _create_part(out)
        try:
            samples, rate, complete = _transcode(f, identities, part, fmt, call["id"])
            _fsync(part)
            os.rename(part, out)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
    fsync_dir(out.parent)
    sha256, _ = file_sha256(out)
    return samples, rate, complete, sha256


def _open_source(call: dict[str, object]) -> BinaryIO:
    if call["recording"] is None:
        raise StoreError(f"call {call['id']} has no recording")
    if call["recording_state"] == "recording":
        raise StoreError(f"call {call['id']} is still being recorded; export it after it ends")
    if call["sha256"] is None:
        raise StoreError(f"the recording of call {call['id']} is missing")
    try:
        return open(str(call["recording"]), "rb")
    except OSError as exc:
        raise StoreError(f"cannot read recording {call['recording']}: {exc.strerror}") from None


def _create_part(out: Path) -> Path:
    """``<out>.part``, created 0600 (libsndfile keeps the mode when it opens it for writing)."""
    part = out.with_name(out.name + PART_SUFFIX)
    try:
        os.close(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as exc:
        raise StoreError(f"cannot create {part}: {exc.strerror}") from None
    return part


def _check_digest(f: BinaryIO, call: dict[str, object]) -> None:
    """Hash the open file, then rewind it: what is decrypted is what was checked."""
    digest = hashlib.sha256()
    while block := f.read(_HASH_BLOCK):
        digest.update(block)
    if digest.hexdigest() != call["sha256"]:
        raise StoreError(f"recording {call['recording']} does not match its index digest (altered?)")
    f.seek(0)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _transcode(
    f: BinaryIO, identities: Sequence[str], part: Path, fmt: str, uid: str
) -> tuple[int, int, bool]:
    """Stream the decrypted AU into ``part``; (frames written, sample rate, stream complete)."""
    pending = bytearray()
    target: tuple[sf.SoundFile, AuHeader] | None = None
    frames = 0
    complete = True
    try:
        try:
            for chunk in decrypt_chunks(f, identities):
                pending += chunk
                if target is None:
                    target = _start(pending, part, fmt)
                if target is not None:
                    frames += _write_frames(*target, pending, frames)
        except TruncatedError:
            complete = False
        if target is None:
            raise StoreError(
                f"the recording of call {uid} holds no audio (it was cut before its first chunk was sealed)"
            )
        if not frames:
            # Nothing to hear; and libsndfile cannot read back an empty FLAC or MP3 file it wrote.
            raise StoreError(f"the recording of call {uid} holds no audio")
        return frames, target[1].sample_rate, complete
    finally:
        if target is not None:
            target[0].close()


def _start(pending: bytearray, part: Path, fmt: str) -> tuple[sf.SoundFile, AuHeader] | None:
    """Once the AU header has arrived: drop it from ``pending`` and open the output file."""
    if len(pending) < HEADER_SIZE:
        return None
    header = parse_header(bytes(pending[:HEADER_SIZE]))
    if len(pending) < header.offset:
        return None
    del pending[: header.offset]
    container, subtype = FORMATS[fmt]
    try:
        output = sf.SoundFile(str(part), "w", header.sample_rate, header.channels, subtype, format=container)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise StoreError(
            f"cannot write {fmt} at {header.sample_rate} Hz, {header.channels} channels: {exc}"
        ) from None
    return output, header


def _write_frames(output: sf.SoundFile, header: AuHeader, pending: bytearray, done: int) -> int:
    """Write the whole frames in ``pending`` and drop them from it; a partial frame waits.

    Our recordings always say "size unknown"; a known size is honoured all the same.
    """
    whole = len(pending) // header.frame_size
    if header.size is not None:
        whole = max(0, min(whole, header.size // header.frame_size - done))
    if not whole:
        return 0
    data = bytes(pending[: whole * header.frame_size])
    del pending[: whole * header.frame_size]
    samples = decode_frames(data, header.encoding, header.channels)
    if output.format == "MP3":
        # libsndfile 1.2.2's MP3 encoder garbles 16-bit stereo writes (its short->LAME path copies
        # half the bytes: libsndfile PR #1106); its float path is sound and int16 / 32768 is exact.
        output.write(samples.astype(np.float32) / np.float32(32768))
    else:
        output.write(samples)
    return whole
