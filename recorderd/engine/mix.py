"""Writing out calls' audio: every due call's packets taken from the stream table in one pass.

At each tick the engine asks every call how far its audio is due (:meth:`CallMedia.due`) and hands
the due calls here together: one :meth:`StreamTable.take` sorts all their packets, one gather reads all
their payloads, and each call's share becomes :class:`AudioBlock` events. A call's audio is placed in
one of two ways:

* **passthrough**, the usual case: the recording keeps one G.711 law and each channel's packets come
  from one stream and do not overlap. The payload codes are copied into place as they came off the
  wire (through a 256-entry table for a packet of the other law), holes hold the law's silence code,
  and the blocks carry the codes, so nothing is decoded and re-encoded.
* **mixing**, otherwise (two streams on one side, as through a media relay or after an SSRC change
  that overlaps; overlapping packets; a 16-bit PCM recording of mixed laws): payloads are decoded and
  summed in 32 bits, clipped to 16 bits when written.

Both give the same audio: G.711 decoding is exact and a code re-encodes to itself, except that u-law
has two codes for zero (0x7F, 0xFF) and passthrough keeps whichever was sent.

A packet placed before a call's due sample but ending after it (the due sample falls inside it) is
placed whole; the part after the due sample is kept as the call's *carry* for the next write: the codes
of the recording's law after a passthrough, linear values after mixing.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided
from numpy.typing import NDArray

from recorderd.codecs.g711 import LAWS, transcoder
from recorderd.engine.call import RATE, SILENCE_CHUNK, CallMedia, Leg
from recorderd.events import AudioBlock, Event, RecordingStarted, Samples
from recorderd.rtp.pending import concat_ranges
from recorderd.rtp.stream import NO_TAKE, Kind, StreamTable, Taken

I64 = NDArray[np.int64]
U8 = NDArray[np.uint8]
_EVERYTHING = np.iinfo(np.int64).max
_AUDIO = int(Kind.AUDIO)


class _Piece:
    """Consecutive audio packets of one stream and one codec: where they go and their codes."""

    __slots__ = ("channel", "slot", "starts", "sizes", "codes", "encoding", "end", "back_to_back", "overlaps")

    def __init__(self, channel: int, slot: int, starts: I64, sizes: I64, codes: U8, encoding: str) -> None:
        self.channel, self.slot, self.starts, self.sizes = channel, slot, starts, sizes
        self.codes, self.encoding = codes, encoding
        ends = starts + sizes
        self.end = int(ends.max())
        follows = starts[1:] - ends[:-1]  # starts are sorted: compare each packet with the one before
        self.back_to_back = not follows.any()
        self.overlaps = bool((follows < 0).any())


# Calls written by one passthrough pass. Their audio is one array (about 16 kB per call-second), and
# one of tens of megabytes costs more in page faults than in copying: malloc hands such sizes back to
# the kernel when freed, so every write would touch fresh pages.
PASSTHROUGH_CALLS = 256


def write(
    table: StreamTable, due: list[tuple[CallMedia, int, float]], everything: bool = False
) -> list[Event]:
    """AudioBlocks for every ``(call, upto, now)`` in ``due``: its audio before sample ``upto``, at
    capture time ``now``. With ``everything`` (calls that ended) all their pending packets are taken,
    audio or not."""
    if not due:
        return []
    limit = np.full(table.capacity, NO_TAKE, dtype=np.int64)
    owner = np.full(table.capacity, -1, dtype=np.int64)
    channel = np.zeros(table.capacity, dtype=np.int64)
    carry_end = np.zeros(table.capacity, dtype=np.int64)
    law = np.full(table.capacity, -1, dtype=np.int64)  # of each stream's current payload type
    single = np.ones(len(due), dtype=bool)  # at most one stream per side
    for i, (call, upto, _) in enumerate(due):
        streams = [0, 0]
        for leg in call.legs.values():
            slot = leg.slot
            limit[slot] = _EVERYTHING if everything else upto
            owner[slot] = i
            channel[slot] = leg.channel
            carry_end[slot] = call.carry_end[leg.channel]
            law[slot] = _LAW_INDEX.get(call.encoding_of(int(table.payload_type[slot]), leg.side), -1)
            streams[leg.channel] += 1
        single[i] = max(streams) <= 1
    taken = table.take(limit)
    rows = _Rows(table, taken, owner, len(due))
    table.floor[owner >= 0] = np.array([upto for _, upto, _ in due], dtype=np.int64)[owner[owner >= 0]]
    targets = [call.target_encoding() for call, _, _ in due]
    fast = _passthrough_calls(due, targets, rows, single, carry_end, table.payload_type, law)
    out: list[Event] = []
    blocks: dict[int, list[Event]] = {}
    chosen = np.flatnonzero(fast)
    for first in range(0, len(chosen), PASSTHROUGH_CALLS):
        part = np.zeros_like(fast)
        part[chosen[first : first + PASSTHROUGH_CALLS]] = True
        blocks |= _write_passthrough(due, targets, rows, part, channel, law)
    for i, (call, upto, now) in enumerate(due):
        if fast[i]:
            out += blocks[i]
            continue
        lo, hi = rows.bounds[i], rows.bounds[i + 1]
        codes = rows.codes(np.arange(lo, hi))
        pieces = _pieces(call, taken, rows.audio[lo:hi], codes) if taken is not None else []
        out += _write(call, pieces, upto, now)
    return out


class _Rows:
    """The audio packets taken for the due calls, grouped by call (then by slot and time); their
    payload codes are gathered from the ring when asked for, a pass of calls at a time (one array
    for every due call would be tens of megabytes: see PASSTHROUGH_CALLS)."""

    def __init__(self, table: StreamTable, taken: Taken | None, owner: I64, calls: int) -> None:
        self._table, self._taken = table, taken
        if taken is None:
            empty = np.zeros(0, dtype=np.int64)
            self.audio = self.call = self.slot = self.pos = self.size = self.pt = empty
        else:
            row_call = owner[taken.slot]
            order = np.argsort(row_call, kind="stable")  # by call, then as taken: slot, position, sequence
            self.audio = order[taken.kind[order] == _AUDIO]
            self.call = row_call[self.audio]
            self.slot, self.pos = taken.slot[self.audio], taken.pos[self.audio]
            self.size, self.pt = taken.duration[self.audio], taken.pt[self.audio]
        self.bounds = np.searchsorted(self.call, np.arange(calls + 1))

    def codes(self, index: I64) -> NDArray[np.uint8]:
        """The payload codes of rows ``index``, concatenated."""
        if self._taken is None or not len(index):
            return np.zeros(0, dtype=np.uint8)
        return self._table.payloads(self._taken, self.audio[index])


_LAW_INDEX = {"ulaw": 0, "alaw": 1}
_LAW_NAMES = ("ulaw", "alaw")


def _passthrough_calls(
    due: list[tuple[CallMedia, int, float]],
    targets: list[str],
    rows: _Rows,
    single: NDArray[np.bool_],
    carry_end: I64,
    payload_type: I64,
    stream_law: I64,
) -> NDArray[np.bool_]:
    """Which due calls take the batched passthrough: one G.711 law kept, one stream per side, each
    stream's packets all of its current G.711 payload type and of one size, not overlapping each
    other or the carry, and a write of at most :data:`SILENCE_CHUNK`."""
    base = np.array([call.base for call, _, _ in due], dtype=np.int64)
    n = np.array([upto for _, upto, _ in due], dtype=np.int64) - base
    law = np.array([_LAW_INDEX.get(target, -1) for target in targets], dtype=np.int64)
    fast = single & (law >= 0) & (n <= SILENCE_CHUNK)
    fast &= np.array([len(call.carry) <= SILENCE_CHUNK for call, _, _ in due])
    if len(rows.call):
        rel = rows.pos - base[rows.call]
        bad = np.zeros(len(due) + 1, dtype=bool)
        same = rows.slot[1:] == rows.slot[:-1]
        bad[rows.call[1:][same & (rel[1:] < rel[:-1] + rows.size[:-1])]] = True  # overlapping packets
        first = np.concatenate(([True], ~same))
        bad[rows.call[first & (rel < carry_end[rows.slot])]] = True  # overlapping the carry
        bad[rows.call[rows.size != rows.size[0]]] = True  # one packet size per write
        bad[rows.call[(rows.pt != payload_type[rows.slot]) | (stream_law[rows.slot] < 0)]] = True
        bad[rows.call[rel + rows.size > SILENCE_CHUNK]] = True
        fast &= ~bad[:-1]
    return fast


def _write_passthrough(
    due: list[tuple[CallMedia, int, float]],
    due_targets: list[str],
    rows: _Rows,
    fast: NDArray[np.bool_],
    channel: I64,
    law_of: I64,
) -> dict[int, list[Event]]:
    """Passthrough for many calls at once: one array of codes for all of them, every packet copied
    into place in one pass per channel; then each call's blocks are views of its part."""
    chosen = np.flatnonzero(fast)
    calls = [due[i][0] for i in chosen.tolist()]
    base = np.array([call.base for call in calls], dtype=np.int64)
    n = np.array([due[i][1] for i in chosen.tolist()], dtype=np.int64) - base
    targets = [due_targets[i] for i in chosen.tolist()]
    law = np.array([_LAW_INDEX[t] for t in targets], dtype=np.int64)
    # the rows of these calls, and where each call's part begins
    index_of = np.full(len(due), -1, dtype=np.int64)
    index_of[chosen] = np.arange(len(chosen))
    mine = np.flatnonzero(fast[rows.call])
    who = index_of[rows.call[mine]]
    rel = rows.pos[mine] - base[who]
    ends = np.zeros(2 * len(chosen), dtype=np.int64)
    ch = channel[rows.slot[mine]]
    np.maximum.at(ends, 2 * who + ch, rel + rows.size[mine])
    carried = np.array([len(call.carry) for call in calls], dtype=np.int64)
    span = np.maximum(np.maximum(ends[0::2], ends[1::2]), np.maximum(carried, n))
    start = np.concatenate(([0], np.cumsum(span)))
    silence = np.array([LAWS[t].silence for t in targets], dtype=np.uint8)
    frames = np.repeat(np.stack((silence, silence), axis=1), span, axis=0)  # fast, unlike broadcasting
    for k, call in enumerate(calls):
        if carried[k]:
            frames[start[k] : start[k] + carried[k]] = _carry_codes(call, targets[k])
    if len(mine):
        size = int(rows.size[0])
        codes = rows.codes(mine).reshape(-1, size)  # this pass's own gather: changed in place below
        row_law = law_of[rows.slot[mine]]
        for source in (0, 1):
            other = (row_law == source) & (law[who] != source)
            if other.any():
                table = transcoder(_LAW_NAMES[source], _LAW_NAMES[1 - source])
                assert table is not None
                codes[other] = table[codes[other]]
        dest = start[who] + rel
        flat = frames.reshape(-1)
        for c in (0, 1):
            place = ch == c
            view = as_strided(flat[c:], shape=(len(frames) - size + 1, size), strides=(2, 2))
            view[dest[place]] = codes[place]
        _count_transcoded(calls, who, row_law)
    has_audio = np.bincount(who, minlength=len(chosen)) > 0
    out: dict[int, list[Event]] = {}
    for k, call in enumerate(calls):
        i, count = int(chosen[k]), int(n[k])
        part = frames[start[k] : start[k + 1]]
        call.carry = part[count:].copy()
        call.carry_law = targets[k]
        call.carry_end = [max(0, call.carry_end[c] - count, int(ends[2 * k + c]) - count) for c in (0, 1)]
        call.audio_seen = call.audio_seen or bool(has_audio[k])
        call.base = due[i][1]
        out[i] = _blocks(call, part, count, targets[k], due[i][2])
    return out


