"""kill -9 in the middle of a recording: the next writer recovers it as an incomplete recording whose
authenticated prefix the standard `age` tool decrypts to audio sox and libsndfile play."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile

from recorderd.cli import main
from recorderd.store.sink import StoreSink
from recorderd.store.store import Store
from tests.conftest import PCAPS, new_store

CHILD = """
import os, signal, sys
from pathlib import Path
from recorderd.capture.pcap import OfflineSource
from recorderd.engine import Engine
from recorderd.events import AudioBlock
from recorderd.store.sink import StoreSink
from recorderd.store.store import Store

store = Store.open(sys.argv[1])
sink = StoreSink(store)
engine = Engine()
blocks = 0
for frame in OfflineSource(Path(sys.argv[2])):
    for event in engine.feed(frame):
        sink.handle(event)
        blocks += isinstance(event, AudioBlock)
    sink.flush()  # each frame a batch, as the replay loop flushes after each of its batches
    if blocks >= int(sys.argv[3]):
        os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.slow
@pytest.mark.parametrize("blocks", [1, 6, 13])
def test_kill_9_mid_call_leaves_a_playable_prefix(
    blocks: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store_path, identity = new_store(tmp_path)
    pcap = PCAPS / "sip-dtmf2-rfc2833-603.pcap"
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(store_path), str(pcap), str(blocks)], timeout=120
    )
    assert child.returncode == -9

    store = Store.open(store_path)
    recovered = StoreSink(store).recovered  # the next writer to open the store recovers
    store.close()
    assert len(recovered) == 1
    capsys.readouterr()
    assert main(["calls", "--store", str(store_path), "--json"]) == 0
    (call,) = [c for c in json.loads(capsys.readouterr().out) if c["recording"]]
    assert call["recording_state"] == "incomplete"

    plain = tmp_path / "prefix.au"
    age = subprocess.run(["age", "-d", "-i", str(identity), "-o", str(plain), call["recording"]])
    sealed_chunks = (blocks * 8000 * 2) // 65536  # 1 s blocks of 8-bit stereo; 64 KiB age chunks
    if sealed_chunks == 0:
        assert age.returncode != 0  # nothing authenticated yet
        return
    assert plain.exists()
    info = subprocess.run(["soxi", "-s", str(plain)], check=True, capture_output=True, text=True)
    samples = int(info.stdout)
    assert samples >= sealed_chunks * 65536 // 2 - 24
    audio, rate = soundfile.read(plain, dtype="int16", always_2d=True)
    assert rate == 8000 and audio.shape[1] == 2 and len(audio) == samples

    out = tmp_path / "prefix.wav"
    common = ["--store", str(store_path), "--identity", str(identity), "--out", str(out)]
    assert main(["export", call["id"], *common, "--reason", "crash test"]) == 0
    exported, _ = soundfile.read(out, dtype="int16", always_2d=True)
    assert (exported == audio[: len(exported)]).all() and len(exported) >= samples
