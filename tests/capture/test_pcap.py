"""Capture sources: the real captures as pcap, pcapng and nanosecond pcap, cut files, bad files, lo."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
from pathlib import Path

import pcapy
import pytest

from recorderd.capture import (
    DEFAULT_FILTER,
    CaptureStats,
    FrameSource,
    LiveSource,
    OfflineSource,
)
from recorderd.errors import CaptureError
from recorderd.events import Frame
from tests.conftest import PCAPS, read_frames

ALL = sorted(PCAPS.glob("*.pcap"))
TCP = PCAPS / "sip-tcp-call-rtp.pcap"
DTMF = PCAPS / "sip-dtmf2-rfc2833-603.pcap"


def as_tuples(frames: list[Frame]) -> list[tuple[float, bytes]]:
    return [(f.ts, f.data) for f in frames]


def record_ends(path: Path) -> list[int]:
    """File offsets at which each record of a little-endian microsecond pcap ends."""
    data = path.read_bytes()
    assert data[:4] == b"\xd4\xc3\xb2\xa1"
    ends, pos = [], 24
    while pos < len(data):
        (caplen,) = struct.unpack_from("<I", data, pos + 8)
        pos += 16 + caplen
        ends.append(pos)
    return ends


def editcap(src: Path, dst: Path, fmt: str) -> Path:
    if shutil.which("editcap") is None:
        pytest.skip("editcap is not installed")
    subprocess.run(["editcap", "-F", fmt, str(src), str(dst)], check=True, capture_output=True)
    return dst


def pcap_file(path: Path, linktype: int, records: list[tuple[int, int, bytes]], nsec: bool = False) -> Path:
    magic = 0xA1B23C4D if nsec else 0xA1B2C3D4
    data = struct.pack("<IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)
    for sec, frac, packet in records:
        data += struct.pack("<IIII", sec, frac, len(packet), len(packet)) + packet
    path.write_bytes(data)
    return path


# -- offline ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_reads_every_capture_as_libpcap_does(path: Path) -> None:
    expected = read_frames(path)
    with OfflineSource(path, batch_size=64) as source:
        got = list(source)
        assert source.linktype == 1
        assert source.truncated is None
        assert source.position == source.size == path.stat().st_size
        assert source.stats() == CaptureStats(len(expected), sum(len(d) for _, d in expected), 0, 0)
    assert as_tuples(got) == expected
    assert all(f.linktype == 1 for f in got)


def test_batches_are_bounded_and_complete() -> None:
    source = OfflineSource(DTMF, batch_size=100)
    batches = list(source.iter_batches())
    assert all(0 < len(b) <= 100 for b in batches)
    assert len(batches) == 14
    assert as_tuples([f for b in batches for f in b]) == read_frames(DTMF)


def test_position_grows_towards_the_size() -> None:
    source = OfflineSource(DTMF, batch_size=200)
    positions = [source.position]
    for _ in source.iter_batches():
        positions.append(source.position)
    assert positions == sorted(positions)
    assert positions[0] == 24 and positions[-1] == source.size


def test_position_is_exact_for_pcap() -> None:
    source = OfflineSource(DTMF, batch_size=100)
    ends = record_ends(DTMF)
    iterator = source.iter_batches()
    next(iterator)
    assert source.position == ends[99]
    source.close()


@pytest.mark.parametrize("fmt", ["pcapng", "nsecpcap"])
def test_converted_captures_give_the_same_frames(tmp_path: Path, fmt: str) -> None:
    converted = editcap(TCP, tmp_path / f"tcp.{fmt}", fmt)
    with OfflineSource(converted) as source:
        assert as_tuples(list(source)) == read_frames(TCP)
        assert source.position == source.size and source.truncated is None


def test_nanosecond_timestamps_come_out_as_microseconds(tmp_path: Path) -> None:
    """libpcap scales nanosecond files to microseconds when it opens them."""
    path = pcap_file(
        tmp_path / "ns.pcap", 1, [(1000, 123456789, bytes(60)), (1001, 999999999, bytes(60))], nsec=True
    )
    got = list(OfflineSource(path))
    assert [f.ts for f in got] == [1000.123456, 1001.999999]


@pytest.mark.parametrize("into_record", [1, 8, 15, 16, 17, 40])
def test_file_cut_inside_a_record_yields_every_whole_record(tmp_path: Path, into_record: int) -> None:
    ends = record_ends(DTMF)
    whole = 700  # records before the cut; the cut falls in a later batch than the first
    cut = ends[whole - 1] + into_record
    path = tmp_path / "cut.pcap"
    path.write_bytes(DTMF.read_bytes()[:cut])
    source = OfflineSource(path, batch_size=64)
    got = list(source)
    assert as_tuples(got) == read_frames(DTMF)[:whole]
    assert source.truncated is not None
    assert source.truncated.startswith(
        f"capture file {path} ended in the middle of a record after 700 frames"
    )
    assert source.stats().frames == whole
    assert list(source) == []  # stays finished


def test_file_cut_between_records_is_just_shorter(tmp_path: Path) -> None:
    path = tmp_path / "short.pcap"
    path.write_bytes(DTMF.read_bytes()[: record_ends(DTMF)[99]])
    source = OfflineSource(path, batch_size=64)
    assert len(list(source)) == 100 and source.truncated is None


def test_pcapng_cut_inside_a_block(tmp_path: Path) -> None:
    converted = editcap(TCP, tmp_path / "tcp.pcapng", "pcapng")
    path = tmp_path / "cut.pcapng"
    path.write_bytes(converted.read_bytes()[:-130])
    source = OfflineSource(path, batch_size=16)
    got = list(source)
    assert as_tuples(got) == read_frames(TCP)[: len(got)]
    assert len(got) >= 80
    assert source.truncated is not None and "ended in the middle of a record" in source.truncated


def test_header_only_file_has_no_frames(tmp_path: Path) -> None:
    path = pcap_file(tmp_path / "empty.pcap", 1, [])
    source = OfflineSource(path)
    assert list(source) == [] and source.truncated is None and source.stats().frames == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "capture file not found: {path}"),
        (b"", "capture file is empty: {path}"),
        (b"hello, this is not a capture" * 4, "{path} is not a pcap or pcapng file"),
        (b"\xd4\xc3\xb2\xa1\x02\x00", "{path} is cut short inside its file header (6 bytes)"),
    ],
)
def test_unusable_files_raise_capture_error(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "x.pcap"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CaptureError) as info:
        OfflineSource(path)
    assert str(info.value) == message.format(path=path)


def test_a_directory_is_not_a_capture(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="is a directory, not a capture file$"):
        OfflineSource(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.pcap"
    path.write_bytes(TCP.read_bytes())
    path.chmod(0)
    with pytest.raises(CaptureError, match="permission denied$"):
        OfflineSource(path)


def test_bad_pcap_version_is_reported_by_libpcap(tmp_path: Path) -> None:
    path = tmp_path / "v9.pcap"
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 9, 9, 0, 0, 65535, 1))
    with pytest.raises(CaptureError, match=f"^cannot read capture file {path}: "):
        OfflineSource(path)


def test_undecodable_link_type_is_refused(tmp_path: Path) -> None:
    path = pcap_file(tmp_path / "wifi.pcap", 105, [(1, 0, bytes(40))])
    with pytest.raises(CaptureError) as info:
        OfflineSource(path)
    assert str(info.value) == f"{path} has link type 105, which recorderd cannot decode"


@pytest.mark.parametrize("linktype", [0, 101, 113, 228, 229, 276])
def test_other_supported_link_types_open(tmp_path: Path, linktype: int) -> None:
    path = pcap_file(tmp_path / "x.pcap", linktype, [(5, 6, b"\x45" + bytes(39))])
    (frame,) = OfflineSource(path)
    assert frame == Frame(5.000006, linktype, b"\x45" + bytes(39))


def test_offline_source_is_a_frame_source() -> None:
    source: FrameSource = OfflineSource(TCP)
    assert sum(1 for _ in source) == 84
    source.close()
    source.close()


# -- live --------------------------------------------------------------------------------------------


def craft(*layers: bytes) -> bytes:
    return b"".join(layers)


ETH = b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01"
IPV4_UDP = bytes.fromhex("4500001c000100004011") + bytes(2) + bytes([10, 0, 0, 1, 10, 0, 0, 2])
UDP = struct.pack("!HHHH", 5060, 5060, 8, 0)
IPV4_TCP = IPV4_UDP[:9] + b"\x06" + IPV4_UDP[10:]
TCP_HDR = struct.pack("!HHIIBBHHH", 5060, 5060, 1, 0, 0x50, 0x18, 1, 0, 0)
IPV6_UDP = struct.pack("!IHBB16s16s", 0x60000000, 8, 17, 64, b"\1" * 16, b"\2" * 16)


@pytest.mark.parametrize(
    ("frame", "matches"),
    [
        (craft(ETH, b"\x08\x00", IPV4_UDP, UDP), True),
        (craft(ETH, b"\x08\x00", IPV4_TCP, TCP_HDR), True),
        (craft(ETH, b"\x86\xdd", IPV6_UDP, UDP), True),
        (craft(ETH, b"\x81\x00\x00\x64\x08\x00", IPV4_UDP, UDP), True),
        (craft(ETH, b"\x88\xa8\x00\x64\x81\x00\x00\x65\x08\x00", IPV4_UDP, UDP), True),
        (craft(ETH, b"\x91\x00\x00\x64\x81\x00\x00\x65\x08\x00", IPV4_TCP, TCP_HDR), True),
        (craft(ETH, b"\x81\x00\x00\x64\x86\xdd", IPV6_UDP, UDP), True),
        (craft(ETH, b"\x08\x06", bytes(28)), False),  # ARP
        (craft(ETH, b"\x81\x00\x00\x64\x08\x06", bytes(28)), False),
        (craft(ETH, b"\x08\x00", IPV4_UDP[:9], b"\x01", IPV4_UDP[10:], bytes(8)), False),  # ICMP
    ],
)
def test_default_filter_matches_tagged_and_untagged_ip(frame: bytes, matches: bool) -> None:
    program = pcapy.compile(1, 65535, DEFAULT_FILTER, 1, 0)
    assert bool(program.filter(frame)) is matches


def open_lo(**kwargs: object) -> LiveSource:
    try:
        return LiveSource("lo", **kwargs)  # type: ignore[arg-type]
    except CaptureError as err:
        if "permission" in str(err):
            pytest.skip(str(err))
        raise


def test_live_capture_on_loopback() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        source = open_lo(bpf=f"udp port {port}", timeout_ms=50, buffer_mb=2)
        try:
            assert source.linktype == 1
            assert isinstance(source.getfd(), int) and source.getfd() >= 0
            assert source.read_batch() == []  # non-blocking
            for n in range(3):
                sock.sendto(b"ping %d" % n, ("127.0.0.1", port))
            got: list[Frame] = []
            batches = source.iter_batches()
            for _ in range(100):  # at most 100 read timeouts of 50 ms
                got += next(batches)
                if len(got) >= 3:
                    break
            assert [f.data[42:] for f in got[:3]] == [b"ping 0", b"ping 1", b"ping 2"]
            stats = source.stats()
            assert stats.frames == len(got) and stats.kernel_drops >= 0
            assert source.truncated is None and source.position == stats.bytes
        finally:
            source.close()
            source.close()


def test_live_capture_errors() -> None:
    with pytest.raises(CaptureError, match="^no such network interface: nonexistent0$"):
        LiveSource("nonexistent0")
    with pytest.raises(CaptureError, match="^invalid capture filter 'udp and and' on lo"):
        open_lo(bpf="udp and and")
