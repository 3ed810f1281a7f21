"""``classify`` wall time per minute of video, by views (1x1 and 3x10), on CPU by default.

    python -m benchmarks.classify_time [VIDEO ...] [--model NAME | --cfg FILE.yaml] [--weights PATH]
        [--views 1x1 3x10] [--threads N] [--device cpu] [--json OUT]

Default video: ``intel_one-by-one-person-detection.mp4`` (139.4 s, 768x432, 10 fps) from
$VIDACT_SHARED/data/videos (default ../shared). Default model: the zoo's
``slowfast_8x8_r50`` with random weights (timing does not depend on the weight values;
pass ``--weights default`` for the official ones). The model is built once, outside the
timed region; each figure is the wall time of :func:`vidact.classify` (decode, preprocess,
forward), divided by the video's length in minutes. Views run one after the other, so the
first warms the allocator; the 1x1 figure is then measured again and the lower kept.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from benchmarks import run_main

SHARED = Path(os.environ.get("VIDACT_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
DEFAULT_VIDEO = "intel_one-by-one-person-detection.mp4"


def time_classify(video: Path, model, views: str, device: str) -> tuple[float, float]:
    """Seconds :func:`vidact.classify` takes on ``video`` with ``views``, and the video's duration."""
    import vidact

    start = time.perf_counter()
    result = vidact.classify(video, model, views=views, device=device, progress=False)
    return time.perf_counter() - start, result.duration


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", nargs="*", type=Path, help=f"video files (default: the shared {DEFAULT_VIDEO})")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--model", default="slowfast_8x8_r50", help="zoo model name")
    which.add_argument("--cfg", help="model config (PySlowFast YAML) instead of a zoo name")
    parser.add_argument("--weights", help="checkpoint, or 'default' for the zoo's (default: random weights)")
    parser.add_argument("--views", nargs="+", default=["1x1", "3x10"], help="view settings to time")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    import torch

    from vidact.api import create_model

    if args.threads:
        torch.set_num_threads(args.threads)
    videos = args.videos or [SHARED / "data" / "videos" / DEFAULT_VIDEO]
    missing = [str(v) for v in videos if not v.is_file()]
    if missing:
        print(f"videos not found: {', '.join(missing)} (set VIDACT_SHARED or pass paths)", file=sys.stderr)
        return 2
    model = create_model(args.cfg or args.model, weights=args.weights).eval()
    name = args.cfg or args.model
    print(f"cpus: {os.cpu_count()}  torch threads: {torch.get_num_threads()}  device: {args.device}  model: {name}")
    results = []
    for video in videos:
        for views in args.views:
            seconds, duration = time_classify(video, model, views, args.device)
            if views == args.views[0]:  # the first run also paid for warm-up
                seconds = min(seconds, time_classify(video, model, views, args.device)[0])
            row = {
                "video": video.name,
                "duration_s": duration,
                "views": views,
                "wall_s": seconds,
                "wall_s_per_video_minute": seconds / (duration / 60),
            }
            print(f"{video.name} ({duration:.1f} s) {views}: {seconds:.1f} s, "
                  f"{row['wall_s_per_video_minute']:.1f} s per minute of video", flush=True)
            results.append(row)
    if args.json:
        from vidact.fileutil import atomic_open

        with atomic_open(args.json) as f:
            report = {"cpus": os.cpu_count(), "threads": torch.get_num_threads(), "device": args.device,
                      "model": name, "weights": args.weights or "random", "results": results}
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    run_main(main)
