"""Watching and breaking the store's sync system calls, for the durability tests."""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable

import pytest

from recorderd.store import writer as writer_module
from recorderd.store.writer import RecordingWriter


def sync_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The sync system calls made from here on, by name (fsync, fdatasync, syncfs)."""
    calls: list[str] = []
    for name in ("fsync", "fdatasync"):
        real = getattr(os, name)

        def wrapped(fd: int, name: str = name, real: Callable[[int], None] = real) -> None:
            calls.append(name)
            real(fd)

        monkeypatch.setattr(os, name, wrapped)
    real_syncfs = writer_module._SYNCFS
    if real_syncfs is not None:

        def syncfs(fd: int) -> int:
            calls.append("syncfs")
            return real_syncfs(fd)

        monkeypatch.setattr(writer_module, "_SYNCFS", syncfs)
    return calls


def failing_syncfs(err: int) -> Callable[[int], int]:
    def syncfs(fd: int) -> int:
        ctypes.set_errno(err)
        return -1

    return syncfs


def break_sync_of(monkeypatch: pytest.MonkeyPatch, writer: RecordingWriter) -> None:
    """syncfs fails with EIO, and so does fdatasync on ``writer``'s file alone (the others sync)."""
    bad_fd = writer.fd
    real_fdatasync = os.fdatasync

    def fdatasync(fd: int) -> None:
        if fd == bad_fd:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fdatasync(fd)

    monkeypatch.setattr(writer_module, "_SYNCFS", failing_syncfs(errno.EIO))
    monkeypatch.setattr(os, "fdatasync", fdatasync)
