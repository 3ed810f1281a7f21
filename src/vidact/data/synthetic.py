"""Synthetic datasets generated on the spot, for tests, demos and smoke-training.

``classification``: short H.264 videos of one moving shape on a noisy background whose
*motion* is the class (the shape, its colour, size, start and the background are
random, so appearance alone cannot tell the classes apart). The first four classes
(``up``, ``down``, ``grow``, ``shrink``) survive a horizontal flip; ``left``/``right``
and the rotations swap under one, so train sets of more than four classes with
``DATA.RANDOM_FLIP False``. Writes ``OUT_DIR/videos/*.mp4``, PySlowFast list files
``train.csv``, ``val.csv`` and ``test.csv`` (test = val) and ``classids.json``
(``{"class name": id}``, the demo label format)::

    python -m vidact.data.synthetic classification OUT_DIR --classes 4 --videos-per-class 12

Other scene generators (e.g. AVA-style scenes with boxes) register a subcommand in
:data:`GENERATORS`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from vidact.errors import VidactError
from vidact.fileutil import atomic_open
from vidact.io.video import VideoWriter

__all__ = ["GENERATORS", "MOTIONS", "SyntheticClassification", "make_classification", "render_motion", "main"]

# Flip-invariant motions first, so that small class counts train with the default flip.
# x264 preset of the generated videos: its own default, not VideoWriter's faster one. On these
# small frames `veryfast` lost enough motion detail that the tiny AVA model's held-out mAP
# came out at 0.46 and 0.72 in two of four runs (tests/test_ava_training.py wants >= 0.8;
# three runs with `medium` passed). x264's output varies slightly from run to run either way.
SYNTHETIC_PRESET = "medium"
MOTIONS = ("up", "down", "grow", "shrink", "left", "right", "rotate_cw", "rotate_ccw")


@dataclass(frozen=True)
class SyntheticClassification:
    """What :func:`make_classification` wrote."""

    root: Path
    class_names: tuple[str, ...]
    train_list: Path
    val_list: Path
    test_list: Path
    num_train: int
    num_val: int


def _shape_mask(kind: int, yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, size: float, angle: float) -> np.ndarray:
    """Pixels inside a shape centred at (cy, cx) of half-size ``size``, rotated by ``angle``."""
    dy, dx = yy - cy, xx - cx
    cos, sin = math.cos(angle), math.sin(angle)
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy
    if kind == 0:  # bar: rotation is visible
        return (np.abs(u) <= size) & (np.abs(v) <= max(size / 3, 1.5))
    if kind == 1:  # triangle
        return (v <= size / 2) & (v >= -size) & (np.abs(u) <= (v + size) / 1.5 / 2 + 0.5)
    return (np.abs(u) <= size * 0.8) & (np.abs(v) <= size * 0.5)  # rectangle


def render_motion(motion: str, rng: np.random.Generator, *, num_frames: int = 32, height: int = 64, width: int = 80) -> np.ndarray:
    """``num_frames x height x width x 3`` uint8 frames of one shape moving as ``motion``."""
    if motion not in MOTIONS:
        raise ValueError(f"unknown motion {motion!r}; use one of {MOTIONS}")
    # A dark, still, textured background and a bright shape: only the shape changes over
    # time, which keeps the set learnable by tiny models in a few epochs.
    background = rng.integers(0, 80, size=3)
    texture = rng.normal(0, 8, size=(1, height, width, 1))
    frames = np.repeat(np.clip(background + texture, 0, 255), num_frames, axis=0)
    colour = rng.integers(170, 256, size=3)
    kind = int(rng.integers(0, 3))
    size = float(rng.uniform(0.08, 0.12)) * min(height, width)
    span = num_frames - 1
    travel_y = min(1.2 * span, 0.9 * (height - 2 * size - 4))
    travel_x = min(1.2 * span, 0.9 * (width - 2 * size - 4))
    cy = float(rng.uniform(size + 2, height - size - 2))
    cx = float(rng.uniform(size + 2, width - size - 2))
    if motion in ("up", "down"):
        start = float(rng.uniform(size + 2, height - size - 2 - travel_y))
        cy = start + travel_y if motion == "up" else start
    if motion in ("left", "right"):
        start = float(rng.uniform(size + 2, width - size - 2 - travel_x))
        cx = start + travel_x if motion == "left" else start
    angle0 = float(rng.uniform(0, math.pi))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    for t in range(num_frames):
        f = t / span
        y = cy - travel_y * f if motion == "up" else cy + travel_y * f if motion == "down" else cy
        x = cx - travel_x * f if motion == "left" else cx + travel_x * f if motion == "right" else cx
        s = size * (0.5 + 1.5 * f) if motion == "grow" else size * (2.0 - 1.5 * f) if motion == "shrink" else size
        turn = {"rotate_cw": 1.0, "rotate_ccw": -1.0}.get(motion, 0.0) * 0.12 * t
        frames[t][_shape_mask(kind, yy, xx, y, x, s, angle0 + turn)] = colour
    return frames.astype(np.uint8)


def _write_list(path: Path, rows: list[tuple[Path, int]]) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.writelines(f"{video} {label}\n" for video, label in rows)


def make_classification(
    out_dir: str | os.PathLike,
    *,
    num_classes: int = 4,
    videos_per_class: int = 12,
    val_per_class: int = 4,
    num_frames: int = 32,
    height: int = 64,
    width: int = 80,
    fps: int = 30,
    seed: int = 0,
) -> SyntheticClassification:
    """Write the motion-classification set into ``out_dir`` (see the module docstring).

    ``videos_per_class`` training and ``val_per_class`` validation videos per class; list
    files hold absolute paths so the set works from any working directory.
    """
    if not 1 <= num_classes <= len(MOTIONS):
        raise VidactError(f"--classes must be between 1 and {len(MOTIONS)}, got {num_classes}")
    if videos_per_class < 1 or val_per_class < 0:
        raise VidactError("--videos-per-class must be at least 1 and --val-per-class at least 0")
    root = Path(out_dir).resolve()
    videos = root / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = MOTIONS[:num_classes]
    splits: dict[str, list[tuple[Path, int]]] = {"train": [], "val": []}
    for label, motion in enumerate(names):
        for split, count in (("train", videos_per_class), ("val", val_per_class)):
            for i in range(count):
                path = videos / f"{split}_{motion}_{i:03d}.mp4"
                frames = render_motion(motion, rng, num_frames=num_frames, height=height, width=width)
                with VideoWriter(path, fps, width, height, preset=SYNTHETIC_PRESET) as writer:
                    for frame in frames:
                        writer.write(frame)
                splits[split].append((path, label))
    lists = {split: root / f"{split}.csv" for split in ("train", "val", "test")}
    _write_list(lists["train"], splits["train"])
    _write_list(lists["val"], splits["val"] or splits["train"])
    _write_list(lists["test"], splits["val"] or splits["train"])
    with atomic_open(root / "classids.json", "w", encoding="utf-8") as f:
        json.dump({name: i for i, name in enumerate(names)}, f, indent=1)
    return SyntheticClassification(
        root, names, lists["train"], lists["val"], lists["test"], len(splits["train"]), len(splits["val"])
    )


def _classification_command(args: argparse.Namespace) -> None:
    result = make_classification(
        args.out_dir, num_classes=args.classes, videos_per_class=args.videos_per_class,
        val_per_class=args.val_per_class, num_frames=args.frames, height=args.height, width=args.width,
        fps=args.fps, seed=args.seed,
    )
    print(f"{result.num_train} training and {result.num_val} validation videos of "
          f"{len(result.class_names)} classes in {result.root}")


def _add_classification_parser(subparsers) -> None:
    p = subparsers.add_parser("classification", help="moving shapes whose motion is the class")
    p.add_argument("out_dir")
    p.add_argument("--classes", type=int, default=4, help=f"1-{len(MOTIONS)}: {', '.join(MOTIONS)}")
    p.add_argument("--videos-per-class", type=int, default=12)
    p.add_argument("--val-per-class", type=int, default=4)
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--height", type=int, default=64)
    p.add_argument("--width", type=int, default=80)
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_classification_command)


# name -> function adding its subcommand; other scene generators add themselves here.
GENERATORS: dict[str, Callable] = {"classification": _add_classification_parser}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vidact.data.synthetic", description="Generate a synthetic dataset.")
    subparsers = parser.add_subparsers(dest="kind", required=True)
    for add_parser in GENERATORS.values():
        add_parser(subparsers)
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except VidactError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
