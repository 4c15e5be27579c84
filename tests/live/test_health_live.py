"""`recorderd health` against the running daemon: critical when capture stops seeing packets, OK again
when packets return."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import new_store
from tests.live.harness import A_IP, Daemon, Pair, health, namespaces, require, write_config

pytestmark = pytest.mark.slow

SEND = "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nfor _ in range(10):\n" \
    "    s.sendto(b'x'*100,(%r,9)); time.sleep(0.05)\n"  # fmt: skip


def _send(pair: Pair) -> None:
    subprocess.run(pair.exec(pair.b, sys.executable, "-c", SEND % A_IP), check=True, timeout=10)


def _wait_health(pair: Pair, config: Path, code: int, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while True:
        got, out = health(pair, config)
        if got == code or time.monotonic() > deadline:
            assert got == code, out
            return out
        time.sleep(0.5)


def test_health_follows_the_capture(tmp_path: Path) -> None:
    require("ip")
    store, _ = new_store(tmp_path)
    with namespaces("h") as pair:
        config = write_config(tmp_path / "recorderd.toml", store, pair.veth_a, packets_stale=2.0)
        daemon = Daemon(pair, config, tmp_path)
        try:
            _send(pair)
            out = _wait_health(pair, config, 0)
            assert out.startswith("OK       daemon: answering at 127.0.0.1:9107\n")
            assert f"OK       capture: capturing on {pair.veth_a}" in out
            out = _wait_health(pair, config, 2)  # quiet for more than packets_stale
            assert f"CRITICAL capture: no packets on {pair.veth_a} for " in out
            _send(pair)
            assert "OK       capture:" in _wait_health(pair, config, 0)
        finally:
            assert daemon.stop() == 0
