import io

import numpy as np
import pytest
import soundfile

from recorderd.codecs import PCMA, PCMU, decoder_for
from recorderd.codecs.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from recorderd.events import PayloadFormat


def reference_ulaw(code: int) -> int:
    """ITU-T G.711 mu-law expansion, written out per code as the standard's table describes it."""
    code = ~code & 0xFF
    sign, exponent, mantissa = code & 0x80, (code >> 4) & 7, code & 0x0F
    magnitude = ((2 * mantissa + 33) << exponent) - 33  # in units of 4 (14-bit range)
    return -4 * magnitude if sign else 4 * magnitude


def reference_alaw(code: int) -> int:
    code ^= 0x55
    sign, exponent, mantissa = code & 0x80, (code >> 4) & 7, code & 0x0F
    if exponent == 0:
        magnitude = 2 * mantissa + 1
    else:
        magnitude = (2 * mantissa + 33) << (exponent - 1)
    magnitude *= 8  # 13-bit A-law to 16-bit
    return magnitude if sign else -magnitude


def test_known_values() -> None:
    assert ulaw_decode(b"\xff")[0] == 0
    assert alaw_decode(b"\xd5")[0] == 8
    assert ulaw_decode(b"\x00")[0] == -32124
    assert alaw_decode(b"\x2a")[0] == -32256


@pytest.mark.parametrize(
    ("decode", "reference"), [(ulaw_decode, reference_ulaw), (alaw_decode, reference_alaw)]
)
def test_all_256_codes_match_an_independent_formula(decode, reference) -> None:  # type: ignore[no-untyped-def]
    expected = [reference(c) for c in range(256)]
    assert decode(bytes(range(256))).tolist() == expected


@pytest.mark.parametrize(("decode", "encode"), [(ulaw_decode, ulaw_encode), (alaw_decode, alaw_encode)])
def test_reencoding_decoded_g711_is_lossless(decode, encode) -> None:  # type: ignore[no-untyped-def]
    samples = decode(bytes(range(256)))
    assert np.array_equal(decode(encode(samples)), samples)


@pytest.mark.parametrize(("encode", "name"), [(ulaw_encode, "lin2ulaw"), (alaw_encode, "lin2alaw")])
def test_encoder_agrees_with_the_reference_on_every_16_bit_value(encode, name) -> None:  # type: ignore[no-untyped-def]
    """CPython's audioop implements the ITU reference encoder (Sun's g711.c). libsndfile rounds
    rather than truncates, so it is not the reference for values between two levels."""
    audioop = pytest.importorskip("audioop")
    pcm = np.arange(-32768, 32768, dtype=np.int16)
    assert encode(pcm).tobytes() == getattr(audioop, name)(pcm.tobytes(), 2)


@pytest.mark.parametrize(("decode", "subtype"), [(ulaw_decode, "ULAW"), (alaw_decode, "ALAW")])
def test_decoder_agrees_with_libsndfile(decode, subtype) -> None:  # type: ignore[no-untyped-def]
    codes = bytes(range(256))
    ref, _ = soundfile.read(
        io.BytesIO(codes), format="RAW", subtype=subtype, samplerate=8000, channels=1, dtype="int16"
    )
    assert np.array_equal(decode(codes), ref)


def test_zero_encodes_to_the_idle_codes() -> None:
    zero = np.zeros(1, dtype=np.int16)
    assert (ulaw_encode(zero)[0], alaw_encode(zero)[0]) == (0xFF, 0xD5)


def test_registry() -> None:
    assert decoder_for(PayloadFormat(0, "PCMU", 8000)) is PCMU
    assert decoder_for(PayloadFormat(8, "PCMA", 8000)) is PCMA
    assert decoder_for(PayloadFormat(18, "G729", 8000)) is None
    assert decoder_for(PayloadFormat(96, "PCMU", 16000)) is None
