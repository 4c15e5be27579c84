"""Site configuration: frozen dataclasses read from TOML, validated with errors that name the key.

Only the parts the replay pipeline needs live here so far: the site's numbering (which decides whether a
call is inbound, outbound or internal) and the engine's timeouts and bounds. ``config/recorderd.toml``
lists every option with its default.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from recorderd.errors import ConfigError
from recorderd.events import Direction

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class SiteConfig:
    """How to tell the practice's own phones from the outside world."""

    internal_numbers: tuple[re.Pattern[str], ...] = ()
    pbx: tuple[Network, ...] = ()
    trunks: tuple[Network, ...] = ()
    default_region: str = "GB"

    @property
    def configured(self) -> bool:
        return bool(self.internal_numbers or self.pbx or self.trunks)

    def is_internal(self, user: str) -> bool:
        return any(p.fullmatch(user) for p in self.internal_numbers)

    def classify(self, from_user: str, to_user: str, src_ip: str, dst_ip: str) -> Direction:
        """Direction of a call from its parties' user parts and its INVITE's signalling addresses."""
        if not self.configured:
            return Direction.UNKNOWN
        if _in(src_ip, self.trunks):
            return Direction.INBOUND
        if _in(dst_ip, self.trunks):
            return Direction.OUTBOUND
        caller, callee = self.is_internal(from_user), self.is_internal(to_user)
        if caller and callee:
            return Direction.INTERNAL
        if caller:
            return Direction.OUTBOUND
        if callee:
            return Direction.INBOUND
        return Direction.UNKNOWN


@dataclass(frozen=True)
class EngineConfig:
    """Timeouts (seconds of capture time) and bounds of the pure pipeline."""

    rtp_timeout: float = 30.0
    max_call_length: float = 12 * 3600.0
    reorder_window: float = 0.2
    max_calls: int = 10_000
    max_streams_per_call: int = 32
    site: SiteConfig = field(default_factory=SiteConfig)


def _in(endpoint: str, networks: tuple[Network, ...]) -> bool:
    """Is ``endpoint`` ("192.0.2.1:5060", "[2001:db8::1]:5060" or a bare address) in ``networks``?"""
    if endpoint.startswith("["):
        host = endpoint[1 : endpoint.find("]")]
    else:
        host = endpoint.rsplit(":", 1)[0] if endpoint.count(":") == 1 else endpoint
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in n for n in networks)


def _networks(key: str, values: Any) -> tuple[Network, ...]:
    out = []
    for value in _strings(key, values):
        try:
            out.append(ipaddress.ip_network(value, strict=False))
        except ValueError:
            raise ConfigError(f"{key}: {value!r} is not an IP address or network") from None
    return tuple(out)


def _patterns(key: str, values: Any) -> tuple[re.Pattern[str], ...]:
    out = []
    for value in _strings(key, values):
        try:
            out.append(re.compile(value))
        except re.error as e:
            raise ConfigError(f"{key}: {value!r} is not a regular expression ({e})") from None
    return tuple(out)


def _strings(key: str, values: Any) -> list[str]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ConfigError(f"{key}: expected a list of strings")
    return values


def _site(table: dict[str, Any]) -> SiteConfig:
    _known("site", table, {"internal_numbers", "pbx", "trunks", "default_region"})
    region = table.get("default_region", "GB")
    if not isinstance(region, str) or not re.fullmatch(r"[A-Z]{2}", region):
        raise ConfigError('site.default_region: expected a two-letter region code like "GB"')
    return SiteConfig(
        internal_numbers=_patterns("site.internal_numbers", table.get("internal_numbers", [])),
        pbx=_networks("site.pbx", table.get("pbx", [])),
        trunks=_networks("site.trunks", table.get("trunks", [])),
        default_region=region,
    )


def _engine(table: dict[str, Any], site: SiteConfig) -> EngineConfig:
    numeric = {f.name for f in fields(EngineConfig) if f.name != "site"}
    _known("engine", table, numeric)
    values: dict[str, Any] = {}
    for name, value in table.items():
        default = getattr(EngineConfig, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(f"engine.{name}: expected a positive number, got {value!r}")
        values[name] = type(default)(value)
    return EngineConfig(site=site, **values)


def _known(section: str, table: Any, allowed: set[str]) -> None:
    if not isinstance(table, dict):
        raise ConfigError(f"{section}: expected a table")
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"{section}.{unknown[0]}: unknown option")


def parse_config(data: dict[str, Any]) -> EngineConfig:
    _known("config", data, {"site", "engine"})
    site = _site(data.get("site", {}))
    return _engine(data.get("engine", {}), site)


def read_toml(path: Path) -> dict[str, Any]:
    """The TOML document at ``path``, or a ConfigError saying why not."""
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror}") from None


def load_config(path: Path) -> EngineConfig:
    data = read_toml(path)
    try:
        return parse_config(data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
