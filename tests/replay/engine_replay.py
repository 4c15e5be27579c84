"""Run a capture through a bare Engine (no store) and keep what it produced."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pcapy

from recorderd.config import EngineConfig
from recorderd.engine import Engine
from recorderd.events import AudioBlock, CallFinished, CallRecord, Event, Frame


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


def replay_engine(path: Path, config: EngineConfig | None = None) -> Replayed:
    reader = pcapy.open_offline(str(path))
    linktype = reader.datalink()
    engine = Engine(config)
    out = Replayed(engine=engine)
    ts = 0.0
    while True:
        header, data = reader.next()
        if header is None:
            break
        sec, usec = header.getts()
        ts = sec + usec / 1e6
        _collect(engine.feed(Frame(ts, linktype, bytes(data))), out)
    _collect(engine.close(ts), out)
    return out


def _collect(events: list[Event], out: Replayed) -> None:
    for event in events:
        out.events.append(event)
        if isinstance(event, AudioBlock):
            blocks = out.audio.setdefault(event.call_id, [])
            assert sum(len(b) for b in blocks) == event.start, "audio blocks must be contiguous"
            blocks.append(event.samples)
        elif isinstance(event, CallFinished):
            out.records.setdefault(event.call_id, []).append(event.record)
