"""Readers for the independent oracles: the tshark reports stored beside each real capture, and live
tshark runs on a capture (tshark is a test dependency installed by scripts/bootstrap)."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TsharkStream:
    src: str
    dst: str
    ssrc: int
    payload: str
    packets: int
    lost: int


@dataclass(frozen=True)
class TsharkDialog:
    call_id: str
    state: str  # COMPLETED, IN_CALL, REJECTED, ...
    status: int | None
    is_invite: bool


_STREAM = re.compile(
    r"^\s*[\d.]+\s+[\d.]+\s+(\S+)\s+(\d+)\s+(\S+)\s+(\d+)\s+0x([0-9A-Fa-f]+)\s+(.+?)\s+(\d+)\s+(-?\d+)\s+\("
)
_DIALOG = re.compile(r"^- Call-ID=(\S+)")
_STATE = re.compile(r"^\s+state=(\S+)")


def _endpoint(ip: str, port: str) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def report_streams(report: Path) -> list[TsharkStream]:
    """Rows of the ``-z rtp,streams`` table in a stored ``<name>.tshark.txt`` report."""
    text = report.read_text()
    section = text.split("RTP Streams", 1)[1].split("######", 1)[0]
    streams = []
    for line in section.splitlines():
        m = _STREAM.match(line)
        if m:
            src_ip, sport, dst_ip, dport, ssrc, payload, pkts, lost = m.groups()
            streams.append(
                TsharkStream(
                    _endpoint(src_ip, sport),
                    _endpoint(dst_ip, dport),
                    int(ssrc, 16),
                    payload.strip(),
                    int(pkts),
                    int(lost),
                )
            )
    return streams


def report_dialogs(report: Path) -> list[TsharkDialog]:
    """The per-Call-ID dialog table of a stored report (states as Wireshark's VoIP Calls names them)."""
    dialogs = []
    call_id = None
    for line in report.read_text().splitlines():
        m = _DIALOG.match(line)
        if m:
            call_id = m.group(1)
            continue
        m = _STATE.match(line)
        if m and call_id is not None:
            state = m.group(1)
            status = re.search(r"\((\d+)\)", state)
            dialogs.append(
                TsharkDialog(
                    call_id,
                    state.split("(")[0],
                    int(status.group(1)) if status else None,
                    not state.startswith("non-INVITE"),
                )
            )
            call_id = None
    return dialogs


@dataclass(frozen=True)
class TsharkRtp:
    time: float
    seq: int
    ts: int
    pt: int
    payload: bytes


def tshark_rtp_packets(pcap: Path) -> dict[int, list[TsharkRtp]]:
    """Per SSRC, every packet tshark decodes as RTP, in capture order (duplicates included)."""
    fields = ["frame.time_epoch", "rtp.ssrc", "rtp.seq", "rtp.timestamp", "rtp.p_type", "rtp.payload"]
    cmd = ["tshark", "-r", str(pcap), "-Y", "rtp", "-T", "fields", "-E", "separator=;"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    streams: dict[int, list[TsharkRtp]] = {}
    for line in out.splitlines():
        ts, ssrc, seq, rtp_ts, pt, payload = line.split(";")
        if not ssrc:  # tshark matched "rtp" on a frame it could not dissect as one (see the report)
            continue
        data = bytes.fromhex(payload.replace(":", ""))
        packet = TsharkRtp(float(ts), int(seq), int(rtp_ts), int(pt), data)
        streams.setdefault(int(ssrc, 16), []).append(packet)
    return streams


def unique_and_lost(packets: list[TsharkRtp]) -> tuple[int, int]:
    """RFC 3550 A.3 over ``packets``: (unique packets, expected - unique), sequence numbers unwrapped
    against the highest seen so far."""
    seen: set[int] = set()
    highest: int | None = None
    for p in packets:
        if highest is None:
            ext = p.seq
        else:
            delta = (p.seq - highest) % 0x10000
            ext = highest + (delta - 0x10000 if delta >= 0x8000 else delta)
        seen.add(ext)
        highest = ext if highest is None else max(highest, ext)
    return len(seen), (max(seen) - min(seen) + 1 - len(seen)) if seen else 0
