"""Synthetic mirror-port captures for the benchmarks: N simultaneous G.711 calls, written with ``struct``.

``python -m bench.gen --calls N --seconds D [--rounds R] [--loss P] [--reorder P] [--vlan ID] [--seed S]
--out FILE.pcap``

Each call is one INVITE dialog between a desk phone and the practice's PBX, as a SPAN port on the
phones' access switch sees it: INVITE with an SDP offer, 100 Trying, 180 Ringing, 200 OK with the
answer, ACK, then 20 ms G.711 RTP both ways (marker bit on each stream's first packet), then BYE and
its 200 OK (messages: ``bench/sipmsg.py``; frames: ``bench/wire.py``). Even-numbered calls are outbound
(the phone calls an outside number through the PBX), odd ones inbound; PCMU and PCMA alternate in
pairs, so each codec goes both ways.

The site has N lines. Line n is one phone; it makes ``rounds`` calls of D seconds one after another
(the next INVITE 0.1-0.2 s after the previous BYE). The lines' first INVITEs are spread evenly over the
first second. Addressing: phones in 10.1.0.0/16 (signalling on 5060, RTP on a random even port in
10000-60000), the PBX at 10.0.0.10 (RTP relayed on a distinct even port per call), frames routed
through a gateway whose VRRP MAC is on the other side of every frame.

The file is written in global time order without sorting millions of objects: time advances in 20 ms
ticks; in each tick every call in its media phase sends its two packets at its own phase within the
tick plus a little jitter (phases stay clear of the tick's end, so no packet crosses into the next
tick), SIP messages are bucketed by tick as they are scheduled, and only one tick's packets are sorted
at a time. Memory is bounded by the calls, not by the length of the capture, and the same spec always
gives the same bytes.

Loss drops a packet (its sequence number is skipped); reordering holds a packet back and sends it 0.1 ms
after the next packet of the same stream, as a late path would.
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.sipmsg import SIP_PORT, Dialog, Party, ack, bye, invite, response
from bench.wire import (
    PCMA,
    PCMU,
    PCP_SIGNALLING,
    PCP_VOICE,
    PcapWriter,
    RtpLeg,
    Timed,
    ethernet,
    rtp_record_bytes,
    udp_frame,
)

VERSION = 2  # bump when the bytes for a given spec change, so cached captures are made again
TICK_US = 20_000  # RTP packetisation time (a=ptime:20)
JITTER_US = 1_000  # network jitter added to each packet, at most
REORDER_DELAY_US = 100  # a held-back packet follows the next one by this much
PHASE_US = TICK_US - JITTER_US - 2 * REORDER_DELAY_US  # a stream's send phase within its tick
MAX_PBX_PORTS = 25_000  # distinct even PBX media ports in 10000-60000
PORT_ROUNDS = 4  # a line's successive calls cycle through this many PBX media ports
GAP_US = 100_000  # a line's next INVITE follows the previous BYE by 1 to 2 times this
# The steady window starts this long after the last call's media: recorderd emits a call's first
# second of audio, and so the store opens its recording, 1.2 to 1.45 s after the media starts.
SETTLE_TICKS = 1_500_000 // TICK_US

PBX_IP = ipaddress.IPv4Address("10.0.0.10").packed
GATEWAY_MAC = bytes.fromhex("00005e000101")  # VRRP virtual router 1
PHONE_OUI = bytes.fromhex("805ec0")  # a desk-phone vendor's OUI
CODECS = {"PCMU": PCMU, "PCMA": PCMA}


@dataclass(frozen=True, slots=True)
class CaptureSpec:
    """What to generate. ``loss`` and ``reorder`` are per-packet probabilities."""

    calls: int
    seconds: float
    loss: float = 0.0
    reorder: float = 0.0
    vlan: int | None = None
    seed: int = 1
    codec: str = "mixed"  # "PCMU", "PCMA" or "mixed" (alternating in pairs of calls)
    rounds: int = 1  # calls each line makes, one after another

    @property
    def total_calls(self) -> int:
        return self.calls * self.rounds

    @property
    def packets_per_stream(self) -> int:
        return max(1, round(self.seconds * 1_000_000 / TICK_US))

    def name(self) -> str:
        """A file name that identifies the spec, for caching."""
        parts = [f"calls{self.calls}", f"s{self.seconds:g}", f"seed{self.seed}"]
        if self.rounds != 1:
            parts.append(f"rounds{self.rounds}")
        if self.loss:
            parts.append(f"loss{self.loss:g}")
        if self.reorder:
            parts.append(f"reorder{self.reorder:g}")
        if self.vlan is not None:
            parts.append(f"vlan{self.vlan}")
        if self.codec != "mixed":
            parts.append(self.codec.lower())
        return "-".join(parts) + ".pcap"


@dataclass(frozen=True, slots=True)
class Window:
    """The steady part of a one-round capture: from 1.5 s after the last call's media started (every
    recording open) to the first BYE, so every call is in its media phase and there is no signalling.

    Frames ``first_frame`` .. ``end_frame - 1`` start at byte ``first_byte`` and end at ``end_byte`` of
    the file; all are RTP records of ``record_bytes`` each (pcap record header included).
    """

    first_frame: int
    end_frame: int
    first_byte: int
    end_byte: int
    record_bytes: int

    @property
    def frames(self) -> int:
        return self.end_frame - self.first_frame


@dataclass(frozen=True, slots=True)
class CaptureStats:
    frames: int
    rtp_packets: int
    sip_messages: int
    bytes: int
    window: Window | None = None


# ---------------------------------------------------------------------------------------------------
# Calls and their schedule


class Call:
    """One call: its dialog, the two RTP legs and when everything happens (microseconds)."""

    __slots__ = (
        "line", "turn", "dialog", "phone_is_caller", "links", "legs", "invite_us", "first_tick", "phase",
        "packets",
    )  # fmt: skip

    def __init__(
        self, line: int, turn: int, spec: CaptureSpec, phone: bytes, ports: tuple[int, int], invite_us: int,
        rng: random.Random,
    ) -> None:  # fmt: skip
        self.line, self.turn = line, turn
        index = turn * spec.calls + line
        self.phone_is_caller = index % 2 == 0  # half the calls outbound, half inbound
        pt = CODECS.get(spec.codec, PCMU if index // 2 % 2 == 0 else PCMA)  # both codecs both ways
        self.dialog = _dialog(line, phone, ports, self.phone_is_caller, pt, rng)
        mac = PHONE_OUI + phone[1:]
        self.links = {  # by "sent by the phone?": link headers for signalling
            True: ethernet(mac, GATEWAY_MAC, spec.vlan, PCP_SIGNALLING),
            False: ethernet(GATEWAY_MAC, mac, spec.vlan, PCP_SIGNALLING),
        }
        phone_side = 0 if self.phone_is_caller else 1  # which tone (caller's or callee's) it sends
        to_pbx = ethernet(mac, GATEWAY_MAC, spec.vlan, PCP_VOICE)
        to_phone = ethernet(GATEWAY_MAC, mac, spec.vlan, PCP_VOICE)
        self.legs = (
            RtpLeg(to_pbx, phone, ports[0], PBX_IP, ports[1], pt, phone_side, rng),
            RtpLeg(to_phone, PBX_IP, ports[1], phone, ports[0], pt, 1 - phone_side, rng),
        )
        self.invite_us = invite_us
        ringing_us = 150_000 + rng.randrange(100_000)
        self.first_tick = -(-(invite_us + ringing_us + 20_000) // TICK_US)
        self.phase = rng.randrange(PHASE_US)
        self.packets = spec.packets_per_stream

    @property
    def last_tick(self) -> int:
        return self.first_tick + self.packets - 1

    def frame(self, message: bytes, from_caller: bool, ip_id: int) -> bytes:
        d = self.dialog
        sender, receiver = (d.caller, d.callee) if from_caller else (d.callee, d.caller)
        from_phone = from_caller == self.phone_is_caller
        return udp_frame(self.links[from_phone], sender.ip, SIP_PORT, receiver.ip, SIP_PORT, message, ip_id)

    def setup(self, rng: random.Random) -> list[tuple[int, bytes]]:
        """INVITE .. ACK with their capture times."""
        d, t = self.dialog, self.invite_us
        answer = (self.first_tick * TICK_US) - 20_000 - rng.randrange(10_000)
        plan = [
            (t, invite(d), True),
            (t + 2_000 + rng.randrange(3_000), response(d, 100, "Trying"), False),
            (t + 40_000 + rng.randrange(20_000), response(d, 180, "Ringing"), False),
            (answer, response(d, 200, "OK"), False),
            (answer + 3_000, ack(d, f"{rng.getrandbits(48):012x}"), True),
        ]
        return [(at, self.frame(msg, caller, rng.getrandbits(16))) for at, msg, caller in plan]

    def teardown(self, rng: random.Random) -> list[tuple[int, bytes]]:
        """BYE and 200 OK after the last media tick; caller or callee hangs up."""
        t = (self.last_tick + 1) * TICK_US + self.phase + 5_000
        by_caller = rng.random() < 0.5
        request, ok = bye(self.dialog, f"{rng.getrandbits(48):012x}", by_caller)
        return [
            (t, self.frame(request, by_caller, rng.getrandbits(16))),
            (t + 3_000, self.frame(ok, not by_caller, rng.getrandbits(16))),
        ]


def _dialog(
    line: int, phone: bytes, ports: tuple[int, int], phone_is_caller: bool, pt: int, rng: random.Random
) -> Dialog:
    extension = f"{2000 + line % 8000}"
    outside = f"+44{rng.randrange(10**9, 10**10)}"
    desk = Party(extension, f"Desk {extension}", phone, ports[0])
    trunk = Party(outside, "", PBX_IP, ports[1])
    caller, callee = (desk, trunk) if phone_is_caller else (trunk, desk)
    return Dialog(
        call_id=f"{rng.getrandbits(96):024x}@{caller.host}",
        caller=caller,
        callee=callee,
        from_tag=f"{rng.getrandbits(40):010x}",
        to_tag=f"{rng.getrandbits(40):010x}",
        invite_branch=f"{rng.getrandbits(48):012x}",
        session=rng.randrange(10**6, 10**9),
        pt=pt,
    )


def _phone_addresses(count: int, rng: random.Random) -> list[bytes]:
    """Distinct 10.1.x.y host addresses (no .0 or .255 last octet)."""
    hosts = [k for k in range(256, 65280) if 0 < k & 0xFF < 255]
    return [bytes((10, 1, k >> 8, k & 0xFF)) for k in rng.sample(hosts, count)]


class Site:
    """The practice's lines: line ``n`` is one phone that makes ``rounds`` calls one after another.

    The PBX gives each call its own media port; a line's successive calls cycle through
    :data:`PORT_ROUNDS` ports, so calls that overlap in time (a line's next call may start before
    another line's previous one has ended) never share one.
    """

    def __init__(self, spec: CaptureSpec, rng: random.Random) -> None:
        turns = min(spec.rounds, PORT_ROUNDS)
        if not 1 <= spec.calls * turns <= MAX_PBX_PORTS or spec.rounds < 1:
            limit = MAX_PBX_PORTS // turns
            raise ValueError(f"calls must be 1..{limit} with {spec.rounds} round(s), got {spec.calls}")
        self.spec = spec
        self.phones = _phone_addresses(spec.calls, rng)
        self.pbx_ports = rng.sample(range(10_000, 60_000, 2), spec.calls * turns)

    def call(self, line: int, turn: int, invite_us: int, rng: random.Random) -> Call:
        pbx_port = self.pbx_ports[turn % PORT_ROUNDS * self.spec.calls + line]
        ports = (rng.randrange(5_000, 30_000) * 2, pbx_port)
        return Call(line, turn, self.spec, self.phones[line], ports, invite_us, rng)

    def first_calls(self, rng: random.Random) -> list[Call]:
        """Round 0: the lines' first INVITEs spread evenly over the first second."""
        n = self.spec.calls
        return [self.call(line, 0, int((line + rng.random()) * 1_000_000 / n), rng) for line in range(n)]

    def next_call(self, call: Call, after_us: int, rng: random.Random) -> Call | None:
        if call.turn + 1 >= self.spec.rounds:
            return None
        return self.call(call.line, call.turn + 1, after_us + GAP_US + rng.randrange(GAP_US), rng)


# ---------------------------------------------------------------------------------------------------
# The tick loop and the file


class Schedule:
    """What happens in which tick: calls whose INVITE is due, calls whose media starts, SIP frames."""

    def __init__(self) -> None:
        self.starting: dict[int, list[Call]] = {}
        self.entering: dict[int, list[Call]] = {}
        self.signalling: dict[int, Timed] = {}

    def __bool__(self) -> bool:
        return bool(self.starting or self.entering or self.signalling)

    def admit(self, call: Call) -> None:
        self.starting.setdefault(call.invite_us // TICK_US, []).append(call)
        self.entering.setdefault(call.first_tick, []).append(call)

    def send(self, items: Timed) -> None:
        for at, frame in items:
            self.signalling.setdefault(at // TICK_US, []).append((at, frame))


def _media_tick(calls: list[Call], tick: int, spec: CaptureSpec, rng: random.Random) -> Timed:
    """Every active call's two packets for ``tick``, with jitter, loss and reordering applied."""
    items: Timed = []
    base = tick * TICK_US
    unruly = spec.loss > 0 or spec.reorder > 0
    for call in calls:
        k = tick - call.first_tick
        at = base + call.phase
        for leg in call.legs:
            frame = leg.packet(k)
            t = at + int(rng.random() * JITTER_US)
            if unruly:
                _unruly(items, leg, frame, t, 0 < k < call.packets - 1, spec, rng)
            else:
                items.append((t, frame))
    return items


def _unruly(
    items: Timed, leg: RtpLeg, frame: bytes, t: int, inner: bool, spec: CaptureSpec, rng: random.Random
) -> None:
    """Lose, hold back or send ``frame``; a held packet goes out just after the stream's next one.
    Only ``inner`` packets (neither a stream's first nor its last) are held back."""
    held, leg.held = leg.held, None
    if rng.random() < spec.loss:
        pass
    elif inner and held is None and rng.random() < spec.reorder:
        leg.held = frame
        return
    else:
        items.append((t, frame))
    if held is not None:
        items.append((t + REORDER_DELAY_US, held))


def _end_calls(
    active: list[Call], tick: int, site: Site, schedule: Schedule, rng: random.Random
) -> list[Call]:
    """Hang up the calls whose media ended at ``tick`` (and admit their lines' next calls)."""
    still = []
    for call in active:
        if call.last_tick != tick:
            still.append(call)
            continue
        bye_frames = call.teardown(rng)
        schedule.send(bye_frames)
        following = site.next_call(call, bye_frames[-1][0], rng)
        if following is not None:
            schedule.admit(following)
    return still


def generate(path: Path, spec: CaptureSpec) -> CaptureStats:
    """Write the capture for ``spec`` to ``path`` (through ``<path>.part``, renamed when complete)."""
    rng = random.Random(spec.seed)
    site = Site(spec, rng)
    schedule = Schedule()
    first = site.first_calls(rng)
    for call in first:
        schedule.admit(call)
    # Signalling happens only before the last call's media starts and after the first call's ends.
    steady = (max(c.first_tick for c in first) + SETTLE_TICKS, min(c.last_tick for c in first) + 1)
    marks: dict[int, tuple[int, int]] = {}  # tick -> (frames, bytes) written before it
    active: list[Call] = []
    rtp = sip = 0
    part = path.with_name(path.name + ".part")
    with open(part, "wb", buffering=1 << 20) as file:
        writer = PcapWriter(file)
        tick = 0
        while schedule or active:
            if tick in steady:
                marks[tick] = (writer.frames, writer.bytes)
            for call in schedule.starting.pop(tick, ()):
                schedule.send(call.setup(rng))
            active += schedule.entering.pop(tick, ())
            items = _media_tick(active, tick, spec, rng)
            rtp += len(items)
            if any(c.last_tick == tick for c in active):
                active = _end_calls(active, tick, site, schedule, rng)
            messages = schedule.signalling.pop(tick, [])
            sip += len(messages)
            writer.write(items + messages)
            tick += 1
    part.rename(path)
    window = _window(spec, marks, steady, first[0].legs[0].link)
    return CaptureStats(writer.frames, rtp, sip, writer.bytes, window)


def _window(
    spec: CaptureSpec, marks: dict[int, tuple[int, int]], steady: tuple[int, int], link: bytes
) -> Window | None:
    """The steady window, when there is one: a single round, with calls longer than the ramp up."""
    start, end = steady
    if spec.rounds != 1 or start >= end:
        return None
    (first_frame, first_byte), (end_frame, end_byte) = marks[start], marks[end]
    return Window(first_frame, end_frame, first_byte, end_byte, rtp_record_bytes(link))


# ---------------------------------------------------------------------------------------------------
# Command line


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.gen", description=__doc__.split("\n", 1)[0])
    p.add_argument("--calls", type=int, required=True, help="simultaneous calls")
    p.add_argument("--seconds", type=float, required=True, help="media length of each call")
    p.add_argument("--rounds", type=int, default=1, help="calls each line makes one after another")
    p.add_argument("--loss", type=float, default=0.0, help="probability that an RTP packet is lost")
    p.add_argument("--reorder", type=float, default=0.0, help="probability that one arrives late")
    p.add_argument("--vlan", type=int, help="802.1Q VLAN ID to tag every frame with")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--codec", choices=("mixed", "PCMU", "PCMA"), default="mixed")
    p.add_argument("--out", type=Path, required=True, help="pcap file to write")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.vlan is not None and not 0 < args.vlan < 4095:
        print("bench.gen: --vlan must be 1..4094", file=sys.stderr)
        return 2
    spec = CaptureSpec(
        args.calls, args.seconds, args.loss, args.reorder, args.vlan, args.seed, args.codec, args.rounds
    )
    try:
        stats = generate(args.out, spec)
    except ValueError as err:
        print(f"bench.gen: {err}", file=sys.stderr)
        return 2
    rtp, sip = stats.rtp_packets, stats.sip_messages
    print(f"{args.out}: {stats.frames} frames ({rtp} RTP, {sip} SIP), {stats.bytes} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
