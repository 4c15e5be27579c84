"""The crafted captures against an independent reader: tshark must see what expected.json says.

These tests check the oracle, not recorderd. ``pcaps/crafted/make.py`` wrote ``expected.json`` from
what it put into each file; here tshark 4.0 reads every file and must find the same frames, SIP
messages (by method and status), Call-IDs, RTP streams (RFC 3550: one per source, destination and
SSRC) with their packet counts, sequence numbers, losses, duplicates, payload digests and RFC 4733
digits, and the audio must decode (ITU-T G.711, decoded here from the standard's formula) to the
stated tones. The generator must also reproduce every committed file byte for byte.
"""

from __future__ import annotations

import hashlib
import importlib
import ipaddress
import json
import re
import shutil
import struct
import subprocess
import sys
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

ROOT = Path(__file__).resolve().parents[2]
CRAFTED = ROOT / "pcaps" / "crafted"
EXPECTED: dict[str, Any] = json.loads((CRAFTED / "expected.json").read_text(encoding="utf-8"))
FILES = sorted(EXPECTED["files"])
TSHARK = shutil.which("tshark") or "/usr/bin/tshark"
MAX_FILE_BYTES = 300_000

FIELDS = (
    "frame.number",
    "frame.time_epoch",
    "sip.Request-Line",
    "sip.Status-Line",
    "sip.Call-ID",
    "ip.src",
    "ipv6.src",
    "udp.srcport",
    "ip.dst",
    "ipv6.dst",
    "udp.dstport",
    "rtp.ssrc",
    "rtp.seq",
    "rtp.timestamp",
    "rtp.p_type",
    "rtp.payload",
    "rtpevent.event_id",
    "rtpevent.end_of_event",
)
F = {name: i for i, name in enumerate(FIELDS)}
# Heuristic RTP finds streams whose SDP address is not where the packets go (NAT); out-of-order
# TCP reassembly lets tshark rebuild the INVITE whose last segment arrives before the middle one.
OPTIONS = ("-o", "rtp.heuristic_rtp:TRUE", "-o", "tcp.reassemble_out_of_order:TRUE")
STREAM_ROW = re.compile(
    r"^\s*[\d.]+\s+[\d.]+\s+(\S+)\s+(\d+)\s+(\S+)\s+(\d+)\s+(0x[0-9A-F]+)\s+.+?\s+(\d+)\s+-?\d+ \("
)
DIGITS = "0123456789*#"
PT_TELEPHONE_EVENT = 101
PT_CN = 13

Endpoint = tuple[str, int]
StreamKey = tuple[str, int, str, int, int]  # src ip, sport, dst ip, dport, ssrc


@dataclass
class RtpRow:
    time: float
    seq: int
    ts: int
    pt: int
    payload: bytes
    event: int | None
    end: bool


@dataclass
class Report:
    """What tshark saw in one file."""

    frames: int = 0
    sip_total: int = -1  # "Number of SIP messages" from -z sip,stat
    sip: list[tuple[float, str, str]] = field(default_factory=list)  # (time, start line, Call-ID)
    rtp: dict[StreamKey, list[RtpRow]] = field(default_factory=dict)
    streams: dict[tuple[str, int, str, int, str], int] = field(default_factory=dict)


def _ip(text: str) -> str:
    return str(ipaddress.ip_address(text))


def _endpoint(text: str) -> Endpoint:
    host, _, port = text.rpartition(":")
    return _ip(host.strip("[]")), int(port)


def _add_packet(report: Report, row: list[str]) -> None:
    report.frames += 1
    time = float(row[F["frame.time_epoch"]])
    starts = [s for s in (row[F["sip.Request-Line"]], row[F["sip.Status-Line"]]) if s]
    call_ids = row[F["sip.Call-ID"]].split("|")
    for line in "|".join(starts).split("|") if starts else []:
        report.sip.append((time, line, call_ids[0]))
    if not row[F["rtp.ssrc"]]:
        return
    src = row[F["ip.src"]] or row[F["ipv6.src"]]
    dst = row[F["ip.dst"]] or row[F["ipv6.dst"]]
    key = (
        _ip(src),
        int(row[F["udp.srcport"]]),
        _ip(dst),
        int(row[F["udp.dstport"]]),
        int(row[F["rtp.ssrc"]], 16),
    )
    event = row[F["rtpevent.event_id"]]
    report.rtp.setdefault(key, []).append(
        RtpRow(
            time=time,
            seq=int(row[F["rtp.seq"]]),
            ts=int(row[F["rtp.timestamp"]]),
            pt=int(row[F["rtp.p_type"]]),
            payload=bytes.fromhex(row[F["rtp.payload"]].replace(":", "")),
            event=int(event) if event else None,
            end=row[F["rtpevent.end_of_event"]] in ("1", "True"),
        )
    )


