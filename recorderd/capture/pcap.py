"""Capture sources on libpcap through pcapy-ng: replayed pcap/pcapng files and live interfaces.

Both read with ``next_batch(n)``, which crosses from C to Python once per batch: it returns one bytes
object holding the packets and a packed array of 16-byte records (four native uint32: seconds,
microseconds, offset, captured length). Frames are cut out of it here.

libpcap findings this module relies on (pcapy-ng 2.1, libpcap 1.10):

- Nanosecond pcap files, and pcapng with a nanosecond ``if_tsresol``, are scaled to microseconds by
  ``pcap_open_offline``; pcapy-ng does not expose the precision option. Microseconds are ample for 8 kHz
  audio (one sample is 125 us).
- A file cut inside a record makes ``next_batch`` raise ``PcapError("truncated dump file; ...")`` and
  lose the records it had already read in that batch, so the tail is reread record by record to hand out
  everything readable before stopping. A file cut exactly between records is simply shorter.
- ``activate()`` reports failure by its return value (a negative PCAP_ERROR_* code) and does not raise.
- A blocking ``next_batch`` on a live handle waits until at least one packet arrives, so the live source
  runs non-blocking and waits on the selectable fd with a timeout, which keeps the caller's timers alive.
"""

from __future__ import annotations

import os
import select
from collections.abc import Iterator
from types import TracebackType
from typing import Any, TypeAlias

import numpy as np
import pcapy

from recorderd.capture.source import CaptureStats
from recorderd.errors import CaptureError
from recorderd.events import FRAME_META, Frame, FrameBatch
from recorderd.net.link import LINKTYPE_RAW, SUPPORTED_LINKTYPES

# Nested so that each ``vlan`` shifts the offsets of what follows it by one tag: the innermost branch
# matches QinQ (two tags). libpcap's ``vlan`` accepts 0x8100, 0x88A8 and 0x9100 and, on Linux, a tag
# that the NIC stripped into packet metadata.
DEFAULT_FILTER = "udp or tcp or (vlan and (udp or tcp or (vlan and (udp or tcp))))"

_Handle: TypeAlias = Any  # pcapy's handle type is not exported by name

_META = FRAME_META
_FILE_HEADER = 24
_RECORD_HEADER = 16
_MAGICS = frozenset(
    {
        b"\xd4\xc3\xb2\xa1",  # pcap, microseconds, either byte order
        b"\xa1\xb2\xc3\xd4",
        b"\x4d\x3c\xb2\xa1",  # pcap, nanoseconds
        b"\xa1\xb2\x3c\x4d",
        b"\x34\xcd\xb2\xa1",  # Kuznetzov's modified pcap, which libpcap also reads
        b"\xa1\xb2\xcd\x34",
        b"\x0a\x0d\x0d\x0a",  # pcapng Section Header Block
    }
)

# pcap_activate() results (pcap/pcap.h).
_ACTIVATE_ERRORS = {
    -5: "no such network interface: {0}",
    -8: "no permission to capture on {0} (CAP_NET_RAW is needed)",
    -9: "network interface {0} is down",
    -11: "no permission to put {0} in promiscuous mode",
    -6: "{0} does not support monitor mode",
}
_ACTIVATE_WARNINGS = {
    1: "libpcap warned while opening {0}",
    2: "{0} does not support promiscuous mode; capturing only traffic addressed to this host",
    3: "{0} does not support the requested timestamp type",
}


def _linktype(handle: _Handle) -> int:
    """The handle's LINKTYPE_* number. libpcap reports a DLT_* value, which differs only for raw IP."""
    dlt: int = handle.datalink()
    return LINKTYPE_RAW if dlt == pcapy.DLT_RAW else dlt


def _captured_bytes(meta: bytes) -> int:
    """Sum of the captured lengths in a ``next_batch`` meta array (the 4th of each 4 uint32)."""
    return int(np.frombuffer(meta, dtype=np.uint32)[3::4].sum(dtype=np.int64))


