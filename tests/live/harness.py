"""Two network namespaces joined by a veth pair, and the daemon run inside one of them.

Everything a test creates is named after its process id, confined to its own namespaces (no traffic
leaves them) and removed on exit, also after a failure. Needs root, ``ip`` and, for calls, ``sipp``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
G711A = Path("/usr/share/sip-tester/g711a.pcap")
A_IP, B_IP = "10.99.0.1", "10.99.0.2"


def require(*tools: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("live tests need root (network namespaces, raw capture)")
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"live tests need {tool}")


@dataclass(frozen=True)
class Pair:
    a: str  # namespace where the daemon and the caller run
    b: str  # namespace of the called party
    veth_a: str
    veth_b: str

    def exec(self, ns: str, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", ns, *argv]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@contextmanager
def namespaces(tag: str) -> Iterator[Pair]:
    n = f"{os.getpid() % 100000}{tag}"
    pair = Pair(f"rdA{n}", f"rdB{n}", f"rva{n}"[:15], f"rvb{n}"[:15])
    try:
        _ip("netns", "add", pair.a)
        _ip("netns", "add", pair.b)
        _ip("link", "add", pair.veth_a, "type", "veth", "peer", "name", pair.veth_b)
        _ip("link", "set", pair.veth_a, "netns", pair.a)
        _ip("link", "set", pair.veth_b, "netns", pair.b)
        for ns, dev, ip in ((pair.a, pair.veth_a, A_IP), (pair.b, pair.veth_b, B_IP)):
            _ip("-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        yield pair
    finally:
        for ns in (pair.a, pair.b):  # deleting a namespace removes its veth end and the peer
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


def write_config(path: Path, store: Path, interface: str, **health: object) -> Path:
    lines = [
        "[capture]",
        f'interfaces = ["{interface}"]',
        "buffer_mb = 4",
        "[store]",
        f'path = "{store}"',
        "[site]",
        'internal_numbers = ["2\\\\d{3}", "3\\\\d{3}"]',
        "[health]",
        'listen = "127.0.0.1:9107"',
        *(f"{k} = {v!r}" for k, v in health.items()),
        "[schedule]",
        "self_check_every = 1.0",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


class Daemon:
    """``recorderd run`` inside a namespace, with a notify socket to wait for READY=1."""

    def __init__(self, pair: Pair, config: Path, tmp: Path) -> None:
        self.notify_path = tmp / f"notify-{time.monotonic_ns()}.sock"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.notify_path))
        self.log = (tmp / "daemon.log").open("ab")
        env = {**os.environ, "NOTIFY_SOCKET": str(self.notify_path), "PYTHONUNBUFFERED": "1"}
        argv = pair.exec(pair.a, sys.executable, "-m", "recorderd", "run", "--config", str(config))
        # `ip netns exec` execs the command itself: the pid is the daemon's
        self.proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=self.log, stderr=self.log)
        self.messages: list[str] = []
        self.wait_for("READY=1", 30)

    def wait_for(self, field: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}")
            self.notify.settimeout(0.2)
            try:
                message = self.notify.recv(4096).decode()
            except TimeoutError:
                continue
            self.messages.append(message)
            if field in message.split("\n"):
                return message
        raise AssertionError(f"no {field} from the daemon in {timeout} s")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            status = self.proc.wait(timeout=30)
            self.notify.setblocking(False)
            try:
                while True:
                    self.messages.append(self.notify.recv(4096).decode())
            except BlockingIOError:
                pass
            return status
        finally:
            self.notify.close()
            self.notify_path.unlink(missing_ok=True)
            self.log.close()


def health(pair: Pair, config: Path) -> tuple[int, str]:
    argv = pair.exec(pair.a, sys.executable, "-m", "recorderd", "health", "--config", str(config))
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=30)
    return done.returncode, done.stdout


def sipp_uas(pair: Pair, calls: int) -> subprocess.Popen[bytes]:
    argv = ["sipp", "-sf", str(HERE / "uas.xml"), "-i", B_IP, "-p", "5060", "-mi", B_IP, "-mp", "7000"]
    argv += ["-m", str(calls), "-nostdin", "-timeout", "60s"]
    return subprocess.Popen(pair.exec(pair.b, *argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def sipp_uac(pair: Pair, calls: int, hold_ms: int) -> subprocess.Popen[bytes]:
    argv = ["sipp", f"{B_IP}:5060", "-sf", str(HERE / "uac.xml"), "-i", A_IP, "-p", "5061"]
    argv += ["-mi", A_IP, "-mp", "6000", "-s", "3001", "-d", str(hold_ms), "-m", str(calls), "-l", "1"]
    argv += ["-nostdin", "-timeout", "60s"]
    return subprocess.Popen(pair.exec(pair.a, *argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
