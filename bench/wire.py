"""Frames and the pcap file for the benchmark captures, built with ``struct`` for speed.

Ethernet II with an optional IEEE 802.1Q tag, IPv4 (RFC 791: no options, DSCP EF for voice and CS3 for
signalling, correct header checksum), UDP (RFC 768, correct checksum over the pseudo-header), RTP
fixed header (RFC 3550 section 5.1) with 160-byte G.711 payloads (RFC 3551: PCMU 0, PCMA 8), and the
classic little-endian microsecond pcap format (LINKTYPE_ETHERNET).

Checksums cost a few integer operations per RTP packet. The ones'-complement sum of 16-bit words
(RFC 1071) is the value modulo 0xFFFF, as 2**16 is 1 modulo 0xFFFF: the constant words of a stream are
summed once, and each packet adds its IP ID, sequence number, RTP timestamp and its payload's
precomputed sum; a 32-bit field such as the timestamp can be added whole.
"""

from __future__ import annotations

import random
import struct
from operator import itemgetter
from typing import BinaryIO

import numpy as np

from recorderd.codecs.g711 import alaw_encode, ulaw_encode

EPOCH = 1_767_225_600  # 2026-01-01T00:00:00Z, capture time zero
SAMPLES = 160  # 20 ms at 8 kHz, one byte per sample
TOS_EF, TOS_CS3 = 0xB8, 0x60
PCP_VOICE, PCP_SIGNALLING = 5, 3
PCMU, PCMA = 0, 8
TONES = (400, 1000)  # Hz, caller then callee: whole periods in 160 samples, so packets loop seamlessly
LEVELS = (0.05, 0.3, 0.6, 0.15)  # a slow envelope, stepped every 10 packets, so the audio is not flat

_PCAP_HEADER = struct.Struct("<IHHiIII")
_RECORD = struct.Struct("<IIII")
_IP_UDP_RTP = struct.Struct("!BBHHHBBH4s4sHHHHBBHII")  # 40 bytes: IPv4, UDP, RTP fixed header
_IP_UDP = struct.Struct("!BBHHHBBH4s4sHHHH")  # 28 bytes
_TAG = struct.Struct("!HH")
_ETH_IPV4 = b"\x08\x00"
_RTP_IP_LEN = 20 + 8 + 12 + SAMPLES
_RTP_UDP_LEN = 8 + 12 + SAMPLES

Timed = list[tuple[int, bytes]]  # (capture time in microseconds from EPOCH, frame)


def rtp_record_bytes(link: bytes) -> int:
    """Bytes an RTP frame with link header ``link`` takes in the file, its record header included."""
    return _RECORD.size + len(link) + _RTP_IP_LEN


def _fold(total: int) -> int:
    """The Internet checksum (RFC 1071) of words summing to ``total``; never 0, which UDP reserves."""
    return 0xFFFF - total % 0xFFFF


def _words(data: bytes) -> int:
    """Sum of ``data`` as big-endian 16-bit words (zero-padded), modulo 0xFFFF."""
    return int.from_bytes(data + b"\0" * (len(data) & 1), "big") % 0xFFFF


def _payloads(pt: int) -> list[tuple[bytes, ...]]:
    """Per side (caller, callee): the G.711 payload variants, one per envelope level."""
    encode = ulaw_encode if pt == PCMU else alaw_encode
    t = np.arange(SAMPLES) / 8000
    out = []
    for tone in TONES:
        wave = np.sin(2 * np.pi * tone * t)
        out.append(tuple(encode((wave * level * 32767).astype(np.int16)).tobytes() for level in LEVELS))
    return out


PAYLOADS = {pt: _payloads(pt) for pt in (PCMU, PCMA)}
PAYLOAD_SUMS = {pt: [tuple(_words(p) for p in side) for side in PAYLOADS[pt]] for pt in PAYLOADS}


def ethernet(src_mac: bytes, dst_mac: bytes, vlan: int | None, pcp: int) -> bytes:
    tag = b"" if vlan is None else _TAG.pack(0x8100, pcp << 13 | vlan)
    return dst_mac + src_mac + tag + _ETH_IPV4