def _count_transcoded(calls: list[CallMedia], who: I64, row_law: I64) -> None:
    """Packets of another law than a recording fixed before them (a mid-call codec change)."""
    fixed = np.array([_LAW_INDEX.get(call.encoding or "", -1) for call in calls], dtype=np.int64)
    other = (fixed[who] >= 0) & (row_law != fixed[who])
    if other.any():
        for k, count in enumerate(np.bincount(who[other], minlength=len(calls)).tolist()):
            if count:
                calls[k].counters["transcoded_packets"] += count


def _carry_codes(call: CallMedia, law: str) -> U8:
    """The call's carry as codes of ``law`` (silence where no channel holds audio)."""
    if call.carry_law == law:
        return call.carry.view(np.uint8)
    codes = LAWS[law].encode_clipped(_carry_linear(call))
    for c in (0, 1):
        codes[call.carry_end[c] :, c] = LAWS[law].silence
    return codes


def _carry_linear(call: CallMedia) -> NDArray[np.int32]:
    """The call's carry as linear values (zero where no channel holds audio)."""
    if call.carry_law is None:
        return call.carry.astype(np.int32, copy=False)
    linear = LAWS[call.carry_law].decode[call.carry].astype(np.int32)
    for c in (0, 1):
        linear[call.carry_end[c] :, c] = 0
    return linear


