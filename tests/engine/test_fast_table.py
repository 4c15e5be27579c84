"""FastTable: entries found by a whole batch's sorted search, as a dictionary would find them."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from recorderd.engine.fast import FastTable, combine

keys = st.tuples(st.integers(0, 3), st.integers(0, 3))  # a few keys, so they are reused often
ops = st.lists(st.tuples(st.booleans(), keys, st.integers(0, 50)), max_size=400)


@settings(max_examples=200, deadline=None)
@given(ops=ops)
def test_match_agrees_with_a_dictionary(ops: list[tuple[bool, tuple[int, int], int]]) -> None:
    table, truth = FastTable(capacity=2), {}
    probe = [(a, b) for a in range(4) for b in range(4)]
    for step, (add, key, slot) in enumerate(ops):
        if add:
            assert table.put(key, slot, 0, 160) == (key not in truth)
            truth[key] = slot
        else:
            assert table.pop(key) == truth.pop(key, None)
        if step % 7 == 0:
            first = np.array([k[0] for k in probe], dtype=np.uint64)
            second = np.array([k[1] for k in probe], dtype=np.uint64)
            size = np.full(len(probe), 160, dtype=np.int64)
            got = table.match(combine(first, second), first, second, np.zeros(len(probe), np.int64), size)
            assert got.tolist() == [truth.get(k, -1) for k in probe]
    assert len(table) == len(truth)


def test_payload_type_and_size_must_match() -> None:
    table = FastTable()
    table.put((1, 2), 7, 8, 160)
    one, two = np.array([1, 1, 1], dtype=np.uint64), np.array([2, 2, 2], dtype=np.uint64)
    got = table.match(combine(one, two), one, two, np.array([8, 0, 8]), np.array([160, 160, 80]))
    assert got.tolist() == [7, -1, -1]
