"""Sun/NeXT AU audio, the plaintext inside a recording's age stream.

Header (six big-endian 32-bit words): magic ``.snd``, data offset, data size, encoding, sample rate,
channels; then the annotation field, which Sun's format defines as at least 4 bytes (we write 4 zero
bytes, so the data starts at 28: with offset 24, as libsndfile writes, sox warns "header size 24 is
too small"); samples follow interleaved and big-endian. AU is chosen because the data size may be
0xFFFFFFFF, "unknown": the header is final the moment it is written, so a file cut by a crash is
still a valid AU file holding every frame written before the cut. WAV and FLAC would need their
header patched on close.

Encodings kept: 1 (8-bit G.711 mu-law) and 27 (8-bit G.711 A-law) for G.711 calls, so the file is
lossless against the wire at 8 bits per sample; 3 (16-bit linear PCM) for everything else.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from recorderd.codecs.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from recorderd.errors import StoreError

MAGIC = b".snd"
HEADER_SIZE = 24  # the fixed part; readers accept any data offset from here on
DATA_OFFSET = 28  # what we write: the fixed part and a 4-byte empty annotation
UNKNOWN_SIZE = 0xFFFFFFFF
ENCODINGS: dict[str, int] = {"ulaw": 1, "pcm16": 3, "alaw": 27}
_NAMES = {code: name for name, code in ENCODINGS.items()}
BYTES_PER_SAMPLE: dict[str, int] = {"ulaw": 1, "alaw": 1, "pcm16": 2}
_HEADER = struct.Struct(">4sIIIII")
_PCM16_BE = np.dtype(">i2")
_MAX_OFFSET = 1 << 16  # annotations are short; a larger offset is a damaged header


@dataclass(frozen=True, slots=True)
class AuHeader:
    offset: int
    size: int | None  # None: unknown (0xFFFFFFFF), read to the end
    encoding: str
    sample_rate: int
    channels: int

    @property
    def frame_size(self) -> int:
        return BYTES_PER_SAMPLE[self.encoding] * self.channels


def au_header(encoding: str, sample_rate: int, channels: int) -> bytes:
    """A 28-byte streaming header (data size unknown) for ``encoding`` "ulaw", "alaw" or "pcm16"."""
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown AU encoding {encoding!r}")
    if not 0 < sample_rate < 2**32 or not 0 < channels < 256:
        raise ValueError(f"bad AU format: {sample_rate} Hz, {channels} channels")
    fixed = _HEADER.pack(MAGIC, DATA_OFFSET, UNKNOWN_SIZE, ENCODINGS[encoding], sample_rate, channels)
    return fixed + bytes(DATA_OFFSET - HEADER_SIZE)


def encode_frames(samples: NDArray[np.int16], encoding: str) -> bytes:
    """Interleaved AU data for ``samples`` of shape (frames, channels)."""
    flat = samples.reshape(-1)
    if encoding == "ulaw":
        return ulaw_encode(flat).tobytes()
    if encoding == "alaw":
        return alaw_encode(flat).tobytes()
    if encoding == "pcm16":
        return flat.astype(_PCM16_BE).tobytes()
    raise ValueError(f"unknown AU encoding {encoding!r}")


def parse_header(data: bytes) -> AuHeader:
    """The header at the start of ``data``; StoreError if it is not an AU header we write."""
    if len(data) < HEADER_SIZE:
        raise StoreError(f"recording: AU header truncated ({len(data)} < {HEADER_SIZE} bytes)")
    magic, offset, size, code, rate, channels = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise StoreError("recording: not a Sun AU file")
    if code not in _NAMES:
        raise StoreError(f"recording: unsupported AU encoding {code}")
    if not HEADER_SIZE <= offset <= _MAX_OFFSET or rate == 0 or channels == 0:
        raise StoreError("recording: malformed AU header")
    return AuHeader(offset, None if size == UNKNOWN_SIZE else size, _NAMES[code], rate, channels)


def decode_frames(data: bytes, encoding: str, channels: int) -> NDArray[np.int16]:
    """Samples of shape (frames, channels) from AU data holding whole frames only."""
    if encoding == "ulaw":
        flat = ulaw_decode(data)
    elif encoding == "alaw":
        flat = alaw_decode(data)
    else:
        flat = np.frombuffer(data, dtype=_PCM16_BE).astype(np.int16)
    return flat.reshape(-1, channels)


def read_au(data: bytes) -> tuple[int, int, str, NDArray[np.int16]]:
    """(sample rate, channels, encoding, samples (frames, channels)) of a whole AU file.

    A partial trailing frame (a file cut mid-write) is dropped, as is data past a known size.
    """
    header = parse_header(data)
    if len(data) < header.offset:
        raise StoreError(f"recording: AU header truncated ({len(data)} < {header.offset} bytes)")
    end = len(data) if header.size is None else min(len(data), header.offset + header.size)
    whole = (end - header.offset) // header.frame_size * header.frame_size
    body = data[header.offset : header.offset + whole]
    return (
        header.sample_rate,
        header.channels,
        header.encoding,
        decode_frames(body, header.encoding, header.channels),
    )
