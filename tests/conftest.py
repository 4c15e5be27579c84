"""Shared fixtures: paths to the real captures and a helper that reads a capture's frames."""

from __future__ import annotations

from pathlib import Path

import pcapy
import pytest

ROOT = Path(__file__).resolve().parent.parent
PCAPS = ROOT / "pcaps"


def read_frames(path: Path) -> list[tuple[float, bytes]]:
    """Every frame of a capture as (timestamp, bytes), read with libpcap directly."""
    reader = pcapy.open_offline(str(path))
    frames = []
    while True:
        header, data = reader.next()
        if header is None:
            break
        sec, usec = header.getts()
        frames.append((sec + usec / 1e6, bytes(data)))
    return frames


@pytest.fixture(scope="session")
def pcaps() -> Path:
    return PCAPS


def new_store(directory: Path) -> tuple[Path, Path]:
    """A fresh store under ``directory`` and the identity that opens it, made through the CLI."""
    from recorderd.cli import main
    from recorderd.store.keys import load_identities, recipient_of

    identity = directory / "identity.txt"
    assert main(["keygen", "--out", str(identity)]) == 0
    (secret,) = load_identities(identity, None)
    store = directory / "store"
    assert main(["init", str(store), "--recipient", recipient_of(secret)]) == 0
    return store, identity
