"""Regenerate the crafted test captures and their ground truth, ``expected.json``.

    .venv/bin/python pcaps/crafted/make.py            # writes into pcaps/crafted/
    .venv/bin/python pcaps/crafted/make.py --out DIR  # writes elsewhere (the reproducibility test)

Every file is built by scapy from fixed seeds and fixed timestamps (the capture clock starts at
2026-01-05T09:00:00Z), so two runs give byte-identical files. Nothing is sent on any network: frames
are only written with scapy's PcapWriter, and every frame has explicit MAC addresses.

This generator is an independent oracle for recorderd: it does not import recorderd, and
``expected.json`` is written from what the generator put into each file, never from parsing it.
The scenarios live in ``craft_scen_net.py`` and ``craft_scen_sip.py``; ``pcaps/README.md`` has one
row per file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from random import Random
from typing import Any

from craft_calls import Scenario
from craft_scen_net import (
    ipv4_fragmented_invite,
    ipv6_call,
    linktype_call,
    nat_symmetric_rtp,
    tcp_sip_split,
    vlan_qinq_call,
)
from craft_scen_sip import (
    auth_407_refer,
    busy_486,
    cancel_before_answer,
    hold_resume_reinvite,
    missing_bye,
    overlapping_calls,
    rtp_reorder_dup_loss,
    ssrc_change_dtmf,
)
from craft_wire import (
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    write_pcap,
)

HERE = Path(__file__).resolve().parent
EPOCH = "2026-01-05T09:00:00Z"
LINKTYPES_SEED = 1011


def _linktype(file: str, linktype: int) -> Callable[[Random], Scenario]:
    def build(rng: Random) -> Scenario:
        return linktype_call(rng, file, linktype)

    return build


# (seed, builder): every file has its own generator, so adding a file never changes the others.
BUILDERS: list[tuple[int, Callable[[Random], Scenario]]] = [
    (1001, vlan_qinq_call),
    (1002, ipv6_call),
    (1003, ipv4_fragmented_invite),
    (1004, rtp_reorder_dup_loss),
    (1005, hold_resume_reinvite),
    (1006, busy_486),
    (1007, cancel_before_answer),
    (1008, missing_bye),
    (1009, overlapping_calls),
    (1010, tcp_sip_split),
    (LINKTYPES_SEED, _linktype("linktypes-sll.pcap", LINKTYPE_LINUX_SLL)),
    (LINKTYPES_SEED, _linktype("linktypes-sll2.pcap", LINKTYPE_LINUX_SLL2)),
    (LINKTYPES_SEED, _linktype("linktypes-null.pcap", LINKTYPE_NULL)),
    (LINKTYPES_SEED, _linktype("linktypes-raw.pcap", LINKTYPE_RAW)),
    (1012, nat_symmetric_rtp),
    (1013, ssrc_change_dtmf),
    (1014, auth_407_refer),
]

SCHEMA = {
    "files.<name>.tshark": "what tshark 4.0 should report: frames; sip_messages (each SIP message "
    "once: a fragmented or TCP-segmented message counts once, a duplicated fragment or "
    "retransmitted TCP segment adds nothing); requests by method and responses by status; "
    "rtp_streams, one per (src, dst, SSRC), with packets captured including duplicates",
    "calls[].end": "bye | cancel | rejected | rtp-timeout",
    "calls[].sip_status": "final status of the INVITE that made the call (after any auth retry)",
    "calls[].auth_challenges": "401/407 answers to earlier attempts of the same INVITE",
    "calls[].invite_time, answer_time, end_time": "capture times (UNIX seconds) of the INVITE, "
    "the 200 OK, and the BYE/CANCEL/final error; end_time is null when the call just stops",
    "calls[].tones": "sine frequency in Hz each direction carries (amplitude 8000, 8 kHz)",
    "calls[].holds[]": "start/end: capture times of the hold and resume re-INVITEs; "
    "start_answered/end_answered: of their 200 OKs",
    "streams[]": "one per (SSRC, src, dst); direction is caller->callee or callee->caller",
    "streams[].packets": "unique RTP packets captured (all payload types of the SSRC)",
    "streams[].captured": "RTP packets captured including duplicates",
    "streams[].lost": "sequence numbers sent but never captured",
    "streams[].payload_sha256": "SHA-256 of the concatenated payloads of the unique captured "
    "packets of the audio payload type (not telephone-event, not CN) in sending order "
    "(rollover-extended sequence order)",
    "streams[].samples": "audio samples in those payloads (one byte per G.711 sample)",
    "streams[].first_time, last_time": "capture times of the first and last packet captured",
    "calls[].dtmf_events[]": "RFC 4733 events sent: time of the first event packet, its RTP "
    "timestamp, final duration",
}


def build_all(out: Path) -> dict[str, Any]:
    """Write every capture into ``out``; return the contents of expected.json."""
    files: dict[str, Any] = {}
    for seed, builder in BUILDERS:
        scenario = builder(Random(seed))
        path = out / scenario.file
        count = write_pcap(str(path), scenario.linktype, scenario.cap.ordered_frames())
        data = path.read_bytes()
        files[scenario.file] = {
            "scenario": " ".join(scenario.summary.split()),
            "seed": seed,
            "linktype": scenario.linktype,
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "tshark": scenario.cap.tshark(count),
            "calls": [call.to_json() for call in scenario.calls],
        }
    return {
        "generator": "pcaps/crafted/make.py (scapy; does not import recorderd)",
        "epoch": EPOCH,
        "schema": SCHEMA,
        "files": files,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=HERE, help="output directory")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    expected = build_all(args.out)
    text = json.dumps(expected, indent=1, sort_keys=False) + "\n"
    (args.out / "expected.json").write_text(text, encoding="utf-8")
    for name, entry in expected["files"].items():
        print(f"{name:32} {entry['bytes']:7d} bytes  {entry['tshark']['frames']:4d} frames")
    return 0


if __name__ == "__main__":
    sys.exit(main())
