"""The self-test canary: a capture shipped with the package, replayed through the whole pipeline.

At start and daily the daemon replays ``canary/canary.pcap`` (a real SIP-over-TCP call with A-law audio
and comfort noise, from ``pcaps/sip-tcp-call-rtp.pcap``) through the same capture reader, engine, store
sink and encrypting writer that record live calls, into a scratch store under a throwaway key. It then
decrypts what was written and compares the audio (the Sun AU plaintext, before encryption) and the
metadata (every field of each call's :class:`~recorderd.events.CallRecord`, which the index stores)
with the digests in ``canary/digests.json``. The record rather than the index's rows: those gain
columns as the store evolves, and carry random ids and ciphertext digests. A mismatch means the
software or its libraries changed what a recording holds: the health check turns critical.

Regenerate the digests only on purpose, after a change that alters recordings, with
``python -m recorderd.canary --update``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from recorderd.config import EngineConfig
from recorderd.replay import replay_file
from recorderd.store.age import decrypt
from recorderd.store.keys import keygen, load_identities
from recorderd.store.sink import StoreSink
from recorderd.store.store import Store

DATA = Path(__file__).resolve().parent / "canary"
CAPTURE = DATA / "canary.pcap"
DIGESTS = DATA / "digests.json"


@dataclass(frozen=True, slots=True)
class CanaryResult:
    ok: bool
    summary: str
    audio_sha256: str
    metadata_sha256: str


def produce(scratch: Path, capture: Path = CAPTURE) -> tuple[str, str]:
    """(audio digest, metadata digest) of ``capture`` recorded into a new store under ``scratch``."""
    recipient = keygen(scratch / "identity.txt", None)
    identities = load_identities(scratch / "identity.txt", None)
    store = Store.init(scratch / "store", [recipient])
    sink = StoreSink(store)
    store_log = logging.getLogger("recorderd.store")
    level = store_log.level
    store_log.setLevel(logging.WARNING)  # the canary's call is not a call at the practice
    try:
        records = replay_file(capture, sink, EngineConfig()).calls
        sink.close()
        calls = store.calls()
    finally:
        store.close()
        store_log.setLevel(level)
    audio = hashlib.sha256()
    for call in calls:
        if call["recording"]:
            audio.update(decrypt(Path(call["recording"]).read_bytes(), identities))
    return audio.hexdigest(), _digest([asdict(record) for record in records])


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def run(scratch_parent: Path | None = None) -> CanaryResult:
    """Replay the canary into a temporary directory (removed afterwards) and compare its digests."""
    expected = json.loads(DIGESTS.read_text())
    with tempfile.TemporaryDirectory(prefix="recorderd-canary-", dir=scratch_parent) as scratch:
        audio, metadata = produce(Path(scratch))
    wrong = [
        what for what, got in (("audio", audio), ("metadata", metadata)) if got != expected[f"{what}_sha256"]
    ]
    if wrong:
        summary = f"self-test {' and '.join(wrong)} differ from the known digests: recordings may be wrong"
        return CanaryResult(False, summary, audio, metadata)
    return CanaryResult(True, "self-test matched its known digests", audio, metadata)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recorderd.canary")
    parser.add_argument("--update", action="store_true", help=f"rewrite {DIGESTS.name} from this build")
    args = parser.parse_args(argv)
    if args.update:
        with tempfile.TemporaryDirectory() as scratch:
            audio, metadata = produce(Path(scratch))
        text = json.dumps({"audio_sha256": audio, "metadata_sha256": metadata}, indent=2)
        DIGESTS.write_text(text + "\n")
        print(f"wrote {DIGESTS}")
        return 0
    result = run()
    print(result.summary)
    return 0 if result.ok else 2


if __name__ == "__main__":
    raise SystemExit(main())
