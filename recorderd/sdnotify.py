"""The systemd notification protocol (sd_notify(3)) with the standard library only.

A ``Type=notify`` service tells systemd it is up (``READY=1``), what it is doing (``STATUS=...``, shown by
``systemctl status``), that its main loop still turns (``WATCHDOG=1``, at least every ``WatchdogSec``),
and that it is going down (``STOPPING=1``). Each message is one datagram of ``KEY=VALUE`` lines sent to
the unix socket named by ``$NOTIFY_SOCKET``; a name starting with ``@`` is in the abstract namespace.
Without ``$NOTIFY_SOCKET`` (not started by systemd) every call is a no-op. A failed send is logged once
and otherwise ignored: systemd being unreachable must never stop recording.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


def _address(name: str) -> str | bytes:
    """The socket address of ``$NOTIFY_SOCKET``: a path, or ``\\0name`` for an abstract socket."""
    return b"\0" + name[1:].encode() if name.startswith("@") else name


def watchdog_interval(env: Mapping[str, str] = os.environ) -> float | None:
    """Seconds between WATCHDOG=1 messages: half of ``$WATCHDOG_USEC``, as sd_watchdog_enabled(3)
    advises; None when the watchdog is off or meant for another process (``$WATCHDOG_PID``)."""
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 2_000_000


class Notifier:
    """Sends sd_notify messages; a no-op when ``$NOTIFY_SOCKET`` is not set."""

    def __init__(self, env: Mapping[str, str] = os.environ) -> None:
        name = env.get("NOTIFY_SOCKET", "")
        self._address = _address(name) if name else None
        self._sock: socket.socket | None = None
        self._failed = False

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, **fields: str) -> bool:
        """Send ``KEY=VALUE`` lines in one datagram; True when it was sent."""
        if self._address is None:
            return False
        message = "\n".join(f"{key}={value}" for key, value in fields.items()).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(message, self._address)
        except OSError as err:
            if not self._failed:
                log.warning("cannot notify systemd: %s", err)
                self._failed = True
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send(READY="1", STATUS=status, MAINPID=str(os.getpid()))

    def status(self, status: str) -> bool:
        return self.send(STATUS=status)

    def watchdog(self) -> bool:
        return self.send(WATCHDOG="1")

    def reloading(self) -> bool:
        return self.send(RELOADING="1", STATUS="reloading the configuration")

    def stopping(self, status: str = "finishing open recordings") -> bool:
        return self.send(STOPPING="1", STATUS=status)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
