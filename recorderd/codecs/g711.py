"""G.711 mu-law and A-law (ITU-T G.711, RFC 3551 section 4.5.14) as 256-entry NumPy tables.

Decoding indexes a table built once from the segment formula, so a block of any length decodes in one
vectorised step. Encoding uses a 65,536-entry table that maps every 16-bit sample to the code whose decoded
value is nearest: re-encoding decoded G.711 gives back a code that decodes to the very same sample, which
is what lets the store keep a G.711 call as G.711 without loss.
"""

from __future__ import annotations

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


def _encoder_table(decode: NDArray[np.int16], preferred_zero: int) -> NDArray[np.uint8]:
    """Nearest code for every int16 value, indexed by ``sample + 32768``."""
    values = decode.astype(np.int32)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    # mu-law has two codes for 0 (0x7F, 0xFF); keep the conventional one.
    if preferred_zero >= 0:
        zero = np.flatnonzero(ordered == 0)
        order[zero] = preferred_zero
    samples = np.arange(-32768, 32768, dtype=np.int32)
    right = np.clip(np.searchsorted(ordered, samples), 1, len(ordered) - 1)
    left = right - 1
    take_left = (samples - ordered[left]) <= (ordered[right] - samples)
    return order[np.where(take_left, left, right)].astype(np.uint8)


ULAW_DECODE = _ulaw_table()
ALAW_DECODE = _alaw_table()
ULAW_ENCODE = _encoder_table(ULAW_DECODE, preferred_zero=0xFF)
ALAW_ENCODE = _encoder_table(ALAW_DECODE, preferred_zero=-1)
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
