"""The canary replays its shipped capture into a scratch store and matches the known digests."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from recorderd import canary


def test_the_shipped_canary_matches_and_records_audio(tmp_path: Path) -> None:
    result = canary.run(tmp_path)
    assert result.ok, result.summary
    assert list(tmp_path.iterdir()) == []  # the scratch area is removed
    (tmp_path / "again").mkdir()
    audio, _ = canary.produce(tmp_path / "again")
    assert audio == result.audio_sha256 != hashlib.sha256().hexdigest()  # some audio was written


def test_a_changed_recording_is_a_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "canary"
    data.mkdir()
    shutil.copy(canary.CAPTURE, data / "canary.pcap")
    digests = json.loads(canary.DIGESTS.read_text())
    (data / "digests.json").write_text(json.dumps({**digests, "audio_sha256": "0" * 64}))
    monkeypatch.setattr(canary, "DIGESTS", data / "digests.json")
    result = canary.run(tmp_path)
    assert not result.ok and result.summary.startswith("self-test audio differ")
    assert result.metadata_sha256 == digests["metadata_sha256"]


def test_the_canary_is_package_data() -> None:
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert '"canary/*.pcap", "canary/*.json"' in pyproject
    assert canary.CAPTURE.is_file() and canary.DIGESTS.is_file()
