"""Test helpers: SIP payloads out of the real captures in pcaps/, and tshark as the oracle.

The slicing here is deliberately tiny (Ethernet, optional 802.1Q, IPv4, UDP/TCP) so the sip tests do
not depend on recorderd.net. sip-tcp-call-rtp.pcap carries one SIP message per TCP segment, so each
segment's payload is taken whole.
"""

from __future__ import annotations

import functools
import shutil
import struct
import subprocess

import pytest

from recorderd.events import Datagram, Transport
from tests.conftest import PCAPS, read_frames

SIP_PORT = 5060
ALL_PCAPS = sorted(p.stem for p in PCAPS.glob("*.pcap"))

_PORTS = struct.Struct("!HH")


@functools.cache
def sip_datagrams(name: str) -> tuple[tuple[int, Datagram], ...]:
    """(frame number, Datagram) for every non-empty UDP/TCP payload to or from port 5060."""
    found: list[tuple[int, Datagram]] = []
    for number, (ts, frame) in enumerate(read_frames(PCAPS / f"{name}.pcap"), start=1):
        dgram = _slice(ts, frame)
        if dgram is not None and SIP_PORT in (dgram.sport, dgram.dport) and dgram.payload:
            found.append((number, dgram))
    return tuple(found)


def _slice(ts: float, frame: bytes) -> Datagram | None:
    offset, ethertype = 14, frame[12:14]
    if ethertype == b"\x81\x00":
        offset, ethertype = 18, frame[16:18]
    if ethertype != b"\x08\x00":
        return None
    ip = frame[offset:]
    ihl = (ip[0] & 0x0F) * 4
    total = struct.unpack_from("!H", ip, 2)[0]
    proto, src, dst = ip[9], ip[12:16], ip[16:20]
    l4 = ip[ihl:total]
    sport, dport = _PORTS.unpack_from(l4)
    if proto == 17:
        return Datagram(ts, Transport.UDP, src, sport, dst, dport, l4[8:])
    if proto == 6:
        return Datagram(ts, Transport.TCP, src, sport, dst, dport, l4[(l4[12] >> 4) * 4 :])
    return None


@functools.cache
def tshark_sip(name: str) -> dict[int, tuple[str, ...]]:
    """frame -> (method, status, call-id, cseq number, cseq method, sdp c= address, sdp m= port)."""
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.skip("tshark is not installed")
    fields = (
        "frame.number",
        "sip.Method",
        "sip.Status-Code",
        "sip.Call-ID",
        "sip.CSeq.seq",
        "sip.CSeq.method",
        "sdp.connection_info.address",
        "sdp.media.port",
    )
    command = [tshark, "-r", str(PCAPS / f"{name}.pcap"), "-Y", "sip", "-T", "fields"]
    command += ["-E", "separator=|"] + [arg for field in fields for arg in ("-e", field)]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rows = (line.split("|") for line in out.splitlines() if line)
    return {int(row[0]): tuple(row[1:]) for row in rows}
