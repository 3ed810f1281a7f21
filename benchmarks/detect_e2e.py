"""End-to-end `vidact detect` speed: frames/s, busy time per stage, peak RSS.

    python -m benchmarks.detect_e2e [--cfg C3.yaml] [--video VIDEO] [--detector fastestdet|PATH|csv:...]
                                    [--fixed-boxes N] [--instant-model] [--draw-on-rgb] [--switch-interval S]
                                    [--rate 1] [--threads N] [--device cpu|cuda] [--end SECONDS] [--no-video]
                                    [--video-preset P] [--decode auto|cpu|cuda] [--cudnn-benchmark] [--json OUT]

Defaults: the shared ``mmaction2_test_video_structuralize.mp4`` (300 frames, 426x240, 29.97 fps),
PySlowFast's ``c3.yaml`` model (SlowFast 32x2 R101 + non-local, AVA) with random weights (speed
hardly depends on the values), FastestDet on each keyframe, 1 prediction per second, the drawn
video written. ``--fixed-boxes N`` replaces the detector by N fixed boxes on every keyframe, as
in the reference demo measurement (3.66 frames/s, 11.7 without drawing; 4.95 GiB peak).
``--instant-model`` answers every keyframe at once: what the rest of the pipeline reaches on this
host, as a fast GPU would leave it. ``--draw-on-rgb`` draws as detect does where it cannot use the
decoded YUV planes (no OpenCV, odd sizes), for a side-by-side comparison. ``--switch-interval``
sets how long a thread waiting for the GIL lets the running one go on (the stages are threads).

Stages run concurrently, so their busy times add up to more than the wall time; the figure to
watch is the wall time not explained by the action model (``overhead``), which the design aims
to keep under a quarter of the wall time, and the peak RSS (aim: under 2 GiB). When the model
runs on CUDA, GPU utilisation and memory (NVML) are recorded too.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from benchmarks import run_main

SHARED = Path(os.environ.get("VIDACT_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def _fixed_boxes_csv(folder: Path, count: int, seconds: int) -> str:
    """An AVA-format CSV with ``count`` side-by-side boxes on every whole second."""
    path = folder / "fixed_boxes.csv"
    rows = []
    for t in range(seconds + 1):
        for k in range(count):
            x1 = 0.05 + 0.9 * k / count
            rows.append(f"fixed,{t},{x1:.3f},0.100,{x1 + 0.9 / count - 0.02:.3f},0.950,,0.99\n")
    path.write_text("".join(rows))
    return f"csv:{path}"


def _instant(model):
    """``model`` answering at once with zeros; clips stay uint8 (a GPU model normalises them there)."""
    import numpy as np

    from vidact.pipeline.detect import ActionModel

    class InstantModel(ActionModel):
        def _pathways(self, clip):
            return clip

        def __call__(self, inputs, rois):
            return np.zeros((len(rois), self.num_classes), np.float32)

    return InstantModel(model.model, model.class_names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cfg", default=str(SHARED / "configs" / "pyslowfast" / "fork" / "c3.yaml"))
    parser.add_argument("--weights", help="checkpoint (default: random weights)")
    parser.add_argument("--video", default=str(SHARED / "data" / "videos" / "mmaction2_test_video_structuralize.mp4"))
    parser.add_argument("--detector", default=str(SHARED / "data" / "weights" / "fastestdet" / "FastestDet.onnx"))
    parser.add_argument("--fixed-boxes", type=int, metavar="N", help="N fixed boxes per keyframe instead of a detector")
    parser.add_argument("--switch-interval", type=float, metavar="S",
                        help="Python's thread switch interval (sys.setswitchinterval; default 0.005 s)")
    parser.add_argument("--draw-on-rgb", action="store_true",
                        help="draw on RGB copies of the frames even where detect would draw on the decoded planes")
    parser.add_argument("--instant-model", action="store_true",
                        help="an action model that answers at once (all scores 0), its clips prepared as for a "
                             "GPU: the frames/s the rest of the pipeline reaches on this host")
    parser.add_argument("--rate", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--end", type=float, help="stop after this keyframe (a quick check)")
    parser.add_argument("--no-video", action="store_true", help="skip drawing and encoding")
    parser.add_argument("--precision", default="eager", choices=("auto", "eager", "fp32", "bf16", "fp16"),
                        help="action model inference mode (default eager, as the reference runs)")
    parser.add_argument("--video-preset", default="veryfast", help="x264 preset of the drawn video (default veryfast)")
    parser.add_argument("--decode", default="cpu", choices=("auto", "cpu", "cuda"),
                        help="video decoding: cuda = NVDEC; auto = NVDEC when the model runs on CUDA and it works")
    parser.add_argument("--cudnn-benchmark", action="store_true",
                        help="switch cuDNN's autotuner on, which detect leaves off (its kernel timing made the "
                             "warm-up seconds long): the A/B for that choice")
    parser.add_argument("--json", metavar="OUT", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    for path in (args.cfg, args.video):
        if not Path(path).is_file():
            sys.exit(f"{path} not found: set VIDACT_SHARED to the shared reference folder or pass the path")

    import warnings

    import torch

    from vidact.pipeline.detect import STAGES, DetectNotice, detect_video, load_action_model

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    if args.draw_on_rgb:
        from vidact.pipeline.render import I420Painter

        I420Painter.create = classmethod(lambda cls, height, width: None)  # detect's fallback path
    warnings.simplefilter("ignore", DetectNotice)  # "random weights" is the point here
    with tempfile.TemporaryDirectory(prefix="vidact_bench_") as tmp:
        detector = args.detector
        if args.fixed_boxes:
            detector = _fixed_boxes_csv(Path(tmp), args.fixed_boxes, seconds=3600)
        model = load_action_model(args.cfg, args.weights, device=args.device, precision=args.precision)
        if args.cudnn_benchmark:
            torch.backends.cudnn.benchmark = True
        if args.instant_model:
            model = _instant(model)
        result = detect_video(
            args.video, tmp, model=model, detector=detector, rate=args.rate, end=args.end,
            video=not args.no_video, timeline=False, video_preset=args.video_preset, decode=args.decode,
        )
    metrics = dict(result.metrics)
    wall = metrics["wall_s"]
    overhead = max(wall - metrics["time_act_s"], 0.0)
    metrics["overhead_s"] = round(overhead, 4)
    metrics["overhead_fraction"] = round(overhead / wall, 4) if wall else 0.0
    metrics.update(cfg=args.cfg, video=args.video, detector=detector if not args.fixed_boxes else
                   f"{args.fixed_boxes} fixed boxes", device=args.device, threads=torch.get_num_threads(),
                   rate=args.rate, instant_model=args.instant_model, draw_on_rgb=args.draw_on_rgb,
                   cudnn_benchmark=args.cudnn_benchmark, precision=args.precision, weights=args.weights or "random",
                   video_written=not args.no_video, video_preset=args.video_preset, end=args.end,
                   decode_asked=args.decode,
                   switch_interval=sys.getswitchinterval())

    print(f"{Path(args.video).name}: {metrics.get('frames', 0):.0f} frames, {metrics['keyframes']:.0f} keyframes, "
          f"{wall:.2f} s wall, {metrics.get('frames_per_s', 0):.2f} frames/s, peak RSS {metrics['peak_rss_gib']:.2f} GiB")
    print(f"{'stage':<9} {'busy s':>8} {'of wall':>8}")
    for stage in STAGES:
        busy = metrics[f"time_{stage}_s"]
        print(f"{stage:<9} {busy:8.2f} {busy / wall:8.1%}")
    print(f"{'overhead':<9} {overhead:8.2f} {overhead / wall:8.1%}   (wall time not spent in the action model)")
    print(f"frames held: peak {metrics['peak_frames_held']:.0f} of {metrics['frame_capacity']:.0f}")
    if metrics["warmup_s"]:
        print(f"warm-up: {metrics['warmup_s']:.2f} s (the action model's first call, beside the first decoding)")
    if args.json:
        from vidact.fileutil import atomic_open

        with atomic_open(args.json) as f:
            f.write(json.dumps(metrics, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    run_main(main)