def _add_stat(report: Report, line: str) -> None:
    if line.startswith("Number of SIP messages:"):
        report.sip_total = int(line.split(":")[1])
    elif match := STREAM_ROW.match(line):
        src, sport, dst, dport, ssrc, packets = match.groups()
        report.streams[(_ip(src), int(sport), _ip(dst), int(dport), ssrc)] = int(packets)


def run_tshark(path: Path) -> Report:
    """One tshark pass: per-packet fields, then the sip,stat and rtp,streams tables."""
    cmd = [TSHARK, "-r", str(path), "-n", *OPTIONS, "-T", "fields", "-E", "separator=/t"]
    cmd += ["-E", "occurrence=a", "-E", "aggregator=|"]
    for name in FIELDS:
        cmd += ["-e", name]
    cmd += ["-z", "sip,stat", "-z", "rtp,streams"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120).stdout
    report = Report()
    for line in out.splitlines():
        row = line.split("\t")
        if len(row) == len(FIELDS) and row[0].isdigit():
            _add_packet(report, row)
        else:
            _add_stat(report, line)
    return report


@pytest.fixture(scope="module")
def reports() -> dict[str, Report]:
    if not Path(TSHARK).exists():
        pytest.skip("tshark is not installed")
    with ThreadPoolExecutor(max_workers=2) as pool:
        found = pool.map(run_tshark, (CRAFTED / name for name in FILES))
        return dict(zip(FILES, found, strict=True))


def _calls(name: str) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = EXPECTED["files"][name]["calls"]
    return calls


def _streams(name: str) -> list[dict[str, Any]]:
    return [s for call in _calls(name) for s in call["streams"]]


def _rows(report: Report, stream: dict[str, Any]) -> list[RtpRow]:
    src, dst = _endpoint(stream["src"]), _endpoint(stream["dst"])
    return report.rtp.get((*src, *dst, stream["ssrc"]), [])


def unwrap(seqs: list[int]) -> list[int]:
    """16-bit sequence numbers in arrival order -> rollover-extended ones (RFC 3550 A.1 idea)."""
    out: list[int] = []
    for seq in seqs:
        if not out:
            out.append(seq)
            continue
        delta = (seq - out[-1] + 0x8000) % 0x10000 - 0x8000
        out.append(out[-1] + delta)
    return out


def unique_in_order(rows: list[RtpRow]) -> dict[int, RtpRow]:
    """Unique packets keyed by extended sequence number, in sending order."""
    by_ext: dict[int, RtpRow] = {}
    for ext, row in zip(unwrap([r.seq for r in rows]), rows, strict=True):
        by_ext.setdefault(ext, row)
    return dict(sorted(by_ext.items()))


# ---------------------------------------------------------------------------------------------------
# G.711 decoding from the segment formula of ITU-T G.711 (independent of the generator's encoder)


def g711_decode(codec: str, payload: bytes) -> NDArray[np.int32]:
    codes = np.frombuffer(payload, dtype=np.uint8).astype(np.int32)
    if codec == "PCMU":
        u = ~codes & 0xFF
        exp, mant = (u >> 4) & 7, u & 0x0F
        mag = (((mant << 3) + 0x84) << exp) - 0x84
        return np.where(u & 0x80, -mag, mag)
    a = codes ^ 0x55
    exp, mant = (a >> 4) & 7, a & 0x0F
    mag = np.where(exp == 0, (mant << 4) + 8, ((mant << 4) + 0x108) << np.maximum(exp - 1, 0))
    return np.where(a & 0x80, mag, -mag)


