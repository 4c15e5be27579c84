from __future__ import annotations

import datetime as dt
import io
import stat
import subprocess
from pathlib import Path

import pyrage
import pytest

from recorderd.errors import StoreError
from recorderd.store import age
from recorderd.store.keys import keygen, load_identities, parse_recipient, recipient_of
from tests.store.helpers import new_keypair, scrypt_encrypt


def test_keygen_plain_file_works_with_age_tool(tmp_path: Path) -> None:
    path = tmp_path / "id.txt"
    now = dt.datetime(2024, 6, 1, 12, 0, tzinfo=dt.UTC)
    recipient = keygen(path, None, now=now)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = path.read_text().splitlines()
    assert lines[0] == "# created: 2024-06-01T12:00:00Z"
    assert lines[1] == f"# public key: {recipient}"
    assert lines[2].startswith("AGE-SECRET-KEY-1") and len(lines) == 3
    assert load_identities(path, None) == [lines[2]]
    assert recipient_of(lines[2]) == recipient
    # The age tool reads the file as an identity file.
    encrypted = tmp_path / "x.age"
    buf = io.BytesIO()
    with age.AgeWriter(buf, [recipient]) as writer:
        writer.write(b"hello")
    encrypted.write_bytes(buf.getvalue())
    out = subprocess.run(["age", "-d", "-i", str(path), str(encrypted)], capture_output=True, check=True)
    assert out.stdout == b"hello"


def test_keygen_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "id.txt"
    path.write_text("precious")
    with pytest.raises(StoreError, match="already exists; not overwriting"):
        keygen(path, None)
    assert path.read_text() == "precious"
    with pytest.raises(StoreError, match="cannot create identity file"):
        keygen(tmp_path / "missing" / "id.txt", None)


@pytest.mark.slow
def test_keygen_with_passphrase(tmp_path: Path) -> None:
    """The one test that pays for pyrage's real scrypt work factor (about 2 s per operation)."""
    path = tmp_path / "id.age"
    recipient = keygen(path, "correct horse")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"age-encryption.org/v1\n-> scrypt ")
    # load_identities opens it with pyrage.passphrase.decrypt.
    identities = load_identities(path, "correct horse")
    assert len(identities) == 1
    assert recipient_of(identities[0]) == recipient
    with pytest.raises(StoreError) as err:
        load_identities(path, None)
    assert str(err.value) == f"identity file {path} is passphrase-protected: a passphrase is needed"


@pytest.mark.parametrize("armored", [False, True])
def test_load_protected_identities(tmp_path: Path, armored: bool) -> None:
    first, _ = new_keypair()
    second, _ = new_keypair()
    text = f"# created: 2024-06-01T12:00:00Z\n\n{first}\n{second.lower()}\n".encode()
    path = tmp_path / "id.age"
    path.write_bytes(scrypt_encrypt(text, "pw", armored=armored))
    assert pyrage.passphrase.decrypt(path.read_bytes(), "pw") == text
    assert load_identities(path, "pw") == [first, second]
    with pytest.raises(StoreError) as err:
        load_identities(path, "wrong")
    assert str(err.value) == f"wrong passphrase for identity file {path}"


def test_load_identities_errors(tmp_path: Path) -> None:
    path = tmp_path / "id.txt"
    path.write_text("# only comments\n\n")
    with pytest.raises(StoreError, match="holds no age identity"):
        load_identities(path, None)
    path.write_text("# key\nAGE-SECRET-KEY-1BROKEN\n")
    with pytest.raises(StoreError) as err:
        load_identities(path, None)
    assert str(err.value) == f"identity file {path} line 2: not an age identity"
    assert "BROKEN" not in str(err.value)
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(StoreError, match="is not an age identity file"):
        load_identities(path, None)
    with pytest.raises(StoreError, match="cannot read identity file"):
        load_identities(tmp_path / "absent", None)


def test_parse_recipient() -> None:
    identity, recipient = new_keypair()
    key = parse_recipient(recipient)
    assert len(key) == 32 and age.format_recipient(key) == recipient
    assert parse_recipient(recipient.upper()) == key
    for bad in ("", "age1", recipient + "q", identity, "age2" + recipient[4:]):
        with pytest.raises(StoreError) as err:
            parse_recipient(bad)
        assert str(err.value) == f"not an age X25519 recipient: {bad!r}"
