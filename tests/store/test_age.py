from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import pyrage
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorderd.errors import StoreError
from recorderd.store import age
from tests.store.helpers import new_keypair, scrypt_encrypt

SIZES = [0, 1, 65535, 65536, 65537, 3 * 65536]


def encrypt(data: bytes, recipients: list[str], piece: int = 1000) -> bytes:
    """Ours, fed in uneven pieces as audio would be."""
    buf = io.BytesIO()
    writer = age.AgeWriter(buf, recipients)
    for i in range(0, len(data), piece):
        writer.write(data[i : i + piece])
    writer.close()
    return buf.getvalue()


def chunks_until_error(data: bytes, identity: str) -> tuple[bytes, StoreError | None]:
    out = bytearray()
    try:
        for chunk in age.decrypt_chunks(io.BytesIO(data), [identity]):
            out += chunk
    except StoreError as exc:
        return bytes(out), exc
    return bytes(out), None


@pytest.mark.parametrize("size", SIZES)
def test_ours_decrypts_with_age_tool_and_pyrage(
    size: int, tmp_path: Path, keyfile: Path, identity: str, recipient: str
) -> None:
    plain = os.urandom(size)
    cipher = encrypt(plain, [recipient], piece=4099)
    (tmp_path / "x.age").write_bytes(cipher)
    result = subprocess.run(["age", "-d", "-i", str(keyfile), str(tmp_path / "x.age")], capture_output=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == plain
    assert pyrage.decrypt(cipher, [pyrage.x25519.Identity.from_str(identity)]) == plain


@pytest.mark.parametrize("size", SIZES)
def test_age_tool_and_pyrage_output_decrypts_with_ours(size: int, identity: str, recipient: str) -> None:
    plain = os.urandom(size)
    from_tool = subprocess.run(
        ["age", "-e", "-r", recipient], input=plain, capture_output=True, check=True
    ).stdout
    from_pyrage = pyrage.encrypt(plain, [pyrage.x25519.Recipient.from_str(recipient)])
    assert age.decrypt(from_tool, [identity]) == plain
    assert age.decrypt(from_pyrage, [identity]) == plain


@pytest.mark.parametrize("size", SIZES)
def test_payload_layout(size: int, recipient: str) -> None:
    """Header, 16-byte nonce, then ceil(size / 64 KiB) chunks (one empty chunk for no data)."""
    cipher = encrypt(os.urandom(size), [recipient])
    header_end = cipher.index(b"\n", cipher.index(b"\n--- ") + 1) + 1
    chunks = max(1, -(-size // age.CHUNK))
    assert len(cipher) - header_end == age.NONCE + size + chunks * age.TAG
    lines = cipher[:header_end].split(b"\n")
    assert lines[0] == b"age-encryption.org/v1"
    assert lines[1].startswith(b"-> X25519 ") and len(lines[1]) == 10 + 43
    assert len(lines[2]) == 43  # 32-byte wrapped key, one body line shorter than 64 columns
    assert lines[3].startswith(b"--- ") and len(lines[3]) == 4 + 43


def test_several_recipients_each_decrypt(tmp_path: Path) -> None:
    pairs = [new_keypair() for _ in range(3)]
    plain = os.urandom(70000)
    cipher = encrypt(plain, [r for _, r in pairs])
    assert cipher.count(b"\n-> X25519 ") == 3
    for identity, _ in pairs:
        assert age.decrypt(cipher, [identity]) == plain
        assert pyrage.decrypt(cipher, [pyrage.x25519.Identity.from_str(identity)]) == plain


def test_writer_holds_back_at_most_one_full_chunk(recipient: str) -> None:
    buf = io.BytesIO()
    writer = age.AgeWriter(buf, [recipient])
    start = len(buf.getvalue())
    writer.write(bytes(age.CHUNK))
    assert (writer.chunks, writer.pending) == (0, age.CHUNK)  # may still be the last chunk
    writer.write(b"x")
    assert (writer.chunks, writer.pending) == (1, 1)
    assert len(buf.getvalue()) == start + age.ENC_CHUNK
    writer.write(bytes(3 * age.CHUNK))
    assert (writer.chunks, writer.pending) == (4, 1)
    writer.close()
    writer.close()  # idempotent
    assert writer.chunks == 5
    with pytest.raises(ValueError):
        writer.write(b"late")


def test_recipient_validation() -> None:
    _, recipient = new_keypair()
    with pytest.raises(StoreError, match="at least one recipient"):
        age.AgeWriter(io.BytesIO(), [])
    for bad in ("age1xyz", recipient[:-1] + ("q" if recipient[-1] != "q" else "p"), "npub1abc"):
        with pytest.raises(StoreError, match="not an age X25519 recipient"):
            age.AgeWriter(io.BytesIO(), [bad])
    identity, _ = new_keypair()
    with pytest.raises(StoreError, match="not an age X25519 recipient"):
        age.AgeWriter(io.BytesIO(), [identity])


def test_wrong_identity(recipient: str) -> None:
    cipher = encrypt(b"secret", [recipient])
    other, _ = new_keypair()
    with pytest.raises(StoreError, match=r"^wrong identity: none of 1 identities opens any of the 1"):
        age.decrypt(cipher, [other])


def test_non_identity_is_refused_without_echoing_it(recipient: str) -> None:
    cipher = encrypt(b"secret", [recipient])
    with pytest.raises(StoreError) as err:
        age.decrypt(cipher, ["AGE-SECRET-KEY-1NOTAKEY"])
    assert "NOTAKEY" not in str(err.value)


def test_cut_after_full_chunk_yields_prefix_then_truncated(identity: str, recipient: str) -> None:
    plain = os.urandom(3 * age.CHUNK)
    buf = io.BytesIO()
    writer = age.AgeWriter(buf, [recipient])
    writer.write(plain)  # two chunks sealed, the third held back: the crash case
    got, error = chunks_until_error(buf.getvalue(), identity)
    assert got == plain[: 2 * age.CHUNK]
    assert isinstance(error, age.TruncatedError)
    assert str(error) == "age: stream truncated after 2 chunks (no final chunk)"


def test_age_tool_on_a_cut_file(tmp_path: Path, keyfile: Path, recipient: str) -> None:
    """Recorded behaviour of age 1.1 (Debian): it writes every authenticated chunk, then fails."""
    plain = os.urandom(3 * age.CHUNK)
    buf = io.BytesIO()
    age.AgeWriter(buf, [recipient]).write(plain)
    cut = tmp_path / "cut.age"
    cut.write_bytes(buf.getvalue())
    result = subprocess.run(["age", "-d", "-i", str(keyfile), str(cut)], capture_output=True)
    assert result.returncode == 1
    assert result.stdout == plain[: 2 * age.CHUNK]
    assert result.stderr.startswith(b"age: error: unexpected EOF\n")
    # With -o the partial output file is kept, holding the same prefix.
    out = tmp_path / "out.bin"
    result = subprocess.run(["age", "-d", "-i", str(keyfile), "-o", str(out), str(cut)], capture_output=True)
    assert result.returncode == 1
    assert out.read_bytes() == plain[: 2 * age.CHUNK]
    # Cut inside a chunk: the chunks before it, then an authentication failure.
    cut.write_bytes(buf.getvalue()[:-100])
    result = subprocess.run(["age", "-d", "-i", str(keyfile), str(cut)], capture_output=True)
    assert result.returncode == 1
    assert result.stdout == plain[: age.CHUNK]
    assert b"failed to decrypt and authenticate payload chunk" in result.stderr


def test_every_proper_prefix_is_truncated(identity: str, recipient: str) -> None:
    plain = os.urandom(age.CHUNK + 10)
    cipher = encrypt(plain, [recipient])
    header = len(cipher) - age.NONCE - len(plain) - 2 * age.TAG
    # Every cut point in the header and nonce, and a sample through the payload.
    cuts = [*range(header + age.NONCE + 1), *range(header + age.NONCE, len(cipher), 997)]
    for cut in cuts:
        got, error = chunks_until_error(cipher[:cut], identity)
        assert isinstance(error, age.TruncatedError), (cut, error)
        assert plain.startswith(got)
        assert len(got) == (age.CHUNK if cut >= header + age.NONCE + age.ENC_CHUNK else 0)
    assert chunks_until_error(cipher, identity) == (plain, None)


def test_every_flipped_byte_is_detected(identity: str, recipient: str) -> None:
    cipher = encrypt(b"sixteen bytes!!!" * 3, [recipient])
    for i in range(len(cipher)):
        altered = bytearray(cipher)
        altered[i] ^= 0x01
        got, error = chunks_until_error(bytes(altered), identity)
        assert isinstance(error, StoreError), i
        assert got == b""


def test_altered_middle_chunk_and_trailing_data(identity: str, recipient: str) -> None:
    short = os.urandom(2 * age.CHUNK + 5)
    cipher = encrypt(short, [recipient])
    start = len(cipher) - len(short) - 3 * age.TAG
    altered = bytearray(cipher)
    altered[start + 10] ^= 0xFF
    got, error = chunks_until_error(bytes(altered), identity)
    assert got == b"" and str(error) == "age: chunk 0 fails authentication (altered or corrupt)"
    # Data appended after a full-size final chunk is told apart from a cut...
    plain = os.urandom(2 * age.CHUNK)
    got, error = chunks_until_error(encrypt(plain, [recipient]) + b"extra", identity)
    assert got == plain[: age.CHUNK]
    assert str(error) == "age: data after the final chunk 1"
    assert not isinstance(error, age.TruncatedError)
    # ...but after a short one it cannot be: the tail no longer authenticates as a final chunk.
    got, error = chunks_until_error(cipher + b"extra", identity)
    assert got == short[: 2 * age.CHUNK]
    assert isinstance(error, age.TruncatedError)


def test_header_mac_mismatch(identity: str, recipient: str) -> None:
    cipher = encrypt(b"x", [recipient])
    # A grease stanza added after the fact changes the bytes the MAC covers.
    at = cipher.index(b"--- ")
    altered = cipher[:at] + b"-> grease\n\n" + cipher[at:]
    with pytest.raises(StoreError, match=r"^age: header MAC mismatch"):
        age.decrypt(altered, [identity])


def test_not_age_and_armor(identity: str) -> None:
    with pytest.raises(StoreError, match="not an age v1 file"):
        age.decrypt(b"RIFF....WAVEfmt ", [identity])
    with pytest.raises(StoreError, match="ASCII-armored"):
        age.decrypt(b"-----BEGIN AGE ENCRYPTED FILE-----\n", [identity])
    with pytest.raises(StoreError, match="passphrase-encrypted"):
        age.decrypt(scrypt_encrypt(b"x", "pw"), [identity])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_header_raises_only_store_error(tail: bytes) -> None:
    identity, _ = new_keypair()
    for data in (tail, b"age-encryption.org/v1\n" + tail, b"age-encryption.org/v1\n-> " + tail):
        try:
            age.decrypt(data, [identity])
        except StoreError:
            pass


_VALID: dict[str, bytes] = {}


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4),
    st.integers(0, 400),
)
def test_fuzz_altered_file_raises_only_store_error(edits: list[tuple[int, int]], keep_tail: int) -> None:
    """A valid file with a few bytes overwritten and its end cut: authenticated output or a
    StoreError, never another exception, never altered plaintext."""
    if not _VALID:
        identity, recipient = new_keypair()
        _VALID.update(identity=identity.encode(), plain=os.urandom(300))
        _VALID["cipher"] = encrypt(_VALID["plain"], [recipient])
    cipher = bytearray(_VALID["cipher"])
    for at, value in edits:
        cipher[at % len(cipher)] = value
    data = bytes(cipher[: len(cipher) - keep_tail])
    got, error = chunks_until_error(data, _VALID["identity"].decode())
    if error is None:
        assert got == _VALID["plain"]
    else:
        assert _VALID["plain"].startswith(got)


def test_written_data_is_copied_and_sealed_as_it_was(identity: str, recipient: str) -> None:
    """A caller may reuse its buffer as soon as write returns, across chunk boundaries too."""
    plain = os.urandom(3 * age.CHUNK + 123)
    buf = io.BytesIO()
    writer = age.AgeWriter(buf, [recipient])
    scratch = bytearray(5000)
    for k, i in enumerate(range(0, len(plain), 5000)):
        piece = plain[i : i + 5000]
        scratch[: len(piece)] = piece
        view = memoryview(scratch)[: len(piece)]
        writer.write(scratch if k % 2 and len(piece) == 5000 else view)
        view.release()
        scratch[:] = bytes(5000)
    writer.close()
    assert age.decrypt(buf.getvalue(), [identity]) == plain


def test_every_file_gets_its_own_ephemeral_key_and_file_key(recipient: str) -> None:
    """Remembering the recipient's key object must not make two files share an X25519 share, a
    wrapped file key or a payload nonce."""
    headers = [encrypt(b"same audio", [recipient]) for _ in range(3)]
    for part in (1, 2):  # the share line, the wrapped key
        assert len({h.split(b"\n")[part] for h in headers}) == 3
    nonces = {h[h.index(b"\n--- ") + 1 :].split(b"\n", 1)[1][: age.NONCE] for h in headers}
    assert len(nonces) == 3
