"""``vidact eval-ava``: AVA frame-mAP@0.5IOU of a detection CSV, official protocol."""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval-ava",
        help="AVA frame-mAP of a detection CSV (official ActivityNet protocol)",
        description="Score AVA-format detections against AVA annotations: per-class AP@0.5IOU and their mean.",
    )
    p.add_argument(
        "--gt", required=True, metavar="GT.csv", help="annotations: video_id,timestamp,x1,y1,x2,y2,action_id[,person_id]"
    )
    p.add_argument(
        "--pred", required=True, metavar="PRED.csv", help="detections: video_id,timestamp,x1,y1,x2,y2,action_id,score"
    )
    p.add_argument("--labelmap", required=True, metavar="MAP", help="classes to evaluate (pbtxt, JSON or text label map)")
    p.add_argument("--exclusions", metavar="EX.csv", help="video_id,timestamp keyframes to leave out of both files")
    p.add_argument("--json", metavar="OUT.json", help="also write the results as JSON")
    p.add_argument(
        "--ignore-unlabeled-keyframes",
        action="store_true",
        help="drop detections on keyframes without annotations instead of counting them as false positives",
    )
    p.set_defaults(func=_eval_ava)


def _eval_ava(args: argparse.Namespace) -> int:
    from vidact.evaluation.ava import evaluate_ava
    from vidact.fileutil import atomic_open, check_writable_file

    if args.json:
        check_writable_file(args.json)  # before the table is printed
    result = evaluate_ava(
        args.gt, args.pred, args.labelmap, args.exclusions, ignore_unlabeled_keyframes=args.ignore_unlabeled_keyframes
    )
    print(result.format_table())
    if args.json:
        report = result.to_dict()
        report["inputs"] = {
            "groundtruth": args.gt,
            "detections": args.pred,
            "labelmap": args.labelmap,
            "exclusions": args.exclusions,
            "ignore_unlabeled_keyframes": args.ignore_unlabeled_keyframes,
        }
        with atomic_open(args.json, "w") as f:
            json.dump(report, f, indent=1)
            f.write("\n")
    return 0
