"""Each stage of the pipeline on its own, fed by the stages before it running untimed.

Each function takes a :class:`Job` and returns a :class:`Result` whose clock covers only its stage,
summed over pieces of work (a batch of 512 frames, or the blocks one batch completes). The capture
stages read the file; the per-frame stages (net, parse, demux, decode) use recorderd's per-frame
public APIs; encode and encrypt work on synthetic audio of as many call-seconds as the capture holds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bench.measure import Clock, Job, Result
from recorderd.capture.pcap import OfflineSource
from recorderd.codecs.g711 import alaw_decode, ulaw_decode
from recorderd.events import CallEnded, Datagram, Frame, MediaNegotiated, SipEvent
from recorderd.net import NetDecoder
from recorderd.replay import BATCH
from recorderd.rtp.demux import MediaMap
from recorderd.rtp.packet import parse_rtp
from recorderd.sip.dialog import DialogTracker
from recorderd.sip.message import parse_sip
from recorderd.store.age import AgeWriter
from recorderd.store.au import encode_frames
from recorderd.store.keys import keygen

RATE = 8000
BLOCK_PACKETS = 50  # one second of 20 ms packets
BYTES_PER_CALL_SECOND = 2 * RATE  # stereo G.711


def _batches(path: Path) -> Iterator[list[Frame]]:
    with OfflineSource(path) as source:
        yield from source.iter_batches()


def _is_rtp(payload: bytes) -> bool:
    """The engine's own test: RTP version 2 in the first byte (RFC 3550 5.1); SIP starts with a letter."""
    return bool(payload) and 0x80 <= payload[0] <= 0xBF


def _datagrams(net: NetDecoder, batch: list[Frame]) -> list[Datagram]:
    return [d for frame in batch for d in net.feed(frame)]


def stage_capture(job: Job) -> Result:
    """Reading the file as the replay does: libpcap batches, no object per frame."""
    result = Result("capture")
    result.clock.start()
    with OfflineSource(job.pcap, batch_size=BATCH) as source:
        for batch in source.raw_batches():
            result.frames += batch.count
    result.clock.stop()
    result.items = result.frames
    return result


def stage_frames(job: Job) -> Result:
    """Iterating :class:`OfflineSource` frame by frame, a :class:`Frame` each (the per-frame APIs' input)."""
    result = Result("frames")
    result.clock.start()
    with OfflineSource(job.pcap) as source:
        for _ in source:
            result.frames += 1
    result.clock.stop()
    result.items = result.frames
    return result


def stage_net(job: Job) -> Result:
    result = Result("net")
    counters: Counter[str] = Counter()
    net = NetDecoder(counters)
    for batch in _batches(job.pcap):
        result.clock.start()
        for frame in batch:
            result.items += len(net.feed(frame))
        result.clock.stop()
        result.frames += len(batch)
    result.check = {"datagrams": result.items, "drops": dict(counters)}
    return result


def stage_parse(job: Job) -> Result:
    result = Result("parse")
    net = NetDecoder(Counter())
    for batch in _batches(job.pcap):
        payloads = [d.payload for d in _datagrams(net, batch) if _is_rtp(d.payload)]
        result.clock.start()
        for payload in payloads:
            parse_rtp(payload)
        result.clock.stop()
        result.frames += len(batch)
        result.items += len(payloads)
    return result


class _Signalling:
    """The SIP side, untimed: dialogs to media bindings, as the engine keeps them."""

    def __init__(self) -> None:
        self.counters: Counter[str] = Counter()
        self.dialogs = DialogTracker(self.counters)
        self.media = MediaMap()

    def datagram(self, d: Datagram) -> None:
        self._apply(self.dialogs.handle(d, parse_sip(d.payload)))

    def advance(self, now: float) -> None:
        self.media.expire(now)
        self._apply(self.dialogs.advance(now))

    def _apply(self, events: list[SipEvent]) -> None:
        for event in events:
            if isinstance(event, MediaNegotiated):
                self.media.bind(event.call_id, event.side, event.ip, event.port, event.ts)
            elif isinstance(event, CallEnded):
                self.media.unbind_call(event.call_id)


