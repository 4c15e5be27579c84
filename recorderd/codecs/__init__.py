"""Codec registry: payload format -> decoder (RFC 3551 static types, SDP ``a=rtpmap`` names).

A decoder is a pure function from the concatenated payloads of consecutive packets to 16-bit samples at
the format's clock rate. Formats without a decoder here (G.729, G.722, Opus, GSM...) are reported by
:func:`decoder_for` as ``None``: the engine records them as undecodable, never as silence.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from recorderd.codecs.g711 import alaw_decode, ulaw_decode
from recorderd.events import PayloadFormat


@dataclass(frozen=True, slots=True)
class Codec:
    name: str
    rate: int
    bytes_per_sample: int
    decode: Callable[[bytes], NDArray[np.int16]]
    encoding: str  # how the store keeps it losslessly: "ulaw", "alaw" or "pcm16"


PCMU = Codec("PCMU", 8000, 1, ulaw_decode, "ulaw")
PCMA = Codec("PCMA", 8000, 1, alaw_decode, "alaw")

_BY_NAME: dict[str, Codec] = {c.name: c for c in (PCMU, PCMA)}

# Payloads that carry no audio of their own but are not undecodable audio either.
COMFORT_NOISE = "CN"  # RFC 3389: the sender is silent; record silence
TELEPHONE_EVENT = "TELEPHONE-EVENT"  # RFC 4733: DTMF digits, collected as events


def decoder_for(fmt: PayloadFormat) -> Codec | None:
    """The decoder for ``fmt`` or None when recorderd cannot decode it."""
    codec = _BY_NAME.get(fmt.name)
    if codec is None or codec.rate != fmt.rate:
        return None
    return codec
