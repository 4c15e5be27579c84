"""SIP message framing on a reassembled TCP byte stream (RFC 3261 section 18.3).

A stream carries messages back to back. Each is a start line and headers up to an empty line, then a
body of exactly Content-Length bytes (the compact form is ``l``; the header is mandatory on streams, and
a message without one is taken to have no body). Between messages a peer may send CRLF keep-alives
(RFC 5626 section 3.5.1: a double-CRLF ping, a single-CRLF pong), which are skipped.

Sans-I/O in the manner of h11: :meth:`SipStreamFramer.receive_data` appends bytes and
:meth:`SipStreamFramer.next_message` returns one complete message or raises
:class:`~recorderd.errors.NeedMoreData`. Anything that cannot be framed raises
:class:`~recorderd.errors.ParseError` after discarding the buffer, because the position of the next
message boundary is then unknown; the caller resynchronises on a segment that starts a message.
The buffer is bounded by the largest header block and the largest message.
"""

from __future__ import annotations

import re
from typing import NoReturn

from recorderd.errors import NeedMoreData, ParseError

# A request line (method SP Request-URI SP SIP-Version) or a status line (SIP-Version SP 3DIGIT ...).
# Lenient on case and on a bare LF; the line must be complete unless the data ends right after it.
_START_LINE = re.compile(
    rb"(?:[A-Za-z0-9!%*_+`'~.\-]+ [^ \r\n]+ SIP/2\.0(?:\r?\n|\r?$)"
    rb"|SIP/2\.0 [0-9]{3}(?:[ \t\r\n]|$))",
    re.IGNORECASE,
)
_UNFINISHED_LINE = re.compile(rb"[\r\n]*[ -~]*\r?")  # keep-alives, then one line not yet ended
MAX_START_LINE = 1024  # longer without a line end is not a start line (RFC 3261 sets no limit)
_CONTENT_LENGTH = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*)", re.I | re.M)
_MAX_LENGTH_DIGITS = 9


def starts_sip_message(data: bytes | bytearray, pos: int = 0) -> bool:
    """Whether ``data`` begins, after any CRLF keep-alives, with a SIP request or status line."""
    end = len(data)
    while pos < end and data[pos] in b"\r\n":
        pos += 1
    return _START_LINE.match(data, pos) is not None


def start_line_pending(data: bytes) -> bool:
    """Whether ``data`` is too short to tell: one unfinished line of printable ASCII, so far."""
    return len(data) < MAX_START_LINE and _UNFINISHED_LINE.fullmatch(data) is not None


def content_length(head: bytes) -> int:
    """The body length a header block declares; 0 when it declares none (allowed on TCP)."""
    values = {value.strip() for value in _CONTENT_LENGTH.findall(head)}
    if not values:
        return 0
    if len(values) > 1:
        raise ParseError("sip-tcp: conflicting Content-Length")
    (value,) = values
    if not value.isdigit():
        raise ParseError("sip-tcp: bad Content-Length")
    if len(value) > _MAX_LENGTH_DIGITS:
        raise ParseError(f"sip-tcp: message too large ({len(value)} digits of Content-Length)")
    return int(value)


class SipStreamFramer:
    """Splits one direction of a TCP stream into complete SIP messages."""

    def __init__(self, max_header: int = 64 * 1024, max_message: int = 256 * 1024) -> None:
        self._max_header = max_header
        self._max_message = max_message
        self._buf = bytearray()
        self._scan = 0  # where the search for the end of the headers resumes

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def receive_data(self, data: bytes) -> None:
        self._buf += data

    def reset(self) -> None:
        """Forget buffered bytes (after a gap in the stream, or an error)."""
        self._buf.clear()
        self._scan = 0

    def next_message(self) -> bytes:
        """The next complete message; NeedMoreData if it is not all here yet."""
        buf = self._buf
        skip = 0
        while skip < len(buf) and buf[skip] in b"\r\n":
            skip += 1
        if skip:
            del buf[:skip]
            self._scan = 0
        if not buf:
            raise NeedMoreData("sip-tcp: need more data")
        head_end, body_start = self._find_head_end()
        if head_end < 0:
            if len(buf) > self._max_header:
                self._fail(f"sip-tcp: headers too long (> {self._max_header} bytes)")
            raise NeedMoreData("sip-tcp: incomplete headers")
        if head_end > self._max_header:
            self._fail(f"sip-tcp: headers too long ({head_end} > {self._max_header} bytes)")
        if not _START_LINE.match(buf):
            self._fail("sip-tcp: not a SIP message")
        try:
            length = content_length(bytes(buf[:head_end]))
        except ParseError:
            self.reset()
            raise
        total = body_start + length
        if total > self._max_message:
            self._fail(f"sip-tcp: message too large ({total} > {self._max_message} bytes)")
        if len(buf) < total:
            raise NeedMoreData("sip-tcp: incomplete body")
        message = bytes(buf[:total])
        del buf[:total]
        self._scan = 0
        return message

    def _find_head_end(self) -> tuple[int, int]:
        """``(end of headers, start of body)``, or ``(-1, -1)``; a bare-LF empty line is accepted."""
        buf = self._buf
        crlf = buf.find(b"\r\n\r\n", self._scan)
        lf = buf.find(b"\n\n", self._scan, crlf + 2 if crlf >= 0 else len(buf))
        if lf >= 0:
            return lf, lf + 2
        if crlf >= 0:
            return crlf, crlf + 4
        self._scan = max(0, len(buf) - 3)  # the terminator may straddle this and the next chunk
        return -1, -1

    def _fail(self, message: str) -> NoReturn:
        self.reset()
        raise ParseError(message)
