"""The pure core (net, sip, rtp, codecs, engine) must not reach for I/O, clocks or randomness."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "recorderd"
PURE = ["net", "sip", "rtp", "codecs", "engine"]
FORBIDDEN = {
    "socket",
    "asyncio",
    "threading",
    "time",
    "os",
    "random",
    "subprocess",
    "logging",
    "datetime",
    "sqlite3",
    "pcapy",
    "select",
    "signal",
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("stage", PURE)
def test_pure_stage_imports_no_io(stage: str) -> None:
    files = list((PACKAGE / stage).rglob("*.py"))
    assert files, f"no modules in {stage}/"
    for path in files:
        bad = imported_modules(path) & FORBIDDEN
        assert not bad, f"{path.relative_to(PACKAGE)} imports {sorted(bad)}"
