"""CPU latency per image: vidact's Detectron2 Faster R-CNN R50-FPN vs torchvision's R50-FPN v2.

    python -m benchmarks.detector [--threads 2] [--repeats 5] [--warmup 1] [--json OUT]

Both detectors get the same RGB frames (the three Detectron2 fixture images from the shared
reference folder, $VIDACT_SHARED, default ../shared) and resize them to the same size (shortest
edge 800, longest at most 1333): vidact with PIL on uint8 as Detectron2 does, torchvision with its
own transform. Weights are random and full width (the zoo checkpoint cannot be downloaded here;
latency hardly depends on the values). Each image is timed end to end, frame in, detections out;
the figure is the median over images x repeats after warm-up, measured alternately in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from benchmarks import positive_int, run_main

IMAGES = (
    "img0_mmaction2_demo_f100.png",
    "img1_mmaction2_test_video_structuralize_f150.png",
    "img2_intel_one-by-one-person-detection_f300.png",
)


def load_frames() -> list:
    import numpy as np
    from PIL import Image

    shared = Path(os.environ.get("VIDACT_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    folder = shared / "fixtures" / "detectron2" / "images"
    missing = [name for name in IMAGES if not (folder / name).is_file()]
    if missing:
        sys.exit(f"benchmark images missing under {folder}: set VIDACT_SHARED to the shared reference folder")
    return [np.asarray(Image.open(folder / name).convert("RGB")) for name in IMAGES]


def build_detectors():
    """(vidact detector, torchvision detector), both R50-FPN, full width, random weights, eval."""
    import torch
    from torchvision.models.detection import fasterrcnn_resnet50_fpn_v2

    from vidact.detectors.detectron2_frcnn import Detectron2FasterRCNN, Detectron2PersonDetector

    torch.manual_seed(0)
    ours = Detectron2FasterRCNN(
        stem_channels=64,
        stages=[(3, 64, 256), (4, 128, 512), (6, 256, 1024), (3, 512, 2048)],
        fpn_channels=256,
        fc_dim=1024,
        num_classes=80,
        num_bbox_reg_classes=80,
    ).eval()
    theirs = fasterrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, min_size=800, max_size=1333).eval()
    return Detectron2PersonDetector(ours, score_threshold=0.5), theirs


def measure(threads: int, repeats: int, warmup: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    frames = load_frames()
    ours, theirs = build_detectors()

    def run_ours(frame):
        return ours.detect_all_classes(frame)

    def run_theirs(frame):
        tensor = torch.tensor(frame).permute(2, 0, 1).float().div_(255)  # PIL arrays are read-only
        with torch.inference_mode():
            return theirs([tensor])

    runners = {"vidact_detectron2_r50_fpn": run_ours, "torchvision_fasterrcnn_r50_fpn_v2": run_theirs}
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(warmup):
        for run in runners.values():
            for frame in frames:
                run(frame)
    for _ in range(repeats):
        for name, run in runners.items():  # alternate so that machine load hits both alike
            for frame in frames:
                start = time.perf_counter()
                run(frame)
                times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {
        "threads": threads,
        "repeats": repeats,
        "warmup": warmup,
        "images": [f"{f.shape[0]}x{f.shape[1]}" for f in frames],
        "input_size": "shortest edge 800, max 1333 (800x1063, 751x1333, 750x1333)",
        "median_s_per_image": medians,
        "min_s_per_image": {name: min(values) for name, values in times.items()},
        "ratio_vidact_over_torchvision": medians["vidact_detectron2_r50_fpn"] / medians["torchvision_fasterrcnn_r50_fpn_v2"],
        "torch": torch.__version__,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=positive_int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--json", help="write the record here")
    args = parser.parse_args(argv)

    record = measure(args.threads, args.repeats, args.warmup)
    for name, median in record["median_s_per_image"].items():
        print(f"{name:36} median {median:7.3f} s/image   min {record['min_s_per_image'][name]:7.3f} s")
    ratio = record["ratio_vidact_over_torchvision"]
    print(f"ratio vidact / torchvision: {ratio:.2f}  ({args.threads} threads, {args.repeats} repeats x 3 images)")
    if args.json:
        from vidact.fileutil import atomic_open

        with atomic_open(args.json) as f:
            json.dump(record, f, indent=2)
    return 0


if __name__ == "__main__":
    run_main(main)
