"""``vidact gpu-monitor``: GPU utilisation and memory, like ``nvidia-smi --query-gpu ... -l 5``."""

from __future__ import annotations

import argparse

from vidact.tools.gpu_monitor import Nvml, monitor


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "gpu-monitor",
        help="live table of GPU utilisation and memory (NVML); optional CSV log",
        description="Per GPU: name, utilisation, memory total/free/used, read through NVML. "
        "Exits 2 with a one-line message when no NVIDIA driver is present.",
    )
    parser.add_argument("--interval", type=float, default=5.0, metavar="SEC", help="seconds between samples (default 5)")
    parser.add_argument("--count", type=int, default=None, metavar="N", help="stop after N samples (default: until Ctrl-C)")
    parser.add_argument("--csv", default=None, metavar="FILE", help="append rows to this CSV file (header when new)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with Nvml() as nvml:
        monitor(nvml, interval=args.interval, count=args.count, csv_path=args.csv)
    return 0
