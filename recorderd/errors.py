"""The project's exception types.

Pure stages raise only :class:`ParseError` (and its :class:`NeedMoreData` for stream framing); the engine
is the one boundary that catches them, counts them and drops the input. Any other exception escaping a
parser is a bug, and the fuzz tests say so. The I/O layers raise :class:`RecorderdError` subclasses whose
message is a complete sentence for the user: the CLI prints it on one line and exits non-zero.
"""


class ParseError(ValueError):
    """Wire input that cannot be parsed; the message is short, stable and specific."""


class NeedMoreData(ParseError):
    """A stream framer needs more bytes before it can return a message."""


class RecorderdError(Exception):
    """An operational error whose message is meant for the user."""


class ConfigError(RecorderdError):
    """A configuration file or option is missing or invalid."""


class CaptureError(RecorderdError):
    """A capture source cannot be opened or read."""


class StoreError(RecorderdError):
    """The recording store cannot be opened, written or read."""
