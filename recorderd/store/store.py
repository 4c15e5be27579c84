"""A recording store on disk: its layout, opening and creating it, finding calls, crash recovery.

Layout (directories 0700, files 0600)::

    <root>/store.json        {"format": "recorderd-store", "version": 1, "recipients": ["age1..."]}
    <root>/index.sqlite      calls, legs, recordings, holds, audit chain (index.py)
    <root>/writer.lock       flock'ed by the one process that writes recordings
    <root>/audit-signing.key Ed25519 private key (PKCS#8 PEM) that signs the audit head (audit.py);
                             its public half is "audit_public_key" in store.json
    <root>/recordings/YYYY/MM/DD/<call uuid>.au.age[.part]

The date in the path is the UTC date of the call's INVITE. A recording is ``.part`` while it is
being written (writer.py). Only the public recipients are kept: the store can write recordings,
never read them back; export needs the data controller's identity.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import functools
import hashlib
import json
import logging
import os
import re
import sqlite3
import uuid
from pathlib import Path
from typing import Any

from recorderd.errors import StoreError
from recorderd.store.age import parse_recipient
from recorderd.store.audit import create_signing_key, load_signing_key
from recorderd.store.index import Index
from recorderd.store.numbers import normalise_number
from recorderd.store.retention import tag_problem
from recorderd.store.writer import PART_SUFFIX, RecordingWriter, fsync_dir

log = logging.getLogger(__name__)

FORMAT = "recorderd-store"
FORMAT_VERSION = 1
STORE_FILE = "store.json"
INDEX_FILE = "index.sqlite"
LOCK_FILE = "writer.lock"
SIGNING_KEY = "audit-signing.key"
RECORDINGS = "recordings"
SUFFIX = ".au.age"
_UID = re.compile(r"[0-9a-f]{32}")
_HASH_BLOCK = 1 << 20
_DAY = 86_400  # seconds in a UTC day (POSIX time has no leap seconds)


def iso_utc(ts: float | None) -> str | None:
    """ISO 8601 UTC with a "Z" and microseconds (capture precision), or None."""
    if ts is None:
        return None
    text = dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="microseconds")
    return text.replace("+00:00", "Z")


@functools.lru_cache(maxsize=64)
def _day_path(day: int) -> str:
    """YYYY/MM/DD of a UTC day (days since the epoch): every recording of a day asks for it."""
    return f"{dt.datetime.fromtimestamp(day * _DAY, dt.UTC):%Y/%m/%d}"


def file_sha256(path: Path) -> tuple[str, int]:
    """(hex SHA-256, size) of a file, read in bounded blocks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while block := f.read(_HASH_BLOCK):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def _write_private(path: Path, data: bytes) -> None:
    """Create ``path`` 0600 via ``.part`` -> fsync -> rename."""
    part = path.with_name(path.name + PART_SUFFIX)
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.rename(part, path)
    fsync_dir(path.parent)


def _mkdir_private(path: Path) -> None:
    """mkdir -p with 0700 on every directory created (the umask cannot widen or narrow it)."""
    missing = []
    while not path.is_dir():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(0o700)
        except FileExistsError:
            continue  # made meanwhile by another writer
        os.chmod(directory, 0o700)


