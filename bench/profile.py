"""Profile recorderd's end-to-end replay of one capture: ``python -m bench.profile FILE [--top 25]``.

Runs the same replay as ``bench.stage e2e`` (``replay_file`` into a fresh encrypted store; with
``--no-store``, into a sink that drops the events, as ``bench.stage engine``) under :mod:`cProfile` and
prints the top functions by cumulative and by self time. cProfile roughly doubles the cost of each
Python call, so read the shares, not the absolute seconds; ``--dump FILE`` keeps the raw statistics for
``snakeviz`` or ``pstats``.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
from pathlib import Path
from typing import cast

from bench.measure import work_dir
from bench.stage import NullSink
from recorderd.config import EngineConfig
from recorderd.replay import replay_file
from recorderd.store.keys import keygen
from recorderd.store.sink import StoreSink
from recorderd.store.store import Store


def profile_replay(path: Path, workdir: Path, store: bool = True) -> cProfile.Profile:
    """The profile of replaying ``path`` into a new store under ``workdir`` (setup not included), or
    with ``store=False`` into a sink that drops the events (the engine alone, as ``bench.stage engine``)."""
    if store:
        target = Store.init(workdir / "store", [keygen(workdir / "identity.txt", None)])
        sink = StoreSink(target)
    else:
        sink = cast(StoreSink, NullSink())
    profiler = cProfile.Profile()
    profiler.enable()
    replay_file(path, sink, EngineConfig())
    sink.close()
    profiler.disable()
    if store:
        target.close()
    return profiler


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n", 1)[0])
    p.add_argument("pcap", type=Path)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--dump", type=Path, help="also write the raw pstats data here")
    p.add_argument("--no-store", action="store_true", help="drop the engine's events instead of storing them")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="recorderd-profile-", dir=work_dir()) as tmp:  # as bench.stage
        profiler = profile_replay(args.pcap, Path(tmp), store=not args.no_store)
    if args.dump:
        profiler.dump_stats(args.dump)
    for order in ("cumulative", "tottime"):
        print(f"=== top {args.top} by {order} ===")
        stats = pstats.Stats(profiler, stream=sys.stdout)
        stats.strip_dirs().sort_stats(order).print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