def _pieces(call: CallMedia, t: Taken, rows: I64, codes: U8) -> list[_Piece]:
    """The call's audio rows (by slot, then time) cut into pieces of one stream and one codec."""
    if not len(rows):
        return []
    legs = {leg.slot: leg for leg in call.legs.values()}
    slot, pt, pos, size = t.slot[rows], t.pt[rows], t.pos[rows] - call.base, t.duration[rows]
    cut = np.flatnonzero((slot[1:] != slot[:-1]) | (pt[1:] != pt[:-1])) + 1
    bounds = [0, *cut.tolist(), len(rows)]
    offsets = np.concatenate(([0], np.cumsum(size)))
    pieces = []
    for a, b in zip(bounds, bounds[1:], strict=False):
        leg: Leg = legs[int(slot[a])]
        codec = call.codec_of(int(pt[a]), leg.side)
        piece_codes = codes[offsets[a] : offsets[b]]
        pieces.append(_Piece(leg.channel, leg.slot, pos[a:b], size[a:b], piece_codes, codec.encoding))
    return pieces


def _write(call: CallMedia, pieces: list[_Piece], upto: int, now: float) -> list[Event]:
    target = call.target_encoding()
    if pieces:
        call.audio_seen = True
        if call.encoding not in (None, "pcm16"):
            # the file's law was fixed before these packets' codec appeared (a mid-call codec change)
            other = sum(len(p.starts) for p in pieces if p.encoding != call.encoding)
            if other:
                call.counters["transcoded_packets"] += other
    n = upto - call.base
    span = max([len(call.carry), *(p.end for p in pieces)])
    source: NDArray[np.int32] | U8
    if target in LAWS and _passes_through(call, pieces):
        source, tail = _place_codes(call, pieces, target, span, n)
        encoding = target
    else:
        source, tail = _mix(call, pieces, span, n)
        encoding = "pcm16"
    channel_end = [call.carry_end[c] - n for c in (0, 1)]
    for p in pieces:
        channel_end[p.channel] = max(channel_end[p.channel], p.end - n)
    call.carry, call.carry_law = tail, None
    call.carry_end = [max(0, e) for e in channel_end]
    call.base = upto  # write() has moved its streams' floor here
    return _blocks(call, source, n, encoding, now)


