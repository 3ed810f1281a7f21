"""Synthetic AVA-style scenes: boxed actors doing box-level actions, in AVA's file layout.

Each video shows a few coloured rectangles ("actors") on a textured background at
30 fps; each actor performs one action for the whole video:

1. ``move sideways`` (horizontal oscillation), 2. ``move up and down``,
3. ``pulse`` (grows and shrinks about its centre), 4. ``stand still``.

Telling them apart needs motion, i.e. several frames, like AVA: colours, sizes, resting
positions and oscillation periods are drawn independently of the action, so no single
frame gives the label away. Periods vary per actor (0.8-1.6 s), so successive keyframes of
one actor show different phases rather than the same clip again. Written layout
(file names are PySlowFast's defaults and those of the fork's ``c3_train.yaml``, so
only ``AVA.FRAME_DIR``, ``AVA.FRAME_LIST_DIR`` and ``AVA.ANNOTATION_DIR`` need setting)::

    OUT/videos/<video_id>.mp4                      H.264, 30 fps, starting at second 900
    OUT/frames/<video_id>/<video_id>_000001.jpg    optional, decoded from the MP4 (.png: lossless)
    OUT/frame_lists/{train,val}.csv
    OUT/annotations/ava_{train,val}_v2.2.csv       ground truth (video,sec,x1,y1,x2,y2,action,person)
    OUT/annotations/ava_val_predicted_boxes.csv    the val boxes as "detections" with score 1.0
    OUT/annotations/ava_val_excluded_timestamps_v2.2.csv   (empty)
    OUT/annotations/ava_action_list_v2.2.pbtxt
    OUT/annotations/person_box_67091280_iou90/ava_detection_{train_boxes_and_labels_include_negative_v2.2,val_boxes_and_labels}.csv

Keyframes are the seconds ``900 + 2 .. 900 + seconds - 2``, so every clip of up to 64
frames lies inside the video. Run ``python -m vidact.data.synthetic_ava OUT_DIR``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
from PIL import Image

from vidact.data.ava_csv import AvaRows, write_ava_csv
from vidact.data.synthetic import SYNTHETIC_PRESET
from vidact.errors import VidactError
from vidact.fileutil import atomic_open, atomic_path
from vidact.io.frames import AVA_FPS
from vidact.io.video import VideoReader, VideoWriter

ACTIONS = ("move sideways", "move up and down", "pulse", "stand still")  # action ids 1..4
TIME_OFFSET = 900
FRAME_LIST_HEADER = "original_vido_id video_id frame_id path labels"
PREDICTED_TRAIN = "person_box_67091280_iou90/ava_detection_train_boxes_and_labels_include_negative_v2.2.csv"
PREDICTED_VAL = "person_box_67091280_iou90/ava_detection_val_boxes_and_labels.csv"
FrameFormat = Literal["jpg", "png", "none"]

@dataclass(frozen=True)
class Actor:
    """One rectangle: its resting centre and size in pixels, colour, action id, motion."""

    person_id: int
    action_id: int
    center: tuple[float, float]
    size: tuple[float, float]  # width, height
    colour: tuple[int, int, int]
    phase: float  # of the oscillation, in periods
    amplitude: float  # of the movements, in pixels
    period: float  # seconds per oscillation

    def box(self, t: float) -> tuple[float, float, float, float]:
        """``x1, y1, x2, y2`` in pixels at ``t`` seconds."""
        (cx, cy), (w, h) = self.center, self.size
        wave = math.sin(2 * math.pi * (t / self.period + self.phase))
        if ACTIONS[self.action_id - 1] == "move sideways":
            cx += self.amplitude * wave
        elif ACTIONS[self.action_id - 1] == "move up and down":
            cy += self.amplitude * wave
        elif ACTIONS[self.action_id - 1] == "pulse":
            w, h = w * (1 + 0.3 * wave), h * (1 + 0.3 * wave)
        return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2


@dataclass(frozen=True)
class Scene:
    video_id: str
    width: int
    height: int
    seconds: int
    background: np.ndarray  # H x W x 3 uint8
    actors: tuple[Actor, ...]

    def render(self, t: float) -> np.ndarray:
        """The ``H x W x 3`` uint8 RGB frame at ``t`` seconds."""
        frame = self.background.copy()
        for actor in self.actors:
            x1, y1, x2, y2 = (int(round(v)) for v in actor.box(t))
            x1, y1 = max(x1, 0), max(y1, 0)
            frame[y1:y2, x1:x2] = np.array(actor.colour, dtype=np.uint8) // 2  # dark outline
            frame[y1 + 2 : y2 - 2, x1 + 2 : x2 - 2] = actor.colour
        return frame

    def keyframe_seconds(self) -> range:
        return range(2, self.seconds - 1)


def make_scene(video_id: str, rng: np.random.Generator, width: int, height: int, seconds: int, num_actors: int) -> Scene:
    """A random scene: a smooth background and ``num_actors`` actors side by side in their own slots."""
    yy, xx = np.mgrid[0:height, 0:width] / max(width, height)
    tint = rng.uniform(60, 190, size=3)
    ramp = rng.uniform(-60, 60, size=(2, 3))
    background = tint + xx[..., None] * ramp[0] + yy[..., None] * ramp[1] + rng.normal(0, 6, (height, width, 3))
    slot = width / num_actors
    actors = []
    for person_id in range(num_actors):
        w = rng.uniform(0.4, 0.5) * slot
        h = rng.uniform(0.45, 0.6) * height
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        actors.append(
            Actor(
                person_id=person_id,
                action_id=int(rng.integers(1, len(ACTIONS) + 1)),
                # Off the slot centre at random, so a mover's displacement at the keyframe is no cue.
                center=(slot * (person_id + 0.5 + rng.uniform(-0.1, 0.1)), rng.uniform(0.4, 0.6) * height),
                size=(w, h),
                colour=colour,
                phase=float(rng.uniform(0, 1)),
                # Large enough to show at the network's 16-pixel feature stride.
                amplitude=0.15 * height,
                # Per actor, so keyframes 1 s apart catch other phases; at least 3 samples
                # per period at an 8-frame sampling stride (no aliasing).
                period=float(rng.uniform(0.8, 1.6)),
            )
        )
    return Scene(video_id, width, height, seconds, np.clip(background, 0, 255).astype(np.uint8), tuple(actors))


def label_map_text() -> str:
    """The synthetic classes as an AVA ``label { name label_id label_type }`` pbtxt."""
    return "".join(
        f'label {{\n  name: "{name}"\n  label_id: {i}\n  label_type: PERSON_MOVEMENT\n}}\n'
        for i, name in enumerate(ACTIONS, start=1)
    )


def _annotation_rows(scenes: Sequence[Scene], time_offset: int) -> tuple[AvaRows, AvaRows]:
    """Ground-truth rows (person ids) and the same rows as detections with score 1.0."""
    video_ids, timestamps, boxes, action_ids, person_ids = [], [], [], [], []
    for scene in scenes:
        for second in scene.keyframe_seconds():
            for actor in scene.actors:
                x1, y1, x2, y2 = actor.box(second)
                box = np.clip([x1 / scene.width, y1 / scene.height, x2 / scene.width, y2 / scene.height], 0, 1)
                video_ids.append(scene.video_id)
                timestamps.append(time_offset + second)
                boxes.append(box)
                action_ids.append(actor.action_id)
                person_ids.append(actor.person_id)
    columns = (
        np.array(video_ids, dtype=str),
        np.array(timestamps, dtype=np.int64),
        np.array(boxes, dtype=np.float64).reshape(-1, 4),
        np.array(action_ids, dtype=np.int64),
    )
    return AvaRows(*columns, person_ids=np.array(person_ids, dtype=np.int64)), AvaRows(*columns, scores=np.ones(len(video_ids)))


def _write_video(scene: Scene, path: Path, fps: int) -> None:
    with VideoWriter(path, fps, scene.width, scene.height, preset=SYNTHETIC_PRESET) as writer:
        for index in range(scene.seconds * fps):
            writer.write(scene.render(index / fps))


def _extract_frames(video: Path, frame_dir: Path, video_id: str, suffix: str) -> list[str]:
    """Decode ``video`` into ``frame_dir/<video_id>/<video_id>_%06d.<suffix>``; the relative paths."""
    relative = []
    with VideoReader(video) as reader:
        for frame in reader:
            name = f"{video_id}/{video_id}_{frame.index + 1:06d}.{suffix}"
            with atomic_path(frame_dir / name) as tmp:
                # PySlowFast extracts with ffmpeg -q:v 1; quality 95 is close to it.
                Image.fromarray(frame.rgb).save(tmp, format="JPEG" if suffix == "jpg" else "PNG", quality=95)
            relative.append(name)
    return relative


def _write_frame_list(path: Path, videos: Sequence[tuple[str, list[str]]]) -> None:
    with atomic_open(path) as f:
        f.write(FRAME_LIST_HEADER + "\n")
        for video_index, (video_id, frames) in enumerate(videos):
            for frame_index, name in enumerate(frames):
                f.write(f'{video_id} {video_index} {frame_index} {name} ""\n')


def generate_synthetic_ava(
    out_dir: str | os.PathLike,
    *,
    num_train_videos: int = 8,
    num_val_videos: int = 4,
    seconds: int = 8,
    width: int = 160,
    height: int = 128,
    actors_per_video: tuple[int, int] = (2, 3),
    frame_format: FrameFormat = "jpg",
    seed: int = 0,
    fps: int = AVA_FPS,
    time_offset: int = TIME_OFFSET,
) -> Path:
    """Write a synthetic AVA dataset under ``out_dir`` (layout in the module docstring); returns ``out_dir``.

    ``frame_format`` picks the extracted frames: ``"jpg"`` (PySlowFast's layout), ``"png"``
    (lossless: identical to decoding the videos) or ``"none"`` (videos only; the frame
    lists still name the frames PySlowFast would expect). The same ``seed`` gives the
    same scenes.
    """
    if seconds < 5:
        raise VidactError(f"seconds must be at least 5 (keyframes need 2 s either side), got {seconds}")
    if frame_format not in ("jpg", "png", "none"):
        raise VidactError(f"frame format {frame_format!r} is not one of jpg, png, none")
    low, high = actors_per_video
    if not 1 <= low <= high:
        raise VidactError(f"actors per video must be 1 <= min <= max, got {low}-{high}")
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    splits: dict[str, list[Scene]] = {"train": [], "val": []}
    for split, count in (("train", num_train_videos), ("val", num_val_videos)):
        for i in range(count):
            num_actors = int(rng.integers(low, high + 1))
            splits[split].append(make_scene(f"synth_{split}_{i:03d}", rng, width, height, seconds, num_actors))
    annotations = out / "annotations"
    for split, scenes in splits.items():
        listed = []
        for scene in scenes:
            video = out / "videos" / f"{scene.video_id}.mp4"
            _write_video(scene, video, fps)
            if frame_format == "none":
                frames = [f"{scene.video_id}/{scene.video_id}_{k + 1:06d}.jpg" for k in range(scene.seconds * fps)]
            else:
                frames = _extract_frames(video, out / "frames", scene.video_id, frame_format)
            listed.append((scene.video_id, frames))
        _write_frame_list(out / "frame_lists" / f"{split}.csv", listed)
        groundtruth, detections = _annotation_rows(scenes, time_offset)
        write_ava_csv(annotations / f"ava_{split}_v2.2.csv", groundtruth)
        write_ava_csv(annotations / (PREDICTED_TRAIN if split == "train" else PREDICTED_VAL), detections)
        if split == "val":
            write_ava_csv(annotations / "ava_val_predicted_boxes.csv", detections)
    with atomic_open(annotations / "ava_val_excluded_timestamps_v2.2.csv") as f:
        f.write("")
    with atomic_open(annotations / "ava_action_list_v2.2.pbtxt") as f:
        f.write(label_map_text())
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vidact.data.synthetic_ava", description="Write a synthetic AVA-format detection dataset."
    )
    parser.add_argument("out_dir", help="folder to write videos/, frames/, frame_lists/, annotations/ into")
    parser.add_argument("--train-videos", type=int, default=8)
    parser.add_argument("--val-videos", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=8,
                        help="length of each video (>= 5; >= 6 to train: validation during training reads only "
                             "keyframes at seconds divisible by 4)")
    parser.add_argument("--size", default="160x128", help="WIDTHxHEIGHT of the videos")
    parser.add_argument("--actors", default="2-3", help="actors per video, MIN-MAX")
    parser.add_argument("--frames", choices=("jpg", "png", "none"), default="jpg", help="extracted frames format")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
        low, high = (int(v) for v in args.actors.split("-"))
    except ValueError:
        parser.error("--size is WIDTHxHEIGHT (e.g. 160x128) and --actors MIN-MAX (e.g. 2-3)")
    try:
        out = generate_synthetic_ava(
            args.out_dir,
            num_train_videos=args.train_videos,
            num_val_videos=args.val_videos,
            seconds=args.seconds,
            width=width,
            height=height,
            actors_per_video=(low, high),
            frame_format=args.frames,
            seed=args.seed,
        )
    except VidactError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
