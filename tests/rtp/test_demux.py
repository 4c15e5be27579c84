from recorderd.events import Side
from recorderd.rtp.demux import MediaMap

A = bytes([192, 0, 2, 1])
B = bytes([192, 0, 2, 2])
NAT = bytes([203, 0, 113, 7])


def test_destination_names_the_other_party_and_source_the_owner() -> None:
    m = MediaMap()
    m.bind("c1", Side.CALLER, A, 4000, 0.0)
    m.bind("c1", Side.CALLEE, B, 5000, 0.0)
    assert m.lookup(B, 5000, A, 4000) == ("c1", Side.CALLEE)
    assert m.lookup(A, 4000, B, 5000) == ("c1", Side.CALLER)


def test_symmetric_rtp_from_behind_nat_is_latched_by_source() -> None:
    m = MediaMap()
    m.bind("c1", Side.CALLER, bytes([10, 0, 0, 5]), 4000, 0.0)
    m.bind("c1", Side.CALLEE, B, 5000, 0.0)
    assert m.lookup(NAT, 61000, B, 5000) == ("c1", Side.CALLER)  # caller's voice to the callee
    assert m.lookup(B, 5000, NAT, 61000) == ("c1", Side.CALLEE)  # callee's voice back through NAT
    assert m.lookup(NAT, 61001, A, 9) is None


def test_moved_media_lingers_then_expires() -> None:
    m = MediaMap(linger=5.0)
    m.bind("c1", Side.CALLER, A, 4000, 0.0)
    m.bind("c1", Side.CALLER, A, 4002, 10.0)
    assert m.lookup(B, 1, A, 4000) == ("c1", Side.CALLEE)
    m.expire(14.9)
    assert m.lookup(B, 1, A, 4000) is not None
    m.expire(15.0)
    assert m.lookup(B, 1, A, 4000) is None
    assert m.lookup(B, 1, A, 4002) == ("c1", Side.CALLEE)


def test_unbind_call_and_bound() -> None:
    m = MediaMap(max_bindings=2)
    assert m.bind("c1", Side.CALLER, A, 1, 0.0)
    assert m.bind("c2", Side.CALLER, A, 2, 0.0)
    assert not m.bind("c3", Side.CALLER, A, 3, 0.0)
    m.unbind_call("c1")
    assert len(m) == 1
    assert m.bind("c3", Side.CALLER, A, 3, 0.0)
    # an endpoint reused by a later call belongs to that call; ending the old one leaves it alone
    m.bind("c4", Side.CALLEE, A, 2, 1.0)
    m.unbind_call("c2")
    assert m.lookup(B, 9, A, 2) == ("c4", Side.CALLER)
