"""The issue's acceptance, end to end: sipp places calls with RTP audio between two network namespaces,
``recorderd run`` captures them on the veth, and the recordings hold exactly the audio sipp sent.

Both peers play sipp's own ``g711a.pcap`` (236 packets of A-law, 7 s). A-law stays A-law in the store,
so the check is bit-exact: each channel of the decrypted Sun AU file holds the pcap's payloads, in order,
without a gap. The second test kills the daemon with SIGKILL mid-call and restarts it.
"""

from __future__ import annotations

import json
import re
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pcapy
import pytest

from recorderd.store.age import TruncatedError, decrypt_chunks
from recorderd.store.keys import load_identities
from tests.conftest import new_store
from tests.live.harness import (
    G711A,
    ROOT,
    Daemon,
    namespaces,
    require,
    sipp_uac,
    sipp_uas,
    write_config,
)

pytestmark = pytest.mark.slow


def sent_audio() -> bytes:
    """The A-law payloads of g711a.pcap in order (Ethernet, IPv4, UDP, 12-byte RTP header)."""
    reader = pcapy.open_offline(str(G711A))
    payloads: list[bytes] = []
    while True:
        header, frame = reader.next()
        if header is None:
            return b"".join(payloads)
        rtp = 14 + (frame[14] & 0x0F) * 4 + 8
        assert frame[rtp] == 0x80 and frame[rtp + 1] & 0x7F == 8
        payloads.append(bytes(frame[rtp + 12 :]))


