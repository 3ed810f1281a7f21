"""``vidact test --cfg FILE.yaml``: multi-view accuracy of a checkpoint (Kinetics protocol)."""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    p = subparsers.add_parser("test", help="evaluate a checkpoint on DATA.PATH_TO_DATA_DIR/test.csv")
    p.add_argument("--cfg", required=True, metavar="FILE.yaml", help="PySlowFast config or vidact run YAML")
    p.add_argument("--checkpoint", metavar="PATH",
                   help="weights to test (default: TEST.CHECKPOINT_FILE_PATH, else the latest in "
                        "OUTPUT_DIR/checkpoints, else TRAIN.CHECKPOINT_FILE_PATH)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--opts", nargs=argparse.REMAINDER, default=[], metavar="KEY VALUE",
                   help="config overrides, last on the line, e.g. TEST.BATCH_SIZE 8")
    p.set_defaults(func=_test)


def _test(args: argparse.Namespace) -> int:
    from vidact.cli._args import check_opts_last
    from vidact.config.run_io import load_run_config
    from vidact.engine import distributed as dist
    from vidact.engine.trainer import test

    check_opts_last(args.opts, args.command)
    run = load_run_config(args.cfg, args.opts)
    try:
        metrics = test(run, args.checkpoint, progress=not args.no_progress)
    finally:
        dist.cleanup()
    if dist.is_main_process():
        print(json.dumps(metrics, sort_keys=True))
    return 0
