"""``vidact models`` (the zoo as a table) and ``vidact download NAME``."""

from __future__ import annotations

import argparse
import sys

from vidact.weights.zoo import ZOO, ZooEntry, get_entry, list_models


def register(subparsers) -> None:
    p = subparsers.add_parser("models", help="list the model zoo")
    p.add_argument("--task", choices=["kinetics", "ava"], help="only models of this task")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table with URLs (docs/models.md)")
    p.set_defaults(func=_models)

    p = subparsers.add_parser("download", help="download a zoo model's checkpoint into the cache")
    p.add_argument("names", nargs="+", metavar="NAME", help="zoo model name(s), see `vidact models`")
    p.set_defaults(func=_download)


def _input(entry: ZooEntry) -> str:
    spec = entry.input
    return f"{spec.num_frames}x{spec.sampling_rate} @{spec.test_crop_size}"


def _accuracy(entry: ZooEntry) -> str:
    return " ".join(f"{k} {v:g}" for k, v in entry.metrics.items()) or "-"


def markdown_table(task: str | None = None) -> str:
    """The zoo as a Markdown table, generated from the entries (docs/models.md is this)."""
    lines = [
        "| name | task | input (frames x rate @ crop) | params | GFLOPs | published | source | checkpoint |",
        "|---|---|---|---:|---:|---|---|---|",
    ]
    for name in list_models(task):
        entry = ZOO[name]
        lines.append(
            f"| `{name}` | {entry.task} | {_input(entry)} | {entry.params / 1e6:.2f}M | {entry.gflops:.2f} "
            f"| {_accuracy(entry)} | {entry.source} | [{entry.url.rsplit('/', 1)[-1]}]({entry.url}) |"
        )
    return "\n".join(lines) + "\n"


def _models(args: argparse.Namespace) -> int:
    from vidact.paths import weights_dir

    if args.markdown:
        print(markdown_table(args.task), end="")
        return 0
    cache = weights_dir()
    rows = [("name", "task", "input", "params", "GFLOPs", "published", "cached")]
    for name in list_models(args.task):
        entry = ZOO[name]
        rows.append(
            (
                name,
                entry.task,
                _input(entry),
                f"{entry.params / 1e6:.2f}M" if entry.params else "-",
                f"{entry.gflops:.1f}" if entry.gflops else "-",
                _accuracy(entry),
                _cached(cache / entry.filename),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0


def _cached(path) -> str:
    from vidact.weights.download import incomplete_checkpoint

    try:
        if not path.is_file():
            return "no"
    except OSError:  # a cache folder this user may not open
        return "?"
    # A cut-short file from before downloads were checked; `vidact download` replaces it.
    return "yes" if incomplete_checkpoint(path) is None else "broken"


def _download(args: argparse.Namespace) -> int:
    from vidact.api import fetch_weights

    from vidact.errors import VidactError

    entries = [get_entry(name) for name in args.names]  # fail on a bad name before any download
    failed = 0
    for entry in entries:  # one failure does not cost the others
        try:
            print(f"{entry.name}: {fetch_weights(entry)}")
        except VidactError as err:
            print(f"vidact download: error: {entry.name}: {err}", file=sys.stderr)
            failed += 1
    if failed:
        print(f"vidact download: {failed} of {len(entries)} downloads failed", file=sys.stderr)
    return 2 if failed else 0
