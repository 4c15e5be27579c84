"""Identity files: the data controller's private key, in the ``age-keygen`` format.

A plain identity file reads::

    # created: 2024-05-01T09:30:00Z
    # public key: age1...
    AGE-SECRET-KEY-1...

With a passphrase, the file is that text encrypted with age's scrypt recipient type (pyrage), the
form the ``age`` tool itself accepts as a passphrase-protected identity file (``age -d -i``). The
appliance never needs this file: it holds only the public recipient. It is read for export.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pyrage
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from recorderd.errors import StoreError
from recorderd.store.age import (
    VERSION_LINE,
    format_identity,
    format_recipient,
    parse_identity,
    parse_recipient,
)

__all__ = ["keygen", "load_identities", "parse_recipient", "recipient_of"]

_ARMOR = b"-----BEGIN AGE ENCRYPTED FILE-----"
_MAX_FILE = 1 << 20  # an identity file is a few hundred bytes


def keygen(path: Path | str, passphrase: str | None, now: dt.datetime | None = None) -> str:
    """Write a new identity to ``path`` (mode 0600, never overwriting) and return its recipient."""
    identity = pyrage.x25519.Identity.generate()
    recipient = str(identity.to_public())
    created = (now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    text = f"# created: {created}\n# public key: {recipient}\n{identity}\n".encode()
    data = pyrage.passphrase.encrypt(text, passphrase) if passphrase else text
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise StoreError(f"{path} already exists; not overwriting an identity file") from None
    except OSError as exc:
        raise StoreError(f"cannot create identity file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return recipient


def load_identities(path: Path | str, passphrase: str | None) -> list[str]:
    """Every ``AGE-SECRET-KEY-1...`` in a plain or passphrase-protected identity file."""
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_FILE + 1)
    except OSError as exc:
        raise StoreError(f"cannot read identity file {path}: {exc.strerror}") from None
    if len(data) > _MAX_FILE:
        raise StoreError(f"{path} is too large to be an identity file")
    if data.startswith(VERSION_LINE + b"\n") or data.lstrip().startswith(_ARMOR):
        data = _unlock(path, data, passphrase)
    identities = _parse(path, data)
    if not identities:
        raise StoreError(f"identity file {path} holds no age identity")
    return identities


def _unlock(path: Path | str, data: bytes, passphrase: str | None) -> bytes:
    if not passphrase:
        raise StoreError(f"identity file {path} is passphrase-protected: a passphrase is needed")
    try:
        return bytes(pyrage.passphrase.decrypt(data, passphrase))
    except pyrage.DecryptError:
        raise StoreError(f"wrong passphrase for identity file {path}") from None


def _parse(path: Path | str, data: bytes) -> list[str]:
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise StoreError(f"identity file {path} is not an age identity file") from None
    identities = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            key = parse_identity(line)
        except StoreError:
            raise StoreError(f"identity file {path} line {number}: not an age identity") from None
        identities.append(format_identity(key))
    return identities


def recipient_of(identity: str) -> str:
    """The ``age1...`` recipient that belongs to an identity."""
    key = X25519PrivateKey.from_private_bytes(parse_identity(identity))
    return format_recipient(key.public_key().public_bytes_raw())
