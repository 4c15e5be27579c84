"""Streaming age v1 encryption and decryption for X25519 recipients (C2SP age.md, age v1).

Why our own and not pyrage: pyrage encrypts a whole buffer, or a reader that must already hold the
complete plaintext. A recording is encrypted as audio arrives, so that no plaintext ever reaches the
disk and a crash loses only the chunk not yet sealed. The format is small and followed exactly; the
tests check it both ways against the ``age`` tool and pyrage.

File layout (age.md "Header" and "Payload")::

    age-encryption.org/v1
    -> X25519 <base64 ephemeral share>            one stanza per recipient ("X25519 recipient type")
    <base64 wrapped 16-byte file key>             body lines of 64 columns, the last one shorter
    --- <base64 HMAC-SHA256 of the header up to and including "---">
    <16-byte nonce><STREAM chunks: 64 KiB plaintext + 16-byte Poly1305 tag each>

STREAM (age.md "Payload"): the chunk nonce is an 11-byte big-endian counter and a last-chunk flag
byte. Only the final chunk has the flag set; it may be short, and it is empty only when the whole
plaintext is empty. Base64: standard alphabet, no padding, only canonical text accepted.

A file cut short (the crash case) is not an error until its authenticated chunks have been given
out: :func:`decrypt_chunks` yields every chunk that authenticates, then raises
:class:`TruncatedError`. A cut inside a chunk and a change to the unsealed tail cannot be told apart
cryptographically; the index keeps the SHA-256 of every finished ciphertext for that.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import io
import os
from collections.abc import Iterator, Sequence
from typing import BinaryIO, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from recorderd.errors import StoreError
from recorderd.store import bech32

VERSION_LINE = b"age-encryption.org/v1"
CHUNK = 64 * 1024
TAG = 16
ENC_CHUNK = CHUNK + TAG
NONCE = 16
FILE_KEY = 16
X25519_INFO = b"age-encryption.org/v1/X25519"
RECIPIENT_HRP = "age"
IDENTITY_HRP = "age-secret-key-"
_COLUMNS = 64
_MAX_LINE = 4096  # longer than any stanza line age or rage write, grease included
_MAX_STANZAS = 256
_ZERO_NONCE = bytes(12)


class TruncatedError(StoreError):
    """The stream ended before its final chunk; every chunk before the cut was authenticated."""


class _Sink(Protocol):
    def write(self, data: bytes, /) -> object: ...

    def flush(self) -> object: ...


# --------------------------------------------------------------------------------------------------
# Keys and encodings


@functools.lru_cache(maxsize=64)
def parse_recipient(text: str) -> bytes:
    """The 32-byte X25519 public key of an ``age1...`` recipient (remembered: every new recording
    is encrypted to the same few)."""
    try:
        hrp, key = bech32.decode(text)
    except bech32.Bech32Error:
        hrp, key = "", b""
    if hrp != RECIPIENT_HRP or len(key) != 32:
        raise StoreError(f"not an age X25519 recipient: {text!r}")
    return key


def parse_identity(text: str) -> bytes:
    """The 32-byte X25519 private scalar of an ``AGE-SECRET-KEY-1...`` identity."""
    try:
        hrp, key = bech32.decode(text)
    except bech32.Bech32Error:
        hrp, key = "", b""
    if hrp != IDENTITY_HRP or len(key) != 32:
        # Never echo the text: it may be a mistyped secret key.
        raise StoreError("not an age X25519 identity (expected AGE-SECRET-KEY-1...)")
    return key


def format_recipient(key: bytes) -> str:
    return bech32.encode(RECIPIENT_HRP, key)


def format_identity(key: bytes) -> str:
    return bech32.encode(IDENTITY_HRP, key).upper()


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data).rstrip(b"=")


def _unb64(text: bytes) -> bytes:
    """Strict unpadded base64: standard alphabet, canonical trailing bits (age.md "Conventions")."""
    if len(text) % 4 == 1 or b"=" in text:
        raise StoreError("age: malformed base64 in header")
    try:
        data = base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
    except ValueError:
        raise StoreError("age: malformed base64 in header") from None
    if _b64(data) != text:
        raise StoreError("age: non-canonical base64 in header")
    return data


def _hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt, info).derive(ikm)


def _raw(public: X25519PublicKey) -> bytes:
    return public.public_bytes_raw()


# --------------------------------------------------------------------------------------------------
# Header


@functools.lru_cache(maxsize=64)
def _public_key(recipient: bytes) -> X25519PublicKey:
    """The key object of a recipient (remembered, as :func:`parse_recipient` is)."""
    return X25519PublicKey.from_public_bytes(recipient)


def _wrap(file_key: bytes, recipient: bytes) -> bytes:
    """One X25519 recipient stanza (age.md "The X25519 recipient type"), newline-terminated.

    A fresh ephemeral key for every stanza, so for every file: the share is what makes each wrap key
    unique. The body, the 32-byte sealed file key, is 43 base64 columns: one line, shorter than 64.
    """
    ephemeral = X25519PrivateKey.generate()
    share = ephemeral.public_key().public_bytes_raw()
    wrap_key = _hkdf(ephemeral.exchange(_public_key(recipient)), share + recipient, X25519_INFO)
    body = ChaCha20Poly1305(wrap_key).encrypt(_ZERO_NONCE, file_key, None)
    return b"-> X25519 " + _b64(share) + b"\n" + _b64(body) + b"\n"


def _header_mac(file_key: bytes, header: bytes) -> bytes:
    return hmac.new(_hkdf(file_key, b"", b"header"), header, hashlib.sha256).digest()


def _read_line(fileobj: BinaryIO) -> bytes:
    """One header line without its newline; TruncatedError at end of file."""
    line = fileobj.readline(_MAX_LINE + 1)
    if not line.endswith(b"\n"):
        if len(line) > _MAX_LINE:
            raise StoreError(f"age: header line too long (> {_MAX_LINE} bytes)")
        raise TruncatedError("age: file truncated inside its header")
    return line[:-1]


def _read_stanza(fileobj: BinaryIO, line: bytes) -> tuple[list[bytes], bytes, bytes]:
    """(args, body, raw text) of the stanza whose ``-> `` line is ``line``."""
    args = line[3:].split(b" ")
    if any(not arg or any(not 33 <= c <= 126 for c in arg) for arg in args):
        raise StoreError("age: malformed stanza arguments in header")
    raw = [line + b"\n"]
    body = bytearray()
    while True:
        text = _read_line(fileobj)
        raw.append(text + b"\n")
        if len(text) > _COLUMNS:
            raise StoreError("age: stanza body line longer than 64 columns")
        body += _unb64(text)
        if len(text) < _COLUMNS:
            return args, bytes(body), b"".join(raw)


def _read_header(fileobj: BinaryIO) -> tuple[list[tuple[list[bytes], bytes]], bytes, bytes]:
    """(stanzas, bytes covered by the MAC, MAC) of an age header."""
    first = fileobj.readline(len(VERSION_LINE) + 1)
    if first != VERSION_LINE + b"\n":
        if VERSION_LINE.startswith(first.rstrip(b"\n")) and not first.endswith(b"\n"):
            raise TruncatedError("age: file truncated inside its header")
        if first.startswith(b"-----BEGIN"):
            raise StoreError("age: ASCII-armored files are not supported; use the binary form")
        raise StoreError("age: not an age v1 file")
    covered = [first]
    stanzas: list[tuple[list[bytes], bytes]] = []
    while True:
        line = _read_line(fileobj)
        if line.startswith(b"--- "):
            covered.append(b"---")
            return stanzas, b"".join(covered), _unb64(line[4:])
        if not line.startswith(b"-> "):
            raise StoreError("age: malformed header line")
        if len(stanzas) == _MAX_STANZAS:
            raise StoreError(f"age: too many recipient stanzas (> {_MAX_STANZAS})")
        args, body, raw = _read_stanza(fileobj, line)
        stanzas.append((args, body))
        covered.append(raw)


def _unwrap(stanzas: list[tuple[list[bytes], bytes]], identities: Sequence[bytes]) -> bytes:
    """The file key, from the first X25519 stanza that one of ``identities`` opens."""
    keys = [X25519PrivateKey.from_private_bytes(i) for i in identities]
    for args, body in stanzas:
        if args[0] == b"scrypt":
            raise StoreError("age: file is passphrase-encrypted, not to X25519 recipients")
        if args[0] != b"X25519":
            continue  # another recipient type, or grease (age.md "Header")
        if len(args) != 2 or len(body) != FILE_KEY + TAG:
            raise StoreError("age: malformed X25519 stanza")
        share = _unb64(args[1])
        if len(share) != 32:
            raise StoreError("age: malformed X25519 stanza")
        for key in keys:
            shared = key.exchange(X25519PublicKey.from_public_bytes(share))
            wrap_key = _hkdf(shared, share + _raw(key.public_key()), X25519_INFO)
            try:
                return ChaCha20Poly1305(wrap_key).decrypt(_ZERO_NONCE, body, None)
            except InvalidTag:
                continue
    raise StoreError(
        f"wrong identity: none of {len(keys)} identities opens any of the"
        f" {len(stanzas)} recipient stanzas of this file"
    )


# --------------------------------------------------------------------------------------------------
# Payload


def _chunk_nonce(counter: int, last: bool) -> bytes:
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


class AgeWriter:
    """Encrypts a stream to X25519 recipients, sealing each 64 KiB chunk as soon as it is known
    not to be the last.

    The header and payload nonce are written at once. ``write`` never keeps more than one full chunk
    of plaintext in memory: that one is held back because the last chunk must carry the final flag.
    ``close`` seals the final chunk; it does not close ``fileobj``, which stays the caller's.
    """

    def __init__(self, fileobj: _Sink, recipients: Sequence[str]) -> None:
        if not recipients:
            raise StoreError("age: at least one recipient is needed")
        keys = [parse_recipient(r) for r in recipients]
        file_key = os.urandom(FILE_KEY)
        header = b"".join([VERSION_LINE, b"\n", *(_wrap(file_key, k) for k in keys), b"---"])
        nonce = os.urandom(NONCE)
        self._aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
        self._file = fileobj
        self._buffer = bytearray()
        self._counter = 0
        self._closed = False
        fileobj.write(b"".join([header, b" ", _b64(_header_mac(file_key, header)), b"\n", nonce]))

    @property
    def chunks(self) -> int:
        """Number of chunks sealed and handed to ``fileobj`` so far."""
        return self._counter

    @property
    def pending(self) -> int:
        """Plaintext bytes accepted but not yet sealed (lost if the process dies now)."""
        return len(self._buffer)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed:
            raise ValueError("write to a closed AgeWriter")
        buffer = self._buffer
        buffer += data
        while len(buffer) > CHUNK:
            # Sealed straight from the buffer, with no copy; the view is released before the prefix
            # is dropped (a bytearray cannot shrink while exported), which copies nothing either.
            with memoryview(buffer)[:CHUNK] as chunk:
                self._seal(chunk, last=False)
            del buffer[:CHUNK]

    def flush(self) -> None:
        """Push sealed chunks to the OS and to stable storage (fsync) when ``fileobj`` is a file."""
        self._file.flush()
        fileno = getattr(self._file, "fileno", None)
        if fileno is None:
            return
        try:
            fd = fileno()
        except io.UnsupportedOperation:
            return
        os.fsync(fd)

    def close(self) -> None:
        """Seal the final chunk (flag 1). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._seal(self._buffer, last=True)
        self._buffer.clear()

    def _seal(self, plaintext: bytes | bytearray | memoryview, last: bool) -> None:
        nonce = _chunk_nonce(self._counter, last)
        self._file.write(self._aead.encrypt(nonce, plaintext, None))
        self._counter += 1

    def __enter__(self) -> AgeWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_exact(fileobj: BinaryIO, size: int) -> bytes:
    """Up to ``size`` bytes; fewer only at end of file (raw files may return short reads)."""
    data = fileobj.read(size)
    if len(data) == size or not data:
        return data
    parts = [data]
    got = len(data)
    while got < size:
        more = fileobj.read(size - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _open_chunk(aead: ChaCha20Poly1305, data: bytes, counter: int, last: bool) -> bytes | None:
    try:
        return aead.decrypt(_chunk_nonce(counter, last), data, None)
    except InvalidTag:
        return None


def _payload(fileobj: BinaryIO, aead: ChaCha20Poly1305) -> Iterator[bytes]:
    """STREAM decryption with one chunk of look-ahead, which tells a full final chunk from a cut."""
    data = _read_exact(fileobj, ENC_CHUNK)
    counter = 0
    while True:
        if len(data) < ENC_CHUNK:
            plain = _open_chunk(aead, data, counter, last=True) if len(data) >= TAG else None
            if plain is None:
                raise TruncatedError(
                    f"age: stream truncated after {counter} chunks"
                    f" ({len(data)} trailing bytes do not authenticate as a final chunk)"
                )
            if not plain and counter:
                raise StoreError("age: empty final chunk after a non-empty one")
            yield plain
            return
        following = _read_exact(fileobj, ENC_CHUNK)
        if not following and (plain := _open_chunk(aead, data, counter, last=True)) is not None:
            yield plain
            return
        plain = _open_chunk(aead, data, counter, last=False)
        if plain is None:
            if _open_chunk(aead, data, counter, last=True) is not None:
                raise StoreError(f"age: data after the final chunk {counter}")
            raise StoreError(f"age: chunk {counter} fails authentication (altered or corrupt)")
        yield plain
        counter += 1
        if not following:
            raise TruncatedError(f"age: stream truncated after {counter} chunks (no final chunk)")
        data = following


def decrypt_chunks(fileobj: BinaryIO, identities: Sequence[str]) -> Iterator[bytes]:
    """The plaintext of an age file, one authenticated chunk at a time.

    Raises :class:`StoreError` for a file that is not age, a header that fails its MAC, no stanza
    that ``identities`` open ("wrong identity: ..."), or an altered chunk; :class:`TruncatedError`
    after the last authenticated chunk when the file ends without its final chunk.
    """
    keys = [parse_identity(i) for i in identities]
    stanzas, covered, mac = _read_header(fileobj)
    file_key = _unwrap(stanzas, keys)
    if not hmac.compare_digest(_header_mac(file_key, covered), mac):
        raise StoreError("age: header MAC mismatch (the header was altered)")
    nonce = _read_exact(fileobj, NONCE)
    if len(nonce) < NONCE:
        raise TruncatedError("age: file truncated before its payload nonce")
    yield from _payload(fileobj, ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload")))


def decrypt(data: bytes, identities: Sequence[str]) -> bytes:
    """Whole-buffer convenience over :func:`decrypt_chunks` (tests, small files)."""
    return b"".join(decrypt_chunks(io.BytesIO(data), identities))
