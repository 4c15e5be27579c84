"""StreamTable.push_many places a batch exactly as push does packet by packet, on random input."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from recorderd.rtp.pending import Ring, by_slot_pos_seq
from recorderd.rtp.stream import NO_TAKE, Kind, Outcome, StreamTable

RATE = 8000
STREAMS = 3

# (stream, sequence step, timestamp step in packets, capture delay in ms)
packet = st.tuples(
    st.integers(0, STREAMS - 1),
    st.sampled_from([1, 1, 1, 1, 2, 0, -1, -3, 5, 200, 32767, 32768, 33000, 40000]),
    st.sampled_from([1, 1, 1, 1, 2, 0, -1, 50, 100_000]),
    st.integers(0, 40),
)


def _tables(start_seq: int, start_ts: int) -> tuple[StreamTable, StreamTable, list[int]]:
    a, b = StreamTable(capacity=2), StreamTable(capacity=2)
    slots = []
    for i in range(STREAMS):
        slot_a = a.open(0x100 + i, 0.0, 0, RATE, 0.0, 0)
        slot_b = b.open(0x100 + i, 0.0, 0, RATE, 0.0, 0)
        assert slot_a == slot_b
        slots.append(slot_a)
        first = bytes([i]) * 160
        seq, ts = (start_seq + i) & 0xFFFF, (start_ts + i) & 0xFFFFFFFF
        for t in (a, b):
            assert t.push(slot_a, seq, ts, 0, first, Kind.AUDIO, 160, 0.0, 0, 0) is Outcome.ACCEPTED
    return a, b, slots


@settings(max_examples=400, deadline=None)
@given(
    packets=st.lists(packet, min_size=1, max_size=300),
    cuts=st.lists(st.integers(1, 300), max_size=6),
    start_seq=st.sampled_from([0, 65500, 30000]),
    start_ts=st.sampled_from([0, 0xFFFFFF00, 12345]),
    floor=st.integers(0, 3000),
)
def test_push_many_equals_push(
    packets: list[tuple[int, int, int, int]], cuts: list[int], start_seq: int, start_ts: int, floor: int
) -> None:
    a, b, slots = _tables(start_seq, start_ts)
    seqs = [start_seq + i for i in range(STREAMS)]
    tss = [start_ts + i for i in range(STREAMS)]
    clock = 0.0
    rows = []
    for n, (i, dseq, dts, delay) in enumerate(packets):
        seqs[i] += dseq
        tss[i] += 160 * dts
        clock += delay / 1000
        rows.append((slots[i], seqs[i] & 0xFFFF, tss[i] & 0xFFFFFFFF, clock, bytes([n % 256]) * 160))
    for t in (a, b):
        t.floor[:] = floor
    expected = [
        a.push(slot, seq, ts, 0, payload, Kind.AUDIO, 160, now, round(now * RATE), floor)
        for slot, seq, ts, now, payload in rows
    ]
    got: dict[Outcome, int] = {}
    bounds = sorted({0, len(rows), *(c for c in cuts if c < len(rows))})
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        part = rows[lo:hi]
        counts = b.push_many(
            np.array([r[0] for r in part], dtype=np.int64),
            np.array([r[1] for r in part], dtype=np.int64),
            np.array([r[2] for r in part], dtype=np.int64),
            np.zeros(len(part), dtype=np.int64),
            np.array([r[3] for r in part], dtype=np.float64),
            RATE,
            np.frombuffer(b"".join(r[4] for r in part), dtype=np.uint8).reshape(len(part), 160),
        )
        for outcome, count in counts.items():
            got[outcome] = got.get(outcome, 0) + count
    assert got == {o: expected.count(o) for o in (Outcome.DUPLICATE, Outcome.LATE) if o in expected}
    for name in StreamTable._INT + StreamTable._FLOAT:
        assert np.array_equal(getattr(a, name)[: a.count], getattr(b, name)[: b.count]), name
    assert np.array_equal(a.seen[: a.count], b.seen[: b.count])
    limit = np.full(a.capacity, 10**12, dtype=np.int64)
    ta, tb = a.take(limit), b.take(limit)
    assert ta is not None and tb is not None
    for column in ("slot", "pos", "seq", "kind", "pt", "duration"):
        assert np.array_equal(getattr(ta, column), getattr(tb, column)), column
    rows_a, rows_b = np.arange(len(ta)), np.arange(len(tb))
    assert np.array_equal(a.payloads(ta, rows_a), b.payloads(tb, rows_b))
    assert a.holes == b.holes
    assert a.take(np.full(a.capacity, NO_TAKE, dtype=np.int64)) is None


def test_ring_grows_and_keeps_pending_payloads() -> None:
    table = StreamTable()
    slot = table.open(1, 0.0, 0, RATE, 0.0, 0)
    table.ring.buf = np.zeros(1000, dtype=np.uint8)  # a tiny ring, so the batch below laps it
    payloads = np.arange(40 * 160, dtype=np.int64).astype(np.uint8).reshape(40, 160)
    table.push(slot, 0, 0, 0, bytes(160), Kind.AUDIO, 160, 0.0, 0, 0)
    for k in range(4):
        chunk = slice(10 * k, 10 * k + 10)
        n = np.arange(1 + 10 * k, 11 + 10 * k)
        table.push_many(
            np.full(10, slot), n, 160 * n, np.zeros(10, np.int64), n * 0.02, RATE, payloads[chunk]
        )
    taken = table.take(np.full(table.capacity, 10**9, dtype=np.int64))
    assert taken is not None and len(taken) == 41
    got = table.payloads(taken, np.arange(1, 41))
    assert np.array_equal(got, payloads.ravel())
    assert len(table.ring.buf) >= 41 * 160


def test_ring_keeps_a_quarter_free_and_what_it_holds() -> None:
    """It doubles once pending bytes would leave less than a quarter free, and not before; what is
    pending survives the move."""
    ring = Ring(1000)
    first = ring.put_rows(np.full((5, 150), 7, dtype=np.uint8))  # 750 pending: a quarter free
    assert len(ring.buf) == 1000
    ring.tail = int(first[1])  # the first payload released: 600 pending
    second = ring.put(bytes(range(100)))  # 700
    assert len(ring.buf) == 1000
    ring.put(bytes(60))  # 760: less than a quarter free
    assert len(ring.buf) == 2000
    assert np.array_equal(ring.rows(first[1:], 150), np.full((4, 150), 7, dtype=np.uint8))
    assert np.array_equal(ring.gather(np.array([second]), np.array([100])), np.arange(100, dtype=np.uint8))


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.integers(0, 30) | st.integers(65_530, 65_540), st.integers(0, 50), st.integers(0, 5)),
        max_size=200,
    ),
    in_order=st.booleans(),
)
def test_taking_orders_rows_as_lexsort_does(rows: list[tuple[int, int, int]], in_order: bool) -> None:
    """The shortcut sort by slot (rows already in order per stream) and its fallback both give
    lexsort's order, ties included; ``in_order`` makes the usual case, each stream's rows ascending."""
    if in_order:
        rows = sorted(rows, key=lambda r: (r[1], r[2]))
    slot, pos, seq = (
        (np.array(c, dtype=np.int64) for c in zip(*rows, strict=True))
        if rows
        else [np.zeros(0, np.int64)] * 3
    )
    assert by_slot_pos_seq(slot, pos, seq).tolist() == np.lexsort((seq, pos, slot)).tolist()
