"""The command line as a user meets it: one-line errors with a non-zero exit, never a traceback."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from recorderd import cli as cli_module
from recorderd.cli import main
from recorderd.gctune import THRESHOLDS
from tests.conftest import PCAPS, new_store
from tests.replay.engine_replay import without_sip


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, Path]:
    return new_store(tmp_path)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "recorderd", *args], capture_output=True, text=True, timeout=120
    )


def one_line_error(result: subprocess.CompletedProcess[str], text: str) -> None:
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("recorderd: error: ") and text in result.stderr


def test_missing_and_non_capture_files(store: tuple[Path, Path], tmp_path: Path) -> None:
    path, _ = store
    one_line_error(run("replay", str(tmp_path / "no.pcap"), "--store", str(path)), "capture file not found")
    junk = tmp_path / "notes.txt"
    junk.write_text("not a capture\n")
    one_line_error(run("replay", str(junk), "--store", str(path)), "is not a pcap or pcapng file")


def test_unknown_store_and_bad_recipient(tmp_path: Path) -> None:
    one_line_error(run("calls", "--store", str(tmp_path / "none")), "no recorderd store at")
    one_line_error(run("init", str(tmp_path / "s"), "--recipient", "age1nope"), "not an age X25519 recipient")


def test_truncated_capture_is_recorded_then_reported(
    store: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = store
    cut = tmp_path / "cut.pcap"
    cut.write_bytes((PCAPS / "sip-dtmf2-rfc2833-603.pcap").read_bytes()[:40_000])
    result = run("replay", str(cut), "--store", str(path))
    one_line_error(result, "ended in the middle of a record")
    assert "2 calls" in result.stdout
    assert main(["calls", "--store", str(path), "--json"]) == 0
    calls = json.loads(capsys.readouterr().out)
    assert [c["end_reason"] for c in calls] == ["rejected", "capture-end"]
    assert calls[1]["recording"] is not None


def test_wrong_identity_and_unknown_call(store: tuple[Path, Path], tmp_path: Path) -> None:
    path, _ = store
    assert main(["replay", str(PCAPS / "sip-tcp-call-rtp.pcap"), "--store", str(path), "--quiet"]) == 0
    other = tmp_path / "other.txt"
    assert main(["keygen", "--out", str(other)]) == 0
    out = tmp_path / "x.wav"
    common = ["--store", str(path), "--out", str(out), "--reason", "test"]
    call_id = "158936656982201062716@10.33.6.100"
    one_line_error(run("export", call_id, "--identity", str(other), *common), "wrong identity")
    one_line_error(run("export", "nosuchcall", "--identity", str(other), *common), "no call 'nosuchcall'")
    assert not out.exists()


def test_keygen_refuses_to_overwrite(tmp_path: Path) -> None:
    key = tmp_path / "k.txt"
    assert run("keygen", "--out", str(key)).returncode == 0
    one_line_error(run("keygen", "--out", str(key)), str(key))


@pytest.mark.slow
def test_passphrase_protected_identity_round_trip(tmp_path: Path) -> None:
    key = tmp_path / "protected.txt"
    env = {**os.environ, "RECORDERD_PASSPHRASE": "correct horse"}

    def with_env(*args: str, passphrase: str = "correct horse") -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "recorderd", *args]
        env["RECORDERD_PASSPHRASE"] = passphrase
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)

    made = with_env("keygen", "--out", str(key), "--passphrase")
    assert made.returncode == 0 and made.stdout.startswith("age1")
    assert key.read_bytes().startswith(b"age-encryption.org/v1\n")
    store = tmp_path / "store"
    assert main(["init", str(store), "--recipient", made.stdout.strip()]) == 0
    assert main(["replay", str(PCAPS / "sip-tcp-call-rtp.pcap"), "--store", str(store), "--quiet"]) == 0
    out = tmp_path / "call.flac"
    args = ["export", "158936656982201062716@10.33.6.100", "--store", str(store), "--identity", str(key),
            "--format", "flac", "--out", str(out), "--reason", "test"]  # fmt: skip
    one_line_error(with_env(*args, passphrase="wrong"), "passphrase")
    assert with_env(*args).returncode == 0 and out.stat().st_mode & 0o777 == 0o600


def test_replay_with_site_config_classifies_direction(
    store: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = store
    config = tmp_path / "site.toml"
    config.write_text('[site]\ninternal_numbers = ["25\\\\d\\\\d"]\n')
    pcaps = [str(PCAPS / "sip-dtmf2-rfc2833-603.pcap"), str(PCAPS / "onsip-testcall-nat-auth.pcap")]
    assert main(["replay", *pcaps, "--store", str(path), "--config", str(config), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["calls", "--store", str(path), "--json"]) == 0
    directions = {c["call_id"][:5]: c["direction"] for c in json.loads(capsys.readouterr().out)}
    assert directions == {"5514@": "internal", "25672": "internal", "a3d80": "unknown"}


def test_a_call_whose_sip_was_not_captured_is_recorded_and_listed(
    store: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real capture without its SIP (a recorder started mid-call): the call is still recorded,
    listed as media only, and exports."""
    path, identity = store
    cut = tmp_path / "no-sip.pcap"
    assert without_sip(PCAPS / "sip-dtmf2-rfc2833-603.pcap", cut)  # every SIP message left out
    assert main(["replay", str(cut), "--store", str(path), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["calls", "--store", str(path)]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert "  no SIP, media " in line and " <-> " in line and line.endswith("complete")
    call = line.split()[0]
    out = tmp_path / "call.wav"
    args = ["export", call, "--store", str(path), "--identity", str(identity), "--out", str(out)]
    assert main([*args, "--reason", "test: unsignalled call"]) == 0
    assert out.stat().st_size > 44


def test_replay_runs_with_the_collector_tuned(
    store: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """recorderd replay (and the daemon) raise the collector's thresholds (recorderd/gctune.py)."""
    seen: list[tuple[int, ...]] = []
    real = cli_module.replay_file

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(gc.get_threshold())
        return real(*args, **kwargs)

    monkeypatch.setattr(cli_module, "replay_file", spy)
    before = gc.get_threshold()
    try:
        path, _ = store
        assert (
            main(["replay", str(PCAPS / "sip-dtmf2-rfc2833-603.pcap"), "--store", str(path), "--quiet"]) == 0
        )
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
    assert seen == [THRESHOLDS]
