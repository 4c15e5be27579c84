"""Pure RTP handling: packet parsing, wraparound arithmetic, per-stream ordering and loss, DTMF,
and the media map that ties RTP to calls."""
