"""Wraparound arithmetic for 16-bit sequence numbers and 32-bit timestamps (RFC 3550 appendix A.1).

All modular comparisons live here so the rest of the code works on extended (unwrapped) integers.
"""

from __future__ import annotations

SEQ_MOD = 1 << 16
TS_MOD = 1 << 32


def extend(value: int, reference: int, modulus: int) -> int:
    """Unwrap ``value`` (mod ``modulus``) to the extended integer nearest to ``reference``."""
    delta = (value - reference) % modulus
    if delta >= modulus // 2:
        delta -= modulus
    return reference + delta


def extend_seq(seq: int, reference: int) -> int:
    return extend(seq, reference, SEQ_MOD)


def extend_ts(ts: int, reference: int) -> int:
    return extend(ts, reference, TS_MOD)
