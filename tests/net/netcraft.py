"""Test helpers: real packets out of pcaps/ and the headers to rewrap, fragment or segment them.

The slicing here is independent of recorderd.net (fixed offsets, plain struct) so that the tests do not
check the code against itself.
"""

from __future__ import annotations

import functools
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from recorderd.events import Frame
from tests.conftest import PCAPS, read_frames

ALL_PCAPS = sorted(p.name for p in PCAPS.glob("*.pcap"))
TCP_PCAP = "sip-tcp-call-rtp.pcap"
MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")
V6_SRC = bytes.fromhex("20010db8000000000000000000000001")
V6_DST = bytes.fromhex("20010db8000000000000000000000002")


@functools.cache
def frames(name: str) -> tuple[Frame, ...]:
    """Every frame of a real capture (all of them are Ethernet)."""
    return tuple(Frame(ts, 1, data) for ts, data in read_frames(PCAPS / name))


def ip_packet(frame: Frame) -> bytes:
    """The IPv4 packet of an untagged Ethernet frame, without padding."""
    (total,) = struct.unpack_from("!H", frame.data, 16)
    return frame.data[14 : 14 + total]


def udp_segment(packet: bytes) -> bytes:
    """UDP header and payload of an IPv4 packet."""
    return packet[(packet[0] & 0x0F) * 4 :]


def largest_sip_udp(name: str = "onsip-testcall-nat-auth.pcap") -> bytes:
    """The longest SIP-over-UDP IPv4 packet in a capture (an INVITE with SDP)."""
    candidates = [
        ip_packet(f) for f in frames(name) if f.data[23] == 17 and f.data[42:50] in (b"INVITE s", b"SIP/2.0 ")
    ]
    return max(candidates, key=len)


# -- headers ---------------------------------------------------------------------------------------


def checksum(header: bytes) -> int:
    total: int = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4(
    src: bytes,
    dst: bytes,
    proto: int,
    payload: bytes,
    *,
    ident: int = 0x1234,
    offset: int = 0,
    more: bool = False,
    options: bytes = b"",
) -> bytes:
    ihl = 5 + len(options) // 4
    frag = (0x2000 if more else 0) | (offset // 8)
    head = struct.pack(
        "!BBHHHBBH4s4s", 0x40 | ihl, 0, ihl * 4 + len(payload), ident, frag, 64, proto, 0, src, dst
    )
    head += options
    head = head[:10] + struct.pack("!H", checksum(head)) + head[12:]
    return head + payload


def ipv6(next_header: int, payload: bytes, src: bytes = V6_SRC, dst: bytes = V6_DST) -> bytes:
    return struct.pack("!IHBB16s16s", 0x60000000, len(payload), next_header, 64, src, dst) + payload


def ipv6_fragment(next_header: int, offset: int, more: bool, ident: int) -> bytes:
    return struct.pack("!BBHI", next_header, 0, offset | int(more), ident)


def ipv6_options(next_header: int, units: int = 0) -> bytes:
    """A Hop-by-Hop/Destination Options or Routing header of ``(units + 1) * 8`` bytes (PadN)."""
    size = (units + 1) * 8
    return bytes([next_header, units, 1, size - 4]) + bytes(size - 4)


def udp(sport: int, dport: int, payload: bytes, *, length: int | None = None) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload) if length is None else length, 0) + (payload)


def tcp(sport: int, dport: int, seq: int, flags: int, payload: bytes = b"") -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, flags, 65535, 0, 0) + payload


def ether(packet: bytes, ethertype: int = 0x0800, tags: tuple[int, ...] = ()) -> bytes:
    """Ethernet II; each entry of ``tags`` is a TPID, given outermost first."""
    head = MAC_B + MAC_A
    for tpid in tags:
        head += struct.pack("!HH", tpid, 100)
    return head + struct.pack("!H", ethertype) + packet


def eth_frame(packet: bytes, ts: float = 1.0, ethertype: int = 0x0800) -> Frame:
    return Frame(ts, 1, ether(packet, ethertype))


# -- fragmentation -----------------------------------------------------------------------------------


def split(data: bytes, size: int) -> list[tuple[int, bytes]]:
    """``(offset, chunk)`` pieces of ``size`` bytes (a multiple of 8)."""
    return [(o, data[o : o + size]) for o in range(0, len(data), size)]


def fragment_ipv4(packet: bytes, pieces: list[tuple[int, bytes]]) -> list[bytes]:
    """IPv4 fragments of ``packet`` carrying the given pieces of its payload."""
    src, dst, proto = packet[12:16], packet[16:20], packet[9]
    total = len(udp_segment(packet))
    return [
        ipv4(src, dst, proto, chunk, ident=0xBEEF, offset=off, more=off + len(chunk) < total)
        for off, chunk in pieces
    ]


def fragment_ipv6(
    segment: bytes, pieces: list[tuple[int, bytes]], *, ident: int = 0xCAFE, first_nh: int = 17
) -> list[bytes]:
    """IPv6 fragments of a fragmentable part whose first header is ``first_nh``."""
    total = len(segment)
    return [
        ipv6(44, ipv6_fragment(first_nh, off, off + len(chunk) < total, ident) + chunk)
        for off, chunk in pieces
    ]


# -- TCP streams of the real capture ------------------------------------------------------------------


def tcp_segments(name: str = TCP_PCAP) -> list[tuple[Frame, bytes, int, int, int, bytes]]:
    """``(frame, src, sport, dport, seq, payload)`` for every TCP segment with data."""
    out = []
    for frame in frames(name):
        data = frame.data
        if data[23] != 6:
            continue
        packet = ip_packet(frame)
        ihl = (packet[0] & 0x0F) * 4
        sport, dport, seq = struct.unpack_from("!HHI", packet, ihl)
        doff = (packet[ihl + 12] >> 4) * 4
        payload = packet[ihl + doff :]
        if payload:
            out.append((frame, packet[12:16], sport, dport, seq, payload))
    return out


def tcp_stream(name: str = TCP_PCAP, sport: int = 64802) -> tuple[int, bytes]:
    """``(first seq, bytes)`` of one direction of the capture's SIP connection."""
    segs = [s for s in tcp_segments(name) if s[2] == sport]
    stream = b"".join(s[5] for s in segs)
    return segs[0][4], stream


# -- tshark ---------------------------------------------------------------------------------------------


def tshark(path: Path | str, display_filter: str, *fields: str) -> list[list[str]]:
    """Rows of ``tshark -T fields``; skips the test when tshark is not installed."""
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed")
    cmd = ["tshark", "-r", str(path), "-Y", display_filter, "-T", "fields", "-E", "separator=;"]
    for field in fields:
        cmd += ["-e", field]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [line.split(";") for line in out.splitlines()]
