"""``vidact detect``: persons, track ids and their actions in a video, as data and as a drawn video."""

from __future__ import annotations

import argparse
import sys

from vidact.cli._args import add_precision_arguments


def register(subparsers) -> None:
    from vidact.io.video import X264_PRESETS
    from vidact.weights.zoo import DEFAULT_AVA_MODEL

    p = subparsers.add_parser(
        "detect",
        help="spatio-temporal action detection: who does what, when (AVA models)",
        description=(
            "Detect persons on keyframes (1 per second by default), track them and score their actions with an "
            "AVA model. Writes, per video: ID.detect.mp4 (drawn), ID.actions.csv (AVA format), ID.tracks.csv, "
            "ID.keyframes.jsonl, ID.timeline.png and ID.metrics.json."
        ),
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("video", nargs="?", help="a video file or a stream URL (rtsp://, http://, ...)")
    source.add_argument("--webcam", type=int, metavar="N", help="read camera N (/dev/videoN on Linux)")
    source.add_argument("--list", metavar="VIDEOS.txt", help="a file of video paths, one a line; under torchrun "
                        "each rank takes every WORLD_SIZE-th video")
    model = p.add_mutually_exclusive_group()
    model.add_argument("--model", metavar="NAME", help=f"an AVA zoo model (default {DEFAULT_AVA_MODEL})")
    model.add_argument("--cfg", metavar="FILE.yaml", help="a model config (vidact or PySlowFast YAML), or a converted "
                       ".safetensors (its config and weights)")
    p.add_argument("--weights", metavar="PATH", help="checkpoint (default: the zoo model's; for --cfg, a converted "
                   "file's own weights, else random)")
    p.add_argument("--labels", metavar="FILE", help="class names (JSON/pbtxt/text label map; default AVA's 80)")
    p.add_argument("--detector", default="torchvision", metavar="NAME|PATH",
                   help="person detector: torchvision (default), fastestdet, yolo, PATH.onnx, csv:BOXES.csv, "
                        "detectron2:NAME or a Detectron2 .pkl/.pth")
    p.add_argument("--detector-threshold", type=float, metavar="P", help="person score threshold (detector default)")
    p.add_argument("--boxes-start", type=float, metavar="SECONDS",
                   help="csv: boxes only: the file's timestamp of the video's first frame (AVA files: 900)")
    p.add_argument("--rate", type=float, default=1.0, metavar="HZ", help="action predictions per second (default 1)")
    threshold = p.add_mutually_exclusive_group()
    threshold.add_argument("--threshold", type=float, metavar="P",
                           help="one action threshold for every class (default: PySlowFast's 0.7 for common "
                                "classes, 0.3 for the others)")
    threshold.add_argument("--top-k", type=int, metavar="K", help="report the K best actions per person instead")
    p.add_argument("--end", type=float, metavar="SECONDS", help="stop after the keyframe at this time")
    p.add_argument("--out", default=".", metavar="DIR", help="output folder (default: the current one)")
    p.add_argument("--device", choices=("cpu", "cuda"), help="where the models run (default: cuda when present)")
    p.add_argument("--decode", default="cpu", choices=("auto", "cpu", "cuda"),
                   help="video decoder: cpu (default; faster per stream than NVDEC on an H200, see "
                        "docs/performance.md), cuda (NVDEC: frees the CPU), or auto: NVDEC when the models run on "
                        "CUDA and NVDEC can decode the video, else the CPU")
    add_precision_arguments(p)
    p.add_argument("--no-video", action="store_true", help="write the data files only, no drawn video")
    p.add_argument("--video-preset", default="veryfast", choices=X264_PRESETS, metavar="PRESET",
                   help="x264 preset of the drawn video: ultrafast ... veryslow (default veryfast; faster = larger)")
    p.add_argument("--no-timeline", action="store_true", help="skip the timeline PNG")
    p.set_defaults(func=_detect)


def _detect(args: argparse.Namespace) -> int:
    from vidact.pipeline.detect import ActionThresholds, detect_many, read_video_list

    if args.list:
        videos = read_video_list(args.list)
    else:
        videos = [args.webcam if args.webcam is not None else args.video]
    if args.top_k is not None:
        thresholds = ActionThresholds(top_k=args.top_k)
    else:
        thresholds = args.threshold  # None: PySlowFast's rule
    from tqdm import tqdm

    # Keyframes as they are scored (a bar on a terminal): detect can run for minutes.
    with tqdm(unit="keyframe", desc="detect", disable=None) as bar:
        def summary(outputs) -> None:  # as each video is written: a later one may fail
            fps = outputs.metrics.get("frames_per_s")
            speed = f", {fps:.2f} frames/s" if fps is not None else ""
            bar.write(f"{outputs.jsonl.parent}/{outputs.jsonl.name.removesuffix('.keyframes.jsonl')}.*: "
                      f"{outputs.keyframes} keyframes, {outputs.persons} person boxes{speed}", file=sys.stdout)

        detect_many(
            videos,
            args.out,
            model=args.cfg or args.model,
            weights=args.weights,
            label_file=args.labels,
            detector=args.detector,
            detector_threshold=args.detector_threshold,
            boxes_start=args.boxes_start,
            rate=args.rate,
            thresholds=thresholds,
            end=args.end,
            device=args.device,
            precision=args.precision,
            compile=args.compile,
            decode=args.decode,
            video=not args.no_video,
            video_preset=args.video_preset,
            timeline=not args.no_timeline,
            on_keyframe=lambda _: bar.update(1),
            on_video=summary,
        )
    return 0
