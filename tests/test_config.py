from pathlib import Path

import pytest

from recorderd.config import EngineConfig, load_config, parse_config
from recorderd.errors import ConfigError
from recorderd.events import Direction

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_example_loads_with_the_defaults() -> None:
    config = load_config(ROOT / "config" / "recorderd.toml")
    defaults = EngineConfig()
    assert (config.rtp_timeout, config.max_calls) == (defaults.rtp_timeout, defaults.max_calls)
    assert config.site.classify("2001", "2002", "", "") is Direction.UNKNOWN
    assert config.record_unsignalled is defaults.record_unsignalled is True
    assert parse_config({"engine": {"record_unsignalled": False}}).record_unsignalled is False


def test_direction_from_numbering_and_trunks() -> None:
    site = parse_config({"site": {"internal_numbers": [r"2\d{3}"], "trunks": ["203.0.113.0/24"]}}).site
    assert site.classify("2001", "2002", "10.0.0.1:5060", "10.0.0.2:5060") is Direction.INTERNAL
    assert site.classify("2001", "07700900123", "10.0.0.1:5060", "10.0.0.2:5060") is Direction.OUTBOUND
    assert site.classify("07700900123", "2001", "10.0.0.9:5060", "10.0.0.2:5060") is Direction.INBOUND
    assert site.classify("anon", "2001", "203.0.113.5:5060", "10.0.0.2:5060") is Direction.INBOUND
    assert site.classify("2001", "2002", "[2001:db8::1]:5060", "203.0.113.9:5060") is Direction.OUTBOUND


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"site": {"internal_numbers": "2xxx"}},
            "site.internal_numbers: expected a list of strings",
        ),
        ({"site": {"internal_numbers": ["("]}}, "site.internal_numbers: '(' is not a regular"),
        ({"site": {"trunks": ["nonsense"]}}, "site.trunks: 'nonsense' is not an IP address"),
        ({"site": {"default_region": "gb"}}, "site.default_region: expected a two-letter"),
        ({"engine": {"rtp_timeout": -1}}, "engine.rtp_timeout: expected a positive number"),
        ({"engine": {"rtp_timout": 3}}, "engine.rtp_timout: unknown option"),
        ({"engine": {"record_unsignalled": 1}}, "engine.record_unsignalled: expected true or false"),
        ({"engine": {"max_calls": True}}, "engine.max_calls: expected a positive number"),
        ({"sites": {}}, "config.sites: unknown option"),
    ],
)
def test_errors_name_the_key(data: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(").replace(".", r"\.")):
        parse_config(data)


def test_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[site\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
