"""The media map: which call and which party an RTP packet belongs to, from the negotiated SDP.

An SDP offer or answer (RFC 3264) tells where its author *receives* media. So a packet sent to a known
endpoint carries the voice of the other party, and, because nearly every phone sends from the port it
receives on (symmetric RTP, RFC 4961), a packet sent *from* a known endpoint carries the voice of the
endpoint's owner. The destination is the stronger evidence and is tried first; the source lets us follow
a party behind NAT whose packets come from an address its SDP never named.

A party may have several current endpoints: a proxy with a media relay forwards one offer with its
SDP rewritten, and the mirror sees both hops' versions, which are the same offer/answer transaction.
A new transaction (a re-INVITE or UPDATE that may move media) replaces the party's current endpoints;
the old ones stay bound for ``linger`` seconds of capture time, so packets still in flight are not
lost. Keys are raw address bytes and the port, so a lookup costs two dictionary probes and no
formatting.

The map also keeps its IPv4 endpoints as integers (address << 16 | port, :func:`ipv4_key`) and the
ones bound since the engine last asked (:meth:`MediaMap.take_fresh`), so that the engine can tell
whole batches of RTP-looking packets that no call's SDP names apart without a probe per packet.
"""

from __future__ import annotations

from dataclasses import dataclass

from recorderd.events import Side

Endpoint = tuple[bytes, int]
MAX_FRESH = 4096  # new IPv4 endpoints remembered between two take_fresh calls; beyond, "all changed"


def ipv4_key(endpoint: Endpoint) -> int | None:
    """``address << 16 | port`` of an IPv4 endpoint, None for IPv6."""
    ip, port = endpoint
    return int.from_bytes(ip, "big") << 16 | port if len(ip) == 4 else None


def ipv4_endpoint(key: int) -> Endpoint:
    """The IPv4 endpoint of an :func:`ipv4_key`."""
    return (key >> 16).to_bytes(4, "big"), key & 0xFFFF


@dataclass(slots=True)
class Binding:
    call_id: str
    owner: Side
    expires: float | None = None  # set when superseded: the binding lingers until then


class MediaMap:
    def __init__(self, linger: float = 5.0, max_bindings: int = 100_000) -> None:
        self.linger = linger
        self.max_bindings = max_bindings
        self._bindings: dict[Endpoint, Binding] = {}
        # per party: the offer/answer transaction that set its current endpoints, and those endpoints
        self._current: dict[tuple[str, Side], tuple[str, set[Endpoint]]] = {}
        self._by_call: dict[str, set[Endpoint]] = {}
        self.ipv4_keys: set[int] = set()  # ipv4_key of every bound IPv4 endpoint
        self._fresh: list[int] | None = []  # IPv4 keys bound since take_fresh; None: too many

    def __len__(self) -> int:
        return len(self._bindings)

    def bind(
        self, call_id: str, owner: Side, ip: bytes, port: int, now: float, transaction: str = ""
    ) -> bool:
        """Record that ``owner`` of ``call_id`` receives at ip:port, as negotiated in ``transaction``.
        False if the table is full."""
        endpoint = (ip, port)
        if endpoint not in self._bindings and len(self._bindings) >= self.max_bindings:
            return False
        current = self._current.get((call_id, owner))
        if current is not None and current[0] == transaction:
            current[1].add(endpoint)
        else:
            if current is not None:
                for old in current[1] - {endpoint}:
                    binding = self._bindings.get(old)
                    if binding is not None and binding.call_id == call_id:
                        binding.expires = now + self.linger
            self._current[(call_id, owner)] = (transaction, {endpoint})
        if endpoint not in self._bindings:
            self._added(endpoint)
        self._bindings[endpoint] = Binding(call_id, owner)
        self._by_call.setdefault(call_id, set()).add(endpoint)
        return True

    def lookup(self, src: bytes, sport: int, dst: bytes, dport: int) -> tuple[str, Side] | None:
        """(call_id, side whose voice the packet carries) or None for traffic that is not ours."""
        binding = self._bindings.get((dst, dport))
        if binding is not None:
            return binding.call_id, binding.owner.other
        binding = self._bindings.get((src, sport))
        if binding is not None:
            return binding.call_id, binding.owner
        return None

    def take_fresh(self) -> list[int] | None:
        """The IPv4 keys bound since the last call (None: more than MAX_FRESH, treat all as new)."""
        fresh, self._fresh = self._fresh, []
        return fresh

    def _added(self, endpoint: Endpoint) -> None:
        key = ipv4_key(endpoint)
        if key is None:
            return
        self.ipv4_keys.add(key)
        if self._fresh is not None:
            self._fresh.append(key)
            if len(self._fresh) > MAX_FRESH:
                self._fresh = None

    def _removed(self, endpoint: Endpoint) -> None:
        del self._bindings[endpoint]
        key = ipv4_key(endpoint)
        if key is not None:
            self.ipv4_keys.discard(key)

    def unbind_call(self, call_id: str) -> None:
        for side in Side:
            self._current.pop((call_id, side), None)
        for endpoint in self._by_call.pop(call_id, ()):
            self._drop_if_owned(endpoint, call_id)

    def expire(self, now: float) -> list[Endpoint]:
        """Drop the lingering bindings whose time is up; returns their endpoints."""
        stale = [e for e, b in self._bindings.items() if b.expires is not None and b.expires <= now]
        for endpoint in stale:
            self._by_call.get(self._bindings[endpoint].call_id, set()).discard(endpoint)
            self._removed(endpoint)
        return stale

    def _drop_if_owned(self, endpoint: Endpoint, call_id: str) -> None:
        binding = self._bindings.get(endpoint)
        if binding is not None and binding.call_id == call_id:
            self._removed(endpoint)
