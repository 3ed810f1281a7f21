"""``vidact train --cfg FILE.yaml [--opts KEY VALUE ...]``: train or fine-tune a model.

Accepts PySlowFast training configs and vidact run YAML (``vidact_run:``). Under
``torchrun`` every process runs this command and trains one shard (DDP).
"""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train or fine-tune a model from a PySlowFast or vidact run config")
    p.add_argument("--cfg", required=True, metavar="FILE.yaml", help="PySlowFast config or vidact run YAML")
    p.add_argument("--opts", nargs=argparse.REMAINDER, default=[], metavar="KEY VALUE",
                   help="overrides, last on the line, e.g. SOLVER.MAX_EPOCH 5 (PySlowFast) or solver.max_epoch 5 (vidact)")
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic kernels, so a resumed run matches an uninterrupted one bit for bit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    from vidact.cli._args import check_opts_last
    from vidact.config.run_io import load_run_config
    from vidact.engine import distributed as dist
    from vidact.engine.trainer import train

    check_opts_last(args.opts, args.command)
    run = load_run_config(args.cfg, args.opts)
    try:
        result = train(run, deterministic=args.deterministic, progress=not args.no_progress)
    finally:
        dist.cleanup()
    if dist.is_main_process() and result.final_metrics:
        print(json.dumps({"epochs": run.solver.max_epoch, **result.final_metrics}, sort_keys=True))
    return 0