def stage_demux(job: Job) -> Result:
    result = Result("demux")
    net = NetDecoder(Counter())
    sip = _Signalling()
    misses = 0
    for batch in _batches(job.pcap):
        for run, signalling in _runs(_datagrams(net, batch)):
            lookup = sip.media.lookup
            result.clock.start()
            for d in run:
                if lookup(d.src, d.sport, d.dst, d.dport) is None:
                    misses += 1
            result.clock.stop()
            result.items += len(run)
            if signalling is not None:
                sip.datagram(signalling)
        sip.advance(batch[-1].ts)
        result.frames += len(batch)
    result.check = {"unmapped": misses}
    return result


def _runs(datagrams: list[Datagram]) -> Iterator[tuple[list[Datagram], Datagram | None]]:
    """Runs of RTP datagrams, each with the SIP datagram that follows it (None after the last run),
    so that signalling takes effect exactly where it was captured."""
    run: list[Datagram] = []
    for d in datagrams:
        if _is_rtp(d.payload):
            run.append(d)
        else:
            yield run, d
            run = []
    yield run, None


_DECODERS: dict[int, Callable[[bytes], Any]] = {0: ulaw_decode, 8: alaw_decode}


def stage_decode(job: Job) -> Result:
    result = Result("decode")
    net = NetDecoder(Counter())
    pending: dict[tuple[bytes, int, bytes, int], tuple[int, list[bytes]]] = {}
    samples = 0
    for batch in _batches(job.pcap):
        ready = []
        for d in _datagrams(net, batch):
            if not _is_rtp(d.payload):
                continue
            pkt = parse_rtp(d.payload)
            key = (d.src, d.sport, d.dst, d.dport)
            block = pending.setdefault(key, (pkt.pt, []))
            block[1].append(pkt.payload)
            if len(block[1]) == BLOCK_PACKETS:
                ready.append(pending.pop(key))
            result.items += 1
        samples += _decode_blocks(ready, result.clock)
        result.frames += len(batch)
    samples += _decode_blocks(list(pending.values()), result.clock)  # each stream's last block
    result.check = {"samples": samples}
    return result


def _decode_blocks(blocks: list[tuple[int, list[bytes]]], clock: Clock) -> int:
    clock.start()
    n = 0
    for pt, payloads in blocks:
        n += len(_DECODERS[pt](b"".join(payloads)))
    clock.stop()
    return n


def _stereo_second() -> np.ndarray:
    t = np.arange(RATE) / RATE
    left = (np.sin(2 * np.pi * 400 * t) * 8000).astype(np.int16)
    right = (np.sin(2 * np.pi * 1000 * t) * 3000).astype(np.int16)
    return np.stack([left, right], axis=1)


def stage_encode(job: Job) -> Result:
    """AU encoding of as many stereo call-seconds as the capture holds (two packets each)."""
    result = Result("encode", frames=_frame_count(job.pcap))
    block = _stereo_second()
    seconds = job.rtp_packets // (2 * BLOCK_PACKETS)
    result.clock.start()
    for i in range(seconds):
        encode_frames(block, "ulaw" if i % 2 else "alaw")
    result.clock.stop()
    result.items = seconds
    return result


class _NullFile:
    def __init__(self) -> None:
        self.bytes = 0

    def write(self, data: bytes, /) -> int:
        self.bytes += len(data)
        return len(data)

    def flush(self) -> None:
        pass


def stage_encrypt(job: Job) -> Result:
    """``calls`` concurrent age streams, each written a call-second at a time, as many call-seconds as
    the capture holds; every ``call_seconds`` each stream is closed and a new one opened (the next
    call), so the per-file cost (X25519, HKDF, header MAC) is paid as often as in the capture."""
    result = Result("encrypt", frames=_frame_count(job.pcap))
    recipient = keygen(job.workdir / "identity.txt", None)
    data = b"\xd5" * BYTES_PER_CALL_SECOND
    calls = job.calls
    rounds = job.rtp_packets // (2 * BLOCK_PACKETS) // calls  # seconds in which every call writes
    per_call = max(1, round(job.call_seconds))
    sink = _NullFile()
    result.clock.start()
    writers = [AgeWriter(sink, [recipient]) for _ in range(calls)]
    for second in range(rounds):
        for writer in writers:
            writer.write(data)
        if (second + 1) % per_call == 0 and second + 1 < rounds:
            for writer in writers:
                writer.close()
            writers = [AgeWriter(sink, [recipient]) for _ in range(calls)]
    for writer in writers:
        writer.close()
    result.clock.stop()
    result.items = rounds * calls
    result.check = {"ciphertext_bytes": sink.bytes}
    return result


def _frame_count(path: Path) -> int:
    return sum(len(b) for b in _batches(path))
