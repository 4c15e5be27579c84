from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from recorderd.store.store import Store
from tests.store.helpers import new_keypair, write_keyfile


@pytest.fixture(scope="session")
def keypair() -> tuple[str, str]:
    return new_keypair()


@pytest.fixture
def identity(keypair: tuple[str, str]) -> str:
    return keypair[0]


@pytest.fixture
def recipient(keypair: tuple[str, str]) -> str:
    return keypair[1]


@pytest.fixture
def keyfile(tmp_path: Path, identity: str) -> Path:
    return write_keyfile(tmp_path / "key.txt", identity)


@pytest.fixture
def store(tmp_path: Path, recipient: str) -> Iterator[Store]:
    s = Store.init(tmp_path / "store", [recipient])
    yield s
    s.close()