def _passes_through(call: CallMedia, pieces: list[_Piece]) -> bool:
    slots: list[set[int]] = [set(), set()]
    for p in pieces:
        slots[p.channel].add(p.slot)
        if p.overlaps or int(p.starts[0]) < call.carry_end[p.channel]:
            return False
    if any(len(s) > 1 for s in slots):
        return False
    # one stream per channel: its pieces (codec changes) follow each other in time
    for channel in (0, 1):
        mine = [p for p in pieces if p.channel == channel]
        for before, after in zip(mine, mine[1:], strict=False):
            if int(after.starts[0]) < before.end:
                return False
    return True


def _place_codes(
    call: CallMedia, pieces: list[_Piece], target: str, span: int, n: int
) -> tuple[U8, NDArray[np.int32]]:
    """Passthrough: the codes of ``[0, span)`` as a (span, 2) array, and the carry after ``n``."""
    law = LAWS[target]
    frames = np.full((span, 2), law.silence, dtype=np.uint8)
    if len(call.carry):
        frames[: len(call.carry)] = _carry_codes(call, target)
    for p in pieces:
        table = transcoder(p.encoding, target)
        codes = p.codes if table is None else table[p.codes]
        first = int(p.starts[0])
        if p.back_to_back:  # the usual case: one copy
            frames[first : first + len(codes), p.channel] = codes
        else:
            frames[concat_ranges(p.starts, p.sizes), p.channel] = codes
    tail = np.zeros((max(0, span - n), 2), dtype=np.int32)
    for channel in (0, 1):
        end = max([call.carry_end[channel] - n, *(p.end - n for p in pieces if p.channel == channel), 0])
        if end:
            tail[:end, channel] = law.decode[frames[n : n + end, channel]]
    return frames, tail


