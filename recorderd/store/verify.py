"""``recorderd verify``: does what is on disk agree with the index, and is the audit chain sound?

Needs no identity: it compares each ciphertext with the SHA-256 and size the index recorded when the
recording was finished (anyone holding the public recipient could mint a valid age file, so a file
that decrypts is not thereby the one recorded). Findings, each with the call and path:

=============  ======================================================================================
missing        the index lists a recording (complete or incomplete) whose file is not there
altered        the file is there but its SHA-256 or size differs from the index's
orphaned       a file under ``recordings/`` that no index row names
not-erased     the index says erased or opted out, yet the file is still there
unrecovered    a ``.part`` whose row says 'recording' while no process holds the writer lock
=============  ======================================================================================

Then SQLite's own ``PRAGMA integrity_check`` and ``foreign_key_check``, and the audit chain
(``audit.verify``).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from recorderd.store import audit
from recorderd.store.store import LOCK_FILE, RECORDINGS, Store, file_sha256
from recorderd.store.writer import PART_SUFFIX


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str
    call: str | None
    path: str  # relative to the store root
    detail: str

    def __str__(self) -> str:
        call = f"call {self.call}: " if self.call else ""
        return f"{self.kind}: {call}{self.path}: {self.detail}"


@dataclass(frozen=True, slots=True)
class VerifyReport:
    recordings: int  # index rows checked
    files: int  # files found under recordings/
    findings: tuple[Finding, ...]
    database: tuple[str, ...]  # problems SQLite reports
    audit: audit.AuditReport

    @property
    def ok(self) -> bool:
        return not self.findings and not self.database and self.audit.ok


def verify_store(store: Store) -> VerifyReport:
    rows = store.index.conn.execute("SELECT call, path, sha256, size, state FROM recordings").fetchall()
    on_disk = _files(store.root)
    live = _writer_alive(store)
    findings: list[Finding] = []
    named: set[str] = set()
    for row in rows:
        path, part = row["path"], row["path"] + PART_SUFFIX
        named.update((path, part))
        findings += _check_row(store.root, row, path in on_disk, part in on_disk, live)
    findings += [
        Finding("orphaned", None, f, "no index row names this file") for f in sorted(on_disk - named)
    ]
    return VerifyReport(
        len(rows),
        len(on_disk),
        tuple(findings),
        _database(store),
        audit.verify(store.index.conn, store.audit_public_key),
    )


def _check_row(root: Path, row: sqlite3.Row, exists: bool, part: bool, live: bool) -> list[Finding]:
    call, path, state = row["call"], row["path"], row["state"]
    if state in ("erased", "opted-out"):
        leftover = [p for p, there in ((path, exists), (path + PART_SUFFIX, part)) if there]
        return [Finding("not-erased", call, p, f"the index says {state}") for p in leftover]
    if state == "recording":
        if live:
            return []
        if part:
            return [
                Finding("unrecovered", call, path + PART_SUFFIX, "interrupted; the next writer recovers it")
            ]
        if exists:  # sealed and renamed, but the process died before the index said so
            return [
                Finding("unrecovered", call, path, "finished but not indexed; the next writer recovers it")
            ]
        return [Finding("missing", call, path, "being recorded, yet no file")]
    if not exists:
        if state == "incomplete" and row["sha256"] is None:
            return []  # cut before its file was created: recovery found no audio to keep
        return [Finding("missing", call, path, f"{state} recording not on disk")]
    digest, size = file_sha256(root / path)
    if digest != row["sha256"] or size != row["size"]:
        return [Finding("altered", call, path, f"SHA-256 {digest[:16]}... does not match the index")]
    return []


def _files(root: Path) -> set[str]:
    base = root / RECORDINGS
    return {str(p.relative_to(root)) for p in base.rglob("*") if p.is_file()} if base.is_dir() else set()


def _writer_alive(store: Store) -> bool:
    """Does some process hold the writer lock? (Probed with a shared lock, released at once.)"""
    if store.writing:
        return True
    try:
        fd = os.open(store.root / LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the probe's lock
    return False


def _database(store: Store) -> tuple[str, ...]:
    conn = store.index.conn
    problems = [r[0] for r in conn.execute("PRAGMA integrity_check") if r[0] != "ok"]
    problems += [
        f"{r[0]} row {r[1]} refers to a missing {r[2]} row" for r in conn.execute("PRAGMA foreign_key_check")
    ]
    return tuple(problems)