def dominant_hz(samples: NDArray[np.int32]) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * 8000 / len(samples))


# ---------------------------------------------------------------------------------------------------
# Fast checks on the committed files


def test_expected_lists_every_crafted_file() -> None:
    assert sorted(p.name for p in CRAFTED.glob("*.pcap")) == FILES
    assert len(FILES) == 17


@pytest.mark.parametrize("name", FILES)
def test_files_are_small_and_match_their_digest(name: str) -> None:
    data = (CRAFTED / name).read_bytes()
    entry = EXPECTED["files"][name]
    assert len(data) == entry["bytes"] < MAX_FILE_BYTES
    assert hashlib.sha256(data).hexdigest() == entry["sha256"]


@pytest.mark.parametrize("name", FILES)
def test_pcap_header_carries_the_link_type(name: str) -> None:
    magic, major, minor, _, _, snaplen, linktype = struct.unpack(
        "<IHHiIII", (CRAFTED / name).read_bytes()[:24]
    )
    assert (magic, major, minor, snaplen) == (0xA1B2C3D4, 2, 4, 65535)
    assert linktype == EXPECTED["files"][name]["linktype"]


def test_g711_decoder_known_values() -> None:
    # Pins the test's own decoder: mu-law 0xFF -> 0, A-law 0xD5 -> 8, extremes +-32124 / +-32256.
    assert g711_decode("PCMU", b"\xff\x7f\x80\x00").tolist() == [0, 0, 32124, -32124]
    assert g711_decode("PCMA", b"\xd5\x55\xaa\x2a").tolist() == [8, -8, 32256, -32256]


def test_generator_encoder_matches_audioop(monkeypatch: pytest.MonkeyPatch) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")
    monkeypatch.syspath_prepend(str(CRAFTED))
    media = importlib.import_module("craft_media")
    values = range(-32768, 32768)
    pcm = struct.pack(f"<{len(values)}h", *values)
    assert audioop.lin2ulaw(pcm, 2) == bytes(media.ulaw_encode(v) for v in values)
    assert audioop.lin2alaw(pcm, 2) == bytes(media.alaw_encode(v) for v in values)


# ---------------------------------------------------------------------------------------------------
# tshark agrees with expected.json


@pytest.mark.slow
@pytest.mark.parametrize("name", FILES)
def test_frames_and_sip_messages(name: str, reports: dict[str, Report]) -> None:
    report, want = reports[name], EXPECTED["files"][name]["tshark"]
    assert report.frames == want["frames"]
    assert report.sip_total == want["sip_messages"] == len(report.sip)
    requests = Counter(line.split(" ")[0] for _, line, _ in report.sip if not line.startswith("SIP/2.0 "))
    responses = Counter(line.split(" ")[1] for _, line, _ in report.sip if line.startswith("SIP/2.0 "))
    assert dict(requests) == want["sip_requests"]
    assert dict(responses) == want["sip_responses"]


@pytest.mark.slow
@pytest.mark.parametrize("name", FILES)
def test_calls_and_their_times(name: str, reports: dict[str, Report]) -> None:
    sip = reports[name].sip
    invites = {cid for _, line, cid in sip if line.startswith("INVITE ")}
    calls = _calls(name)
    assert invites == {c["call_id"] for c in calls}
    for call in calls:
        mine = [(t, line) for t, line, cid in sip if cid == call["call_id"]]
        # A fragmented or segmented INVITE is shown on its last piece, a few hundred us later.
        first_invite = min(t for t, line in mine if line.startswith("INVITE "))
        assert 0 <= first_invite - call["invite_time"] < 0.005
        finals = [t for t, line in mine if re.match(r"SIP/2\.0 [2-6]\d\d ", line)]
        if call["answered"]:
            assert call["answer_time"] in [round(t, 6) for t in finals]
        ends = {round(t, 6): line for t, line in mine}
        if call["end"] == "bye":
            assert ends[call["end_time"]].startswith("BYE ")
        elif call["end"] == "cancel":
            assert ends[call["end_time"]].startswith("CANCEL ")
        elif call["end"] == "rejected":
            assert ends[call["end_time"]].startswith(f"SIP/2.0 {call['sip_status']} ")
        else:
            assert call["end_time"] is None
            assert not any(line.startswith("BYE ") for line in ends.values())
        for hold in call["holds"]:
            assert ends[hold["start"]].startswith("INVITE ")
            assert ends[hold["end"]].startswith("INVITE ")


