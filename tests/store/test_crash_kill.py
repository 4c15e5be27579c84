"""kill -9 of a writing process at random points, 60 times over one store.

The writer is a forked child (no interpreter start-up per run, so 60 runs stay fast) that loops:
replay a small capture into the store, place a hold on the new call, release it, erase the call.
After each audited change commits, it reports it on a pipe (unbuffered). The parent kills it after
a random delay, then checks what the next start must guarantee:

* the next writer recovers: no recording is left in state 'recording', interrupted ones are
  'incomplete' and decrypt up to their cut;
* SQLite's ``integrity_check`` passes and the audit chain verifies;
* no audit entry is lost (everything reported is there) or duplicated (no change twice), and at most
  one entry per run is there unreported (committed just before the kill);
* ``verify`` finds nothing, once an erasure cut between its unlink and its commit is run again.

And one kill at a chosen point: after the sink renamed a batch of finished recordings, before the
transaction that marks them complete.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from recorderd.config import EngineConfig
from recorderd.replay import replay_file
from recorderd.store import admin, age, au, audit
from recorderd.store.sink import StoreSink
from recorderd.store.store import Store, file_sha256
from recorderd.store.verify import verify_store
from tests.conftest import PCAPS
from tests.store.helpers import T0, call_events, real_stereo

RUNS = 60
SEED = 20260105
PCAP = PCAPS / "crafted" / "vlan-qinq-call.pcap"
USER = "crash-test (uid 0)"
MAX_RUN_S = 5.0  # hard bound on one child's life


def writer_child(root: Path, report: int) -> None:
    """The child's whole life: write and audit until killed (or a bound, then exit)."""
    store = Store.open(root)
    sink = StoreSink(store)
    os.write(report, b"ready\n")
    for _ in range(200):
        known = {c["id"] for c in store.calls()}
        replay_file(PCAP, sink, EngineConfig(), None)
        (uid,) = [c["id"] for c in store.calls() if c["id"] not in known]
        now = time.time()
        admin.add_hold(store, uid, "complaint", USER, now, None)
        os.write(report, f"hold-add {uid}\n".encode())
        admin.release_hold(store, uid, "closed", USER, now)
        os.write(report, f"hold-release {uid}\n".encode())
        admin.erase(store, uid, "erasure request", USER, now)
        os.write(report, f"erase {uid}\n".encode())


def run_and_kill(root: Path, delay: float) -> list[tuple[str, str | None]]:
    """Fork a writer, kill -9 it ``delay`` seconds after it is ready; the changes it reported."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read)
        try:
            writer_child(root, write)
        finally:
            os._exit(0)
    os.close(write)
    lines = _read_line(read)
    assert lines == b"ready\n"
    time.sleep(delay)
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    data = bytearray()
    while chunk := os.read(read, 65536):
        data += chunk
    os.close(read)
    return [tuple(line.split(" ")) for line in data.decode().splitlines()]  # type: ignore[misc]


def _read_line(fd: int) -> bytes:
    line = b""
    deadline = time.monotonic() + MAX_RUN_S
    while not line.endswith(b"\n") and time.monotonic() < deadline:
        line += os.read(fd, 1)
    return line


@pytest.mark.slow
def test_kill_9_at_random_points(tmp_path: Path, recipient: str) -> None:
    root = tmp_path / "store"
    Store.init(root, [recipient]).close()
    rng = random.Random(SEED)
    reported: list[tuple[str, str | None]] = []
    recovered_total = cut_erasures = 0
    for run in range(RUNS):
        reported += run_and_kill(root, rng.uniform(0.0, 0.25))
        store = Store.open(root)
        try:
            recovered_total += len(StoreSink(store).recovered)  # the next writer recovers
            assert store.index.open_recordings() == [], run
            assert store.index.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert audit.verify(store.index.conn, store.audit_public_key).ok, run
            logged = [(e.action, e.call) for e in store.index.access_log()]
            assert all(n == 1 for n in Counter(logged).values()), run  # none twice
            assert set(reported) <= set(logged), run  # none lost
            assert len(set(logged) - set(reported)) <= 1, run  # at most the one cut before its report
            cut_erasures += _finish_cut_erasure(store, run)
            reported = [(e.action, e.call) for e in store.index.access_log()]  # the parent's erase too
        finally:
            store.close()
    print(
        f"recovered {recovered_total}, cut erasures {cut_erasures}, changes {Counter(a for a, _ in reported)}"
    )
    assert recovered_total > 0  # some kills did land mid-recording
    assert len({c for a, c in reported if a == "erase"}) > RUNS // 2


def _finish_cut_erasure(store: Store, run: int) -> int:
    """``verify`` may find one thing only: a recording whose erasure was cut after the unlink.
    Running the erasure again (as the operator would) completes it."""
    findings = verify_store(store).findings
    assert [f.kind for f in findings] in ([], ["missing"]), (run, findings)
    for finding in findings:
        assert finding.call is not None
        admin.erase(store, finding.call, "erasure request", USER, time.time())
    assert verify_store(store).ok, run
    return len(findings)


def test_kill_9_between_the_renames_and_the_index(tmp_path: Path, recipient: str, identity: str) -> None:
    """The batch's recordings are whole under their final names, the index still says 'recording':
    the next writer marks each 'incomplete' with the digest of the file, which decrypts in full."""
    root = tmp_path / "store"
    Store.init(root, [recipient]).close()
    audio = {f"k{n}@host": real_stereo("ulaw")[: 8000 * (n + 1)] for n in range(3)}
    pid = os.fork()
    if pid == 0:  # child: record three calls, die inside the flush that finishes them
        try:
            store = Store.open(root)
            sink = StoreSink(store)
            calls = {c: call_events(c, samples, ts=T0 + i) for i, (c, samples) in enumerate(audio.items())}
            for events in calls.values():
                for event in events[:-1]:
                    sink.handle(event)  # type: ignore[arg-type]
            sink.flush()

            def die(outcomes: object) -> None:
                os.kill(os.getpid(), signal.SIGKILL)

            store.index.finish_calls = die  # type: ignore[method-assign]
            for events in calls.values():
                sink.handle(events[-1])  # type: ignore[arg-type]
            sink.flush()
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL

    store = Store.open(root)
    try:
        before = store.calls()
        assert {c["recording_state"] for c in before} == {"recording"}
        for call in before:
            path = Path(str(call["recording"]))
            assert path.exists() and not path.with_name(path.name + ".part").exists()
        assert sorted(StoreSink(store).recovered) == sorted(c["id"] for c in before)
        assert store.index.open_recordings() == []
        for call in store.calls():
            path = Path(str(call["recording"]))
            assert (call["state"], call["recording_state"]) == ("incomplete", "incomplete")
            assert (call["sha256"], call["size"]) == file_sha256(path)
            samples = au.read_au(age.decrypt(path.read_bytes(), [identity]))[3]  # whole: final chunk there
            assert np.array_equal(samples, audio[str(call["call_id"])])
        assert verify_store(store).ok
    finally:
        store.close()
