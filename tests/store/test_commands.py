"""The administration commands through ``recorderd.cli.main``, as a practice manager would run them."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from recorderd.cli import main
from tests.conftest import PCAPS, new_store

CallArgs = tuple[Path, Path]


@pytest.fixture
def site(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> CallArgs:
    store, identity = new_store(tmp_path)
    assert "audit signing public key: " in capsys.readouterr().out
    assert main(["replay", str(PCAPS / "sip-dtmf2-rfc2833-603.pcap"), "--store", str(store), "--quiet"]) == 0
    return store, identity


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_search_hold_erase_audit_verify(site: CallArgs, capsys: pytest.CaptureFixture[str]) -> None:
    store, _ = site
    s = ("--store", str(store))
    status, out, _ = run(capsys, "search", *s, "--number", "sip:2502@192.168.105.105", "--json")
    calls = json.loads(out)
    assert status == 0 and sorted(c["call_id"] for c in calls) == [
        "25672@192.168.105.110",
        "5514@192.168.105.110",
    ]
    uid = next(c["id"] for c in calls if c["recording"])
    status, out, _ = run(capsys, "search", *s, "--extension", "2504", "--since", "2005-09-09T12:03:10")
    assert status == 0 and out.startswith(uid) and out.count("\n") == 1

    assert run(capsys, "hold", "add", uid, *s, "--reason", "complaint 3", "--until", "2099-01-01")[0] == 0
    status, _, err = run(capsys, "erase", uid, *s, "--reason", "erasure request")
    assert status == 1 and f"recorderd: error: call {uid} is under hold 1 ('complaint 3'" in err
    status, out, _ = run(capsys, "hold", "list", *s, "--json")
    assert [(h["id"], h["call"], h["active"]) for h in json.loads(out)] == [(1, uid, True)]
    assert run(capsys, "hold", "release", "1", *s, "--reason", "closed")[0] == 0
    status, out, _ = run(capsys, "erase", uid, *s, "--reason", "erasure request")
    assert status == 0 and out.startswith(f"erased call {uid}")

    status, out, _ = run(capsys, "audit", "show", *s, "--json")
    assert [e["action"] for e in json.loads(out)] == ["hold-add", "hold-release", "erase"]
    status, out, _ = run(capsys, "audit", "verify", *s)
    assert status == 0 and out == "audit log intact: 3 entries, head signed at entry 3\n"
    status, out, _ = run(capsys, "audit", "show", *s, "--head")
    assert out.startswith("3 ") and len(out.split()[1]) == 64
    status, out, _ = run(capsys, "verify", *s)
    assert status == 0 and out.endswith("0 problem(s)\n")

    conn = sqlite3.connect(store / "index.sqlite")
    conn.execute("DROP TRIGGER audit_no_delete")
    conn.execute("DELETE FROM audit WHERE seq = 2")
    conn.commit()
    conn.close()
    status, _, err = run(capsys, "audit", "verify", *s)
    assert status == 1
    assert (
        err == "recorderd: error: audit log check failed:"
        " audit entry 2 is missing (the chain jumps from 1 to 3)\n"
    )
    status, out, _ = run(capsys, "verify", *s, "--json")
    assert status == 1 and json.loads(out)["problems"] == [
        "audit: audit entry 2 is missing (the chain jumps from 1 to 3)"
    ]


def test_sar_and_export_are_audited(
    site: CallArgs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store, identity = site
    s = ("--store", str(store))
    status, out, _ = run(
        capsys,
        "sar",
        *s,
        "--number",
        "2502",
        "--identity",
        str(identity),
        "--reason",
        "SAR 1",
        "--out",
        str(tmp_path / "b"),
    )
    assert status == 0 and "2 call(s), 1 recording(s)" in out
    assert "no recording" in out  # the rejected call is listed, with why it has no audio
    status, out, _ = run(
        capsys,
        "export",
        "25672@192.168.105.110",
        *s,
        "--identity",
        str(identity),
        "--reason",
        "complaint",
        "--out",
        str(tmp_path / "c.wav"),
    )
    assert status == 0
    status, out, _ = run(capsys, "audit", "show", *s, "--json")
    assert [e["action"] for e in json.loads(out)] == ["sar-wav", "sar-bundle", "export-wav"]


def test_sweep_with_a_config(site: CallArgs, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store, _ = site
    config = tmp_path / "site.toml"
    config.write_text('[site]\ndefault_region = "GB"\n[retention]\ndefault = "6 months"\n')
    s = ("--store", str(store), "--config", str(config))
    status, out, _ = run(capsys, "sweep", *s, "--dry-run")
    assert status == 0 and out.startswith("would delete 2 call(s); 0 kept by a hold")  # recorded in 2005
    assert run(capsys, "sweep", *s)[1].startswith("deleted 2 call(s)")
    assert run(capsys, "sweep", *s)[1].startswith("deleted 0 call(s)")
    assert run(capsys, "verify", "--store", str(store))[0] == 0
    config.write_text('[retention]\ndefault = "six months"\n')
    status, _, err = run(capsys, "sweep", *s)
    assert status == 1 and err.startswith(f"recorderd: error: {config}: retention.default: expected a period")


def test_tag_commands_search_and_sweep(
    site: CallArgs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store, _ = site
    s = ("--store", str(store))
    status, out, _ = run(capsys, "calls", *s, "--json")
    calls = {c["call_id"]: c for c in json.loads(out)}
    assert status == 0 and all(c["tags"] == [] for c in calls.values())
    uid = calls["25672@192.168.105.110"]["id"]

    status, out, _ = run(
        capsys, "tag", "add", "25672@192.168.105.110", "training", *s, "--reason", "induction"
    )
    assert status == 0 and out == f"added tag 'training' to call {uid}\n"
    status, _, err = run(capsys, "tag", "add", uid, "Training", *s, "--reason", "x")
    assert status == 1
    assert err == (
        "recorderd: error: 'Training' is not a tag: expected 1 to 32 lowercase letters, digits or '-'\n"
    )
    status, _, err = run(capsys, "tag", "add", uid, "training", *s, "--reason", "x")
    assert status == 1 and err == f"recorderd: error: call {uid} already has tag 'training'\n"
    assert run(capsys, "tag", "add", uid, "complaint", *s, "--reason", "C-4")[0] == 0

    status, out, _ = run(capsys, "tag", "list", *s, "--json")
    assert [(t["call"], t["tag"]) for t in json.loads(out)] == [(uid, "complaint"), (uid, "training")]
    status, out, _ = run(capsys, "tag", "list", *s, "--call", uid)
    assert out.splitlines()[0].startswith(f"{uid}  complaint ") and len(out.splitlines()) == 2
    status, out, _ = run(capsys, "search", *s, "--tag", "training", "--json")
    assert [(c["id"], c["tags"]) for c in json.loads(out)] == [(uid, ["complaint", "training"])]
    status, out, _ = run(capsys, "search", *s, "--tag", "training")
    assert out.startswith(uid) and out.endswith("  [complaint, training]\n")

    status, out, _ = run(capsys, "tag", "remove", uid, "complaint", *s, "--reason", "closed")
    assert status == 0 and out == f"removed tag 'complaint' from call {uid}\n"
    status, _, err = run(capsys, "tag", "remove", uid, "complaint", *s, "--reason", "closed")
    assert status == 1 and err == f"recorderd: error: call {uid} has no tag 'complaint'\n"

    # The captures are from 2005: a 6-month default takes the untagged call, the training tag's
    # 100 years keeps the tagged one.
    config = tmp_path / "site.toml"
    config.write_text('[retention]\ndefault = "6 months"\n[retention.tags]\ntraining = "100 years"\n')
    status, out, _ = run(capsys, "sweep", *s, "--config", str(config))
    assert status == 0 and out.startswith("deleted 1 call(s)") and uid not in out
    status, out, _ = run(capsys, "audit", "show", *s, "--json")
    entries = json.loads(out)
    assert [(e["action"], e["reason"], json.loads(e["detail"]).get("tag")) for e in entries] == [
        ("tag-add", "induction", "training"),
        ("tag-add", "C-4", "complaint"),
        ("tag-remove", "closed", "complaint"),
        ("retention-delete", "retention period of 6 months (unknown calls) has passed", None),
    ]
    assert run(capsys, "audit", "verify", *s)[0] == 0

    config.write_text('[retention.tags]\ntraining = "forever"\n')
    status, _, err = run(capsys, "sweep", *s, "--config", str(config))
    assert status == 1
    assert err.startswith(f"recorderd: error: {config}: retention.tags.training: expected a period like")
