"""Garbage-collector settings for the two long-running loops: ``recorderd replay`` and the daemon.

CPython starts a young collection every 700 allocations. The pipeline allocates its Python objects
per batch and per call (events, records, small lists), and at thousands of calls hundreds of thousands
of them are alive, so the default thresholds made 550 collections in a 5,000-call replay, with full
ones of about 0.1 s each: 9 % of the run. Nothing in recorderd relies on the cycle collector, but a
library might, so it keeps running, about a hundred times less often. ``gc.freeze`` first moves what
start-up made (modules, configuration) out of every future collection.
"""

from __future__ import annotations

import gc

THRESHOLDS = (50_000, 50, 100)  # young, middle, old (CPython's defaults: 700, 10, 10)


def tune() -> None:
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