def _pack(linktype: int, frames: list[Frame]) -> FrameBatch:
    """Frames read one at a time, in the shape ``next_batch`` returns them."""
    meta, offset = [], 0
    for frame in frames:
        sec = int(frame.ts)
        meta.append(_META.pack(sec, round((frame.ts - sec) * 1_000_000), offset, len(frame.data)))
        offset += len(frame.data)
    return FrameBatch(linktype, b"".join(f.data for f in frames), b"".join(meta))


def _check_file(path: str) -> int:
    """The file's size, after making sure it exists, is readable and starts like a capture."""
    try:
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            magic = file.read(4)
    except FileNotFoundError:
        raise CaptureError(f"capture file not found: {path}") from None
    except IsADirectoryError:
        raise CaptureError(f"{path} is a directory, not a capture file") from None
    except PermissionError:
        raise CaptureError(f"cannot read capture file {path}: permission denied") from None
    except OSError as err:
        raise CaptureError(f"cannot read capture file {path}: {err.strerror}") from None
    if size == 0:
        raise CaptureError(f"capture file is empty: {path}")
    if magic not in _MAGICS:
        raise CaptureError(f"{path} is not a pcap or pcapng file")
    if size < _FILE_HEADER:
        raise CaptureError(f"{path} is cut short inside its file header ({size} bytes)")
    return size


