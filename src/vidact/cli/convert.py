"""``vidact convert IN OUT``: any supported checkpoint to vidact's safetensors format."""

from __future__ import annotations

import argparse

from vidact.weights.checkpoint import convert_to_native


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert a checkpoint (PySlowFast .pyth/.pkl, PyTorchVideo hub, safetensors) to vidact's format",
        description="Convert a checkpoint to vidact's .safetensors file. The model config comes from the "
        "--cfg when given, else from the checkpoint when it stores one.",
    )
    parser.add_argument("input", help="checkpoint to read")
    parser.add_argument("output", help="vidact .safetensors file to write (not the input)")
    parser.add_argument("--cfg", metavar="CONFIG.yaml", help="PySlowFast or vidact config of the weights; needed for checkpoints that store none (Caffe2 .pkl, hub files), "
                        "and used instead of a stored one")
    parser.add_argument("--labels", metavar="FILE", help="class names to store with the weights (JSON/pbtxt/text label map; ids from 0, from 1 for an AVA model)")
    parser.add_argument("--strip-prefix", metavar="PREFIX", action="append", default=[],
                        help="remove PREFIX from the weights' names, e.g. 'module.' of a DataParallel save (repeatable)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = convert_to_native(args.input, args.output, cfg_path=args.cfg, labels=args.labels,
                             strip_prefixes=tuple(args.strip_prefix))
    print(f"wrote {path}")
    return 0
