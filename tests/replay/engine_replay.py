"""Run a capture through a bare Engine (no store) and keep what it produced."""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recorderd.capture.pcap import OfflineSource
from recorderd.codecs.g711 import to_pcm
from recorderd.config import EngineConfig
from recorderd.engine import Engine
from recorderd.events import AudioBlock, CallFinished, CallRecord, Event


@dataclass
class Replayed:
    records: dict[str, list[CallRecord]] = field(default_factory=dict)
    audio: dict[str, list[np.ndarray]] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    engine: Engine | None = None

    def record(self, call_id: str) -> CallRecord:
        (record,) = self.records[call_id]
        return record

    def stereo(self, call_id: str) -> np.ndarray:
        blocks = self.audio.get(call_id, [])
        return np.concatenate(blocks) if blocks else np.zeros((0, 2), np.int16)


def replay_engine(path: Path, config: EngineConfig | None = None, batched: bool = True) -> Replayed:
    """Replay ``path`` through the fast path (``feed_batch``, as recorderd replay does) or frame by
    frame through the general path (``feed``)."""
    engine = Engine(config)
    out = Replayed(engine=engine)
    ts = 0.0
    with OfflineSource(path) as source:
        for batch in source.raw_batches():
            if batched:
                _collect(engine.feed_batch(batch), out)
            else:
                for frame in batch.frames():
                    _collect(engine.feed(frame), out)
            ts = batch.last_ts
    _collect(engine.close(ts), out)
    return out


def _collect(events: list[Event], out: Replayed) -> None:
    for event in events:
        out.events.append(event)
        if isinstance(event, AudioBlock):
            blocks = out.audio.setdefault(event.call_id, [])
            assert sum(len(b) for b in blocks) == event.start, "audio blocks must be contiguous"
            blocks.append(to_pcm(event.samples, event.encoding))
        elif isinstance(event, CallFinished):
            out.records.setdefault(event.call_id, []).append(event.record)


def without_sip(source: Path, target: Path, drop: Callable[[bytes], bool] = lambda call_id: True) -> set[str]:
    """Copy the classic pcap ``source`` without the SIP of the calls whose Call-ID ``drop`` picks (as
    if they were up before capture began, or signalled over TLS); their Call-IDs."""
    data = source.read_bytes()
    out, pos, dropped = [data[:24]], 24, set()
    while pos < len(data):
        caplen = struct.unpack_from("<I", data, pos + 8)[0]
        record = data[pos : pos + 16 + caplen]
        pos += 16 + caplen
        found = re.search(rb"\r\n(?i:call-id|i)[ \t]*:[ \t]*(\S+)\r\n", record)
        if found is not None and drop(found[1]):
            dropped.add(found[1].decode())
            continue
        out.append(record)
    target.write_bytes(b"".join(out))
    return dropped
