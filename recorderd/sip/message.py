"""SIP message parsing: bytes of one message -> :class:`SipRequest` or :class:`SipResponse`.

Follows RFC 3261 section 7 (message format: start line 7.1/7.2, headers 7.3, compact forms 7.3.3,
bodies 7.4, framing 7.5 and 18.3), section 20.10/25.1 (name-addr / addr-spec), section 19.1 (SIP
URIs) and RFC 3966 (tel URIs); multipart bodies per RFC 2046 section 5.1.

Strict where a wrong guess would misfile a call (start line, version, status code range,
Content-Length against the body); lenient where real phones are sloppy (bare LF line ends, leading
CRLF keep-alives, trailing whitespace, header-name case, spaces before the colon). Wire input raises
only :class:`~recorderd.errors.ParseError`; the helpers that read header values (:attr:`call_id`,
:attr:`cseq`, :func:`sdp_body` ...) return ``None`` for a missing or unusable value rather than
raise, except :func:`parse_name_addr`, which is a parser of its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import unquote

from recorderd.errors import ParseError

MAX_HEADERS = 256  # RFC 3261 sets no limit; real messages carry 10-40 header lines
MAX_MULTIPART_PARTS = 16
MAX_MULTIPART_DEPTH = 3

# RFC 3261 section 7.3.3 plus the IANA "Header Fields" registry's compact forms.
COMPACT_FORMS: dict[str, str] = {
    "a": "accept-contact",
    "b": "referred-by",
    "c": "content-type",
    "d": "request-disposition",
    "e": "content-encoding",
    "f": "from",
    "i": "call-id",
    "j": "reject-contact",
    "k": "supported",
    "l": "content-length",
    "m": "contact",
    "n": "identity-info",
    "o": "event",
    "r": "refer-to",
    "s": "subject",
    "t": "to",
    "u": "allow-events",
    "v": "via",
    "x": "session-expires",
    "y": "identity",
}

# Headers whose grammar is a comma-separated list (RFC 3261 section 7.3.1), so one line may carry
# several values. Others (Date, Authorization, User-Agent ...) hold commas that are not separators.
LIST_HEADERS = frozenset(
    {
        "accept",
        "accept-contact",
        "accept-encoding",
        "accept-language",
        "alert-info",
        "allow",
        "allow-events",
        "call-info",
        "contact",
        "content-encoding",
        "content-language",
        "error-info",
        "history-info",
        "in-reply-to",
        "p-asserted-identity",
        "p-associated-uri",
        "path",
        "proxy-require",
        "reason",
        "record-route",
        "reject-contact",
        "require",
        "route",
        "service-route",
        "supported",
        "unsupported",
        "via",
    }
)

# The header names nearly every message carries, as phones and PBXs spell them, mapped straight to
# their canonical form: the per-line token check and lower-casing are skipped for these.
_COMMON_NAMES = (
    "Via", "From", "To", "Call-ID", "CSeq", "Contact", "Max-Forwards", "Content-Type",
    "Content-Length", "User-Agent", "Server", "Allow", "Supported", "Require", "Expires", "Date",
    "Record-Route", "Route", "Session-Expires", "Min-SE", "Allow-Events", "Accept", "Reason",
    "P-Asserted-Identity", "Remote-Party-ID", "Privacy", "Authorization", "Proxy-Authorization",
    "WWW-Authenticate", "Proxy-Authenticate", "Refer-To", "Referred-By", "Replaces", "Event",
    "Subscription-State", "Content-Disposition", "Organization", "Call-Info", "Alert-Info",
)  # fmt: skip
_KNOWN_NAMES: dict[str, str] = (
    {
        spelling: name.lower()
        for name in _COMMON_NAMES
        for spelling in (name, name.lower(), name.upper(), name.replace("ID", "Id"))
    }
    | {compact: long for compact, long in COMPACT_FORMS.items()}
    | {compact.upper(): long for compact, long in COMPACT_FORMS.items()}
)
_TOKEN = re.compile(r"[A-Za-z0-9.!%*_+`'~-]+")
_DIGITS3 = re.compile(r"[0-9]{3}")
_DIGITS = re.compile(r"[0-9]{1,10}")
_SIP_VERSION = "SIP/2.0"

Headers = tuple[tuple[str, str], ...]


def canonical_name(name: str) -> str:
    """Lower-case header name with a compact form expanded: ``"I"`` -> ``"call-id"``."""
    lowered = name.lower()
    if len(lowered) == 1:
        return COMPACT_FORMS.get(lowered, lowered)
    return lowered


class _HeaderAccess:
    """Header look-ups shared by requests and responses (both are frozen slotted dataclasses)."""

    __slots__ = ()
    headers: Headers
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of ``name`` (any case, compact form allowed), or ``None``."""
        wanted = canonical_name(name)
        for key, value in self.headers:
            if key == wanted:
                return value
        return None

    def headers_all(self, name: str) -> list[str]:
        """Every value of ``name`` in order; comma lists (Via, Contact, Route ...) are split."""
        wanted = canonical_name(name)
        values = [value for key, value in self.headers if key == wanted]
        if wanted not in LIST_HEADERS:
            return values
        return [item for value in values for item in split_list(value)]

    @property
    def call_id(self) -> str | None:
        return self.header("call-id")

    @property
    def cseq(self) -> tuple[int, str] | None:
        """``(number, method)`` from CSeq (RFC 3261 section 20.16); ``None`` if unusable."""
        value = self.header("cseq")
        if value is None:
            return None
        parts = value.split()
        if len(parts) != 2 or not _DIGITS.fullmatch(parts[0]):
            return None
        return int(parts[0]), parts[1]


