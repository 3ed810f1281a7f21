"""Entry point: discovers the subcommand modules and maps errors to exit codes."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import vidact
import vidact.cli
from vidact.errors import VidactError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vidact", description="Video action recognition and detection.")
    parser.add_argument("--version", action="version", version=f"vidact {vidact.__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(vidact.cli.__path__), key=lambda m: m.name):
        if info.name == "main":
            continue
        module = importlib.import_module(f"vidact.cli.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        status = args.func(args)
    except VidactError as err:
        print(f"vidact {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"vidact {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