@pytest.mark.slow
@pytest.mark.parametrize("name", FILES)
def test_rtp_streams_table(name: str, reports: dict[str, Report]) -> None:
    want = EXPECTED["files"][name]["tshark"]
    expected = {
        (*_endpoint(s["src"]), *_endpoint(s["dst"]), s["ssrc_hex"]): s["packets"]
        for s in want["rtp_stream_packets"]
    }
    assert reports[name].streams == expected
    assert len(expected) == want["rtp_streams"]
    assert len(reports[name].rtp) == want["rtp_streams"]


@pytest.mark.slow
@pytest.mark.parametrize("name", FILES)
def test_rtp_stream_contents(name: str, reports: dict[str, Report]) -> None:
    for stream in _streams(name):
        rows = _rows(reports[name], stream)
        unique = unique_in_order(rows)
        exts = list(unique)
        missing = sorted(set(range(exts[0], exts[-1] + 1)) - set(exts))
        audio = [r for r in unique.values() if r.pt == stream["payload_type"]]
        assert len(rows) == stream["captured"]
        assert len(unique) == stream["packets"]
        assert len(rows) - len(unique) == stream["duplicates"]
        assert [e & 0xFFFF for e in missing] == stream["lost"]
        assert (unique[exts[0]].seq, unique[exts[-1]].seq) == (stream["first_seq"], stream["last_seq"])
        assert unique[exts[0]].ts == stream["first_rtp_ts"]
        assert len(audio) == stream["audio_packets"]
        assert sum(r.pt == PT_TELEPHONE_EVENT for r in unique.values()) == stream["event_packets"]
        assert sum(r.pt == PT_CN for r in unique.values()) == stream["cn_packets"]
        payloads = b"".join(r.payload for r in audio)
        assert len(payloads) == stream["samples"]
        assert hashlib.sha256(payloads).hexdigest() == stream["payload_sha256"]
        assert round(min(r.time for r in rows), 6) == stream["first_time"]
        assert round(max(r.time for r in rows), 6) == stream["last_time"]


@pytest.mark.slow
@pytest.mark.parametrize("name", FILES)
def test_audio_carries_the_stated_tone(name: str, reports: dict[str, Report]) -> None:
    for stream in _streams(name):
        audio = [r for r in unique_in_order(_rows(reports[name], stream)).values()]
        payload = b"".join(r.payload for r in audio if r.pt == stream["payload_type"])
        samples = g711_decode(stream["codec"], payload[:8000])
        assert abs(dominant_hz(samples) - stream["tone_hz"]) <= 2, stream["src"]


@pytest.mark.slow
@pytest.mark.parametrize("name", FILES)
def test_dtmf_digits(name: str, reports: dict[str, Report]) -> None:
    events: dict[tuple[int, int], list[RtpRow]] = {}  # (ssrc, event timestamp) -> packets
    for key, rows in reports[name].rtp.items():
        for row in rows:
            if row.event is not None:
                events.setdefault((key[4], row.ts), []).append(row)
    ordered = sorted(events.values(), key=lambda rows: rows[0].time)
    digits = "".join(DIGITS[rows[0].event or 0] for rows in ordered if any(r.end for r in rows))
    assert digits == "".join(call["dtmf"] for call in _calls(name))
    for call in _calls(name):
        for event in call["dtmf_events"]:
            (rows,) = [v for (_, ts), v in events.items() if ts == event["rtp_ts"]]
            assert round(rows[0].time, 6) == event["time"]
            assert sum(r.end for r in rows) == 3


@pytest.mark.slow
def test_generator_reproduces_committed_files(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(CRAFTED / "make.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    made = sorted(p.name for p in tmp_path.iterdir())
    assert made == sorted([*FILES, "expected.json"])
    for name in made:
        digest = hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()
        assert digest == hashlib.sha256((CRAFTED / name).read_bytes()).hexdigest(), name
