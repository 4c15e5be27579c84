"""The benchmark's generator, checked against tshark and the engine, and one tiny run of the runner.

No timing is asserted anywhere: performance lives in ``python -m bench.run``, not in tests.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from bench import run
from bench.gen import CaptureSpec, generate
from bench.measure import drops
from tests.oracle import report_streams
from tests.replay.engine_replay import Replayed, replay_engine

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed"),
]

CALLS, SECONDS = 3, 2.0
PACKETS = 100  # per stream: 2 s of 20 ms packets


def tshark(*args: str) -> str:
    return subprocess.run(["tshark", *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bench") / "three.pcap"
    stats = generate(path, CaptureSpec(CALLS, SECONDS))
    assert (stats.frames, stats.rtp_packets, stats.sip_messages) == (621, 600, 21)
    return path


def sip_messages(path: Path) -> dict[str, list[str]]:
    """Per Call-ID, the methods and status codes tshark sees, in capture order."""
    out = tshark("-r", str(path), "-Y", "sip", "-T", "fields", "-e", "sip.Call-ID", "-e", "sip.CSeq.method",
                 "-e", "sip.Status-Code")  # fmt: skip
    calls: dict[str, list[str]] = {}
    for line in out.splitlines():
        call_id, method, status = line.split("\t")
        calls.setdefault(call_id, []).append(status or method)
    return calls


def rtp_streams(path: Path, tmp_path: Path) -> list[tuple[int, int]]:
    report = tmp_path / "report.txt"
    report.write_text(tshark("-r", str(path), "-q", "-z", "rtp,streams"))
    return [(s.packets, s.lost) for s in report_streams(report)]


def test_tshark_sees_three_calls_and_six_streams(capture: Path, tmp_path: Path) -> None:
    calls = sip_messages(capture)
    assert len(calls) == CALLS
    for messages in calls.values():
        assert sorted(messages) == sorted(["INVITE", "100", "180", "200", "ACK", "BYE", "200"])
        assert messages[0] == "INVITE" and messages[-2] == "BYE"
    assert rtp_streams(capture, tmp_path) == [(PACKETS, 0)] * 2 * CALLS


def test_every_checksum_is_right(capture: Path) -> None:
    out = tshark("-r", str(capture), "-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
                 "-T", "fields", "-e", "ip.checksum.status", "-e", "udp.checksum.status")  # fmt: skip
    assert Counter(out.splitlines()) == {"1\t1": 621}  # 1: good


def no_drops(replayed: Replayed) -> dict[str, int]:
    assert replayed.engine is not None
    return drops(replayed.engine.counters)


def test_engine_records_three_calls_with_two_legs(capture: Path) -> None:
    replayed = replay_engine(capture)
    assert len(replayed.records) == CALLS
    for call_id, records in replayed.records.items():
        (record,) = records
        assert record.end_reason == "bye" and record.sip_status == 200
        assert sorted(leg.side for leg in record.legs) == ["callee", "caller"]
        assert [(leg.packets, leg.lost, leg.duplicates) for leg in record.legs] == [(PACKETS, 0, 0)] * 2
        assert abs(len(replayed.stereo(call_id)) - SECONDS * 8000) < 160
    assert no_drops(replayed) == {}


def test_loss_reordering_and_vlan_agree_with_tshark(tmp_path: Path) -> None:
    path = tmp_path / "unruly.pcap"
    stats = generate(path, CaptureSpec(CALLS, SECONDS, loss=0.03, reorder=0.03, vlan=42, seed=7, rounds=2))
    streams = rtp_streams(path, tmp_path)
    assert len(streams) == 2 * CALLS * 2
    assert sum(p for p, _ in streams) == stats.rtp_packets < 2 * 2 * CALLS * PACKETS
    replayed = replay_engine(path)
    legs = [leg for records in replayed.records.values() for r in records for leg in r.legs]
    assert len(replayed.records) == 2 * CALLS and len(legs) == 2 * CALLS * 2
    assert sum(leg.packets for leg in legs) == stats.rtp_packets
    assert sum(leg.lost for leg in legs) == sum(lost for _, lost in streams) > 0
    assert no_drops(replayed).keys() <= {"rtp.late", "rtp.reordered"}


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    spec = CaptureSpec(2, 0.2, loss=0.1, reorder=0.1)
    generate(tmp_path / "a.pcap", spec)
    generate(tmp_path / "b.pcap", spec)
    assert (tmp_path / "a.pcap").read_bytes() == (tmp_path / "b.pcap").read_bytes()


def test_runner_measures_and_appends(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "RESULTS.md"
    argv = ["--calls", "3", "--seconds", "2", "--packets", "0", "--repeat", "1"]
    assert run.main([*argv, "--out", str(tmp_path / "out"), "--results", str(results)]) == 0
    text = results.read_text()
    assert "### Summary" in text and "### Problems" not in text
    for stage in ("tshark", *run.STAGES):
        assert f"| {stage} |" in text
    row = next(line for line in text.splitlines() if line.startswith("| 3 | 2 | 621 |"))  # 3 calls of 2 s
    peak_rss_mib = int(row.split("|")[-3].replace(",", ""))
    assert peak_rss_mib < 200  # about 55: the runner's memory probe (256 MiB) must not be inherited
    assert re.search(r"creating a file where the stores go .*: \d+ us before .*, \d+ us after", text)
    assert re.search(r"memory the process has just mapped: \d+\.\d\d ms per MiB before", text)
    assert "### Summary" in capsys.readouterr().out