@dataclass(frozen=True, slots=True)
class SipRequest(_HeaderAccess):
    method: str
    uri: str
    headers: Headers
    body: bytes


@dataclass(frozen=True, slots=True)
class SipResponse(_HeaderAccess):
    status: int
    reason: str
    headers: Headers
    body: bytes


@dataclass(frozen=True, slots=True)
class NameAddr:
    """A From/To/Contact/Refer-To value (RFC 3261 section 20.10)."""

    display_name: str  # unquoted and unescaped; "" when absent
    uri: str  # without the angle brackets
    tag: str | None
    params: tuple[tuple[str, str], ...]  # header parameters, names lower-cased; "" for a flag

    def param(self, name: str) -> str | None:
        lowered = name.lower()
        for key, value in self.params:
            if key == lowered:
                return value
        return None


# --------------------------------------------------------------------------------------------------
# Message parsing


def parse_sip(data: bytes) -> SipRequest | SipResponse:
    """Parse one complete SIP message (a UDP payload or one message framed out of a TCP stream)."""
    # RFC 3261 section 7.5: CRLFs before the start line are ignored (they are keep-alives on TCP).
    data = data.lstrip(b"\r\n")
    if not data:
        raise ParseError("sip: empty message")
    if not data[:1].isalpha():
        # Binary junk such as the NUL keep-alives NAT'd phones send to port 5060.
        raise ParseError("sip: not a SIP message")
    head_end, body_start = _find_blank_line(data, 0)
    if head_end < 0:
        raise ParseError("sip: no end of headers")
    lines = data[:head_end].decode("utf-8", "replace").split("\n")
    headers = _parse_headers(lines[1:])
    body = _cut_body(data[body_start:], headers)
    start = lines[0].strip()
    if start[:4].upper() == "SIP/":
        status, reason = _parse_status_line(start)
        return SipResponse(status, reason, headers, body)
    method, uri = _parse_request_line(start)
    return SipRequest(method, uri, headers, body)


def _find_blank_line(data: bytes, start: int) -> tuple[int, int]:
    """Index where the header block ends and where the body starts; (-1, -1) without a blank line.

    Accepts CRLF CRLF, bare LF LF and the mixed forms, because some phones end lines with LF only.
    """
    crlf = data.find(b"\n\r\n", start)
    lf = data.find(b"\n\n", start)
    if crlf < 0 and lf < 0:
        return -1, -1
    if lf < 0 or 0 <= crlf < lf:
        return crlf, crlf + 3
    return lf, lf + 2


def _parse_status_line(line: str) -> tuple[int, str]:
    version, _, rest = line.partition(" ")
    _check_version(version)
    code, _, reason = rest.strip().partition(" ")
    if not _DIGITS3.fullmatch(code):
        raise ParseError("sip: bad status code")
    status = int(code)
    if not 100 <= status <= 699:
        raise ParseError(f"sip: status code out of range ({status})")
    return status, reason.strip()


def _parse_request_line(line: str) -> tuple[str, str]:
    parts = line.split()
    if len(parts) != 3:
        raise ParseError("sip: bad request line")
    method, uri, version = parts
    _check_version(version)
    if not _TOKEN.fullmatch(method):
        raise ParseError("sip: bad method")
    return method, uri


def _check_version(version: str) -> None:
    # RFC 3261 section 7.1: the version string is case-insensitive.
    if version.upper() != _SIP_VERSION:
        raise ParseError("sip: not SIP/2.0")


