"""Network stage: link layers, IPv4/IPv6 with fragment reassembly, UDP, and SIP over TCP.

Pure and synchronous. The engine uses :class:`NetDecoder`; the ``parse_*`` functions and the framer are
public for tests and tools.
"""

from recorderd.net.decoder import NetDecoder, NetLimits
from recorderd.net.frag import Reassembler
from recorderd.net.ip import IPPacket, parse_ipv4, parse_ipv6
from recorderd.net.link import SUPPORTED_LINKTYPES, parse_ethernet, parse_link
from recorderd.net.sipframe import SipStreamFramer
from recorderd.net.tcp import TcpReassembler
from recorderd.net.transport import parse_tcp, parse_udp

__all__ = [
    "SUPPORTED_LINKTYPES",
    "IPPacket",
    "NetDecoder",
    "NetLimits",
    "Reassembler",
    "SipStreamFramer",
    "TcpReassembler",
    "parse_ethernet",
    "parse_ipv4",
    "parse_ipv6",
    "parse_link",
    "parse_tcp",
    "parse_udp",
]
