"""One benchmark measurement in its own process: ``python -m bench.stage STAGE FILE`` prints one JSON line.

A process per measurement gives each its own peak RSS (``ru_maxrss``) and a fresh heap. Imports, key
generation and store creation happen before the clock starts.

Stages and what the clock covers (the rest of the pipeline that feeds a stage runs untimed):

=========  ===============================================================================================
e2e        ``replay_file`` into a fresh encrypted store: capture, engine, AU encoding, age, index, fsyncs
engine     the same replay into a sink that drops the events: capture, net, SIP, RTP, decode, mix
capture    reading the file as the replay does (``OfflineSource.raw_batches``, no object per frame)
frames     iterating :class:`OfflineSource` frame by frame, one :class:`Frame` object each
net        :meth:`NetDecoder.feed` on every frame
parse      :func:`parse_rtp` on every RTP datagram
demux      :meth:`MediaMap.lookup` for every RTP datagram (bindings from the captured SDP, untimed)
decode     G.711 table decoding of every stream's payloads in one-second blocks (50 packets)
encode     AU G.711 encoding of the stereo mix, one-second blocks per call (what the store writes)
encrypt    :class:`AgeWriter` on 16,000 bytes per call-second into a null sink; a new writer per call
=========  ===============================================================================================

The two replays are also timed over the capture's steady window alone (``replay_file``'s progress
callback, once per batch, gives time against file position). Stages timed piecewise sum
``time.perf_counter`` / ``time.process_time`` deltas around each batch of work (512 frames, or the
blocks one batch completes), so a clock read costs well under 1 % of what it measures.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import cast

from bench import single
from bench.gen import Window
from bench.measure import Job, Result, Samples, drops, store_dir
from recorderd import gctune
from recorderd.config import EngineConfig
from recorderd.events import Event
from recorderd.replay import ReplayResult, replay_file
from recorderd.store.keys import keygen
from recorderd.store.sink import StoreSink
from recorderd.store.store import Store

PROGRESS_EVERY = 512  # frames between progress samples: one per batch, at the batch's end


def stage_e2e(job: Job) -> Result:
    recipient = keygen(job.workdir / "identity.txt", None)
    store = Store.init(job.workdir / "store", [recipient])
    sink = StoreSink(store)
    result, replay = _replay("e2e", job.pcap, sink, job.window)
    recordings = store.calls(limit=10**9)
    store.close()
    result.check["recordings_complete"] = sum(1 for c in recordings if c.get("recording_state") == "complete")
    return result


class NullSink:
    """Takes the engine's events and keeps nothing: the replay without the store."""

    def __init__(self) -> None:
        self.events = 0

    def handle(self, event: Event) -> None:
        self.events += 1

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def stage_engine(job: Job) -> Result:
    result, _ = _replay("engine", job.pcap, cast(StoreSink, NullSink()), job.window)
    return result


def _replay(stage: str, path: Path, sink: StoreSink, window: Window | None) -> tuple[Result, ReplayResult]:
    """``replay_file`` exactly as ``recorderd replay`` runs it, timed whole and in its steady window."""
    gctune.tune()  # as recorderd replay does
    result = Result(stage)
    samples = Samples()
    result.clock.start()
    samples(path, 0, 0)
    replay = replay_file(path, sink, EngineConfig(), samples, progress_every=PROGRESS_EVERY)
    sink.close()
    result.clock.stop()
    result.frames = result.items = replay.frames
    result.steady = samples.within(window) if window else None
    result.check = {
        "calls": len(replay.calls),
        "legs": sum(len(r.legs) for r in replay.calls),
        "lost": sum(leg.lost for r in replay.calls for leg in r.legs),
        "drops": drops(replay.counters),
    }
    return result, replay


STAGES: dict[str, Callable[[Job], Result]] = {
    "e2e": stage_e2e,
    "engine": stage_engine,
    "capture": single.stage_capture,
    "frames": single.stage_frames,
    "net": single.stage_net,
    "parse": single.stage_parse,
    "demux": single.stage_demux,
    "decode": single.stage_decode,
    "encode": single.stage_encode,
    "encrypt": single.stage_encrypt,
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.stage", description=__doc__.split("\n", 1)[0])
    p.add_argument("stage", choices=list(STAGES))
    p.add_argument("pcap", type=Path)
    p.add_argument("--rtp-packets", type=int, default=0, help="RTP packets in the capture (encode, encrypt)")
    p.add_argument("--calls", type=int, default=1, help="simultaneous calls in the capture (encrypt)")
    p.add_argument("--call-seconds", type=float, default=60.0, help="length of each call (encrypt)")
    p.add_argument(
        "--window", help="the capture's steady window: first,end frame, first,end byte, record size"
    )
    return p


def _window(text: str | None) -> Window | None:
    if not text:
        return None
    first_frame, end_frame, first_byte, end_byte, record = (int(x) for x in text.split(","))
    return Window(first_frame, end_frame, first_byte, end_byte, record)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    tmp, remove = store_dir("recorderd-bench-")
    try:
        job = Job(args.pcap, tmp, args.rtp_packets, args.calls, args.call_seconds, _window(args.window))
        result = STAGES[args.stage](job)
    finally:
        if remove:
            shutil.rmtree(tmp, ignore_errors=True)
    print(result.as_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