def _mix(
    call: CallMedia, pieces: list[_Piece], span: int, n: int
) -> tuple[NDArray[np.int32], NDArray[np.int32]]:
    """Mixing: linear sums of ``[0, span)`` as a (span, 2) int32 array, and the carry after ``n``."""
    mix = np.zeros((span, 2), dtype=np.int32)
    mix[: len(call.carry)] = _carry_linear(call)
    for p in pieces:
        samples = LAWS[p.encoding].decode[p.codes].astype(np.int32)
        if not p.overlaps:  # no sample twice in one add
            mix[concat_ranges(p.starts, p.sizes), p.channel] += samples
            continue
        offset = 0
        for at, k in zip(p.starts.tolist(), p.sizes.tolist(), strict=True):
            mix[at : at + k, p.channel] += samples[offset : offset + k]
            offset += k
    return mix, mix[n:].copy()


def _blocks(
    call: CallMedia, source: NDArray[np.int32] | U8, n: int, encoding: str, now: float
) -> list[Event]:
    """AudioBlocks for the ``n`` samples before ``call.base`` (``source`` holds the first of them; the
    rest are silence), in pieces of at most :data:`SILENCE_CHUNK`, once the recording has audio."""
    if not call.audio_seen or n <= 0:
        return []
    out: list[Event] = []
    if call.encoding is None:
        call.encoding = call.target_encoding()
        out.append(RecordingStarted(call.media_start or now, call.call_id, call.encoding, RATE))
    start = call.base - n
    # Sample 0 is the first media packet; if decodable audio came later, the recording opens with
    # silence for the span before it (undecodable or comfort-noise packets, ringing).
    empty = source[:0]
    while call.emitted < start:
        k = min(SILENCE_CHUNK, start - call.emitted)
        out.append(AudioBlock(now, call.call_id, call.emitted, _block(empty, k, encoding), encoding))
        call.emitted += k
    for a in range(0, n, SILENCE_CHUNK):
        b = min(n, a + SILENCE_CHUNK)
        block: Samples | U8
        if source.dtype == np.uint8 and b <= len(source):
            block = source[a:b].view(np.uint8)  # codes placed for this write alone: no copy
        else:
            block = _block(source[a:b], b - a, encoding)
        out.append(AudioBlock(now, call.call_id, start + a, block, encoding))
    call.emitted = call.base
    return out


def _block(have: NDArray[np.int32] | U8, n: int, encoding: str) -> Samples | U8:
    """A block of ``n`` samples: ``have`` (sums clipped to 16 bits, or codes), then silence."""
    if encoding == "pcm16":
        pcm = np.zeros((n, 2), dtype=np.int16)
        pcm[: len(have)] = np.clip(have, -32768, 32767)
        return pcm
    codes = np.full((n, 2), LAWS[encoding].silence, dtype=np.uint8)
    codes[: len(have)] = have
    return codes
