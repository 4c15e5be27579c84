"""G.711 mu-law and A-law (ITU-T G.711, RFC 3551 section 4.5.14) as 256-entry NumPy tables.

Decoding indexes a table built once from the segment formula, so a block of any length decodes in one
vectorised step. Encoding uses a 65,536-entry table built with the standard's segment and truncation
rule, so it agrees with every reference encoder (libsndfile, Sun's g711.c, CPython's audioop), and
re-encoding decoded G.711 gives back a code that decodes to the very same sample: that is what lets the
store keep a G.711 call as G.711 without loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Codes = bytes | bytearray | memoryview | NDArray[np.uint8]


def _ulaw_table() -> NDArray[np.int16]:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(u & 0x80, -magnitude, magnitude).astype(np.int16)


def _alaw_table() -> NDArray[np.int16]:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    exponent = (a >> 4) & 0x07
    mantissa = a & 0x0F
    magnitude = np.where(
        exponent == 0,
        (mantissa << 4) + 8,
        ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0),
    )
    return np.where(a & 0x80, magnitude, -magnitude).astype(np.int16)


_ULAW_SEGMENT_ENDS = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
_ALAW_SEGMENT_ENDS = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])
_ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int32)


def _ulaw_encoder() -> NDArray[np.uint8]:
    """G.711 mu-law compression of every 16-bit value (the segment/truncation rule of the standard's
    reference encoder, as in Sun's g711.c), indexed by ``sample + 32768``."""
    value = _ALL_SAMPLES >> 2  # 14-bit
    mask = np.where(value < 0, 0x7F, 0xFF)
    value = np.minimum(np.abs(value), 8159) + 0x21  # clip, then add the bias
    segment = np.searchsorted(_ULAW_SEGMENT_ENDS, value)
    code = (segment << 4) | ((value >> (segment + 1)) & 0x0F)
    return (np.where(segment >= 8, 0x7F, code) ^ mask).astype(np.uint8)


def _alaw_encoder() -> NDArray[np.uint8]:
    value = _ALL_SAMPLES >> 3  # 13-bit
    mask = np.where(value >= 0, 0xD5, 0x55)
    value = np.where(value >= 0, value, -value - 1)
    segment = np.searchsorted(_ALAW_SEGMENT_ENDS, value)
    shift = np.where(segment < 2, 1, segment)
    code = (segment << 4) | ((value >> shift) & 0x0F)
    return (np.where(segment >= 8, 0x7F, code) ^ mask).astype(np.uint8)


ULAW_DECODE = _ulaw_table()
ALAW_DECODE = _alaw_table()
ULAW_ENCODE = _ulaw_encoder()
ALAW_ENCODE = _alaw_encoder()
ULAW_SILENCE = 0xFF
ALAW_SILENCE = 0xD5


def _codes(data: Codes) -> NDArray[np.uint8]:
    if isinstance(data, np.ndarray):
        return data
    return np.frombuffer(data, dtype=np.uint8)


def ulaw_decode(data: Codes) -> NDArray[np.int16]:
    """Payload bytes (one sample each) to linear 16-bit samples."""
    return ULAW_DECODE[_codes(data)]


def alaw_decode(data: Codes) -> NDArray[np.int16]:
    return ALAW_DECODE[_codes(data)]


def ulaw_encode(pcm: NDArray[np.int16]) -> NDArray[np.uint8]:
    return ULAW_ENCODE[pcm.astype(np.int32) + 32768]


def alaw_encode(pcm: NDArray[np.int16]) -> NDArray[np.uint8]:
    return ALAW_ENCODE[pcm.astype(np.int32) + 32768]


@dataclass(frozen=True, slots=True, eq=False)
class Law:
    """One G.711 law as tables: ``decode`` (256 codes to linear), ``encode`` (65,536 linear values,
    offset by 32,768, to codes) and the code of silence."""

    name: str
    decode: NDArray[np.int16]
    encode: NDArray[np.uint8]
    silence: int

    def encode_clipped(self, pcm: NDArray[np.int32]) -> NDArray[np.uint8]:
        """Codes for linear values that may exceed 16 bits (sums), clipped first."""
        out: NDArray[np.uint8] = self.encode[np.clip(pcm, -32768, 32767) + 32768]
        return out


LAWS = {"ulaw": Law("ulaw", ULAW_DECODE, ULAW_ENCODE, ULAW_SILENCE),
        "alaw": Law("alaw", ALAW_DECODE, ALAW_ENCODE, ALAW_SILENCE)}  # fmt: skip


def transcoder(source: str, target: str) -> NDArray[np.uint8] | None:
    """A 256-entry table from ``source`` codes to ``target`` codes; None when they are the same law."""
    if source == target:
        return None
    out: NDArray[np.uint8] = LAWS[target].encode[LAWS[source].decode.astype(np.int32) + 32768]
    return out


def to_pcm(samples: NDArray[np.int16] | NDArray[np.uint8], encoding: str) -> NDArray[np.int16]:
    """Linear samples from samples held as ``encoding`` ("pcm16", "ulaw" or "alaw")."""
    if encoding == "pcm16":
        return samples.astype(np.int16, copy=False)
    out: NDArray[np.int16] = LAWS[encoding].decode[samples]
    return out
