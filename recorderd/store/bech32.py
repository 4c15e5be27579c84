"""Bech32 (BIP 173), the text form of age X25519 recipients and identities.

age uses the original Bech32 checksum constant (1), not Bech32m (BIP 350), and ignores BIP 173's
90-character limit, so neither do we (an age identity is 74 characters). Decoding is strict: one
case only, every character in the alphabet, a valid checksum, and 5-to-8-bit regrouping with zero
padding.
"""

from __future__ import annotations

CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_VALUES = {c: i for i, c in enumerate(CHARSET)}
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
_MAX_LENGTH = 1000  # bounded input: age keys are 62 and 74 characters


class Bech32Error(ValueError):
    """Not a valid Bech32 string; callers turn it into a message for the user."""


def _polymod(values: list[int]) -> int:
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i, g in enumerate(_GENERATOR):
            if (top >> i) & 1:
                chk ^= g
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert_bits(data: bytes | list[int], src: int, dst: int, pad: bool) -> list[int]:
    acc = bits = 0
    out: list[int] = []
    maxv = (1 << dst) - 1
    for v in data:
        acc = (acc << src) | v
        bits += src
        while bits >= dst:
            bits -= dst
            out.append((acc >> bits) & maxv)
    if pad:
        if bits:
            out.append((acc << (dst - bits)) & maxv)
    elif bits >= src or (acc << (dst - bits)) & maxv:
        raise Bech32Error("bech32: non-zero padding")
    return out


def encode(hrp: str, data: bytes) -> str:
    """Lower-case Bech32 of ``data`` under the human-readable part ``hrp`` (given in lower case)."""
    words = _convert_bits(data, 8, 5, pad=True)
    poly = _polymod(_hrp_expand(hrp) + words + [0] * 6) ^ 1
    checksum = [(poly >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(CHARSET[w] for w in words + checksum)


def decode(text: str) -> tuple[str, bytes]:
    """(lower-case hrp, data bytes) of a Bech32 string; :class:`Bech32Error` if it is not one."""
    if len(text) > _MAX_LENGTH:
        raise Bech32Error(f"bech32: too long ({len(text)} > {_MAX_LENGTH} characters)")
    if text.lower() != text and text.upper() != text:
        raise Bech32Error("bech32: mixed case")
    if any(not 33 <= ord(c) <= 126 for c in text):
        raise Bech32Error("bech32: character out of range")
    text = text.lower()
    sep = text.rfind("1")
    if sep < 1 or sep + 7 > len(text):
        raise Bech32Error("bech32: no separator or checksum")
    hrp, rest = text[:sep], text[sep + 1 :]
    try:
        words = [_VALUES[c] for c in rest]
    except KeyError:
        raise Bech32Error("bech32: invalid character") from None
    if _polymod(_hrp_expand(hrp) + words) != 1:
        raise Bech32Error("bech32: bad checksum")
    return hrp, bytes(_convert_bits(words[:-6], 5, 8, pad=False))
