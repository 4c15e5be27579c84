"""recorderd: a call-recording appliance for small healthcare sites.

The pipeline, top to bottom (each arrow is a pure, synchronous stage unless marked I/O)::

    capture/  (I/O)  pcap file or live interface        -> Frame(ts, linktype, bytes)
    net/             link, IPv4/IPv6, fragments, UDP, TCP -> Datagram
    sip/ | rtp/      dialogs and SDP | streams, order, loss, DTMF
    codecs/          payload -> 16-bit samples (G.711 by NumPy table)
    engine/          glue: feed(frame), advance(now), close(now) -> events
    store/   (I/O)  age-encrypted Sun AU recordings, SQLite index, export

``replay`` drives it from capture files; the capture timestamp is the only clock.
"""

__version__ = "0.1.0"
