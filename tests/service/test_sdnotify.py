"""sd_notify against a real unix datagram socket, as systemd would listen on it."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from recorderd.sdnotify import Notifier, watchdog_interval


def _listen(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    return sock


def test_messages_reach_a_path_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    with _listen(path) as sock:
        notifier = Notifier({"NOTIFY_SOCKET": path})
        assert notifier.ready("0 calls")
        assert sock.recv(4096).decode().split("\n") == ["READY=1", "STATUS=0 calls", f"MAINPID={os.getpid()}"]
        assert notifier.status("2 calls, 100 packets/s, 0 dropped")
        assert sock.recv(4096) == b"STATUS=2 calls, 100 packets/s, 0 dropped"
        assert notifier.watchdog()
        assert sock.recv(4096) == b"WATCHDOG=1"
        assert notifier.stopping()
        assert sock.recv(4096).startswith(b"STOPPING=1\n")
        notifier.close()


def test_abstract_socket_names_start_with_at() -> None:
    name = f"recorderd-test-{os.getpid()}"
    with _listen("\0" + name) as sock:
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).watchdog()
        assert sock.recv(4096) == b"WATCHDOG=1"


def test_without_systemd_nothing_is_sent_and_a_dead_socket_is_not_fatal(tmp_path: Path) -> None:
    assert not Notifier({}).enabled
    assert not Notifier({}).ready("x")
    assert not Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")}).watchdog()


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({}) is None
