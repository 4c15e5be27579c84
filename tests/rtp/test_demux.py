from hypothesis import given, settings
from hypothesis import strategies as st

from recorderd.events import Side
from recorderd.rtp.demux import MediaMap, ipv4_endpoint, ipv4_key

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
    m.bind("c1", Side.CALLER, A, 4000, 0.0, "caller 1 INVITE")
    m.bind("c1", Side.CALLER, A, 4002, 10.0, "caller 2 INVITE")
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


def test_one_offer_seen_on_two_proxy_hops_binds_both_endpoints() -> None:
    relay = bytes([198, 51, 100, 1])
    m = MediaMap(linger=5.0)
    m.bind("c1", Side.CALLER, A, 4000, 0.0, "caller 1 INVITE")  # the phone's SDP, first hop
    m.bind("c1", Side.CALLER, relay, 30000, 0.01, "caller 1 INVITE")  # rewritten by the relay
    m.expire(100.0)
    assert m.lookup(relay, 30002, A, 4000) == ("c1", Side.CALLEE)
    assert m.lookup(B, 5000, relay, 30000) == ("c1", Side.CALLEE)
    # a re-INVITE through both hops again keeps both; one that moves only the relay side drops the rest
    m.bind("c1", Side.CALLER, A, 4000, 200.0, "caller 2 INVITE")
    m.bind("c1", Side.CALLER, relay, 30000, 200.01, "caller 2 INVITE")
    m.expire(300.0)
    assert m.lookup(B, 1, A, 4000) and m.lookup(B, 1, relay, 30000)
    m.bind("c1", Side.CALLER, relay, 30010, 400.0, "caller 3 INVITE")
    m.expire(406.0)
    assert m.lookup(B, 1, A, 4000) is None and m.lookup(B, 1, relay, 30000) is None
    assert m.lookup(B, 1, relay, 30010) == ("c1", Side.CALLEE)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["bind", "unbind", "expire"]),
            st.sampled_from(["c1", "c2", "c3"]),
            st.sampled_from([Side.CALLER, Side.CALLEE]),
            st.sampled_from([bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]), bytes(15) + b"\x01"]),
            st.integers(4000, 4003),
            st.sampled_from(["t1", "t2"]),
        ),
        max_size=40,
    )
)
def test_ipv4_keys_and_fresh_follow_the_bindings(steps: list[tuple[str, str, Side, bytes, int, str]]) -> None:
    """The integer keys the engine's batch probes are exactly the bound IPv4 endpoints, and every
    IPv4 endpoint newly bound since the last take_fresh is in it."""
    media, now, fresh = MediaMap(linger=1.0), 0.0, set()
    for n, (action, call, side, ip, port, transaction) in enumerate(steps):
        now += 0.5
        before = set(media.ipv4_keys)
        if action == "bind":
            media.bind(call, side, ip, port, now, transaction)
        elif action == "unbind":
            media.unbind_call(call)
        else:
            media.expire(now)
        fresh |= media.ipv4_keys - before
        bound = {ipv4_key(e) for e in media._bindings} - {None}
        assert media.ipv4_keys == bound
        if n % 3 == 2:
            taken = media.take_fresh()
            assert taken is not None and fresh <= set(taken)
            fresh = set()
    assert ipv4_key((bytes([10, 0, 0, 2]), 4001)) == (10 << 24 | 2) << 16 | 4001
    assert ipv4_key((bytes(16), 4001)) is None
    assert ipv4_endpoint((10 << 24 | 2) << 16 | 4001) == (bytes([10, 0, 0, 2]), 4001)
