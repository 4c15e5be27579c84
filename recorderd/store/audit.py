"""The tamper-evident audit log: an append-only hash chain whose head is signed with Ed25519.

Every access (export, subject-access bundle), every deletion (retention sweep, erasure) and every
hold change appends one entry, in the same SQLite transaction as the change it describes, so an
entry can be neither lost nor written twice by a crash. An entry holds who (the OS user), when,
what (action and call), why (the stated reason), the SHA-256 of anything handed out, details as
JSON, and ``prev_hash``: the hash of the entry before it (64 zeros for the first). Its own ``hash``
is SHA-256 over all of that in a canonical JSON form, so the chain continues across restarts with
nothing kept in memory.

SQLite triggers refuse UPDATE and DELETE, but anyone who can write the file can drop them. The chain
catches an edited entry (its hash no longer matches), a deleted one (a gap in ``seq``) and a
reordered one (``prev_hash`` no longer links). To catch a rewritten chain, each append also signs
the new head (``seq`` and ``hash``) with the store's Ed25519 key (RFC 8032), created at ``init``;
the public key is kept in ``store.json``. A record of the head kept off the box (``audit show
--head``) also catches a chain cut short together with its signatures.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from recorderd.errors import StoreError

GENESIS = "0" * 64
HEAD_CONTEXT = b"recorderd audit head v1\n"
_COLUMNS = ("seq", "ts", "os_user", "action", "call", "reason", "output_sha256", "detail", "prev_hash")


def os_user() -> str:
    """``name (uid N)`` of the real user running this process: who the audit log names."""
    uid = os.getuid()
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def entry_hash(row: Mapping[str, Any] | sqlite3.Row) -> str:
    """SHA-256 of an entry's columns (all but ``hash``) as canonical JSON."""
    values = [row[c] for c in _COLUMNS]
    text = json.dumps(values, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def head_message(seq: int, digest: str) -> bytes:
    return HEAD_CONTEXT + f"{seq}\n{digest}".encode()


# ---------------------------------------------------------------------------------------------------
# The signing key


def create_signing_key(path: Path) -> str:
    """Write a new Ed25519 private key to ``path`` (0600, never overwriting); its public key, hex."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise StoreError(f"cannot create audit signing key {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())
    return key.public_key().public_bytes_raw().hex()


def load_signing_key(path: Path) -> Ed25519PrivateKey | None:
    """The key at ``path``; None when there is none (a store made before audit signing)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"cannot read audit signing key {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, None)
    except ValueError:
        raise StoreError(f"{path} is not an Ed25519 private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise StoreError(f"{path} is not an Ed25519 private key")
    return key


# ---------------------------------------------------------------------------------------------------
# Appending


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    ts: float
    os_user: str
    action: str
    call: str | None
    reason: str
    output_sha256: str | None
    detail: str  # JSON object
    prev_hash: str
    hash: str


def append(
    conn: sqlite3.Connection,
    signer: Ed25519PrivateKey | None,
    ts: float,
    user: str,
    action: str,
    call: str | None,
    reason: str,
    output_sha256: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry (and sign the new head). The caller holds a write transaction."""
    last = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    seq, prev = (1, GENESIS) if last is None else (last[0] + 1, last[1])
    row: dict[str, Any] = {
        "seq": seq,
        "ts": float(ts),
        "os_user": user,
        "action": action,
        "call": call,
        "reason": reason,
        "output_sha256": output_sha256,
        "detail": json.dumps(dict(detail or {}), separators=(",", ":"), sort_keys=True),
        "prev_hash": prev,
    }
    row["hash"] = entry_hash(row)
    conn.execute(
        f"INSERT INTO audit ({', '.join(row)}) VALUES ({', '.join(':' + c for c in row)})",
        row,
    )
    if signer is not None:
        signature = signer.sign(head_message(seq, row["hash"])).hex()
        conn.execute(
            "INSERT INTO audit_heads (seq, hash, ts, signature) VALUES (?, ?, ?, ?)",
            (seq, row["hash"], float(ts), signature),
        )
    return AuditEntry(**row)


def entries(conn: sqlite3.Connection, call: str | None = None) -> list[AuditEntry]:
    where, params = ("WHERE call = ?", (call,)) if call is not None else ("", ())
    rows = conn.execute(f"SELECT * FROM audit {where} ORDER BY seq", params).fetchall()
    return [AuditEntry(**{k: r[k] for k in r.keys()}) for r in rows]


# ---------------------------------------------------------------------------------------------------
# Verifying


@dataclass(frozen=True, slots=True)
class AuditReport:
    entries: int
    signed_seq: int | None  # the latest signed head
    problem: str | None  # the first break found, None when the chain is sound

    @property
    def ok(self) -> bool:
        return self.problem is None


def verify(conn: sqlite3.Connection, public_key: str | None) -> AuditReport:
    """Walk the chain from the first entry; the first gap, bad link or altered entry is reported,
    then the signed head is checked against the chain and ``public_key`` (hex Ed25519)."""
    hashes: dict[int, str] = {}
    expected, prev = 1, GENESIS
    for row in conn.execute("SELECT * FROM audit ORDER BY seq"):
        problem = _check_entry(row, expected, prev)
        if problem:
            return AuditReport(len(hashes), None, problem)
        hashes[row["seq"]] = row["hash"]
        expected, prev = row["seq"] + 1, row["hash"]
    head = conn.execute("SELECT * FROM audit_heads ORDER BY seq DESC LIMIT 1").fetchone()
    if head is None:
        problem = "the audit log has entries but no signed head" if hashes else None
        return AuditReport(len(hashes), None, problem)
    return AuditReport(len(hashes), head["seq"], _check_head(head, hashes, expected - 1, public_key))


def _check_entry(row: sqlite3.Row, expected: int, prev: str) -> str | None:
    seq = row["seq"]
    if seq != expected:
        return f"audit entry {expected} is missing (the chain jumps from {expected - 1} to {seq})"
    if row["prev_hash"] != prev:
        return f"audit entry {seq} does not follow entry {seq - 1} (reordered or replaced)"
    if entry_hash(row) != row["hash"]:
        return f"audit entry {seq} was altered (its content does not match its hash)"
    return None


def _check_head(head: sqlite3.Row, hashes: dict[int, str], last: int, public_key: str | None) -> str | None:
    seq = head["seq"]
    if seq > last:
        return f"audit entry {last + 1} is missing (the signed head is entry {seq})"
    if hashes[seq] != head["hash"]:
        return f"the signed head (entry {seq}) does not match the chain (rewritten?)"
    if public_key is None:
        return "the store has no audit public key to check the signed head with"
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key)).verify(
            bytes.fromhex(head["signature"]), head_message(seq, head["hash"])
        )
    except (InvalidSignature, ValueError):
        return f"the signature of the audit head (entry {seq}) is not valid"
    if seq < last:
        return f"audit entries {seq + 1} to {last} were added without a signature"
    return None