def channels(recording: Path, identity: Path) -> tuple[bytes, bytes, bool]:
    """Left and right A-law samples of a recording, and whether the file was complete."""
    plain, complete = bytearray(), True
    with recording.open("rb") as f:
        try:
            for chunk in decrypt_chunks(f, load_identities(identity, None)):
                plain += chunk
        except TruncatedError:
            complete = False
    magic, offset, _, encoding, rate, count = struct.unpack_from(">4sIIIII", plain)
    assert (magic, encoding, rate, count) == (b".snd", 27, 8000, 2)  # 27: A-law
    data = bytes(plain[offset:])
    data = data[: len(data) // 2 * 2]
    return data[0::2], data[1::2], complete


def assert_plays(channel: bytes, audio: bytes, minimum: int) -> None:
    """``channel`` holds ``audio`` (or, for a cut recording, at least ``minimum`` bytes of its start)."""
    sound = next(i for i, code in enumerate(audio) if code != 0xD5)  # 0xD5: A-law silence
    found = channel.find(audio[sound : sound + 2400])
    assert found >= 0, "the first 0.3 s of sound sent is not in the recording"
    start = found - sound
    assert start >= 0
    held = channel[start : start + len(audio)]
    same = next((i for i, (a, b) in enumerate(zip(held, audio, strict=False)) if a != b), len(held))
    assert same >= minimum, f"only {same} samples match the audio sent"
    # a recording cut at shutdown ends this leg where its last packet ended; silence pads it to the other's
    assert held[same:] == b"\xd5" * (len(held) - same)


def calls(store: Path) -> list[dict]:  # type: ignore[type-arg]
    argv = [sys.executable, "-m", "recorderd", "calls", "--store", str(store), "--json"]
    done = subprocess.run(argv, cwd=ROOT, check=True, capture_output=True, text=True, timeout=30)
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_sipp_calls_are_recorded_with_the_audio_sent(tmp_path: Path) -> None:
    require("ip", "sipp")
    store, identity = new_store(tmp_path)
    audio = sent_audio()
    with namespaces("c") as pair:
        config = write_config(tmp_path / "recorderd.toml", store, pair.veth_a)
        daemon = Daemon(pair, config, tmp_path)
        try:
            uas = sipp_uas(pair, calls=2)
            uac = sipp_uac(pair, calls=2, hold_ms=7500)
            assert uac.wait(timeout=60) == 0, "sipp reported failed calls"
            assert uas.wait(timeout=10) == 0
            time.sleep(1.0)  # let the daemon read the last BYE/200
        finally:
            status = daemon.stop()
        assert status == 0
        notes = "\n".join(daemon.messages).split("\n")
        assert "READY=1" in notes and "STOPPING=1" in notes
        assert any(re.fullmatch(r"STATUS=\d+ calls, \d+ packets/s, 0 dropped", note) for note in notes)

    recorded = calls(store)
    assert len(recorded) == 2
    for call in recorded:
        assert (call["from_user"], call["from_name"], call["to_user"]) == ("2001", "Reception", "3001")
        assert call["direction"] == "internal"
        assert (call["end_reason"], call["sip_status"]) == ("bye", 200)
        assert (call["recording_state"], call["encoding"]) == ("complete", "alaw")
        assert {leg["side"] for leg in call["legs"]} == {"caller", "callee"}
        assert all(leg["decoded"] and leg["lost"] == 0 for leg in call["legs"])
        left, right, complete = channels(Path(call["recording"]), identity)
        assert complete
        assert_plays(left, audio, len(audio))
        assert_plays(right, audio, len(audio))


def test_kill_9_mid_call_leaves_an_incomplete_recording_whose_prefix_plays(tmp_path: Path) -> None:
    require("ip", "sipp")
    store, identity = new_store(tmp_path)
    audio = sent_audio()
    with namespaces("k") as pair:
        config = write_config(tmp_path / "recorderd.toml", store, pair.veth_a)
        daemon = Daemon(pair, config, tmp_path)
        uas = sipp_uas(pair, calls=1)
        uac = sipp_uac(pair, calls=1, hold_ms=12000)
        try:
            time.sleep(7.5)  # all 7 s of audio captured: more than one sealed 64 KiB age chunk
            assert daemon.stop(signal.SIGKILL) == -signal.SIGKILL
            assert uac.wait(timeout=30) == 0
            uas.wait(timeout=10)
        finally:
            for peer in (uac, uas):
                if peer.poll() is None:
                    peer.kill()
                    peer.wait()
        restarted = Daemon(pair, config, tmp_path)  # takes the writer lock and recovers
        assert restarted.stop() == 0

    (call,) = calls(store)
    assert call["recording_state"] == "incomplete"
    assert (call["from_user"], call["to_user"]) == ("2001", "3001")
    left, right, complete = channels(Path(call["recording"]), identity)
    assert not complete
    chunk_samples = 65536 // 2  # one sealed chunk of stereo A-law
    assert_plays(left, audio, chunk_samples - 8000)  # less the audio before the callee's first packet
    assert_plays(right, audio, chunk_samples - 8000)


def test_sigterm_mid_call_seals_the_recording(tmp_path: Path) -> None:
    require("ip", "sipp")
    store, identity = new_store(tmp_path)
    audio = sent_audio()
    with namespaces("t") as pair:
        config = write_config(tmp_path / "recorderd.toml", store, pair.veth_a)
        daemon = Daemon(pair, config, tmp_path)
        uas = sipp_uas(pair, calls=1)
        uac = sipp_uac(pair, calls=1, hold_ms=8000)
        try:
            time.sleep(5.0)
            assert daemon.stop(signal.SIGTERM) == 0
        finally:
            for peer in (uac, uas):
                peer.wait(timeout=30)

    (call,) = calls(store)
    assert (call["recording_state"], call["end_reason"]) == ("complete", "capture-end")
    left, right, complete = channels(Path(call["recording"]), identity)
    assert complete  # sealed: the age file has its final chunk
    assert_plays(left, audio, 3 * 8000)
    assert_plays(right, audio, 3 * 8000)


def test_a_call_already_up_when_the_daemon_starts_is_recorded_from_its_media(tmp_path: Path) -> None:
    """As after a crash and restart: the daemon misses the INVITE and its SDP, finds the call from
    its two-way RTP, and records the rest of the audio sent, ending it when the media stops."""
    require("ip", "sipp")
    store, identity = new_store(tmp_path)
    audio = sent_audio()
    with namespaces("u") as pair:
        config = write_config(tmp_path / "recorderd.toml", store, pair.veth_a)
        config.write_text(config.read_text() + "[engine]\nrtp_timeout = 2.0\n")
        uas = sipp_uas(pair, calls=1)
        uac = sipp_uac(pair, calls=1, hold_ms=7500)
        try:
            time.sleep(1.0)  # the INVITE, its answer and the first second of audio go unseen
            daemon = Daemon(pair, config, tmp_path)
            try:
                assert uac.wait(timeout=30) == 0
                assert uas.wait(timeout=10) == 0
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline:  # until it ends: the media stopped 2 s ago
                    if [c for c in calls(store) if c["recording_state"] != "recording"]:
                        break
                    time.sleep(0.5)
            finally:
                assert daemon.stop() == 0
        finally:
            for peer in (uac, uas):
                if peer.poll() is None:
                    peer.kill()
                    peer.wait()

    (call,) = calls(store)
    assert call["call_id"].startswith("unsignalled:") and call["from_user"] == call["to_user"] == ""
    assert (call["end_reason"], call["sip_status"], call["direction"]) == ("rtp-timeout", None, "unknown")
    assert (call["recording_state"], call["encoding"]) == ("complete", "alaw")
    left, right, complete = channels(Path(call["recording"]), identity)
    assert complete
    tail = audio[-3 * 8000 :]  # the last 3 s sent: the daemon was up and the call adopted by then
    for channel in (left, right):
        found = channel.find(tail)
        assert found >= 0, "the last 3 s of audio sent are not in the recording"
