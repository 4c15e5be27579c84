"""Test material for the store: real G.711 audio from a capture, keys, hand-built engine events."""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from functools import cache
from pathlib import Path

import numpy as np
import pyrage
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from numpy.typing import NDArray

from recorderd.codecs.g711 import alaw_decode, ulaw_decode
from recorderd.events import (
    AudioBlock,
    CallFinished,
    CallRecord,
    CallStarted,
    Direction,
    DtmfDigit,
    EndReason,
    Gap,
    GapReason,
    LegRecord,
    RecordingStarted,
    Side,
)
from recorderd.store import age
from tests.conftest import PCAPS, read_frames

G711_PCAP = PCAPS / "sip-rtp-g711-pcmu-then-pcma.pcap"


@cache
def rtp_payloads(path: Path, payload_type: int) -> bytes:
    """Concatenated payloads of the RTP packets of one payload type in an Ethernet/IPv4/UDP capture.

    Deliberately naive (no reordering, one stream per type): these bytes are test audio, not a test
    of the RTP stage.
    """
    out = bytearray()
    for _, frame in read_frames(path):
        if frame[12:14] != b"\x08\x00" or frame[23] != 17:
            continue
        ihl = (frame[14] & 0x0F) * 4
        udp = frame[14 + ihl :]
        (length,) = struct.unpack_from("!H", udp, 4)
        rtp = udp[8:length]
        if len(rtp) > 12 and rtp[0] >> 6 == 2 and rtp[1] & 0x7F == payload_type:
            out += rtp[12 + 4 * (rtp[0] & 0x0F) :]
    return bytes(out)


def real_stereo(encoding: str) -> NDArray[np.int16]:
    """About 8 s of real G.711 speech from the capture as (n, 2) int16: the stream on the left, the
    same stream 0.5 s later on the right, so the channels differ."""
    if encoding == "alaw":
        mono = alaw_decode(rtp_payloads(G711_PCAP, 8))
    else:
        mono = ulaw_decode(rtp_payloads(G711_PCAP, 0))
    return np.stack([mono, np.roll(mono, 4000)], axis=1)


def new_keypair() -> tuple[str, str]:
    """(identity, recipient) made by pyrage."""
    identity = pyrage.x25519.Identity.generate()
    return str(identity), str(identity.to_public())


def write_keyfile(path: Path, identity: str) -> Path:
    path.write_text(f"# test key\n{identity}\n")
    path.chmod(0o600)
    return path


T0 = 1_717_243_200.0  # 2024-06-01T12:00:00Z


def call_started(call_id: str, ts: float = T0) -> CallStarted:
    return CallStarted(
        ts,
        call_id,
        "sip:07700900123@trunk.example;user=phone",
        "Alice Patient",
        "sip:201@pbx.example",
        "Reception",
        "192.0.2.1:5060",
        "192.0.2.2:5060",
    )


def call_record(
    call_id: str, samples: int, ts: float = T0, media: bool = True, sample_rate: int = 8000
) -> CallRecord:
    legs = (
        LegRecord(
            Side.CALLER,
            0x343DA99B,
            "192.0.2.1:4000",
            "192.0.2.2:6000",
            "PCMU",
            0,
            425,
            2,
            1,
            True,
            ts + 1.0,
            ts + 9.5,
            (Gap(1.0, 1.04, GapReason.LOSS),),
        ),
        LegRecord(
            Side.CALLEE,
            0xFFFFFFFF,
            "192.0.2.2:6000",
            "192.0.2.1:4000",
            "PCMU",
            0,
            400,
            0,
            0,
            True,
            ts + 1.0,
            ts + 9.5,
        ),
    )
    return CallRecord(
        call_id=call_id,
        direction=Direction.INBOUND,
        from_uri="sip:07700900123@trunk.example;user=phone",
        from_name="Alice Patient",
        to_uri="sip:201@pbx.example",
        to_name="Reception",
        invite_ts=ts,
        answer_ts=ts + 2.0 if media else None,
        end_ts=ts + 12.5,
        end_reason=EndReason.BYE if media else EndReason.CANCEL,
        sip_status=200 if media else 487,
        media_start_ts=ts + 1.0 if media else None,
        samples=samples,
        sample_rate=sample_rate,
        legs=legs if media else (),
        dtmf=(DtmfDigit(3.5, "5", 160, Side.CALLER),) if media else (),
        holds=((5.0, 6.0),) if media else (),
        transfers=(),
    )


def call_events(
    call_id: str,
    samples: NDArray[np.int16],
    encoding: str = "ulaw",
    ts: float = T0,
    block: int = 160 * 7,
) -> list[object]:
    """CallStarted, RecordingStarted, AudioBlocks of ``block`` frames, CallFinished."""
    events: list[object] = [
        call_started(call_id, ts),
        RecordingStarted(ts + 1.0, call_id, encoding, 8000),
    ]
    for start in range(0, len(samples), block):
        events.append(AudioBlock(ts + 1.0 + start / 8000, call_id, start, samples[start : start + block]))
    record = call_record(call_id, len(samples), ts)
    events.append(CallFinished(record.end_ts, call_id, record))
    return events


def scrypt_encrypt(plain: bytes, passphrase: str, log_n: int = 10, armored: bool = False) -> bytes:
    """An age file to a passphrase (age.md "The scrypt recipient type") at a low work factor.

    pyrage always uses a work factor that costs about two seconds; this keeps the key-file tests
    fast. The output is a valid age file: pyrage decrypts it.
    """
    file_key = os.urandom(16)
    salt = os.urandom(16)
    wrap_key = hashlib.scrypt(
        passphrase.encode(),
        salt=b"age-encryption.org/v1/scrypt" + salt,
        n=2**log_n,
        r=8,
        p=1,
        dklen=32,
    )
    body = ChaCha20Poly1305(wrap_key).encrypt(bytes(12), file_key, None)
    header = (
        b"age-encryption.org/v1\n-> scrypt " + age._b64(salt) + b" %d\n" % log_n + age._b64(body) + b"\n---"
    )
    nonce = os.urandom(16)
    payload = ChaCha20Poly1305(age._hkdf(file_key, nonce, b"payload"))
    assert len(plain) <= age.CHUNK
    data = (
        header
        + b" "
        + age._b64(age._header_mac(file_key, header))
        + b"\n"
        + nonce
        + payload.encrypt(bytes(11) + b"\x01", plain, None)
    )
    if not armored:
        return data
    text = base64.b64encode(data)
    lines = b"\n".join(text[i : i + 64] for i in range(0, len(text), 64))
    return b"-----BEGIN AGE ENCRYPTED FILE-----\n" + lines + b"\n-----END AGE ENCRYPTED FILE-----\n"
