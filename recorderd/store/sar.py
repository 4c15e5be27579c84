"""Subject-access bundles: every recording involving one phone number, for a stated reason.

``recorderd sar --number N`` finds the calls with N (any spelling: see numbers.py) as either party,
within an optional time range, and writes into a new directory (0700, files 0600):

    README.txt          what the bundle is, who made it, when, why, and how to read it
    calls.csv           one row per call: times (UTC), direction, parties, duration, audio file
    calls.json          the same, as JSON
    <time>_<id>.wav     each call's recording (or .mp3), caller left, called party right
    SHA256SUMS          the SHA-256 of every file above (``sha256sum -c SHA256SUMS`` checks them)

With ``--zip`` the directory is packed into ``<DIR>.zip`` and removed. A recording that cannot be
given out (cut before its first chunk, altered, missing) is listed with the reason, never skipped
silently. The audit log gets one entry per call handed out (SHA-256 of its audio file) and one for
the bundle (SHA-256 of the zip, or of SHA256SUMS), all in one transaction after the bundle is
complete; a bundle that fails half-way is removed and not logged, since nothing was handed out.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recorderd.errors import StoreError
from recorderd.store.export import write_audio
from recorderd.store.keys import recipient_of
from recorderd.store.store import Store, file_sha256, iso_utc
from recorderd.store.writer import PART_SUFFIX, fsync_dir

SAR_FORMATS = ("wav", "mp3")
_FIELDS = (
    "id",
    "call_id",
    "start",
    "answer",
    "end",
    "duration_s",
    "direction",
    "from",
    "from_name",
    "to",
    "to_name",
    "end_reason",
    "recording_state",
    "audio_file",
    "audio_sha256",
    "note",
)


@dataclass(frozen=True, slots=True)
class SarResult:
    path: Path  # the directory, or the zip
    calls: int
    recordings: int  # audio files in the bundle
    unavailable: tuple[str, ...]  # "call <id>: why" for recordings that could not be given out
    sha256: str  # of the zip, or of SHA256SUMS


def subject_access(
    store: Store,
    number: str,
    identities: Sequence[str],
    fmt: str,
    out: Path,
    reason: str,
    user: str,
    now: float,
    since: float | None = None,
    until: float | None = None,
    zip_bundle: bool = False,
) -> SarResult:
    """Write the bundle for ``number`` into ``out`` and audit it (module docstring)."""
    if fmt not in SAR_FORMATS:
        raise StoreError(f"unknown format {fmt!r} for a subject-access bundle (choose wav or mp3)")
    if not reason.strip():
        raise StoreError("a subject-access export needs a reason; it is kept in the audit log")
    if not {recipient_of(i) for i in identities} & set(store.recipients):
        raise StoreError("none of the identities given opens this store's recordings (wrong identity file?)")
    calls = store.search(number=number, since=since, until=until)
    target = Path(str(out) + ".zip") if zip_bundle else out
    for path in {out, target}:
        if path.exists():
            raise StoreError(f"{path} already exists; not overwriting")
    _mkdir(out)
    try:
        rows, audio = _write_bundle(calls, identities, fmt, out, number, reason, user, now)
        sha256 = _pack(out, target) if zip_bundle else file_sha256(out / "SHA256SUMS")[0]
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        Path(str(target) + PART_SUFFIX).unlink(missing_ok=True)
        raise
    with store.index.transaction() as conn:
        for row in rows:
            if row["audio_sha256"]:
                store.index.audit(conn, now, user, f"sar-{fmt}", row["id"], reason, row["audio_sha256"])
        detail = {"calls": [r["id"] for r in rows], "bundle": target.name}
        store.index.audit(conn, now, user, "sar-bundle", None, reason, sha256, detail)
    unavailable = tuple(f"call {r['id']}: {r['note']}" for r in rows if r["note"])
    return SarResult(target, len(rows), audio, unavailable, sha256)


def _write_bundle(
    calls: list[dict[str, Any]],
    identities: Sequence[str],
    fmt: str,
    out: Path,
    number: str,
    reason: str,
    user: str,
    now: float,
) -> tuple[list[dict[str, Any]], int]:
    rows = [_audio(call, identities, fmt, out) for call in calls]
    audio = sum(1 for r in rows if r["audio_file"])
    _write(out / "calls.json", json.dumps(rows, indent=2, ensure_ascii=False).encode() + b"\n")
    _write(out / "calls.csv", _csv(rows))
    readme = README.format(
        number=number,
        made=iso_utc(now),
        user=user,
        reason=reason,
        calls=len(rows),
        audio=audio,
        fmt=fmt.upper(),
    )
    _write(out / "README.txt", readme.encode())
    sums = "".join(f"{file_sha256(p)[0]}  {p.name}\n" for p in sorted(out.iterdir()))
    _write(out / "SHA256SUMS", sums.encode())
    fsync_dir(out)
    return rows, audio


def _audio(call: dict[str, Any], identities: Sequence[str], fmt: str, out: Path) -> dict[str, Any]:
    """The call's bundle row, after writing its audio file when it has one to give."""
    row = {k: call.get(k) for k in _FIELDS if k in call}
    row.update(audio_file=None, audio_sha256=None, note=None)
    if call["recording"] is None:
        row["note"] = "no recording (the call had no media, or it was opted out)"
        return row
    start = (call["start"] or "").replace("-", "").replace(":", "").split(".")[0]
    name = f"{start}Z_{call['id'][:12]}.{fmt}"
    try:
        _, _, complete, sha256 = write_audio(call, identities, fmt, out / name)
    except StoreError as exc:
        row["note"] = f"recording not included: {exc}"
        return row
    row.update(audio_file=name, audio_sha256=sha256)
    if not complete:
        row["note"] = "the recording was cut short (recorder stopped mid-call); this is what was saved"
    return row


def _csv(rows: list[dict[str, Any]]) -> bytes:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=_FIELDS, lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in _FIELDS})
    return text.getvalue().encode()


def _pack(directory: Path, target: Path) -> str:
    """Zip ``directory`` into ``target`` (.part -> fsync -> rename), remove it; the zip's SHA-256."""
    part = Path(str(target) + PART_SUFFIX)
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(directory.iterdir()):
                archive.write(path, f"{directory.name}/{path.name}")
        f.flush()
        os.fsync(f.fileno())
    os.rename(part, target)
    fsync_dir(target.parent)
    shutil.rmtree(directory)
    digest = hashlib.sha256()
    with open(target, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(0o700)
        os.chmod(path, 0o700)
    except OSError as exc:
        raise StoreError(f"cannot create {path}: {exc.strerror}") from None


def _write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


README = """\
Subject-access bundle
=====================

Calls involving the number {number}, as recorded by this practice's call recorder.

Made {made} by {user}.
Reason given: {reason}

Contents
--------
{calls} call(s) found; {audio} recording(s) included as {fmt} audio files.

calls.csv / calls.json   one entry per call: start, answer and end times (UTC, ISO 8601), direction,
                         the two parties as the phone system named them, how the call ended, and the
                         name and SHA-256 of its audio file. "note" explains any call without audio.
*.wav / *.mp3            one file per call, stereo: the caller on the left channel, the called party
                         on the right. Silence marks pauses, holds and lost network packets.
SHA256SUMS               a checksum of every file; `sha256sum -c SHA256SUMS` shows none was changed.

A call listed without audio had no media (not answered), was opted out of recording, or its recording
could not be included; its note says which. This bundle contains personal data: keep it secure and
delete it when it is no longer needed.
"""
