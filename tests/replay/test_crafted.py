"""Replay every crafted capture through the engine and hold the result against expected.json, which
the generator wrote from what it put in each file (pcaps/crafted/make.py; it does not import recorderd)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recorderd.events import CallRecord, LegRecord, Side
from recorderd.sip.message import user_part
from tests.conftest import PCAPS
from tests.replay.engine_replay import Replayed, replay_engine

CRAFTED = PCAPS / "crafted"
EXPECTED = json.loads((CRAFTED / "expected.json").read_text())["files"]


def files() -> list[str]:
    return sorted(EXPECTED)


@pytest.fixture(scope="module", params=files())
def crafted(request: pytest.FixtureRequest) -> tuple[dict, Replayed]:  # type: ignore[type-arg]
    name = request.param
    return EXPECTED[name], replay_engine(CRAFTED / name)


def legs_by_key(record: CallRecord) -> dict[tuple[int, str, str], LegRecord]:
    return {(leg.ssrc, leg.src, leg.dst): leg for leg in record.legs}


def test_calls_end_as_expected(crafted: tuple[dict, Replayed]) -> None:  # type: ignore[type-arg]
    expected, got = crafted
    assert sorted(got.records) == sorted(c["call_id"] for c in expected["calls"])
    for call in expected["calls"]:
        record = got.record(call["call_id"])
        assert str(record.end_reason) == call["end"], call["call_id"]
        assert record.sip_status == call["sip_status"]
        assert (record.answer_ts is not None) == call["answered"]
        assert user_part(record.from_uri) == call["from_user"]
        assert user_part(record.to_uri) == call["to_user"]


def test_streams_counts(crafted: tuple[dict, Replayed]) -> None:  # type: ignore[type-arg]
    expected, got = crafted
    for call in expected["calls"]:
        legs = legs_by_key(got.record(call["call_id"]))
        want = {(s["ssrc"], s["src"], s["dst"]): s for s in call["streams"]}
        assert set(legs) == set(want)
        for key, stream in want.items():
            leg = legs[key]
            side = Side.CALLER if stream["direction"] == "caller->callee" else Side.CALLEE
            assert leg.side is side, key
            assert (leg.packets, leg.lost, leg.duplicates) == (
                stream["packets"],
                len(stream["lost"]),
                stream["duplicates"],
            ), key
            assert leg.codec == stream["codec"] and leg.decoded


def test_dtmf_holds_and_transfers(crafted: tuple[dict, Replayed]) -> None:  # type: ignore[type-arg]
    expected, got = crafted
    for call in expected["calls"]:
        record = got.record(call["call_id"])
        assert "".join(d.digit for d in record.dtmf) == call["dtmf"]
        origin = record.media_start_ts or record.invite_ts
        for d, event in zip(record.dtmf, call["dtmf_events"], strict=True):
            assert d.t == pytest.approx(event["time"] - origin, abs=0.03)
        assert len(record.holds) == len(call["holds"])
        for (start, end), hold in zip(record.holds, call["holds"], strict=True):
            assert start + origin == pytest.approx(hold["start"], abs=0.5)
            assert end + origin == pytest.approx(hold["end_answered"], abs=0.5)
        assert bool(record.transfers) == bool(call["transfer"])


def dominant_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / 8000)[int(np.argmax(spectrum))])


def test_each_channel_carries_its_party_tone(crafted: tuple[dict, Replayed]) -> None:  # type: ignore[type-arg]
    """Caller on the left, callee on the right, each stream's tone where the stream was."""
    expected, got = crafted
    for call in expected["calls"]:
        record = got.record(call["call_id"])
        stereo = got.stereo(call["call_id"])
        assert len(stereo) == record.samples
        for stream in call["streams"]:
            channel = 0 if stream["direction"] == "caller->callee" else 1
            assert record.media_start_ts is not None
            a = round((stream["first_time"] - record.media_start_ts) * 8000) + 800
            b = round((stream["last_time"] - record.media_start_ts) * 8000) - 800
            if b - a < 1600:
                continue
            segment = stereo[a:b, channel]
            assert dominant_hz(segment) == pytest.approx(stream["tone_hz"], abs=5), stream["src"]


def test_offer_answer_transactions_name_each_exchange() -> None:
    from recorderd.events import MediaNegotiated

    got = replay_engine(CRAFTED / "hold-resume-reinvite.pcap")
    seen = [(e.side.value, e.transaction) for e in got.events if isinstance(e, MediaNegotiated)]
    exchanges = list(dict.fromkeys(t for _, t in seen))
    assert len(exchanges) == 3 and all(t.startswith("caller ") and t.endswith(" INVITE") for t in exchanges)
    assert {side for side, t in seen if t == exchanges[0]} == {"caller", "callee"}
