"""Command-line subcommand groups beyond the core ones in ``cli.py``.

Each module has ``register(sub)``, which adds its subparsers with ``set_defaults(handler=...)``; a
handler takes the parsed arguments and returns the exit status, raising RecorderdError for failures.
"""
