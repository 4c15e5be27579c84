"""Capture: where frames come from (libpcap, live or from a file). The only I/O below the daemon."""

from recorderd.capture.pcap import DEFAULT_FILTER, LiveSource, OfflineSource
from recorderd.capture.source import CaptureStats, FrameSource

__all__ = ["DEFAULT_FILTER", "CaptureStats", "FrameSource", "LiveSource", "OfflineSource"]
