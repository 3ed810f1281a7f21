"""Arguments shared by the commands that run a model."""

from __future__ import annotations

import argparse


def add_precision_arguments(parser: argparse.ArgumentParser) -> None:
    """``--precision`` and ``--compile``, shared by the commands that run a model."""
    from vidact.models.optimize import INFERENCE_MODES

    parser.add_argument("--precision", choices=INFERENCE_MODES, default="auto",
                        help="inference mode: auto (optimised; bf16 where the hardware has it, else fp32), "
                             "fp32, bf16, fp16, or eager (the unoptimised reference path)")
    parser.add_argument("--compile", action="store_true", help="also torch.compile the model (slow first run, cached)")


def check_opts_last(opts: list[str], command: str) -> None:
    """``--opts`` takes the rest of the line, so an option given after it arrives as a key or value."""
    from vidact.errors import VidactError

    for item in opts:
        if item.startswith("--"):
            raise VidactError(f"--opts: {item!r} looks like an option of vidact {command}: put --opts last on the line")
