"""A full disk (ENOSPC): said plainly, the recording cut keeps its sealed prefix, nothing earlier is harmed.

Two ways: a real 1 MiB tmpfs when the tests run as root and may mount one, and a write that fails with
ENOSPC injected into the writer, which runs everywhere.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from recorderd.errors import StoreError
from recorderd.events import AudioBlock
from recorderd.store.export import export_call
from recorderd.store.sink import StoreSink
from recorderd.store.store import Store
from recorderd.store.verify import verify_store
from tests.store.helpers import T0, call_events, real_stereo


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def long_call(call_id: str, seconds: int, ts: float) -> list[object]:
    """A call of ``seconds`` of pcm16-sized audio (noise does not compress, nor does age)."""
    audio = np.tile(real_stereo("ulaw"), (seconds // 8 + 1, 1))[: seconds * 8000]
    return call_events(call_id, audio, "pcm16", ts=ts, block=8000)


def feed_until_error(sink: StoreSink, events: list[object]) -> tuple[str, int]:
    """Feed every event, each a batch of its own (handle, flush); the first StoreError's text and how
    many blocks went in before it."""
    message, blocks = "", 0
    for event in events:
        try:
            sink.handle(event)  # type: ignore[arg-type]
            sink.flush()
        except StoreError as exc:
            message = message or str(exc)
        blocks += isinstance(event, AudioBlock) and not message
    return message, blocks


def check_after(store: Store, identity: str, tmp_path: Path) -> None:
    first, cut = store.calls()
    assert first["recording_state"] == "complete" and cut["recording_state"] == "incomplete"
    report = verify_store(store)
    assert report.ok, report
    out = tmp_path / "cut.wav"
    result = export_call(store, cut["id"], [identity], "wav", out, "check", "test", T0)
    assert result.samples > 0 and result.complete is False


def test_a_real_full_disk(tiny_disk: Path, recipient: str, identity: str, tmp_path: Path) -> None:
    store = Store.init(tiny_disk / "store", [recipient])
    try:
        sink = StoreSink(store)
        assert feed_until_error(sink, long_call("first@h", 8, T0)) == ("", 8)
        message, blocks = feed_until_error(sink, long_call("second@h", 120, T0 + 60))  # 3.8 MB > 1 MiB
        assert message.startswith("disk full: cannot write recording ")
        assert message.endswith("(free space on the store's disk; what was saved is kept)")
        assert 0 < blocks < 120
        # The operator frees space; the recording cut short is then closed out as incomplete.
        subprocess.run(["mount", "-o", "remount,size=8m", str(tiny_disk)], check=True)
        sink.close()
        check_after(store, identity, tmp_path)
    finally:
        store.close()


def test_an_injected_enospc(
    store: Store, identity: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = StoreSink(store)
    assert feed_until_error(sink, long_call("first@h", 8, T0)) == ("", 8)
    real_write = os.write
    budget = [200_000]

    def write(fd: int, data: bytes | memoryview) -> int:
        if budget[0] <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = real_write(fd, data[: budget[0]])  # the last write is partial, as on a real disk
        budget[0] -= n
        return n

    monkeypatch.setattr(os, "write", write)  # the writer calls os.write
    message, blocks = feed_until_error(sink, long_call("second@h", 30, T0 + 60))
    assert message.startswith("disk full: cannot write recording ") and 0 < blocks < 30
    monkeypatch.undo()
    sink.close()
    check_after(store, identity, tmp_path)
