"""Retention: how long recordings are kept, and which calls are due for deletion at a given time.

Pure: the policy is a value read from the config's ``[retention]`` table, and :func:`select_expired`
decides from index rows, their tags, the holds in force and ``now``; ``admin.sweep`` does the
deleting. Periods are calendar months in UTC (a call of 31 March kept 1 month is due on 30 April,
the month's last day), so "36 months" means what a practice's policy means by it::

    [retention]
    default = "36 months"     # every call unless a line below says otherwise
    outbound = "6 months"     # per direction: inbound, outbound, internal, unknown
    internal = "3 years"      # "N months" or "N years"

    [retention.tags]          # per tag (recorderd tag add)
    training = "5 years"
    complaint = "6 years"

A call's period is the longest of its direction's period (or the default) and its tags' periods: a
tag can only lengthen retention, never shorten it, so tagging a call can never get it deleted early.
A call is due when its INVITE time plus its period has passed and no hold covers it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from recorderd.errors import ConfigError
from recorderd.events import Direction

DEFAULT_MONTHS = 36
MAX_MONTHS = 100 * 12
_PERIOD = re.compile(r"\s*(\d+)\s*(month|months|year|years)\s*")
TAG = re.compile(r"[a-z0-9-]{1,32}")
"""A tag: a short lowercase word (schema.py checks the same in SQL)."""
TAG_RULE = "expected 1 to 32 lowercase letters, digits or '-'"


def tag_problem(tag: str) -> str | None:
    """Why ``tag`` is not a valid tag, or None when it is."""
    return None if TAG.fullmatch(tag) else f"{tag!r} is not a tag: {TAG_RULE}"


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Months to keep a call: ``default``, or its direction's entry in ``by_direction``, or longer
    when one of its tags has a longer entry in ``by_tag``."""

    default: int = DEFAULT_MONTHS
    by_direction: tuple[tuple[str, int], ...] = ()
    by_tag: tuple[tuple[str, int], ...] = ()

    def rule_for(self, direction: str, tags: Iterable[str] = ()) -> tuple[int, str]:
        """The months a call is kept and what sets them: "inbound calls" or "tag training" (a tag
        only when strictly longer than the rest: on a tie, the direction is what decided)."""
        months, source = dict(self.by_direction).get(direction, self.default), f"{direction} calls"
        periods = dict(self.by_tag)
        for tag in sorted(set(tags)):
            if periods.get(tag, 0) > months:
                months, source = periods[tag], f"tag {tag}"
        return months, source

    def months_for(self, direction: str, tags: Iterable[str] = ()) -> int:
        return self.rule_for(direction, tags)[0]

    def expires_at(self, invite_ts: float, direction: str, tags: Iterable[str] = ()) -> float:
        return add_months(invite_ts, self.months_for(direction, tags))


def add_months(ts: float, months: int) -> float:
    """``ts`` moved ``months`` calendar months on (UTC), the day clamped to the month's end."""
    t = dt.datetime.fromtimestamp(ts, dt.UTC)
    index = t.month - 1 + months
    year, month = t.year + index // 12, index % 12 + 1
    day = min(t.day, _days_in(year, month))
    return t.replace(year=year, month=month, day=day).timestamp()


def _days_in(year: int, month: int) -> int:
    following = dt.date(year + month // 12, month % 12 + 1, 1)
    return (following - dt.timedelta(days=1)).day


def parse_period(key: str, value: Any) -> int:
    """Months in "36 months" or "3 years"; ConfigError naming ``key`` otherwise."""
    match = _PERIOD.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ConfigError(f'{key}: expected a period like "36 months" or "3 years", got {value!r}')
    months = int(match[1]) * (12 if match[2].startswith("year") else 1)
    if not 1 <= months <= MAX_MONTHS:
        raise ConfigError(f"{key}: expected between 1 month and 100 years, got {value!r}")
    return months


def parse_retention(table: Mapping[str, Any]) -> RetentionPolicy:
    """The policy in a config's ``[retention]`` table (see the module docstring)."""
    if not isinstance(table, Mapping):
        raise ConfigError("retention: expected a table")
    directions = {str(d) for d in Direction}
    for key in table:
        if key not in ("default", "tags") and key not in directions:
            raise ConfigError(f"retention.{key}: unknown option")
    default = parse_period("retention.default", table["default"]) if "default" in table else DEFAULT_MONTHS
    by_direction = tuple(
        (d, parse_period(f"retention.{d}", table[d])) for d in sorted(directions) if d in table
    )
    return RetentionPolicy(default, by_direction, _tag_periods(table.get("tags", {})))


def _tag_periods(table: Any) -> tuple[tuple[str, int], ...]:
    """The ``[retention.tags]`` table: tag = period."""
    if not isinstance(table, Mapping):
        raise ConfigError("retention.tags: expected a table of tag = period")
    periods = []
    for tag in sorted(table):
        key = f"retention.tags.{tag}"
        if not isinstance(tag, str) or not TAG.fullmatch(tag):
            raise ConfigError(f"{key}: not a tag ({TAG_RULE})")
        periods.append((tag, parse_period(key, table[tag])))
    return tuple(periods)


@dataclass(frozen=True, slots=True)
class Candidate:
    """What the selection needs to know of a call."""

    uid: str
    invite_ts: float
    direction: str
    tags: tuple[str, ...] = ()


def select_expired(
    calls: Iterable[Candidate], held: Iterable[str], policy: RetentionPolicy, now: float
) -> list[str]:
    """The uids of ``calls`` whose period has passed at ``now`` and that no hold covers, in order."""
    keep = set(held)
    return [
        c.uid
        for c in calls
        if c.uid not in keep and policy.expires_at(c.invite_ts, c.direction, c.tags) <= now
    ]
