"""The daemon's config sections: defaults, the shipped file, and errors that name the key."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from recorderd.capture.pcap import DEFAULT_FILTER
from recorderd.config import DEFAULT_FILTER as CONFIG_FILTER
from recorderd.config import ServiceConfig, load_config, load_service_config, parse_service_config
from recorderd.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "config" / "recorderd.toml"


def test_the_shipped_file_holds_every_default() -> None:
    assert load_service_config(SHIPPED) == ServiceConfig(path=SHIPPED)
    assert load_config(SHIPPED) == ServiceConfig().engine


def test_the_shipped_file_lists_every_option_with_a_comment() -> None:
    text = SHIPPED.read_text()
    config = ServiceConfig()
    for section in ("capture", "store", "control", "events", "health", "schedule", "engine"):
        for name in vars(type(getattr(config, section)))["__dataclass_fields__"]:
            if name == "site":
                continue
            # the option, after a comment in the same paragraph
            assert re.search(rf"^# .*\n([#\w].*\n)*{name} = ", text, re.M), f"{section}.{name}"


def test_the_default_filter_is_the_capture_filter() -> None:
    assert CONFIG_FILTER == DEFAULT_FILTER


def test_values_are_read() -> None:
    config = parse_service_config(
        {
            "capture": {"interfaces": ["eth1", "eth2"], "buffer_mb": 128, "promisc": False},
            "store": {"path": "/srv/rec", "recipients": ["age1xyz"], "log_uris": True},
            "health": {"listen": "[::1]:9000", "packets_stale": 5},
            "schedule": {"sweep_at": "01:15", "canary": False},
            "retention": {"default": "36 months"},
        }
    )
    assert config.capture.interfaces == ("eth1", "eth2") and config.capture.buffer_mb == 128
    assert config.store.path == Path("/srv/rec") and config.store.recipients == ("age1xyz",)
    assert config.health.address == ("::1", 9000) and config.health.packets_stale == 5.0
    assert config.schedule.sweep_at == "01:15" and not config.schedule.canary
    assert config.retention["default"] == "36 months"
    assert ServiceConfig(health=type(config.health)(listen="")).health.address is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"capture": {"interfaces": "eth1"}}, "capture.interfaces: expected a list of strings"),
        ({"capture": {"interfaces": ["eth 1"]}}, "capture.interfaces: 'eth 1' is not an interface name"),
        ({"capture": {"snaplen": 100}}, "capture.snaplen: at least 2048 bytes"),
        ({"capture": {"buffer_mb": 0}}, "capture.buffer_mb: expected a positive number"),
        ({"capture": {"promisc": "yes"}}, "capture.promisc: expected true or false"),
        ({"capture": {"snaplen": True}}, "capture.snaplen: expected an integer"),
        ({"capture": {"iface": []}}, "capture.iface: unknown option"),
        ({"store": {"path": "store"}}, "store.path: expected an absolute path"),
        ({"store": {"recipients": ["ssh-ed25519 AAAA"]}}, "store.recipients: 'ssh-ed25519 AAAA' is not"),
        ({"health": {"listen": "0.0.0.0:9107"}}, "health.listen: 0.0.0.0 is not a loopback address"),
        ({"health": {"listen": "localhost"}}, 'health.listen: expected "address:port"'),
        ({"health": {"listen": "127.0.0.1:99999"}}, 'health.listen: expected "address:port"'),
        ({"health": {"disk_min_free_mb": -1}}, "health.disk_min_free_mb: expected a positive number"),
        ({"schedule": {"sweep_at": "25:00"}}, 'schedule.sweep_at: expected a time of day "HH:MM"'),
        ({"schedule": {"self_check_every": 0}}, "schedule.self_check_every: expected a positive"),
        ({"retention": []}, "retention: expected a table"),
        ({"control": {"socket": 3}}, "control.socket: expected a string"),
        ({"daemon": {}}, "config.daemon: unknown option"),
    ],
)
def test_errors_name_the_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        parse_service_config(data)


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    path.write_text('[capture]\nsnaplen = "big"\n')
    with pytest.raises(ConfigError, match=f"^{re.escape(str(path))}: capture.snaplen: expected an integer"):
        load_service_config(path)
