"""Replay captures through the engine into a store: the offline twin of the live daemon.

Each file gets its own :class:`Engine` (captures taken at different times share no calls), and the
engine's events go to the same :class:`StoreSink` the daemon uses, so a replay produces exactly the
recordings and index rows live capture would have. The sink is flushed after each batch, as the
daemon flushes after each of its own: its index work is done once per batch (group commit).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from recorderd.capture.pcap import OfflineSource
from recorderd.config import EngineConfig
from recorderd.engine import Engine
from recorderd.events import CallFinished, CallRecord, Event
from recorderd.store.sink import StoreSink

BATCH = 4096  # frames per libpcap read: large enough to amortise the call, small enough to stay in cache
Progress = Callable[[Path, int, int], None]  # (file, bytes done, bytes total)


@dataclass
class ReplayResult:
    path: Path
    frames: int = 0
    calls: list[CallRecord] = field(default_factory=list)
    counters: Counter[str] = field(default_factory=Counter)
    truncated: str | None = None


def replay_file(
    path: Path,
    sink: StoreSink,
    config: EngineConfig,
    progress: Progress | None = None,
    progress_every: int = 50_000,
) -> ReplayResult:
    """Feed every frame of ``path`` to a fresh engine, its events to ``sink``; close the calls."""
    result = ReplayResult(path)
    engine = Engine(config)
    source = OfflineSource(path, batch_size=BATCH)
    last_ts = 0.0
    reported = 0
    try:
        for batch in source.raw_batches():
            _deliver(engine.feed_batch(batch), sink, result)
            sink.flush()
            result.frames += batch.count
            last_ts = batch.last_ts
            if progress is not None and result.frames - reported >= progress_every:
                progress(path, source.position, source.size)
                reported = result.frames
        _deliver(engine.close(last_ts), sink, result)
        sink.flush()
    finally:
        source.close()
    if progress is not None:
        progress(path, source.size, source.size)
    result.counters = engine.counters
    result.truncated = source.truncated
    return result


def _deliver(events: list[Event], sink: StoreSink, result: ReplayResult) -> None:
    for event in events:
        sink.handle(event)
        if isinstance(event, CallFinished):
            result.calls.append(event.record)