class Store:
    """An open store: ``root`` (absolute), its recipients and its index."""

    def __init__(
        self, root: Path, recipients: list[str], index: Index, audit_public_key: str | None = None
    ) -> None:
        self.root = root
        self.recipients = recipients
        self.index = index
        self.audit_public_key = audit_public_key  # hex Ed25519; None in a store made before it existed
        self._lock_fd: int | None = None

    # ----------------------------------------------------------------------------------------------
    # Creating and opening

    @classmethod
    def init(cls, path: Path | str, recipients: list[str]) -> Store:
        """Create a store at ``path`` (a new or empty directory) for ``recipients``."""
        root = Path(path).absolute()
        if not recipients:
            raise StoreError("a store needs at least one recipient (--recipient age1...)")
        for recipient in recipients:
            parse_recipient(recipient)
        if (root / STORE_FILE).exists():
            raise StoreError(f"{root} is already a recorderd store")
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise StoreError(f"{root} exists and is not an empty directory; choose another path")
        try:
            _mkdir_private(root)
            os.chmod(root, 0o700)
            _mkdir_private(root / RECORDINGS)
            # SQLite gives -wal and -shm the database file's mode, so create that file 0600 first.
            os.close(os.open(root / INDEX_FILE, os.O_WRONLY | os.O_CREAT, 0o600))
            Index.open(root / INDEX_FILE).close()
            public_key = create_signing_key(root / SIGNING_KEY)
            meta = {
                "format": FORMAT,
                "version": FORMAT_VERSION,
                "recipients": recipients,
                "audit_public_key": public_key,
            }
            _write_private(root / STORE_FILE, json.dumps(meta, indent=2).encode() + b"\n")
        except OSError as exc:
            raise StoreError(f"cannot create store at {root}: {exc.strerror}") from None
        return cls.open(root)

    @classmethod
    def open(cls, path: Path | str, region: str = "GB") -> Store:
        """Open the store at ``path``; ``region`` reads numbers without a country code (config
        ``[site] default_region``)."""
        root = Path(path).absolute()
        try:
            meta = json.loads((root / STORE_FILE).read_bytes())
        except FileNotFoundError:
            raise StoreError(
                f"no recorderd store at {root} (create one with: recorderd init {root} --recipient age1...)"
            ) from None
        except (OSError, ValueError) as exc:
            raise StoreError(f"cannot read {root / STORE_FILE}: {exc}") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise StoreError(f"{root / STORE_FILE} is not a recorderd store description")
        if meta.get("version") != FORMAT_VERSION:
            raise StoreError(
                f"store {root} has format version {meta.get('version')!r}; this "
                f"recorderd reads version {FORMAT_VERSION}"
            )
        recipients = meta.get("recipients")
        if not isinstance(recipients, list) or not recipients:
            raise StoreError(f"{root / STORE_FILE} lists no recipients")
        for recipient in recipients:
            parse_recipient(str(recipient))
        public_key = meta.get("audit_public_key")
        signer = load_signing_key(root / SIGNING_KEY)
        index = Index.open(root / INDEX_FILE, region, signer)
        return cls(root, [str(r) for r in recipients], index, str(public_key) if public_key else None)

    def close(self) -> None:
        self.index.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def writing(self) -> bool:
        """Does this Store hold the writer lock?"""
        return self._lock_fd is not None

    def lock_for_writing(self) -> bool:
        """Become the one process that writes recordings here (a daemon, a replay).

        True when the lock was taken now, False when this Store already held it.
        """
        if self._lock_fd is not None:
            return False
        fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreError(f"store {self.root} is being written by another process") from None
        self._lock_fd = fd
        return True

    # ----------------------------------------------------------------------------------------------
    # Recordings

    @staticmethod
    def new_uid() -> str:
        return uuid.uuid4().hex

    def recording_path(self, call_uid: str, start_ts: float) -> str:
        """Path of a call's recording, relative to the root: recordings/YYYY/MM/DD/<uid>.au.age."""
        return f"{RECORDINGS}/{_day_path(int(start_ts // _DAY))}/{call_uid}{SUFFIX}"

    def open_recording(
        self, call_uid: str, encoding: str, sample_rate: int, start_ts: float
    ) -> RecordingWriter:
        """A writer for a new recording of call ``call_uid``, which started at ``start_ts``."""
        return self.open_recording_at(self.recording_path(call_uid, start_ts), encoding, sample_rate)

    def open_recording_at(self, path: str, encoding: str, sample_rate: int) -> RecordingWriter:
        """A writer for a new recording at ``path`` (:meth:`recording_path`); its day's directory is
        made (0700) when the first recording of the day finds it missing."""
        return RecordingWriter(self.root / path, self.recipients, encoding, sample_rate, _mkdir_private)

    def recover(self) -> list[str]:
        """Close out recordings a crash left in state 'recording'; returns their call ids.

        Three crash points leave such a row, and each ends 'incomplete' with the digest and size of
        what is on disk:

        * mid-call: the ``.part`` (a valid, decryptable prefix) gets its final name;
        * after the sink committed the row but before it created the file: no file (digest None);
        * after the sink renamed a finished recording but before the transaction that says
          'complete' (sink.py batches that for many calls): the final file, no ``.part``. The file
          is most likely whole, but it stays 'incomplete': the call's metadata (end, legs,
          direction) was lost with the transaction, and the store cannot check the final chunk
          without the identity it never holds; ``recorderd export`` says whether it is whole.

        Only the process holding the writer lock may run this: a live recording is also in state
        'recording'.
        """
        if self._lock_fd is None:
            raise StoreError("recover() needs the writer lock (lock_for_writing)")
        recovered = []
        for row in self.index.open_recordings():
            final = self.root / row["path"]
            part = final.with_name(final.name + PART_SUFFIX)
            sha256: str | None = None
            size = 0
            if part.exists():
                os.rename(part, final)
                fsync_dir(final.parent)
                log.warning("recovered the interrupted recording of call %s", row["call"])
            elif final.exists():
                log.warning(
                    "recovered the finished recording of call %s; its call record was lost", row["call"]
                )
            else:
                log.warning("recording of call %s is missing: %s", row["call"], final)
            if final.exists():
                sha256, size = file_sha256(final)
            self.index.mark_incomplete(row["call"], sha256, size, None)
            recovered.append(str(row["call"]))
        return recovered

    # ----------------------------------------------------------------------------------------------
    # Queries

    def calls(
        self,
        since: float | None = None,
        until: float | None = None,
        party: str | None = None,
        call_id: str | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Calls as JSON objects, oldest first: INVITE time in [since, until), ``party`` a substring
        of either user part or display name, ``call_id`` a SIP Call-ID."""
        where: list[str] = []
        params: list[object] = []
        if since is not None:
            where.append("calls.invite_ts >= ?")
            params.append(since)
        if until is not None:
            where.append("calls.invite_ts < ?")
            params.append(until)
        if party:
            like = _like(party)
            where.append("(" + " OR ".join(f"calls.{c} LIKE ? ESCAPE '\\'" for c in _PARTY_COLUMNS) + ")")
            params.extend([like] * len(_PARTY_COLUMNS))
        if call_id is not None:
            where.append("calls.call_id = ?")
            params.append(call_id)
        return self._to_json(self.index.calls(" AND ".join(where), params, limit))

    def search(
        self,
        number: str | None = None,
        extension: str | None = None,
        since: float | None = None,
        until: float | None = None,
        direction: str | None = None,
        name: str | None = None,
        call_id: str | None = None,
        limit: int = 10_000,
        tag: str | None = None,
    ) -> list[dict[str, Any]]:
        """Calls matching every criterion given, oldest first (erased calls only by time or id).

        ``number`` in any spelling (``07700 900123``, ``+44...``, ``sip:...@host``) matches either
        party's normalised number; ``extension`` either party's user part exactly; ``name`` a
        substring of either display name, ignoring case; INVITE time in [since, until); ``tag``
        a tag the call carries.
        """
        where: list[str] = []
        params: list[object] = []
        if number is not None:
            canonical = normalise_number(number, self.index.region)
            if not canonical:
                raise StoreError(f"{number!r} is not a phone number")
            where.append("(calls.from_number = ? OR calls.to_number = ?)")
            params += [canonical, canonical]
        if extension is not None:
            where.append("(calls.from_user = ? OR calls.to_user = ?)")
            params += [extension, extension]
        for column, op, value in (("invite_ts", ">=", since), ("invite_ts", "<", until)):
            if value is not None:
                where.append(f"calls.{column} {op} ?")
                params.append(value)
        if direction is not None:
            where.append("calls.direction = ?")
            params.append(direction)
        if name:
            where.append("(calls.from_name LIKE ? ESCAPE '\\' OR calls.to_name LIKE ? ESCAPE '\\')")
            params += [_like(name)] * 2
        if call_id is not None:
            where.append("calls.call_id = ?")
            params.append(call_id)
        if tag is not None:
            problem = tag_problem(tag)
            if problem:
                raise StoreError(problem)
            where.append("EXISTS (SELECT 1 FROM tags WHERE tags.call = calls.id AND tags.tag = ?)")
            params.append(tag)
        return self._to_json(self.index.calls(" AND ".join(where), params, limit))

    def find(self, call_ref: str) -> dict[str, Any]:
        """The call whose id is ``call_ref``, or the only call with that SIP Call-ID."""
        if _UID.fullmatch(call_ref):
            rows = self.index.calls("calls.id = ?", (call_ref,), 1)
            if rows:
                return self._to_json(rows)[0]
        rows = self.index.calls("calls.call_id = ?", (call_ref,), 100)
        if not rows:
            raise StoreError(f"no call {call_ref!r} in the store at {self.root}")
        if len(rows) > 1:
            ids = ", ".join(f"{r['id']} ({iso_utc(r['invite_ts'])})" for r in rows)
            raise StoreError(f"Call-ID {call_ref!r} matches {len(rows)} calls: {ids}; give the id")
        return self._to_json(rows)[0]

    def _to_json(self, rows: list[sqlite3.Row]) -> list[dict[str, Any]]:
        uids = [r["id"] for r in rows]
        legs, tags = self.index.legs(uids), self.index.tags(uids)
        return [_call_json(self.root, row, legs[row["id"]], tags[row["id"]]) for row in rows]


_PARTY_COLUMNS = ("from_user", "to_user", "from_name", "to_name")


def _like(text: str) -> str:
    """A LIKE pattern (ESCAPE '\\') matching ``text`` anywhere."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _leg_json(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "side": row["side"],
        "ssrc": row["ssrc"],
        "src": row["src"],
        "dst": row["dst"],
        "codec": row["codec"],
        "payload_type": row["payload_type"],
        "packets": row["packets"],
        "lost": row["lost"],
        "duplicates": row["duplicates"],
        "decoded": bool(row["decoded"]),
        "first": iso_utc(row["first_ts"]),
        "last": iso_utc(row["last_ts"]),
        "gaps": json.loads(row["gaps"]),
    }


