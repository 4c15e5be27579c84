"""Counter keys for input that the network layer drops.

Every :class:`~recorderd.errors.ParseError` raised under ``net/`` reads ``"<layer>: <reason>"``, with any
variable detail in a trailing parenthesis: ``"ipv4: truncated (60 < 84 bytes)"``. The reason alone is
stable, so it names the counter: ``net.drop.ipv4.truncated``.
"""

from __future__ import annotations

from functools import lru_cache

from recorderd.errors import ParseError


def drop_key(err: ParseError) -> str:
    """``net.drop.<layer>.<reason>`` for a parser's error message (details in parentheses dropped)."""
    return _key(str(err).split(" (", 1)[0])


@lru_cache(maxsize=256)  # the distinct reasons are a few dozen
def _key(head: str) -> str:
    layer, _, reason = head.partition(": ")
    return f"net.drop.{layer}.{reason.replace(' ', '_')}" if reason else f"net.drop.{layer}"
