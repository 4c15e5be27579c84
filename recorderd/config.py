"""Configuration: frozen dataclasses read from TOML, validated with errors that name the key.

Two readers share one file. Replay needs only the site's numbering (which decides whether a call is
inbound, outbound or internal) and the engine's timeouts and bounds: :func:`load_config` returns its
:class:`EngineConfig`. The daemon reads the whole file into a :class:`ServiceConfig` with
:func:`load_service_config`: capture interfaces and filter, the store, retention (kept as a raw table
for the store's own code), the control socket and event feed, the health listener and its thresholds,
and the scheduler's times. ``config/recorderd.toml`` lists every option with its default.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
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
    record_unsignalled: bool = True  # record two-way RTP that no SDP named (engine/orphans.py)
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
    options = {f.name for f in fields(EngineConfig) if f.name != "site"}
    _known("engine", table, options)
    values: dict[str, Any] = {}
    for name, value in table.items():
        default = getattr(EngineConfig, name)
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"engine.{name}: expected true or false, got {value!r}")
            values[name] = value
            continue
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


# ---------------------------------------------------------------------------------------------------
# The daemon's sections

# The same text as recorderd.capture.pcap.DEFAULT_FILTER (a test keeps them equal): config is a shared
# leaf and must not import libpcap. Nested ``vlan`` so that single- and double-tagged (QinQ) frames of a
# mirror port match too.
DEFAULT_FILTER = "udp or tcp or (vlan and (udp or tcp or (vlan and (udp or tcp))))"


@dataclass(frozen=True)
class CaptureConfig:
    """Where packets come from: libpcap on each interface (a mirror port)."""

    interfaces: tuple[str, ...] = ()
    filter: str = DEFAULT_FILTER
    snaplen: int = 65535
    buffer_mb: int = 64
    promisc: bool = True


@dataclass(frozen=True)
class StoreConfig:
    path: Path = Path("/var/lib/recorderd/store")
    # When not empty, the store must encrypt to exactly these recipients: a store swapped for one
    # with another key is caught at start and by the health check.
    recipients: tuple[str, ...] = ()
    log_uris: bool = False


@dataclass(frozen=True)
class ControlConfig:
    socket: Path = Path("/run/recorderd/control.sock")
    group: str = "recorder-callers"


@dataclass(frozen=True)
class EventsConfig:
    endpoint: str = "ipc:///run/recorderd/events.sock"


@dataclass(frozen=True)
class HealthConfig:
    """The loopback listener for /healthz and /metrics, and the thresholds of the checks."""

    listen: str = "127.0.0.1:9107"  # "" turns the listener off
    packets_stale: float = 60.0  # critical when capture has seen no packet for this long
    sip_stale: float = 86400.0  # warning when no SIP message for this long
    drops_warning: float = 0.001  # kernel drops as a share of packets in the last interval
    drops_critical: float = 0.01
    disk_min_free_mb: int = 512  # critical below
    disk_warning_days: float = 30.0  # days left at the current rate
    disk_critical_days: float = 3.0
    sweep_max_age: float = 36 * 3600.0  # warning when the last retention sweep is older

    @property
    def address(self) -> tuple[str, int] | None:
        if not self.listen:
            return None
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


@dataclass(frozen=True)
class ScheduleConfig:
    sweep_at: str = "03:30"  # daily, local time; and at every start
    canary_at: str = "04:00"  # daily, local time; and at every start
    audit_sign_every: float = 3600.0  # seconds
    self_check_every: float = 60.0  # seconds
    canary: bool = True


@dataclass(frozen=True)
class ServiceConfig:
    """Everything the daemon reads from its config file."""

    engine: EngineConfig = field(default_factory=EngineConfig)
    capture: CaptureConfig = field(default_factory=CaptureConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    retention: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({"default": "36 months"}))
    control: ControlConfig = field(default_factory=ControlConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    path: Path | None = None  # the file it came from, for SIGHUP


def _typed(key: str, value: Any, kind: type) -> Any:
    """``value`` as ``kind`` (bool, int, float, str), or a ConfigError naming ``key``."""
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not ok:
        names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
        raise ConfigError(f"{key}: expected {names[kind]}, got {value!r}")
    return value


def _section(name: str, table: Any, cls: type) -> dict[str, Any]:
    """The keyword arguments for dataclass ``cls`` from TOML ``table``: known keys, scalar types checked."""
    names = {f.name: f for f in fields(cls)}
    _known(name, table, set(names))
    out: dict[str, Any] = {}
    for key, value in table.items():
        default = getattr(cls(), key)
        kind = type(default)
        if kind in (bool, int, float, str):
            out[key] = _typed(f"{name}.{key}", value, kind)
        elif isinstance(default, Path):
            out[key] = Path(_typed(f"{name}.{key}", value, str))
        else:
            out[key] = tuple(_strings(f"{name}.{key}", value))
    return out


def _positive(section: str, values: dict[str, Any], *names: str) -> None:
    for name in names:
        if name in values and values[name] <= 0:
            raise ConfigError(f"{section}.{name}: expected a positive number, got {values[name]!r}")


def _capture(table: Any) -> CaptureConfig:
    values = _section("capture", table, CaptureConfig)
    _positive("capture", values, "snaplen", "buffer_mb")
    if values.get("snaplen", 65535) < 2048:
        raise ConfigError("capture.snaplen: at least 2048 bytes are needed to see whole SIP messages")
    for name in values.get("interfaces", ()):
        if not re.fullmatch(r"[A-Za-z0-9_.:@-]{1,15}", name):
            raise ConfigError(f"capture.interfaces: {name!r} is not an interface name")
    return CaptureConfig(**values)


def _store(table: Any) -> StoreConfig:
    values = _section("store", table, StoreConfig)
    if not values.get("path", StoreConfig.path).is_absolute():
        raise ConfigError("store.path: expected an absolute path")
    for recipient in values.get("recipients", ()):
        if not recipient.startswith("age1"):
            raise ConfigError(f"store.recipients: {recipient!r} is not an age recipient (age1...)")
    return StoreConfig(**values)


def _listen(value: str) -> None:
    if not value:
        return
    host, sep, port = value.rpartition(":")
    try:
        address = ipaddress.ip_address(host.strip("[]"))
        number = int(port)
    except ValueError:
        address, number = None, -1
    if not sep or address is None or not 0 <= number <= 65535:
        raise ConfigError(f'health.listen: expected "address:port" like "127.0.0.1:9107", got {value!r}')
    if not address.is_loopback:
        raise ConfigError(f"health.listen: {host} is not a loopback address; health is served locally only")


def _health(table: Any) -> HealthConfig:
    values = _section("health", table, HealthConfig)
    _listen(values.get("listen", HealthConfig.listen))
    _positive("health", values, *(n for n in values if n != "listen"))
    return HealthConfig(**values)


def _schedule(table: Any) -> ScheduleConfig:
    values = _section("schedule", table, ScheduleConfig)
    for name in ("sweep_at", "canary_at"):
        text = values.get(name, "00:00")
        match = re.fullmatch(r"(\d\d):(\d\d)", text)
        if not match or int(match[1]) > 23 or int(match[2]) > 59:
            raise ConfigError(f'schedule.{name}: expected a time of day "HH:MM", got {text!r}')
    _positive("schedule", values, "audit_sign_every", "self_check_every")
    return ScheduleConfig(**values)


def _retention(table: Any) -> Mapping[str, Any]:
    if not isinstance(table, dict):
        raise ConfigError("retention: expected a table")
    return MappingProxyType(dict(table))


_SECTIONS = {"site", "engine", "capture", "store", "retention", "control", "events", "health", "schedule"}


def parse_service_config(data: dict[str, Any], path: Path | None = None) -> ServiceConfig:
    _known("config", data, _SECTIONS)
    site = _site(data.get("site", {}))
    return ServiceConfig(
        engine=_engine(data.get("engine", {}), site),
        capture=_capture(data.get("capture", {})),
        store=_store(data.get("store", {})),
        retention=_retention(data.get("retention", {})),
        control=ControlConfig(**_section("control", data.get("control", {}), ControlConfig)),
        events=EventsConfig(**_section("events", data.get("events", {}), EventsConfig)),
        health=_health(data.get("health", {})),
        schedule=_schedule(data.get("schedule", {})),
        path=path,
    )


def parse_config(data: dict[str, Any]) -> EngineConfig:
    """The engine's part of a config; the daemon's sections are validated too and then ignored."""
    return parse_service_config(data).engine


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


def load_service_config(path: Path) -> ServiceConfig:
    data = read_toml(path)
    try:
        return parse_service_config(data, path)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def load_config(path: Path) -> EngineConfig:
    return load_service_config(path).engine