def _call_json(root: Path, row: sqlite3.Row, legs: list[sqlite3.Row], tags: list[str]) -> dict[str, Any]:
    answer, end = row["answer_ts"], row["end_ts"]
    return {
        "id": row["id"],
        "call_id": row["call_id"],
        "direction": row["direction"],
        "from": row["from_uri"],
        "from_name": row["from_name"],
        "from_user": row["from_user"],
        "from_number": row["from_number"],
        "to": row["to_uri"],
        "to_name": row["to_name"],
        "to_user": row["to_user"],
        "to_number": row["to_number"],
        "start": iso_utc(row["invite_ts"]),
        "answer": iso_utc(answer),
        "end": iso_utc(end),
        "end_reason": row["end_reason"],
        "sip_status": row["sip_status"],
        "duration_s": round(end - answer, 3) if answer is not None and end is not None else 0,
        "media_start": iso_utc(row["media_start_ts"]),
        "samples": row["samples"],
        "sample_rate": row["sample_rate"],
        "state": row["state"],
        "erased": iso_utc(row["erased_ts"]),
        "recording": str(root / row["rec_path"]) if row["rec_path"] else None,
        "recording_state": row["rec_state"],
        "encoding": row["rec_encoding"],
        "sha256": row["rec_sha256"],
        "size": row["rec_size"],
        "dtmf": json.loads(row["dtmf"]),
        "holds": json.loads(row["holds"]),
        "transfers": json.loads(row["transfers"]),
        "tags": tags,
        "legs": [_leg_json(leg) for leg in legs],
    }
