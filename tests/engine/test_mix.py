"""The batched passthrough (many calls' codes placed in one pass) writes exactly what the per-call
path writes, on every capture and on a generated one with many calls, loss and reordering."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.gen import CaptureSpec, generate
from recorderd.codecs.g711 import to_pcm
from recorderd.engine import mix
from recorderd.events import AudioBlock, CallFinished
from tests.conftest import PCAPS
from tests.replay.engine_replay import Replayed, replay_engine

CAPTURES = sorted(PCAPS.glob("*.pcap")) + sorted((PCAPS / "crafted").glob("*.pcap"))


def _per_call_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mix, "_passthrough_calls", lambda due, *rest: np.zeros(len(due), dtype=bool))


def _audio(replayed: Replayed) -> dict[str, np.ndarray]:
    blocks: dict[str, list[np.ndarray]] = {}
    for event in replayed.events:
        if isinstance(event, AudioBlock):
            blocks.setdefault(event.call_id, []).append(to_pcm(event.samples, event.encoding))
    return {call: np.concatenate(parts) for call, parts in blocks.items()}


def _records(replayed: Replayed) -> list[object]:
    return [e.record for e in replayed.events if isinstance(e, CallFinished)]


def _same(path: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    batched = replay_engine(path)
    with monkeypatch.context() as patch:
        _per_call_only(patch)
        alone = replay_engine(path)
    assert _records(batched) == _records(alone)
    a, b = _audio(batched), _audio(alone)
    assert a.keys() == b.keys()
    for call in a:
        assert np.array_equal(a[call], b[call]), call
    return len(a)


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_batched_passthrough_equals_per_call_writing(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _same(path, monkeypatch)


@pytest.mark.parametrize("group", [mix.PASSTHROUGH_CALLS, 7])
def test_batched_passthrough_with_many_calls_loss_and_reordering(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, group: int
) -> None:
    """Also with the due calls split into passes of 7 (the default passes hold 256 calls)."""
    monkeypatch.setattr(mix, "PASSTHROUGH_CALLS", group)
    path = tmp_path / "many.pcap"
    generate(path, CaptureSpec(60, 5.0, loss=0.03, reorder=0.05, seed=7, rounds=2))
    assert _same(path, monkeypatch) == 120


def test_the_batched_passthrough_is_taken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "plain.pcap"
    generate(path, CaptureSpec(20, 4.0, seed=2))
    taken = []
    real = mix._write_passthrough

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        taken.append(int(args[3].sum()))  # the calls chosen for it
        return real(*args, **kwargs)

    monkeypatch.setattr(mix, "_write_passthrough", spy)
    replay_engine(path)
    assert sum(taken) >= 20 * 4  # every call, about every second
