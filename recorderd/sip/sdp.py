"""SDP parsing (RFC 4566) reduced to what the recorder needs from an offer or answer (RFC 3264).

Owns: connection addresses (``c=``, section 5.7, session level with per-media override), media lines
(``m=``, section 5.14), ``a=rtpmap`` / ``a=ptime`` (section 6) and the direction attributes
``sendrecv`` / ``sendonly`` / ``recvonly`` / ``inactive`` (section 6; media level wins over session
level, default ``sendrecv``). Payload types without an rtpmap take their RFC 3551 static meaning
from :mod:`recorderd.payloads`.

RFC 3264 section 6: a media line with port 0 is a rejected (or disabled) stream; it is kept in the
result and the dialog layer skips it. RFC 2543 hold (``c=IN IP4 0.0.0.0``) is reported as direction
``inactive``, as RFC 3264 section 8.4 asks receivers to treat it.

Addresses are raw network-order bytes. A hostname in ``c=`` yields ``ip=None``: resolving it would
be I/O, and the media cannot be matched to packets without an address anyway. Lines this module does
not need (``o=``, ``t=``, ``b=``, unknown attributes) are skipped, and a malformed ``a=rtpmap`` or
``a=ptime`` is ignored rather than fatal; only a missing ``v=`` or a broken ``m=`` line raises.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from functools import lru_cache

from recorderd.errors import ParseError
from recorderd.events import MediaDirection, PayloadFormat
from recorderd.payloads import STATIC_PAYLOADS

MAX_MEDIA = 16  # m-lines per description; real offers have 1-3
UNSPECIFIED_IPS = frozenset({bytes(4), bytes(16)})  # RFC 2543 hold: c=IN IP4 0.0.0.0 (or ::)

_DIGITS = re.compile(r"[0-9]{1,10}")
_PTIME = re.compile(r"[0-9]{1,5}(?:\.[0-9]*)?")
_DIRECTIONS = {d.value: d for d in MediaDirection}


@dataclass(frozen=True, slots=True)
class MediaDescription:
    """One ``m=`` section with its effective connection address and direction."""

    kind: str  # lower-case media type: "audio", "video", "image" ...
    port: int  # 0 = rejected or disabled stream
    proto: str  # "RTP/AVP", "RTP/SAVP", "udptl" ...
    formats: tuple[PayloadFormat, ...]  # m-line order; an unmapped dynamic type has name "" rate 0
    ip: bytes | None  # media-level c=, else session-level c=; None for a hostname or no c= at all
    direction: MediaDirection
    ptime: int | None


@dataclass(frozen=True, slots=True)
class SessionDescription:
    ip: bytes | None  # session-level c=
    direction: MediaDirection  # session-level direction attribute (default sendrecv)
    media: tuple[MediaDescription, ...]

    def first_audio(self) -> MediaDescription | None:
        """The first audio stream that was not rejected (port != 0), as the dialog layer uses it."""
        return next((m for m in self.media if m.kind == "audio" and m.port != 0), None)


@dataclass(slots=True)
class _Section:
    """Attributes gathered for the session level or one media level while reading lines."""

    has_c: bool = False
    ip: bytes | None = None
    direction: MediaDirection | None = None
    ptime: int | None = None
    rtpmap: dict[int, PayloadFormat] = field(default_factory=dict)
    mline: tuple[str, int, str, tuple[str, ...]] = ("", 0, "", ())


def parse_sdp(body: bytes) -> SessionDescription:
    """Parse an SDP body; only a missing ``v=`` or a broken ``m=`` raises :class:`ParseError`."""
    lines = body.decode("utf-8", "replace").split("\n")
    first = next((line.strip() for line in lines if line.strip()), "")
    if not first.startswith("v="):
        raise ParseError("sdp: missing v= line")
    session = _Section()
    sections: list[_Section] = []
    current = session
    for raw in lines:
        kind, eq, value = raw.strip().partition("=")
        if not eq or len(kind) != 1:
            continue
        if kind == "m":
            if len(sections) == MAX_MEDIA:
                raise ParseError(f"sdp: too many m= lines (> {MAX_MEDIA})")
            current = _Section(mline=_parse_mline(value))
            sections.append(current)
        elif kind == "c":
            current.has_c, current.ip = True, _parse_connection(value)
        elif kind == "a":
            _apply_attribute(current, value)
    media = tuple(_media(session, section) for section in sections)
    return SessionDescription(session.ip, session.direction or MediaDirection.SENDRECV, media)


def _parse_mline(value: str) -> tuple[str, int, str, tuple[str, ...]]:
    """``audio 49170/2 RTP/AVP 0 8`` -> ("audio", 49170, "RTP/AVP", ("0", "8"))."""
    parts = value.split()
    if len(parts) < 3:
        raise ParseError("sdp: bad m= line")
    port_text = parts[1].partition("/")[0]  # "/2" is a port count (section 5.14); we use the first
    if not _DIGITS.fullmatch(port_text) or int(port_text) > 65535:
        raise ParseError("sdp: bad port in m= line")
    return parts[0].lower(), int(port_text), parts[2], tuple(parts[3:])


def _parse_connection(value: str) -> bytes | None:
    """``IN IP4 192.0.2.1/127`` -> raw address; the multicast TTL / count suffix is ignored."""
    parts = value.split()
    if len(parts) < 3 or parts[0].upper() != "IN" or parts[1].upper() not in ("IP4", "IP6"):
        return None
    return _packed(parts[2].partition("/")[0])


@lru_cache(maxsize=4096)  # a site's few media addresses recur in every SDP
def _packed(text: str) -> bytes | None:
    try:
        return ipaddress.ip_address(text).packed
    except ValueError:
        return None  # a hostname (FQDN): no DNS in the pure core


def _apply_attribute(section: _Section, value: str) -> None:
    name, _, arg = value.partition(":")
    name = name.strip().lower()
    if name in _DIRECTIONS:
        section.direction = _DIRECTIONS[name]
    elif name == "rtpmap":
        mapped = _parse_rtpmap(arg)
        if mapped is not None:
            section.rtpmap[mapped.pt] = mapped
    elif name == "ptime":
        text = arg.strip()
        if _PTIME.fullmatch(text):
            section.ptime = int(float(text))


@lru_cache(maxsize=1024)  # every call's SDP repeats the site's few rtpmap lines; PayloadFormat is frozen
def _parse_rtpmap(arg: str) -> PayloadFormat | None:
    """``96 telephone-event/8000/1`` -> PayloadFormat(96, "TELEPHONE-EVENT", 8000)."""
    pt_text, _, encoding = arg.strip().partition(" ")
    name, _, rest = encoding.strip().partition("/")
    rate_text = rest.partition("/")[0].strip()
    if not _DIGITS.fullmatch(pt_text) or int(pt_text) > 127 or not name:
        return None
    if not _DIGITS.fullmatch(rate_text):
        return None
    return PayloadFormat(int(pt_text), name.upper(), int(rate_text))


def _media(session: _Section, section: _Section) -> MediaDescription:
    kind, port, proto, fmts = section.mline
    ip = section.ip if section.has_c else session.ip
    direction = section.direction or session.direction or MediaDirection.SENDRECV
    if ip in UNSPECIFIED_IPS:
        direction = MediaDirection.INACTIVE
    ptime = section.ptime if section.ptime is not None else session.ptime
    return MediaDescription(kind, port, proto, _formats(fmts, section.rtpmap), ip, direction, ptime)


def _formats(fmts: tuple[str, ...], rtpmap: dict[int, PayloadFormat]) -> tuple[PayloadFormat, ...]:
    """RTP payload formats in m-line order; non-numeric ones (``t38``, ``*``) are not RTP."""
    formats: list[PayloadFormat] = []
    for fmt in fmts:
        if not _DIGITS.fullmatch(fmt) or int(fmt) > 127:
            continue
        pt = int(fmt)
        known = rtpmap.get(pt) or STATIC_PAYLOADS.get(pt)
        formats.append(known if known is not None else PayloadFormat(pt, "", 0))
    return tuple(formats)
