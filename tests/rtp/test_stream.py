"""RtpStream: placement by timestamp, reordering, duplicates, wraparound, loss and holes."""

from recorderd.rtp.stream import DUPLICATE_WINDOW, Kind, Outcome
from recorderd.rtp.view import RtpStream

SILENCE = b"\xff" * 160


def feed(stream: RtpStream, packets: list[tuple[int, int, float]], floor: int = 0) -> list[Outcome]:
    """Push (seq, ts, capture time) triples; capture time 0 is sample 0."""
    return [
        stream.push(seq & 0xFFFF, ts & 0xFFFFFFFF, 0, SILENCE, Kind.AUDIO, 160, now, round(now * 8000), floor)
        for seq, ts, now in packets
    ]


def positions(stream: RtpStream, before: int = 10**9) -> list[int]:
    taken = stream.take(before)
    return [] if taken is None else taken.pos.tolist()


def test_in_order_placement_by_timestamp() -> None:
    s = RtpStream(0x1234, 0.0, 0, 8000, 8000)
    feed(s, [(100 + i, 1000 + 160 * i, 0.02 * i + 0.003 * (i % 2)) for i in range(5)])
    assert positions(s) == [0, 160, 320, 480, 640]
    assert (s.packets, s.lost, s.duplicates, s.holes) == (5, 0, 0, [])


def test_reordering_within_the_window_lands_in_place() -> None:
    s = RtpStream(0x1234, 0.0, 0, 8000, 8000)
    order = [0, 2, 1, 3, 6, 4, 5]
    feed(s, [(i, 160 * i, 0.02 * n) for n, i in enumerate(order)])
    assert positions(s) == [160 * i for i in range(7)]
    assert s.lost == 0 and s.holes == []


def test_duplicates_are_counted_and_dropped() -> None:
    s = RtpStream(0x1234, 0.0, 0, 8000, 8000)
    outcomes = feed(s, [(1, 0, 0.0), (2, 160, 0.02), (2, 160, 0.021), (1, 0, 0.03)])
    assert outcomes.count(Outcome.DUPLICATE) == 2
    assert (s.packets, s.duplicates) == (2, 2)


def test_reordering_across_the_sequence_wrap() -> None:
    s = RtpStream(0x1234, 0.0, 0, 8000, 8000)
    order = [65533, 65534, 0, 65535, 1, 3, 2]
    feed(s, [(seq, 160 * ((seq - 65533) % 65536), 0.02 * n) for n, seq in enumerate(order)])
    assert positions(s) == [160 * i for i in range(7)]
    assert (s.expected, s.lost, s.duplicates) == (7, 0, 0)
    assert feed(s, [(65535, 160 * 2, 0.2)]) == [Outcome.DUPLICATE]


def test_sequence_and_timestamp_wrap() -> None:
    s = RtpStream(0x1234, 0.0, 0, 8000, 8000)
    start_ts = 0xFFFFFFFF - 200
    feed(s, [((65534 + i), start_ts + 160 * i, 0.02 * i) for i in range(4)])
    assert positions(s) == [0, 160, 320, 480]
    assert (s.expected, s.lost) == (4, 0)


def test_loss_leaves_a_hole_marked_lost() -> None:
    s = RtpStream(0x1234, 0.0, 0, 8000, 8000)
    feed(s, [(i, 160 * i, 0.02 * i) for i in (0, 1, 4, 5)])
    assert positions(s) == [0, 160, 640, 800]
    assert s.lost == 2
    assert [(h.start, h.end, h.lost) for h in s.holes] == [(320, 640, True)]


def test_silence_suppression_hole_is_not_loss() -> None:
    s = RtpStream(0x1234, 0.0, 0, 8000, 8000)
    feed(s, [(0, 0, 0.0), (1, 160, 0.02), (2, 8160, 1.02)])
    positions(s)
    assert s.lost == 0
    assert [(h.start, h.end, h.lost) for h in s.holes] == [(320, 8160, False)]


def test_packets_behind_the_floor_are_late() -> None:
    s = RtpStream(0x1234, 0.0, 0, 8000, 8000)
    feed(s, [(i, 160 * i, 0.02 * i) for i in range(10) if i != 3])
    s.take(800)
    assert feed(s, [(3, 480, 0.25)], floor=800) == [Outcome.LATE]
    assert s.late == 1


def test_timestamp_jump_resyncs_to_the_capture_clock() -> None:
    s = RtpStream(0x1234, 0.0, 0, 8000, 8000)
    feed(s, [(0, 0, 0.0), (1, 160, 0.02), (2, 5_000_000, 0.04), (3, 5_000_160, 0.06)])
    assert positions(s) == [0, 160, 320, 480]
    assert s.resyncs == 1


def test_burst_larger_than_the_dedup_window_stays_bounded() -> None:
    s = RtpStream(0x1234, 0.0, 0, 8000, 8000)
    feed(s, [(i, 160 * i, 0.02 * i) for i in range(5000)])
    assert s.table.seen.shape[1] == DUPLICATE_WINDOW
    assert s.packets == 5000 and s.lost == 0
    assert feed(s, [(4999 - DUPLICATE_WINDOW + 1, 160 * (4999 - DUPLICATE_WINDOW + 1), 100.0)]) == [
        Outcome.DUPLICATE
    ]
