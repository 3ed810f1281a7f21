"""``vidact doctor``: versions, GPUs against the torch build, CPU features, codecs, cache; exit 1 when broken."""

from __future__ import annotations

import argparse
import json

from vidact.tools.doctor import collect, format_report


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="check that torch, the GPUs, PyAV/FFmpeg and the weight cache work together",
        description="Report versions, GPUs (against the architectures this torch build carries), CPU features, "
        "FFmpeg codecs and cached weights. Exit status 0 when usable (CPU-only is usable), 1 when something "
        "needed is broken.",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON (schema: docs/doctor.md)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    report = collect()
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return report["exit_status"]
