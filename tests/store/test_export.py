from __future__ import annotations

import hashlib
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from recorderd.errors import StoreError
from recorderd.store import age
from recorderd.store.export import export_call
from recorderd.store.sink import StoreSink
from recorderd.store.store import Store
from tests.store.helpers import T0, call_events, new_keypair, real_stereo

NOW = T0 + 86400


def record(store: Store, call_id: str, samples: np.ndarray, encoding: str = "ulaw") -> str:
    sink = StoreSink(store)
    for event in call_events(call_id, samples, encoding=encoding):
        sink.handle(event)  # type: ignore[arg-type]
    sink.flush()
    return str(store.find(call_id)["id"])


@pytest.mark.parametrize(("fmt", "encoding"), [("wav", "ulaw"), ("flac", "alaw"), ("wav", "pcm16")])
def test_lossless_exports_are_sample_exact(
    store: Store, identity: str, tmp_path: Path, fmt: str, encoding: str
) -> None:
    samples = real_stereo("alaw" if encoding == "alaw" else "ulaw")
    uid = record(store, "c1@host", samples, encoding)
    out = tmp_path / f"out.{fmt}"
    result = export_call(store, "c1@host", [identity], fmt, out, "complaint 17", "manager", NOW)
    assert (result.path, result.call, result.samples, result.sample_rate) == (
        out,
        uid,
        len(samples),
        8000,
    )
    assert result.complete and result.recording_state == "complete"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert not out.with_name(out.name + ".part").exists()
    info = sf.info(str(out))
    assert (info.format, info.subtype, info.channels) == (fmt.upper(), "PCM_16", 2)
    data, rate = sf.read(str(out), dtype="int16")
    assert rate == 8000 and np.array_equal(data, samples)
    assert result.sha256 == hashlib.sha256(out.read_bytes()).hexdigest()
    (entry,) = store.index.access_log()
    assert (entry.ts, entry.os_user, entry.action, entry.call, entry.reason) == (
        NOW,
        "manager",
        f"export-{fmt}",
        uid,
        "complaint 17",
    )
    assert entry.output_sha256 == result.sha256


def test_mp3_export_at_8khz(store: Store, identity: str, tmp_path: Path) -> None:
    samples = real_stereo("ulaw")
    record(store, "c1@host", samples)
    out = tmp_path / "out.mp3"
    result = export_call(store, "c1@host", [identity], "mp3", out, "training", "manager", NOW)
    info = sf.info(str(out))
    assert (info.format, info.samplerate, info.channels) == ("MP3", 8000, 2)
    data, _ = sf.read(str(out), dtype="float64")
    assert len(data) == len(samples)  # libsndfile trims the encoder delay and padding
    # Lossy, but the same speech in each channel, time-aligned (libsndfile's 16-bit stereo MP3
    # path would fail this: export writes float).
    for channel in (0, 1):
        assert np.corrcoef(data[:, channel], samples[:, channel])[0, 1] > 0.98
    assert result.sha256 == hashlib.sha256(out.read_bytes()).hexdigest()


def test_wrong_identity_and_reason_and_format(store: Store, tmp_path: Path) -> None:
    record(store, "c1@host", real_stereo("ulaw")[:8000])
    other, _ = new_keypair()
    out = tmp_path / "out.wav"
    with pytest.raises(StoreError, match="^wrong identity: "):
        export_call(store, "c1@host", [other], "wav", out, "sar", "manager", NOW)
    assert not out.exists() and not (tmp_path / "out.wav.part").exists()
    with pytest.raises(StoreError, match="needs a reason"):
        export_call(store, "c1@host", [other], "wav", out, "  ", "manager", NOW)
    with pytest.raises(StoreError, match="unknown export format 'ogg'"):
        export_call(store, "c1@host", [other], "ogg", out, "sar", "manager", NOW)
    assert store.index.access_log() == []