def _parse_headers(lines: list[str]) -> Headers:
    """Header lines -> ((name, value), ...); folded continuation lines are joined with one space."""
    if len(lines) > MAX_HEADERS:
        raise ParseError(f"sip: too many header lines (> {MAX_HEADERS})")
    names: list[str] = []
    values: list[str] = []
    for raw in lines:
        line = raw.rstrip()
        if not line:
            continue  # a stray blank-ish line ("\r \n") inside the block: nothing to keep
        if line[0] in " \t":
            if not values:
                raise ParseError("sip: continuation line before any header")
            values[-1] = f"{values[-1]} {line.strip()}".strip()
            continue
        name, colon, value = line.partition(":")
        known = _KNOWN_NAMES.get(name) if colon else None
        if known is None:
            name = name.rstrip()
            if not colon or not _TOKEN.fullmatch(name):
                raise ParseError("sip: bad header line")
            known = canonical_name(name)
        names.append(known)
        values.append(value.strip())
    return tuple(zip(names, values, strict=True))


def _cut_body(body: bytes, headers: Headers) -> bytes:
    length = next((value for name, value in headers if name == "content-length"), None)
    if length is None:
        return body  # allowed on UDP (RFC 3261 section 18.3): the body is the rest of the datagram
    if not _DIGITS.fullmatch(length):
        raise ParseError("sip: bad Content-Length")
    wanted = int(length)
    if len(body) < wanted:
        raise ParseError(f"sip: body truncated ({len(body)} < {wanted} bytes)")
    return body[:wanted]


def split_list(value: str) -> list[str]:
    """Split a comma-separated header value, ignoring commas inside quotes and ``<...>``."""
    if "," not in value:
        return [value] if value else []
    items = (item.strip() for item in _split_outside_quotes(value, ",", angles=True))
    return [item for item in items if item]


def _split_outside_quotes(text: str, separator: str, angles: bool) -> list[str]:
    """Split ``text`` at ``separator`` except inside a quoted string (RFC 3261 25.1, with its
    backslash escapes) and, with ``angles``, inside ``<...>``."""
    items: list[str] = []
    start = 0
    quoted = in_angle = escaped = False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif quoted:
            escaped = ch == "\\"
            quoted = ch != '"'
        elif ch == '"':
            quoted = True
        elif angles and ch == "<":
            in_angle = True
        elif angles and ch == ">":
            in_angle = False
        elif ch == separator and not in_angle:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return items


# --------------------------------------------------------------------------------------------------
# name-addr and URIs


@lru_cache(maxsize=4096)  # a dialog's From and To recur in every message; NameAddr is immutable
def parse_name_addr(value: str) -> NameAddr:
    """Parse ``"Alice" <sip:a@x>;tag=1``, ``Alice <sip:a@x>``, ``<sip:a@x>`` or ``sip:a@x;tag=1``.

    Without angle brackets every ``;param`` belongs to the header, not the URI (RFC 3261 20.10).
    """
    text = value.strip()
    if not text:
        raise ParseError("sip: empty name-addr")
    if text[0] == '"':
        display, end = _quoted_string(text, 0)
        text = text[end:].lstrip()
        if not text.startswith("<"):
            raise ParseError("sip: name-addr without <uri>")
        return _bracketed(display, text, 0)
    lt = text.find("<")
    if lt >= 0 and ";" not in text[:lt]:
        return _bracketed(text[:lt].strip(), text, lt)
    uri, semicolon, params = text.partition(";")
    return _name_addr("", uri.strip(), semicolon + params)


def _bracketed(display: str, text: str, lt: int) -> NameAddr:
    gt = text.find(">", lt)
    if gt < 0:
        raise ParseError("sip: name-addr unclosed <")
    return _name_addr(display, text[lt + 1 : gt].strip(), text[gt + 1 :])


def _name_addr(display: str, uri: str, params_text: str) -> NameAddr:
    if not uri:
        raise ParseError("sip: name-addr without uri")
    params = _parse_params(params_text)
    tag = next((v for k, v in params if k == "tag"), None)
    return NameAddr(display, uri, tag, params)


def _quoted_string(text: str, start: int) -> tuple[str, int]:
    """Unescaped content of the quoted string at ``text[start]``, and the index after it."""
    out: list[str] = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
        elif ch == '"':
            return "".join(out), i + 1
        else:
            out.append(ch)
            i += 1
    raise ParseError("sip: unclosed quote")


def _parse_params(text: str) -> tuple[tuple[str, str], ...]:
    """``;a=1;b;c="x;y"`` -> (("a", "1"), ("b", ""), ("c", "x;y")).

    Whatever precedes the first ``;`` is not a parameter and is dropped.
    """
    params: list[tuple[str, str]] = []
    for item in _split_semicolons(text)[1:]:
        name, eq, val = item.partition("=")
        name = name.strip().lower()
        if not name:
            continue
        val = val.strip()
        if eq and val.startswith('"'):
            val = _quoted_string(val, 0)[0]
        params.append((name, val))
    return tuple(params)


def _split_semicolons(text: str) -> list[str]:
    if '"' not in text:
        return text.split(";")
    return _split_outside_quotes(text, ";", angles=False)


