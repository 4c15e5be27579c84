"""scripts/install into a scratch root (DESTDIR): users, groups, directories and modes, the unit, and a
second run that changes nothing. The virtualenv step and systemctl are left out: no network, no systemd
as PID 1 here."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _install(dest: Path, *args: str) -> str:
    env = {**os.environ, "DESTDIR": str(dest)}
    done = subprocess.run([str(ROOT / "scripts" / "install"), "--no-venv", *args], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def _mode(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid


def _ids(dest: Path, table: str, name: str) -> list[str]:
    for line in (dest / "etc" / table).read_text().splitlines():
        if line.startswith(name + ":"):
            return line.split(":")
    raise AssertionError(f"{name} not in {table}")


def test_install_into_a_scratch_root_twice(tmp_path: Path) -> None:
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        pytest.skip("the installer needs root and useradd")
    dest = tmp_path / "root"
    (dest / "etc").mkdir(parents=True)
    for name in ("passwd", "group", "shadow", "gshadow"):
        (dest / "etc" / name).write_text("root:x:0:0:root:/root:/bin/bash\n" if name == "passwd" else "")
    (dest / "etc" / "group").write_text("root:x:0:\n")
    (dest / "etc" / "shadow").write_text("root:*:19000:0:99999:7:::\n")
    (dest / "etc" / "gshadow").write_text("root:*::\n")

    first = _install(dest, "--interface", "eth7")
    assert "user recorderd created" in first and "next steps" in first
    user = _ids(dest, "passwd", "recorderd")
    uid, gid = int(user[2]), int(user[3])
    assert int(_ids(dest, "group", "recorderd")[2]) == gid
    assert user[5:] == ["/var/lib/recorderd", "/usr/sbin/nologin"]
    assert _ids(dest, "group", "recorder-callers")[3] == "recorderd"
    assert _mode(dest / "etc/recorderd") == (0o750, 0, gid)
    assert _mode(dest / "etc/recorderd/recorderd.toml") == (0o640, 0, gid)
    assert _mode(dest / "var/lib/recorderd") == (0o700, uid, gid)
    unit = dest / "etc/systemd/system/recorderd.service"
    assert unit.read_text() == (ROOT / "systemd/recorderd.service").read_text()
    config = (dest / "etc/recorderd/recorderd.toml").read_text()
    assert 'interfaces = ["eth7"]' in config

    (dest / "etc/recorderd/recorderd.toml").write_text(config + "# edited\n")
    os.chmod(dest / "var/lib/recorderd", 0o755)
    second = _install(dest)
    assert "created" not in second and "config kept" in second
    assert (dest / "etc/recorderd/recorderd.toml").read_text().endswith("# edited\n")
    assert _mode(dest / "var/lib/recorderd") == (0o700, uid, gid)  # corrected
    assert [line.split(":")[0] for line in (dest / "etc/passwd").read_text().splitlines()] == [
        "root",
        "recorderd",
    ]
    assert (dest / "usr/share/doc/recorderd/install.md").is_file()
