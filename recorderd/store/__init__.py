"""The recording store: encrypted recordings (age around Sun AU), the SQLite index, and export.

This is the I/O side of the pipeline: it consumes engine events (``sink.StoreSink``) and is the
only package that writes recordings. See ``store.py`` for the on-disk layout.
"""
