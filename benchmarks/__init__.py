"""Benchmarks: each module runs with one command, ``python -m benchmarks.<name>``."""

from __future__ import annotations

import argparse
import sys
from typing import Callable, NoReturn


def run_main(main: Callable[[], object]) -> NoReturn:
    """Run a benchmark's ``main`` as a command: its exit status is main's (0 for a non-int), and
    a :class:`~vidact.errors.VidactError` (a missing model, a GPU that is not there) is one line
    and status 2, as in the CLI."""
    from vidact.errors import VidactError

    try:
        status = main()
    except VidactError as error:
        print(f"{sys.argv[0]}: error: {error}", file=sys.stderr)
        sys.exit(2)
    sys.exit(status if isinstance(status, int) else 0)


def positive_int(text: str) -> int:
    """argparse type of a count that must be at least 1 (repeats, steps)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value
