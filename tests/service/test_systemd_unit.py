"""systemd/recorderd.service passes `systemd-analyze verify` without a single warning.

`verify` exits 0 on many problems (an unknown key, and in systemd 252 not even a word on a misspelt
capability), so the test fails on any output at all, and pins the capabilities by name.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "recorderd.service"
INSTALLED = "/opt/recorderd/bin/recorderd"


def _verify(tmp_path: Path, text: str) -> str:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd; scripts/bootstrap adds it)")
    # verify checks that ExecStart= exists: point it at this checkout's entry point
    unit = tmp_path / "recorderd.service"
    unit.write_text(text.replace(INSTALLED, str(ROOT / ".venv" / "bin" / "recorderd")))
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
    )
    return f"exit {done.returncode}\n{done.stdout}{done.stderr}".strip()


def test_unit_verifies_without_any_warning(tmp_path: Path) -> None:
    assert INSTALLED in UNIT.read_text()
    assert _verify(tmp_path, UNIT.read_text()) == "exit 0"


def test_the_check_catches_a_warning(tmp_path: Path) -> None:
    broken = UNIT.read_text().replace("NoNewPrivileges=yes", "NoNewPrivilege=yes")
    assert "Unknown key" in _verify(tmp_path, broken)


def test_the_only_capability_is_cap_net_raw() -> None:
    text = UNIT.read_text()
    assert re.findall(r"^(AmbientCapabilities|CapabilityBoundingSet)=(.*)$", text, re.M) == [
        ("AmbientCapabilities", "CAP_NET_RAW"),
        ("CapabilityBoundingSet", "CAP_NET_RAW"),
    ]
    for line in ("Type=notify", "WatchdogSec=30", "User=recorderd", "ProtectSystem=strict",
                 "ReadWritePaths=/var/lib/recorderd", "NoNewPrivileges=yes"):  # fmt: skip
        assert re.search(f"^{re.escape(line)}$", text, re.M), line
