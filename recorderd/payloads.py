"""RFC 3551 static RTP payload types (section 6, table 4), shared by the SDP parser and the codec registry.

A payload type from 96 to 127 is dynamic and means nothing without an SDP ``a=rtpmap``.
"""

from __future__ import annotations

from recorderd.events import PayloadFormat

STATIC_PAYLOADS: dict[int, PayloadFormat] = {
    pt: PayloadFormat(pt, name, rate)
    for pt, name, rate in (
        (0, "PCMU", 8000),
        (3, "GSM", 8000),
        (4, "G723", 8000),
        (5, "DVI4", 8000),
        (6, "DVI4", 16000),
        (7, "LPC", 8000),
        (8, "PCMA", 8000),
        (9, "G722", 8000),
        (10, "L16", 44100),
        (11, "L16", 44100),
        (12, "QCELP", 8000),
        (13, "CN", 8000),
        (14, "MPA", 90000),
        (15, "G728", 8000),
        (16, "DVI4", 11025),
        (17, "DVI4", 22050),
        (18, "G729", 8000),
    )
}

DYNAMIC_FIRST = 96
