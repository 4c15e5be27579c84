"""Replay each real capture through the engine and hold it against tshark's report on the same file."""

from __future__ import annotations

from pathlib import Path

import pytest

from recorderd.engine import Engine
from recorderd.events import CallRecord, EndReason
from tests.conftest import PCAPS
from tests.oracle import report_dialogs, report_streams, tshark_rtp_packets, unique_and_lost
from tests.replay.engine_replay import replay_engine

REAL = sorted(p.name.removesuffix(".pcap") for p in PCAPS.glob("*.pcap"))

# Wireshark's VoIP-calls state for each end of a call as recorderd names it. IN_CALL means tshark saw no
# BYE: recorderd ends those calls when the capture runs out (or on RTP silence if it runs on).
STATES = {
    "COMPLETED": {EndReason.BYE},
    "REJECTED": {EndReason.REJECTED},
    "IN_CALL": {EndReason.CAPTURE_END, EndReason.RTP_TIMEOUT},
    "CANCELLED": {EndReason.CANCEL},
}


def replay(path: Path) -> tuple[list[CallRecord], Engine]:
    out = replay_engine(path)
    assert out.engine is not None
    return [r for records in out.records.values() for r in records], out.engine


@pytest.fixture(scope="module", params=REAL)
def replayed(request: pytest.FixtureRequest) -> tuple[str, list[CallRecord], Engine]:
    records, engine = replay(PCAPS / f"{request.param}.pcap")
    return request.param, records, engine


def test_calls_and_end_states_match_tshark(replayed: tuple[str, list[CallRecord], Engine]) -> None:
    name, records, _ = replayed
    dialogs = [d for d in report_dialogs(PCAPS / f"{name}.tshark.txt") if d.is_invite]
    assert sorted(r.call_id for r in records) == sorted(d.call_id for d in dialogs)
    by_id = {r.call_id: r for r in records}
    for dialog in dialogs:
        record = by_id[dialog.call_id]
        assert record.end_reason in STATES[dialog.state], dialog
        if dialog.status is not None:
            assert record.sip_status == dialog.status


def test_streams_match_tshark(replayed: tuple[str, list[CallRecord], Engine]) -> None:
    """Every stream tshark reports is a leg with the same packet and loss counts, except for packets
    captured after the call ended: recording stops at the BYE (the practices' policy), while tshark
    counts a stream to its last packet. Those are checked against tshark's own per-packet fields."""
    name, records, _ = replayed
    report = report_streams(PCAPS / f"{name}.tshark.txt")
    legs = {(leg.ssrc, leg.src, leg.dst): (leg, r) for r in records for leg in r.legs}
    assert set(legs) == {(s.ssrc, s.src, s.dst) for s in report}
    packets = tshark_rtp_packets(PCAPS / f"{name}.pcap")
    for stream in report:
        leg, record = legs[(stream.ssrc, stream.src, stream.dst)]
        before_end = [p for p in packets[stream.ssrc] if p.time <= record.end_ts]
        assert (leg.packets, leg.lost) == unique_and_lost(before_end)
        if len(before_end) == stream.packets:
            assert (leg.packets, leg.lost) == (stream.packets, stream.lost)
        else:
            assert record.end_reason is EndReason.BYE and leg.packets < stream.packets


def test_nothing_was_dropped_as_malformed(replayed: tuple[str, list[CallRecord], Engine]) -> None:
    _, _, engine = replayed
    assert not [k for k in engine.counters if k.startswith("drop.")], engine.counters


def test_undecodable_codecs_are_reported_not_silenced() -> None:
    for name, codec in (("sip-rtp-g729a", "G729"), ("sip-rtp-g722", "G722")):
        (record,), _ = replay(PCAPS / f"{name}.pcap")
        (leg,) = record.legs
        assert (leg.codec, leg.decoded) == (codec, False)
        assert record.samples == 0  # no recording of silence pretending to be the call
        assert [g.reason for g in leg.gaps] == ["undecodable"]


def test_dtmf_digits_from_rfc2833_capture() -> None:
    records, _ = replay(PCAPS / "sip-dtmf2-rfc2833-603.pcap")
    (answered,) = [r for r in records if r.answer_ts is not None]
    assert "".join(d.digit for d in answered.dtmf) == "6789123"
    times = [d.t for d in answered.dtmf]
    assert times == sorted(times)


def test_nat_call_is_answered_after_407_and_recorded_both_ways() -> None:
    (record,), _ = replay(PCAPS / "onsip-testcall-nat-auth.pcap")
    assert record.sip_status == 200 and record.end_reason == EndReason.BYE
    assert {leg.side for leg in record.legs} == {"caller", "callee"}
    assert record.samples > 0


def test_replay_is_deterministic() -> None:
    first, _ = replay(PCAPS / "sip-dtmf2-rfc2833-603.pcap")
    second, _ = replay(PCAPS / "sip-dtmf2-rfc2833-603.pcap")
    assert first == second