class RtpLeg:
    """One RTP stream (one direction of a call): constant header parts and the running counters."""

    __slots__ = (
        "link", "src", "dst", "sport", "dport", "pt", "ssrc", "seq", "ts", "ip_id",
        "ip_base", "udp_base", "payloads", "sums", "held",
    )  # fmt: skip

    def __init__(
        self,
        link: bytes,
        src: bytes,
        sport: int,
        dst: bytes,
        dport: int,
        pt: int,
        side: int,
        rng: random.Random,
    ) -> None:
        self.link, self.src, self.dst, self.sport, self.dport, self.pt = link, src, dst, sport, dport, pt
        self.ssrc = rng.getrandbits(32)
        self.seq = rng.getrandbits(16)
        self.ts = rng.getrandbits(32)
        self.ip_id = rng.getrandbits(16)
        addresses = _words(src + dst)
        self.ip_base = (0x4500 | TOS_EF) + _RTP_IP_LEN + 0x4000 + (64 << 8 | 17) + addresses
        # UDP pseudo-header (RFC 768), UDP header without its checksum, RTP words other than seq/ts.
        self.udp_base = addresses + 17 + 2 * _RTP_UDP_LEN + sport + dport + (0x80 << 8 | pt) + self.ssrc
        self.payloads = PAYLOADS[pt][side]
        self.sums = PAYLOAD_SUMS[pt][side]
        self.held: bytes | None = None

    def packet(self, k: int) -> bytes:
        """The frame of this stream's ``k``-th packet; advances sequence number, timestamp and IP ID."""
        variant = k // 10 % len(LEVELS)
        marker = 0x80 if k == 0 else 0
        seq, ts, ip_id = self.seq, self.ts, self.ip_id
        self.seq, self.ts, self.ip_id = (seq + 1) & 0xFFFF, (ts + SAMPLES) & 0xFFFFFFFF, (ip_id + 1) & 0xFFFF
        udp_sum = _fold(self.udp_base + marker + seq + ts + self.sums[variant])
        ip_sum = _fold(self.ip_base + ip_id)
        header = _IP_UDP_RTP.pack(
            0x45, TOS_EF, _RTP_IP_LEN, ip_id, 0x4000, 64, 17, ip_sum, self.src, self.dst,
            self.sport, self.dport, _RTP_UDP_LEN, udp_sum, 0x80, marker | self.pt, seq, ts, self.ssrc,
        )  # fmt: skip
        return self.link + header + self.payloads[variant]


def udp_frame(
    link: bytes, src: bytes, sport: int, dst: bytes, dport: int, payload: bytes, ip_id: int
) -> bytes:
    """A whole Ethernet/IPv4/UDP frame for a signalling message, checksums computed in full."""
    total = 28 + len(payload)
    addresses = _words(src + dst)
    ip_sum = _fold((0x4500 | TOS_CS3) + total + ip_id + (64 << 8 | 17) + addresses)
    udp_sum = _fold(addresses + 17 + 2 * (total - 20) + sport + dport + _words(payload))
    header = _IP_UDP.pack(
        0x45, TOS_CS3, total, ip_id, 0, 64, 17, ip_sum, src, dst, sport, dport, total - 20, udp_sum
    )
    return link + header + payload


class PcapWriter:
    """A little-endian microsecond pcap (LINKTYPE_ETHERNET) written in blocks."""

    def __init__(self, file: BinaryIO) -> None:
        self.file = file
        self.frames = 0
        self.bytes = _PCAP_HEADER.size
        file.write(_PCAP_HEADER.pack(0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))

    def write(self, items: Timed) -> None:
        """Write ``items`` sorted by time."""
        items.sort(key=itemgetter(0))
        pack = _RECORD.pack
        parts = []
        for at, frame in items:
            size = len(frame)
            parts.append(pack(EPOCH + at // 1_000_000, at % 1_000_000, size, size))
            parts.append(frame)
        block = b"".join(parts)
        self.file.write(block)
        self.frames += len(items)
        self.bytes += len(block)
