"""``vidact classify``: whole-video top-k (Kinetics multi-view) and a sliding-window timeline."""

from __future__ import annotations

import argparse
import json

from vidact.cli._args import add_precision_arguments
from vidact.weights.zoo import DEFAULT_KINETICS_MODEL


def add_model_arguments(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    """``--model NAME | --cfg FILE.yaml``, ``--weights``, ``--labels``, ``--device``."""
    which = parser.add_mutually_exclusive_group(required=required)
    default = "" if required else f" (default {DEFAULT_KINETICS_MODEL})"
    which.add_argument("--model", metavar="NAME", help=f"zoo model, see `vidact models --task kinetics`{default}")
    which.add_argument("--cfg", metavar="FILE.yaml", help="model config: a PySlowFast YAML file or vidact's own, or a "
                       "converted .safetensors (its config and weights)")
    parser.add_argument(
        "--weights", metavar="PATH", help="checkpoint (.pyth, .pkl, .safetensors); default: the zoo model's official weights"
    )
    parser.add_argument("--labels", metavar="FILE", help="class names (label map: JSON, pbtxt or one name per line)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    add_precision_arguments(parser)


def model_from_args(args: argparse.Namespace) -> str:
    return args.cfg or args.model or DEFAULT_KINETICS_MODEL


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "classify",
        help="classify the actions of a whole video (Kinetics views) with a timeline",
        description=(
            "Whole-video top-k with the Kinetics multi-view protocol (clips x crops, softmax summed) "
            "and, with --window/--stride or --render, top-k per time window."
        ),
    )
    p.add_argument("video", metavar="VIDEO", help="video file (or folder of extracted frames)")
    add_model_arguments(p)
    p.add_argument(
        "--views", default="3x10", metavar="CROPSxCLIPS", help="3x10: Kinetics test protocol (default); 1x1: one centre view"
    )
    p.add_argument("--window", type=float, metavar="SEC", help="timeline window length (default: one clip)")
    p.add_argument("--stride", type=float, metavar="SEC", help="timeline step (default: the window)")
    p.add_argument("--top-k", type=int, default=5, metavar="K", help="classes to report (default 5)")
    p.add_argument("--json", metavar="OUT.json", help="write the results as JSON")
    p.add_argument("--render", metavar="OUT.mp4", help="write the video with the timeline drawn on it")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_classify)


def _classify(args: argparse.Namespace) -> int:
    from vidact.errors import VidactError
    from vidact.fileutil import atomic_open, check_writable_file, same_file
    from vidact.pipeline.classify import classify, render_timeline

    outputs = {option: path for option, path in (("--json", args.json), ("--render", args.render)) if path}
    for option, output in outputs.items():  # before the work, not after it
        check_writable_file(output)
        if same_file(output, args.video):
            raise VidactError(f"{option} {output} is the input video; it would replace it, write to another file")
    if len(outputs) == 2 and same_file(args.json, args.render):
        raise VidactError(f"--json and --render are one file, {args.json}; give each its own")
    if args.render:
        from vidact.pipeline.render import get_font

        get_font(12)  # an unusable $VIDACT_FONT, said before the work
    result = classify(
        args.video,
        model_from_args(args),
        weights=args.weights,
        labels=args.labels,
        views=args.views,
        window=args.window,
        stride=args.stride,
        timeline=args.render is not None,
        top_k=args.top_k,
        device=args.device,
        precision=args.precision,
        compile=args.compile,
        progress=not args.no_progress,
    )
    crops, clips = result.views
    print(f"{result.video}: {result.duration:.1f} s, {crops}x{clips} views, model {result.model}")
    for rank, c in enumerate(result.top_k, 1):
        print(f"{rank:>3}. {c.score:.3f}  {c.name}")
    for window in result.windows:
        best = window.top_k[0]
        print(f"  {window.start:7.2f}-{window.end:7.2f} s  {best.score:.3f}  {best.name}")
    if args.render:
        render_timeline(result, args.render, progress=not args.no_progress)
    if args.json:
        with atomic_open(args.json, "w") as f:
            json.dump(result.to_dict(), f, indent=1)
            f.write("\n")
    return 0