class OfflineSource:
    """Frames from a pcap or pcapng file, in file order."""

    def __init__(self, path: str | os.PathLike[str], *, batch_size: int = 512) -> None:
        self.path = os.fspath(path)
        self.size = _check_file(self.path)
        try:
            self._reader = pcapy.open_offline(self.path)
        except pcapy.PcapError as err:
            raise CaptureError(f"cannot read capture file {self.path}: {err}") from None
        self.linktype = _linktype(self._reader)
        if self.linktype not in SUPPORTED_LINKTYPES:
            self._reader.close()
            raise CaptureError(f"{self.path} has link type {self.linktype}, which recorderd cannot decode")
        self.position = _FILE_HEADER
        self.truncated: str | None = None
        self._batch_size = batch_size
        self._frames = 0
        self._bytes = 0
        self._done = False
        self._closed = False

    def __enter__(self) -> OfflineSource:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __iter__(self) -> Iterator[Frame]:
        for batch in self.iter_batches():
            yield from batch

    def iter_batches(self) -> Iterator[list[Frame]]:
        """Lists of up to ``batch_size`` frames, until the end of the file."""
        for batch in self.raw_batches():
            yield batch.frames()

    def raw_batches(self) -> Iterator[FrameBatch]:
        """Up to ``batch_size`` frames at a time as libpcap returns them, until the end of the file."""
        while not self._done:
            try:
                buf, meta = self._reader.next_batch(self._batch_size)
            except pcapy.PcapError as err:
                frames = self._salvage(err)
                if frames:
                    yield _pack(self.linktype, frames)
                continue
            if not meta:
                self._done = True
                self.position = self.size
                return
            self._count(len(meta) // _META.size, _captured_bytes(meta))
            yield FrameBatch(self.linktype, buf, meta)

    def close(self) -> None:
        if not self._closed:
            self._closed = self._done = True
            self._reader.close()

    def stats(self) -> CaptureStats:
        return CaptureStats(self._frames, self._bytes, 0, 0)

    def _count(self, frames: int, size: int) -> None:
        self._frames += frames
        self._bytes += size
        self.position = min(self.size, self.position + size + _RECORD_HEADER * frames)

    def _salvage(self, err: pcapy.PcapError) -> list[Frame]:
        """After a read error, reread past the frames handed out and take the rest one by one."""
        self._done = True
        frames: list[Frame] = []
        try:
            reader = pcapy.open_offline(self.path)
        except pcapy.PcapError:
            reader = None
        if reader is not None:
            try:
                self._skip(reader, self._frames)
                while True:
                    header, data = reader.next()
                    if header is None:
                        break
                    sec, usec = header.getts()
                    frames.append(Frame(sec + usec / 1_000_000, self.linktype, data))
            except pcapy.PcapError:
                pass  # the same damaged record
            finally:
                reader.close()
        self._count(len(frames), sum(len(f.data) for f in frames))
        what = "ended in the middle of a record" if "truncated" in str(err) else "is damaged"
        self.truncated = f"capture file {self.path} {what} after {self._frames} frames ({err})"
        return frames

    def _skip(self, reader: _Handle, count: int) -> None:
        while count > 0:
            _, meta = reader.next_batch(min(count, self._batch_size))
            if not meta:
                return
            count -= len(meta) // _META.size


class LiveSource:
    """Frames captured from a network interface (a mirror port) through libpcap's packet ring."""

    def __init__(
        self,
        interface: str,
        snaplen: int = 65535,
        promisc: bool = True,
        buffer_mb: int = 64,
        bpf: str = DEFAULT_FILTER,
        timeout_ms: int = 100,
        *,
        batch_size: int = 512,
    ) -> None:
        self.interface = interface
        self.size = 0
        self.truncated: str | None = None
        self.warning: str | None = None  # set when libpcap opened the interface with a caveat
        self._timeout = timeout_ms / 1000
        self._batch_size = batch_size
        self._frames = 0
        self._bytes = 0
        self._closed = False
        self._handle = self._open(interface, snaplen, promisc, buffer_mb, bpf, timeout_ms)
        self.linktype = _linktype(self._handle)

    def _open(
        self, interface: str, snaplen: int, promisc: bool, buffer_mb: int, bpf: str, timeout_ms: int
    ) -> _Handle:
        try:
            handle = pcapy.create(interface)
            handle.set_snaplen(snaplen)
            handle.set_promisc(int(promisc))
            handle.set_buffer_size(buffer_mb * 1024 * 1024)
            handle.set_timeout(timeout_ms)
            status = handle.activate()
        except pcapy.PcapError as err:
            raise CaptureError(f"cannot capture on {interface}: {err}") from None
        if status < 0:
            template = _ACTIVATE_ERRORS.get(status, "cannot capture on {0} (libpcap error {1})")
            raise CaptureError(template.format(interface, status))
        if status > 0:
            self.warning = _ACTIVATE_WARNINGS.get(status, "libpcap warned ({1})").format(interface, status)
        try:
            if bpf:
                handle.setfilter(bpf)
            handle.setnonblock(1)
        except (pcapy.PcapError, pcapy.BPFError) as err:
            handle.close()
            raise CaptureError(f"invalid capture filter {bpf!r} on {interface}: {err}") from None
        return handle

    def __enter__(self) -> LiveSource:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def position(self) -> int:
        return self._bytes

    def getfd(self) -> int:
        """The selectable descriptor: readable when :meth:`read_batch` has frames to return."""
        fd: int = self._handle.getfd()
        return fd

    def read_batch(self) -> list[Frame]:
        """Whatever frames are ready now, up to ``batch_size``; never blocks."""
        batch = self.read_raw()
        return batch.frames() if batch is not None else []

    def read_raw(self) -> FrameBatch | None:
        """Whatever frames are ready now, as libpcap returns them, or None; never blocks."""
        try:
            buf, meta = self._handle.next_batch(self._batch_size)
        except pcapy.PcapError as err:
            raise CaptureError(f"capture on {self.interface} failed: {err}") from None
        if not meta:
            return None
        self._frames += len(meta) // _META.size
        self._bytes += _captured_bytes(meta)
        return FrameBatch(self.linktype, buf, meta)

    def iter_batches(self) -> Iterator[list[Frame]]:
        """Batches until closed; an empty one after each idle ``timeout_ms`` so callers can run timers."""
        fd = self.getfd()
        while not self._closed:
            frames = self.read_batch()
            if not frames:
                select.select([fd], [], [], self._timeout)
                frames = self.read_batch()
            yield frames

    def __iter__(self) -> Iterator[Frame]:
        for batch in self.iter_batches():
            yield from batch

    def stats(self) -> CaptureStats:
        try:
            _received, dropped, if_dropped = self._handle.stats()
        except pcapy.PcapError:
            dropped = if_dropped = 0
        return CaptureStats(self._frames, self._bytes, dropped, if_dropped)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._handle.close()
