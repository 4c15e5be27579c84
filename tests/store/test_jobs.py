from __future__ import annotations

from recorderd.config import parse_service_config
from recorderd.store import jobs
from recorderd.store.store import Store


def test_daemon_jobs(store: Store) -> None:
    config = parse_service_config({"retention": {"default": "6 months"}})
    assert (
        jobs.retention_sweep(store, config, 1e9)
        == "deleted 0 call(s) past their retention period; 0 kept by a hold"
    )
    assert jobs.audit_sign(store, 1.0) == "the audit log is empty"
    assert jobs.audit_verify(store) is None
    signer, store.index.signer = store.index.signer, None
    store.index.log_access(1.0, "u", "export-wav", None, "r", None)
    assert jobs.audit_verify(store) == "the audit log has entries but no signed head"
    store.index.signer = signer
    assert jobs.audit_sign(store, 2.0) == "signed the head at entry 1"
    assert jobs.audit_sign(store, 3.0) == "head (entry 1) already signed"
    assert jobs.audit_verify(store) is None
