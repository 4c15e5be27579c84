"""What the daemon and the replay tools need from a capture source, live or offline."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from recorderd.events import Frame


@dataclass(frozen=True, slots=True)
class CaptureStats:
    """Counts since the source was opened; the drop counters come from libpcap (0 when offline)."""

    frames: int  # frames handed out
    bytes: int  # captured bytes in them
    kernel_drops: int  # dropped because the capture buffer was full (pcap_stats ps_drop)
    interface_drops: int  # dropped by the interface or its driver (ps_ifdrop)


class FrameSource(Protocol):
    """Iterating yields :class:`Frame` values in capture order.

    ``position``, ``size`` and ``truncated`` report replay progress: bytes consumed so far (approximate),
    the file's size, and a message when the file ended in the middle of a record (iteration then stops
    after everything readable). A live source reports bytes captured, size 0, and never truncated.
    """

    @property
    def linktype(self) -> int: ...

    @property
    def position(self) -> int: ...

    @property
    def size(self) -> int: ...

    @property
    def truncated(self) -> str | None: ...

    def __iter__(self) -> Iterator[Frame]: ...

    def iter_batches(self) -> Iterator[list[Frame]]:
        """Frames in lists, as libpcap hands them over; a live source may yield an empty list."""
        ...

    def close(self) -> None: ...

    def stats(self) -> CaptureStats: ...
