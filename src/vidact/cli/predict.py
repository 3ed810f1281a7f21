"""``vidact predict``: Kinetics top-5 of one centre view from the middle of a video."""

from __future__ import annotations

import argparse

from vidact.cli.classify import add_model_arguments, model_from_args


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "predict",
        help="top-5 Kinetics classes of the clip in the middle of a video",
        description="One clip from the middle of the video, short side scaled, centre crop: the top-5 classes.",
    )
    p.add_argument("video", metavar="VIDEO", help="video file")
    add_model_arguments(p, required=True)
    p.set_defaults(func=_predict)


def _predict(args: argparse.Namespace) -> int:
    from vidact.pipeline.classify import classify

    result = classify(
        args.video,
        model_from_args(args),
        weights=args.weights,
        labels=args.labels,
        views="1x1",
        top_k=5,
        device=args.device,
        precision=args.precision,
        compile=args.compile,
        progress=False,
    )
    view = result.view_scores[0]
    print(f"{result.video}: clip {view.start:.2f}-{view.end:.2f} s, model {result.model}")
    for rank, c in enumerate(result.top_k, 1):
        print(f"{rank}. {c.score:.3f}  {c.name}")
    return 0
