"""RFC 4733 telephone-event payloads (section 2.3): DTMF digits sent as events, not audio.

An event is repeated while the key is held and ends with up to three identical packets with the E bit
set; all of them share the RTP timestamp of the event's start, which is the key used to report each
digit exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass

from recorderd.errors import ParseError

DIGITS = "0123456789*#ABCD"


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    event: int
    end: bool
    volume: int
    duration: int  # in RTP timestamp units

    @property
    def digit(self) -> str:
        return DIGITS[self.event] if self.event < len(DIGITS) else f"event-{self.event}"


def parse_telephone_event(payload: bytes) -> TelephoneEvent:
    if len(payload) < 4:
        raise ParseError(f"rtp: telephone-event truncated ({len(payload)} < 4 bytes)")
    return TelephoneEvent(
        payload[0], bool(payload[1] & 0x80), payload[1] & 0x3F, (payload[2] << 8) | payload[3]
    )