def user_part(uri: str) -> str:
    """The user (number) of a SIP or tel URI: ``sip:07700900123@x;user=phone`` -> ``07700900123``.

    ``tel:+441632960000;phone-context=x`` -> ``+441632960000``. User parameters after ``;`` and a
    password after ``:`` are dropped; %-escapes are decoded. ``""`` when the URI has no user part.
    """
    text = uri.strip()
    if text.startswith("<"):
        text = text[1:].partition(">")[0]
    scheme, colon, rest = text.partition(":")
    if not colon:
        scheme, rest = "", text
    if scheme.lower() == "tel":
        return unquote(rest.partition(";")[0].strip())
    userinfo, at, _ = rest.partition("?")[0].partition("@")
    if not at:
        return ""
    return unquote(userinfo.partition(":")[0].partition(";")[0])


def uri_headers(uri: str) -> tuple[tuple[str, str], ...]:
    """The ``?name=value&...`` headers of a SIP URI (RFC 3261 section 19.1.1), %-decoded."""
    _, question, query = uri.partition("?")
    if not question:
        return ()
    pairs: list[tuple[str, str]] = []
    for item in query.split("&"):
        name, _, value = item.partition("=")
        if name:
            pairs.append((canonical_name(unquote(name).strip()), unquote(value)))
    return tuple(pairs)


# --------------------------------------------------------------------------------------------------
# Bodies


def sdp_body(msg: SipRequest | SipResponse) -> bytes | None:
    """The SDP carried by ``msg``, directly or as a part of a multipart body (RFC 2046 5.1).

    ``None`` when the message carries no SDP. A multipart body that cannot be split raises
    :class:`ParseError`. A body without Content-Type that starts with ``v=0`` counts as SDP, because
    some phones omit the header.
    """
    if not msg.body:
        return None
    content_type = msg.header("content-type")
    if content_type is None:
        return msg.body if msg.body.lstrip().startswith(b"v=0") else None
    return _find_sdp(content_type, msg.body, 0)


def _find_sdp(content_type: str, body: bytes, depth: int) -> bytes | None:
    media_type, _, params_text = content_type.partition(";")
    media_type = media_type.strip().lower()
    if media_type == "application/sdp":
        return body if body.strip() else None
    if not media_type.startswith("multipart/") or depth >= MAX_MULTIPART_DEPTH:
        return None
    boundary = dict(_parse_params(";" + params_text)).get("boundary")
    if not boundary:
        raise ParseError("sip: multipart without boundary")
    for part in _multipart_parts(body, boundary.encode("utf-8", "replace")):
        part_type, part_body = _split_part(part)
        found = _find_sdp(part_type, part_body, depth + 1)
        if found is not None:
            return found
    return None


def _multipart_parts(body: bytes, boundary: bytes) -> list[bytes]:
    """The parts between ``--boundary`` lines; the CRLF before a delimiter belongs to it."""
    delimiter = b"--" + boundary
    pos = _find_delimiter(body, delimiter, 0)
    if pos < 0:
        raise ParseError("sip: multipart boundary not found")
    parts: list[bytes] = []
    while len(parts) < MAX_MULTIPART_PARTS:
        after = pos + len(delimiter)
        line_end = body.find(b"\n", after)
        if body.startswith(b"--", after) or line_end < 0:
            break  # close delimiter, or a delimiter with nothing after it
        start = line_end + 1
        pos = _find_delimiter(body, delimiter, start)
        if pos < 0:
            parts.append(body[start:])  # no close delimiter: be lenient and keep the rest
            break
        end = pos - 1 if body[pos - 1 : pos] == b"\n" else pos
        end = end - 1 if body[end - 1 : end] == b"\r" else end
        parts.append(body[start : max(start, end)])
    return parts


def _find_delimiter(body: bytes, delimiter: bytes, start: int) -> int:
    """Index of ``delimiter`` at the start of a line, from ``start``; -1 if none."""
    pos = body.find(delimiter, start)
    while pos > 0 and body[pos - 1] != 0x0A:
        pos = body.find(delimiter, pos + 1)
    return pos


def _split_part(part: bytes) -> tuple[str, bytes]:
    """(Content-Type, body) of one part; a part without headers is text/plain (RFC 2046 5.1)."""
    if part.startswith((b"\r\n", b"\n")):
        return "text/plain", part[part.find(b"\n") + 1 :]
    head_end, body_start = _find_blank_line(part, 0)
    if head_end < 0:
        return "text/plain", b""
    try:
        headers = _parse_headers(part[:head_end].decode("utf-8", "replace").split("\n"))
    except ParseError:
        return "text/plain", b""  # a broken part only hides itself, not its siblings
    content_type = next((v for k, v in headers if k == "content-type"), "text/plain")
    return content_type, part[body_start:]
