"""The daemon's parts that need no capture: reload, the job table, facts for health."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from recorderd import daemon as daemon_module
from recorderd.config import load_service_config
from recorderd.daemon import Daemon
from recorderd.errors import RecorderdError, StoreError
from recorderd.events import Direction
from recorderd.health import Status
from tests.conftest import new_store


def _config(path: Path, store: Path, extra: str = "") -> Path:
    path.write_text(
        f'[capture]\ninterfaces = ["eth9"]\n[store]\npath = "{store}"\n[health]\nlisten = ""\n{extra}'
    )
    return path


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_reload_applies_numbering_and_keeps_capture(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store, _ = new_store(tmp_path)
    path = _config(tmp_path / "r.toml", store)
    d = Daemon(load_service_config(path))
    try:
        assert d.engine.config.site.classify("2001", "2002", "", "") is Direction.UNKNOWN
        _config(path, store, '[site]\ninternal_numbers = ["2\\\\d{3}"]\n[engine]\nrtp_timeout = 9.0\n')
        path.write_text(path.read_text().replace("eth9", "eth8"))
        with caplog.at_level(logging.INFO):
            d.reload()
        assert d.engine.config.site.classify("2001", "2002", "", "") is Direction.INTERNAL
        assert d.engine.config.rtp_timeout == 9.0
        assert d.config.capture.interfaces == ("eth9",)
        assert "capture changed: restart recorderd to apply it" in caplog.text
        path.write_text("[engine]\nrtp_timeout = -1\n")
        d.reload()  # an invalid file is logged and the running config kept
        assert d.engine.config.rtp_timeout == 9.0
        assert "reload failed, keeping the running config" in caplog.text
    finally:
        d.sink.close()
        d.store.close()


def test_jobs_run_at_start_then_on_their_schedule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, _ = new_store(tmp_path)
    clock = Clock()
    path = _config(tmp_path / "r.toml", store, "[schedule]\nself_check_every = 10\n")
    d = Daemon(load_service_config(path), clock=clock)
    swept: list[float] = []

    def sweep(store: object, config: object, now: float) -> str:
        swept.append(now)
        return "0 deleted"

    monkeypatch.setattr(daemon_module, "RETENTION_SWEEP", sweep)
    try:
        d._schedule()
        d._run_jobs(clock.now)
        assert swept == [clock.now]  # at start
        assert d.tally.canary == "self-test matched its known digests" and not d.tally.canary_failed
        due = {job.name: job.due - clock.now for job in d.jobs}
        assert 9 <= due["self-check"] <= 11
        assert 0 < due["retention sweep"] <= 86400 and 0 < due["canary"] <= 86400
        clock.now += 10.5
        d._run_jobs(clock.now)
        assert len(swept) == 1
        facts, checks = d.latest()
        assert {c.name: c.status for c in checks}["sweep"] is Status.OK
        assert {c.name: c.status for c in checks}["capture"] is Status.CRITICAL  # no source opened
        assert facts.store is not None and facts.store.index is None
    finally:
        d.sink.close()
        d.store.close()


def test_start_refuses_a_store_with_other_recipients_and_no_interfaces(tmp_path: Path) -> None:
    store, _ = new_store(tmp_path)
    path = _config(tmp_path / "r.toml", store, "")
    path.write_text(path.read_text().replace("[health]", 'recipients = ["age1other"]\n[health]'))
    with pytest.raises(StoreError, match="encrypts to other recipients"):
        Daemon(load_service_config(path))
    text = _config(tmp_path / "r.toml", store).read_text().replace('["eth9"]', "[]")
    (tmp_path / "r.toml").write_text(text)
    d = Daemon(load_service_config(tmp_path / "r.toml"))
    with pytest.raises(RecorderdError, match="capture.interfaces: no interface configured"):
        d.run()


def test_a_bad_retention_table_stops_the_start_and_a_reload(tmp_path: Path) -> None:
    store, _ = new_store(tmp_path)
    bad = '[retention]\ndefault = "36 months"\n[retention.tags]\ntraining = "forever"\n'
    with pytest.raises(RecorderdError, match="retention.tags.training"):
        Daemon(load_service_config(_config(tmp_path / "bad.toml", store, bad)))
    path = _config(tmp_path / "good.toml", store)
    d = Daemon(load_service_config(path))
    try:
        _config(path, store, bad)
        d.reload()  # logged and the running config kept
        assert "tags" not in d.config.retention
    finally:
        d.sink.close()
        d.store.close()
