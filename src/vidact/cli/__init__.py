"""Command-line interface: ``vidact <command>``.

Each module in this package that defines ``register(subparsers)`` adds one or
more subcommands. A subcommand's parser sets ``func``, called with the parsed
arguments; it returns an exit status (or None for 0).
"""
