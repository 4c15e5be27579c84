"""The store's periodic jobs, shaped for the daemon's hooks (``daemon.RETENTION_SWEEP``,
``AUDIT_SIGN``, ``AUDIT_VERIFY``): each takes the open store, returns a one-line summary for the log,
and is idempotent, so a run missed while the daemon was down is simply done at the next start.
"""

from __future__ import annotations

from recorderd.config import ServiceConfig
from recorderd.store import admin, audit
from recorderd.store.retention import parse_retention
from recorderd.store.store import Store


def retention_sweep(store: Store, config: ServiceConfig, now: float) -> str:
    """The retention sweep with the config's ``[retention]`` policy (deletions audited)."""
    result = admin.sweep(store, parse_retention(config.retention), audit.os_user(), now)
    deleted, held = len(result.deleted), len(result.held)
    return f"deleted {deleted} call(s) past their retention period; {held} kept by a hold"


def audit_sign(store: Store, now: float) -> str:
    """Sign the head if entries were appended without a signature (every append signs its own)."""
    signer = store.index.signer
    if signer is None:
        return "no audit signing key in this store; the head is not signed"
    with store.index.transaction() as conn:
        last = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        head = conn.execute("SELECT max(seq) FROM audit_heads").fetchone()[0]
        if last is None:
            return "the audit log is empty"
        if head == last["seq"]:
            return f"head (entry {head}) already signed"
        signature = signer.sign(audit.head_message(last["seq"], last["hash"])).hex()
        conn.execute(
            "INSERT INTO audit_heads (seq, hash, ts, signature) VALUES (?, ?, ?, ?)",
            (last["seq"], last["hash"], now, signature),
        )
    return f"signed the head at entry {last['seq']}"


def audit_verify(store: Store) -> str | None:
    """None when the audit chain and its signed head are sound, else the first problem."""
    return audit.verify(store.index.conn, store.audit_public_key).problem
