"""Link layer: find the network header inside a captured frame.

Each parser returns ``(ethertype, offset)``: the EtherType of the network layer (``ETHERTYPE_IPV4``,
``ETHERTYPE_IPV6``, anything else is not IP) and where its header starts in the frame. Formats follow
the tcpdump.org LINKTYPE registry: Ethernet II with IEEE 802.1Q tags (0x8100) and 802.1ad / legacy QinQ
outer tags (0x88A8, 0x9100), stacked; Linux "cooked" SLL (16-byte header) and SLL2 (20 bytes); BSD NULL
(4-byte address family in the capturing host's byte order) and OpenBSD LOOP (the same in network order);
raw IP, where the version nibble tells IPv4 from IPv6.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from recorderd.errors import ParseError

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW_12 = 12  # DLT_RAW as numbered by some BSDs, written into files as-is
LINKTYPE_RAW_14 = 14  # DLT_RAW on OpenBSD
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

ETHERTYPE_NONE = 0  # the frame carries no recognisable network protocol
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
VLAN_TPIDS = frozenset({0x8100, 0x88A8, 0x9100})
MAX_VLAN_TAGS = 4  # real networks stack two; more is garbage or an attack on the parser

# BSD address families: AF_INET is 2 everywhere; AF_INET6 differs (Linux 10, NetBSD/OpenBSD 24,
# FreeBSD 28, macOS 30), and a file may come from any of them.
_AF_TO_ETHERTYPE = {
    2: ETHERTYPE_IPV4,
    10: ETHERTYPE_IPV6,
    24: ETHERTYPE_IPV6,
    28: ETHERTYPE_IPV6,
    30: ETHERTYPE_IPV6,
}

_U16 = struct.Struct("!H")
_U32_BE = struct.Struct("!I")
_U32_LE = struct.Struct("<I")


def _need(data: bytes, off: int, size: int, layer: str) -> None:
    have = len(data) - off
    if have < size:
        raise ParseError(f"{layer}: header truncated ({have} < {size} bytes)")


def skip_vlan_tags(data: bytes, ethertype: int, off: int) -> tuple[int, int]:
    """Step over stacked 802.1Q/802.1ad tags starting at ``off``; ``ethertype`` announced the first."""
    for _ in range(MAX_VLAN_TAGS):
        if ethertype not in VLAN_TPIDS:
            return ethertype, off
        _need(data, off, 4, "vlan")
        (ethertype,) = _U16.unpack_from(data, off + 2)
        off += 4
    if ethertype in VLAN_TPIDS:
        raise ParseError(f"vlan: too many tags (> {MAX_VLAN_TAGS})")
    return ethertype, off


def parse_ethernet(data: bytes) -> tuple[int, int]:
    """Ethernet II (IEEE 802.3 clause 3.2.6 length/type), VLAN tags skipped. 802.3 LLC frames are not IP."""
    _need(data, 0, 14, "ethernet")
    (ethertype,) = _U16.unpack_from(data, 12)
    return skip_vlan_tags(data, ethertype, 14)


def parse_sll(data: bytes) -> tuple[int, int]:
    """Linux cooked capture v1: the protocol (an EtherType for IP) is the last 2 of 16 bytes."""
    _need(data, 0, 16, "sll")
    (protocol,) = _U16.unpack_from(data, 14)
    # libpcap puts back a VLAN tag that the NIC stripped, right after the cooked header.
    return skip_vlan_tags(data, protocol, 16)


def parse_sll2(data: bytes) -> tuple[int, int]:
    """Linux cooked capture v2: the protocol comes first in a 20-byte header."""
    _need(data, 0, 20, "sll2")
    (protocol,) = _U16.unpack_from(data, 0)
    return skip_vlan_tags(data, protocol, 20)


def parse_null(data: bytes) -> tuple[int, int]:
    """BSD loopback: a 4-byte address family in the byte order of the host that captured it."""
    _need(data, 0, 4, "null")
    (family,) = _U32_LE.unpack_from(data, 0)
    if family > 0xFFFF:  # written by a big-endian host (the families are all small numbers)
        (family,) = _U32_BE.unpack_from(data, 0)
    return _AF_TO_ETHERTYPE.get(family, ETHERTYPE_NONE), 4


def parse_loop(data: bytes) -> tuple[int, int]:
    """OpenBSD loopback: like NULL, but the address family is always in network byte order."""
    _need(data, 0, 4, "loop")
    (family,) = _U32_BE.unpack_from(data, 0)
    return _AF_TO_ETHERTYPE.get(family, ETHERTYPE_NONE), 4


def parse_raw(data: bytes) -> tuple[int, int]:
    """Raw IP with no link header: the IP version nibble says which."""
    if not data:
        raise ParseError("raw: empty frame")
    version = data[0] >> 4
    if version == 4:
        return ETHERTYPE_IPV4, 0
    if version == 6:
        return ETHERTYPE_IPV6, 0
    raise ParseError(f"raw: bad IP version ({version})")


def _raw_ipv4(data: bytes) -> tuple[int, int]:
    return ETHERTYPE_IPV4, 0


def _raw_ipv6(data: bytes) -> tuple[int, int]:
    return ETHERTYPE_IPV6, 0


LINK_PARSERS: dict[int, Callable[[bytes], tuple[int, int]]] = {
    LINKTYPE_ETHERNET: parse_ethernet,
    LINKTYPE_LINUX_SLL: parse_sll,
    LINKTYPE_LINUX_SLL2: parse_sll2,
    LINKTYPE_NULL: parse_null,
    LINKTYPE_LOOP: parse_loop,
    LINKTYPE_RAW: parse_raw,
    LINKTYPE_RAW_12: parse_raw,
    LINKTYPE_RAW_14: parse_raw,
    LINKTYPE_IPV4: _raw_ipv4,
    LINKTYPE_IPV6: _raw_ipv6,
}
SUPPORTED_LINKTYPES = frozenset(LINK_PARSERS)


def parse_link(linktype: int, data: bytes) -> tuple[int, int]:
    """``(ethertype, offset)`` of the network layer in a frame of the given pcap LINKTYPE."""
    parser = LINK_PARSERS.get(linktype)
    if parser is None:
        raise ParseError(f"link: unsupported linktype ({linktype})")
    return parser(data)