def test_altered_ciphertext_is_refused(store: Store, identity: str, recipient: str, tmp_path: Path) -> None:
    record(store, "c1@host", real_stereo("ulaw")[:8000])
    call = store.find("c1@host")
    path = Path(call["recording"])
    # A perfectly valid age file to the same recipient, minted by someone holding only the public
    # key: age authenticates it; only the index digest shows the swap.
    with open(path, "wb") as f, age.AgeWriter(f, [recipient]) as forged:
        forged.write(b"not the recording")
    with pytest.raises(StoreError) as err:
        export_call(store, "c1@host", [identity], "wav", tmp_path / "o.wav", "sar", "m", NOW)
    assert str(err.value) == f"recording {path} does not match its index digest (altered?)"


def test_refuses_to_overwrite(store: Store, identity: str, tmp_path: Path) -> None:
    record(store, "c1@host", real_stereo("ulaw")[:8000])
    out = tmp_path / "out.wav"
    out.write_text("keep")
    with pytest.raises(StoreError, match="already exists; not overwriting"):
        export_call(store, "c1@host", [identity], "wav", out, "sar", "m", NOW)
    assert out.read_text() == "keep"


def test_incomplete_recording_exports_its_prefix(tmp_path: Path, recipient: str, identity: str) -> None:
    samples = real_stereo("ulaw")
    store = Store.init(tmp_path / "s", [recipient])
    sink = StoreSink(store)
    for event in call_events("crash@host", samples)[:-1]:
        sink.handle(event)  # type: ignore[arg-type]
    sink.flush()
    for active in sink._active.values():
        assert active.writer is not None
        active.writer.abandon()  # the process dies mid-call
    store.close()
    store = Store.open(tmp_path / "s")
    StoreSink(store)  # recovers
    out = tmp_path / "prefix.flac"
    result = export_call(store, "crash@host", [identity], "flac", out, "police request", "m", NOW)
    assert not result.complete and result.recording_state == "incomplete"
    prefix = (2 * age.CHUNK - 28) // 2  # two sealed chunks of stereo mu-law after the AU header
    assert result.samples == prefix
    data, _ = sf.read(str(out), dtype="int16")
    assert np.array_equal(data, samples[:prefix])
    assert store.index.access_log()[0].output_sha256 == result.sha256
    store.close()


def test_no_recording_or_still_recording(store: Store, identity: str, tmp_path: Path) -> None:
    from tests.store.helpers import call_record

    store.index.finish_call(store.new_uid(), call_record("nomedia@host", 0, media=False), "finished", None)
    with pytest.raises(StoreError, match="has no recording"):
        export_call(store, "nomedia@host", [identity], "wav", tmp_path / "a.wav", "r", "m", NOW)
    sink = StoreSink(store)
    for event in call_events("live@host", real_stereo("ulaw")[:800])[:-1]:
        sink.handle(event)  # type: ignore[arg-type]
    sink.flush()
    with pytest.raises(StoreError, match="is still being recorded"):
        export_call(store, "live@host", [identity], "wav", tmp_path / "b.wav", "r", "m", NOW)
    sink.close()
    shutil.rmtree(tmp_path / "store" / "recordings")
    with pytest.raises(StoreError):
        export_call(store, "live@host", [identity], "wav", tmp_path / "c.wav", "r", "m", NOW)


def test_empty_recordings_are_refused(store: Store, identity: str, tmp_path: Path) -> None:
    record(store, "empty@host", np.zeros((0, 2), np.int16))
    for fmt in ("wav", "flac", "mp3"):
        out = tmp_path / f"o.{fmt}"
        with pytest.raises(StoreError, match=r"holds no audio$"):
            export_call(store, "empty@host", [identity], fmt, out, "sar", "m", NOW)
        assert not out.exists() and not out.with_name(out.name + ".part").exists()
    # A crash before the first chunk was sealed leaves a header-only file.
    sink = StoreSink(store)
    for event in call_events("cut@host", real_stereo("ulaw")[:8000])[:-1]:
        sink.handle(event)  # type: ignore[arg-type]
    sink.flush()
    for active in sink._active.values():
        assert active.writer is not None
        active.writer.abandon()
    store.lock_for_writing()
    store.recover()
    with pytest.raises(StoreError, match=r"holds no audio \(it was cut before its first chunk"):
        export_call(store, "cut@host", [identity], "wav", tmp_path / "c.wav", "sar", "m", NOW)
    assert store.index.access_log() == []
