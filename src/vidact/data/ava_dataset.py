"""AVA spatio-temporal action detection data, as PySlowFast's ``Ava`` dataset reads it.

Two layouts of the same annotations:

* **frames** (PySlowFast's): ``FRAME_DIR/<video_id>/<video_id>_%06d.jpg`` listed by the
  frame lists ``FRAME_LIST_DIR/{train,val}.csv`` (space separated, header
  ``original_vido_id video_id frame_id path labels``); frame ``k`` (0-based, list
  order) shows time ``k / 30`` s from the start of the cut.
* **videos**: ``<video_dir>/<video_id>.<ext>``, decoded on the fly, so no frame
  extraction is needed. AVA timestamps count seconds from the start of the movie
  while the official 15-minute cuts start at second 900, hence ``time_offset``.

Both index frames the PySlowFast way: the keyframe of second ``s`` is frame
``(s - time_offset) * 30`` and a clip is ``range(centre - span/2, centre + span/2,
sampling_rate)`` clamped to the video (``span = num_frames * sampling_rate``).

Boxes come from annotation CSVs (``AVA.TRAIN_GT_BOX_LISTS``; ``TRAIN/TEST_PREDICT_BOX_LISTS``
whose 8th column is a detector score, kept when ``>= DETECTION_SCORE_THRESH``); rows
with the same box at the same keyframe merge into one box with several labels; only
seconds in ``valid_seconds`` (AVA: 902-1798) with at least one box become samples.
Labels ``1..num_classes`` become a multi-hot row (index ``label - 1``).

Each sample is an :class:`AvaSample`; :func:`ava_collate` (also ``AvaDataset.collate_fn``)
batches them and builds the ``[batch_index, x1, y1, x2, y2]`` box tensor the RoI head takes.
"""

from __future__ import annotations

import csv
import os
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Literal, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from vidact.config.model import InputSpec
from vidact.config.run import AvaConfig
from vidact.errors import VidactError
from vidact.io.frames import AVA_FPS, read_image
from vidact.io.sampling import centered_clip_indices, centered_clip_indices_at_time
from vidact.io.video import VideoReader
from vidact.transforms import crop_offsets, normalize, pack_pathways, scale_boxes, scale_short_side_cv2

AVA_TIME_OFFSET = 900  # second of the movie at which the official AVA cuts start
AVA_VALID_SECONDS = range(902, 1799)  # keyframes PySlowFast trains and tests on
AVA_NUM_CLASSES = 80
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov")
FRAME_LIST_HEADER = "original_vido_id video_id frame_id path labels"
Split = Literal["train", "val", "test"]


@dataclass(frozen=True)
class AvaKeyframe:
    """The boxes of one annotated second: ``boxes`` (n, 4) normalised ``x1 y1 x2 y2``, labels per box."""

    video_id: str
    timestamp: int
    boxes: np.ndarray
    labels: tuple[tuple[int, ...], ...]


class AvaSample(NamedTuple):
    """One keyframe ready for the model.

    ``inputs``: one ``C x T x H x W`` tensor per pathway. ``boxes``: (n, 4) in input
    pixels. ``labels``: (n, num_classes) multi-hot float. ``ori_boxes``: (n, 4) the
    normalised boxes as annotated (what the evaluator scores).
    """

    inputs: list[torch.Tensor]
    boxes: torch.Tensor
    labels: torch.Tensor
    ori_boxes: torch.Tensor
    video_id: str
    timestamp: int


# ---------------------------------------------------------------------------------------
# Annotation files
# ---------------------------------------------------------------------------------------


def read_frame_lists(paths: Iterable[str | os.PathLike], frame_dir: str | os.PathLike) -> dict[str, list[Path]]:
    """PySlowFast frame lists: ``{video_id: [frame path, ...]}`` in file order, paths under ``frame_dir``."""
    frames: dict[str, list[Path]] = {}
    for path in map(Path, paths):
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as err:
            raise VidactError(f"{path}: cannot read the frame list ({err.strerror or err}); check AVA.FRAME_LIST_DIR") from None
        for line_no, line in enumerate(lines[1:], start=2):  # the first line is the header
            row = line.split()
            if not row:
                continue
            if len(row) != 5:
                raise VidactError(
                    f"{path}:{line_no}: expected 5 space-separated columns ({FRAME_LIST_HEADER}), got {len(row)}"
                )
            frames.setdefault(row[0], []).append(Path(frame_dir) / row[3])
    return frames


def read_box_lists(
    files: Sequence[tuple[str | os.PathLike, bool]],
    score_threshold: float,
    sample_rate: int = 1,
) -> dict[str, dict[int, dict[tuple[float, ...], list[int]]]]:
    """Merge annotation CSVs into ``{video_id: {second: {box: [labels]}}}`` (insertion order kept).

    ``files`` pairs each path with ``is_groundtruth``; other files are detections whose
    8th column is a score, and rows scoring below ``score_threshold`` are dropped. An
    empty action column (PySlowFast's detection lists) adds the box without a label.
    Only seconds divisible by ``sample_rate`` are read (PySlowFast validates on every 4th).
    The official files' empty labels are why this does not use :func:`read_ava_csv`.
    """
    boxes: dict[str, dict[int, dict[tuple[float, ...], list[int]]]] = {}
    for path, is_groundtruth in files:
        path = Path(path)
        try:
            # utf-8-sig as the evaluator reads them: a BOM would stick to the first video id.
            with open(path, newline="", encoding="utf-8-sig") as f:
                rows = list(csv.reader(f))
        except OSError as err:
            raise VidactError(f"{path}: cannot read the box list ({err.strerror or err}); check AVA.ANNOTATION_DIR") from None
        for line_no, row in enumerate(rows, start=1):
            if not row:
                continue
            if len(row) < 7 or (not is_groundtruth and len(row) < 8):
                raise VidactError(
                    f"{path}:{line_no}: expected video_id,timestamp,x1,y1,x2,y2,action_id"
                    f"{'' if is_groundtruth else ',score'}, got {len(row)} columns"
                )
            try:
                second = int(row[1])
                box = tuple(float(v) for v in row[2:6])
                label = int(row[6]) if row[6].strip() else -1
                score = None if is_groundtruth else float(row[7])
            except ValueError:
                raise VidactError(f"{path}:{line_no}: malformed row {','.join(row)!r}; fix or regenerate the file") from None
            if second % sample_rate != 0 or (score is not None and score < score_threshold):
                continue
            labels = boxes.setdefault(row[0], {}).setdefault(second, {}).setdefault(box, [])
            if label != -1:
                labels.append(label)
    return boxes


def keyframes_from_boxes(
    boxes: dict[str, dict[int, dict[tuple[float, ...], list[int]]]],
    video_ids: Iterable[str],
    valid_seconds: range = AVA_VALID_SECONDS,
) -> list[AvaKeyframe]:
    """The keyframes of ``video_ids`` (in that order) that have boxes, seconds in file order."""
    keyframes = []
    for video_id in video_ids:
        for second, by_box in boxes.get(video_id, {}).items():
            if second in valid_seconds and by_box:
                keyframes.append(
                    AvaKeyframe(
                        video_id,
                        second,
                        np.array(list(by_box), dtype=np.float64).reshape(-1, 4),
                        tuple(tuple(labels) for labels in by_box.values()),
                    )
                )
    return keyframes


# ---------------------------------------------------------------------------------------
# Where the pixels come from
# ---------------------------------------------------------------------------------------


class FrameListSource:
    """Frames listed by PySlowFast frame lists (JPEG or PNG files), 30 fps."""

    def __init__(self, frames: dict[str, list[Path]], time_offset: float = AVA_TIME_OFFSET, fps: int = AVA_FPS):
        self.frames, self.time_offset, self.fps = frames, time_offset, fps

    def check(self, video_ids: Iterable[str]) -> None:
        """Refuse a video without frames when the dataset is built, not when training first reaches it
        (validation: after TRAIN.EVAL_PERIOD epochs). One file a video: its first listed frame."""
        for video_id in sorted(video_ids):
            paths = self._paths(video_id)
            if not paths[0].is_file():
                raise VidactError(f"{paths[0]}: a frame of video {video_id} in the frame lists is missing; "
                                  "extract the frames or fix AVA.FRAME_DIR")

    def _paths(self, video_id: str) -> list[Path]:
        paths = self.frames.get(video_id)
        if not paths:
            raise VidactError(f"video {video_id} has boxes but no frames in the frame lists; regenerate the frame lists")
        return paths

    def clip(self, video_id: str, timestamp: float, spec: InputSpec) -> np.ndarray:
        """The ``T x H x W x 3`` uint8 RGB clip centred on ``timestamp``."""
        paths = self._paths(video_id)
        centre = int(round((timestamp - self.time_offset) * self.fps))
        indices = centered_clip_indices(centre, spec.num_frames, spec.sampling_rate, len(paths))
        return np.stack([read_image(paths[i]) for i in indices.tolist()])


class VideoFileSource:
    """Clips decoded from ``<video_dir>/<video_id>.<ext>``; any frame rate, sampled at ``spec.target_fps``."""

    def __init__(self, video_dir: str | os.PathLike, time_offset: float = AVA_TIME_OFFSET):
        self.video_dir, self.time_offset = Path(video_dir), time_offset
        if not self.video_dir.is_dir():
            raise VidactError(f"{self.video_dir}: not a directory of videos; pass the folder holding <video_id>.mp4")
        self._paths: dict[str, Path] = {}

    def path(self, video_id: str) -> Path:
        if video_id not in self._paths:
            found = [self.video_dir / f"{video_id}{suffix}" for suffix in VIDEO_SUFFIXES]
            found = [p for p in found if p.is_file()]
            if not found:
                raise VidactError(
                    f"{self.video_dir}: no video for {video_id} ({'/'.join(VIDEO_SUFFIXES)}); add it or drop its annotations"
                )
            self._paths[video_id] = found[0]
        return self._paths[video_id]

    def check(self, video_ids: Iterable[str]) -> None:
        """Refuse a video without its file when the dataset is built, not when training first reaches it."""
        for video_id in sorted(video_ids):
            self.path(video_id)

    def clip(self, video_id: str, timestamp: float, spec: InputSpec) -> np.ndarray:
        """The ``T x H x W x 3`` uint8 RGB clip centred on ``timestamp - time_offset`` seconds of the video."""
        with VideoReader(self.path(video_id)) as reader:
            shown = reader.shown_frames()  # not the header's count, which includes frames an edit list hides
            if not reader.fps or not shown:
                raise VidactError(f"{reader.name}: frame rate or frame count unknown; remux the video (e.g. to MP4)")
            indices = centered_clip_indices_at_time(timestamp - self.time_offset, spec, float(reader.fps), shown).tolist()
            wanted = set(indices)
            decoded: dict[int, np.ndarray] = {}
            with closing(reader.frames(start=reader.frame_time(min(indices)))) as frames:
                for frame in frames:
                    if frame.index in wanted:
                        decoded[frame.index] = frame.rgb
                    if frame.index >= max(indices):
                        break
        missing = wanted - decoded.keys()
        if missing:
            raise VidactError(f"{reader.name}: frames {sorted(missing)[:3]} did not decode; the file may be truncated")
        return np.stack([decoded[i] for i in indices])


# ---------------------------------------------------------------------------------------
# Transforms (PySlowFast's cv2 AVA path)
# ---------------------------------------------------------------------------------------


def clip_boxes(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """PySlowFast's ``clip_boxes_to_image``: x into ``[0, width - 1]``, y into ``[0, height - 1]``."""
    out = boxes.copy()
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0.0, width - 1.0)
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0.0, height - 1.0)
    return out


def ava_train_transform(
    frames: np.ndarray, boxes: np.ndarray, spec: InputSpec, generator: torch.Generator | None = None,
    random_flip: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """PySlowFast's AVA training augmentation on uint8 ``T x H x W x 3`` frames and pixel boxes.

    Short side to ``round(1 / U(1/max, 1/min))`` of ``train_jitter_scales`` (OpenCV linear
    resize, boxes scaled with it), a random ``train_crop_size`` square (boxes shifted),
    with ``random_flip`` (``DATA.RANDOM_FLIP``) a horizontal flip with probability 0.5
    (``x' = W - x - 1``).
    """
    low, high = spec.train_jitter_scales
    u = torch.rand((), generator=generator, dtype=torch.float64).item()
    size = int(round(1.0 / (1.0 / high + (1.0 / low - 1.0 / high) * u)))
    height, width = frames.shape[1:3]
    frames, boxes = scale_short_side_cv2(frames, size), scale_boxes(boxes, height, width, size)
    height, width = frames.shape[1:3]
    crop = spec.train_crop_size
    y = int(torch.randint(0, height - crop, (), generator=generator)) if height > crop else 0
    x = int(torch.randint(0, width - crop, (), generator=generator)) if width > crop else 0
    frames = frames[:, y : y + crop, x : x + crop]
    boxes = boxes - np.array([x, y, x, y], dtype=boxes.dtype)
    if random_flip and torch.rand((), generator=generator).item() < 0.5:
        frames = frames[:, :, ::-1]
        boxes = np.stack([frames.shape[2] - boxes[:, 2] - 1, boxes[:, 1], frames.shape[2] - boxes[:, 0] - 1, boxes[:, 3]], 1)
    return np.ascontiguousarray(frames), boxes


def ava_test_transform(frames: np.ndarray, boxes: np.ndarray, spec: InputSpec) -> tuple[np.ndarray, np.ndarray]:
    """PySlowFast's AVA test transform: short side to ``test_crop_size`` (OpenCV linear), no crop."""
    height, width = frames.shape[1:3]
    return scale_short_side_cv2(frames, spec.test_crop_size), scale_boxes(boxes, height, width, spec.test_crop_size)


def ava_val_transform(frames: np.ndarray, boxes: np.ndarray, spec: InputSpec) -> tuple[np.ndarray, np.ndarray]:
    """PySlowFast's AVA validation transform: :func:`ava_test_transform`, then the centre
    ``test_crop_size`` square (``spatial_shift_crop_list`` at position 1), boxes shifted."""
    frames, boxes = ava_test_transform(frames, boxes, spec)
    size = spec.test_crop_size
    y, x = crop_offsets(frames.shape[1], frames.shape[2], size)
    return np.ascontiguousarray(frames[:, y : y + size, x : x + size]), boxes - np.array([x, y, x, y], boxes.dtype)


def to_pathways(frames: np.ndarray, spec: InputSpec) -> list[torch.Tensor]:
    """uint8 RGB ``T x H x W x 3`` to the model's ``C x T x H x W`` inputs, one per pathway."""
    clip = normalize(np.ascontiguousarray(frames), spec).permute(3, 0, 1, 2)
    return [pathway[0].contiguous() for pathway in pack_pathways(clip, spec)]


# ---------------------------------------------------------------------------------------
# The dataset
# ---------------------------------------------------------------------------------------


class AvaDataset(Dataset):
    """AVA keyframes as :class:`AvaSample`: ``"train"`` gets the training augmentation (its flip
    only with ``random_flip``), ``"val"`` a centre crop, ``"test"`` whole frames, as in PySlowFast.

    ``source`` is a :class:`FrameListSource` or :class:`VideoFileSource`. The
    augmentation of item ``i`` depends only on ``(seed, epoch, i)`` (:meth:`set_epoch`),
    not on the worker that loads it, as in :class:`vidact.data.video_dataset.VideoClipDataset`.
    """

    def __init__(
        self,
        keyframes: Sequence[AvaKeyframe],
        source: FrameListSource | VideoFileSource,
        spec: InputSpec,
        *,
        split: Split,
        num_classes: int = AVA_NUM_CLASSES,
        seed: int = 0,
        random_flip: bool = True,
    ) -> None:
        if not keyframes:
            raise VidactError("the AVA annotations give no keyframe with boxes; check the box lists and frame lists")
        self.keyframes = list(keyframes)
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be train, val or test, got {split!r}")
        self.source, self.spec, self.split, self.train = source, spec, split, split == "train"
        self.num_classes, self.seed, self.epoch, self.random_flip = num_classes, seed, 0, random_flip
        for keyframe in self.keyframes:
            for labels in keyframe.labels:
                bad = [label for label in labels if not 1 <= label <= num_classes]
                if bad:
                    fix = ("AVA action ids count from 1, as the label map's do: renumber the box lists"
                           if bad[0] < 1 else "set MODEL.NUM_CLASSES to cover the label map, or fix the id")
                    raise VidactError(f"{keyframe.video_id},{keyframe.timestamp}: action id {bad[0]} in the "
                                      f"{split} box lists is outside 1..{num_classes}; {fix}")

    def __len__(self) -> int:
        return len(self.keyframes)

    @staticmethod
    def collate_fn(samples: Sequence[AvaSample]) -> dict[str, Any]:
        """:func:`ava_collate`; the DataLoader must use it (boxes per clip vary)."""
        return ava_collate(samples)

    def set_epoch(self, epoch: int) -> None:
        """Draw another set of augmentations; call before iterating (workers copy the dataset then)."""
        self.epoch = epoch

    def __getitem__(self, index: int) -> AvaSample:
        keyframe = self.keyframes[index]
        frames = self.source.clip(keyframe.video_id, keyframe.timestamp, self.spec)
        height, width = frames.shape[1:3]
        boxes = clip_boxes(keyframe.boxes * np.array([width, height, width, height]), height, width)
        if self.train:
            seed = int(np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1)[0])
            generator = torch.Generator().manual_seed(seed)
            frames, boxes = ava_train_transform(frames, boxes, self.spec, generator, self.random_flip)
        elif self.split == "val":
            frames, boxes = ava_val_transform(frames, boxes, self.spec)
        else:
            frames, boxes = ava_test_transform(frames, boxes, self.spec)
        boxes = clip_boxes(boxes, *frames.shape[1:3])
        labels = torch.zeros(len(keyframe.labels), self.num_classes)
        for row, box_labels in enumerate(keyframe.labels):
            labels[row, [label - 1 for label in box_labels]] = 1.0
        return AvaSample(
            inputs=to_pathways(frames, self.spec),
            boxes=torch.as_tensor(boxes, dtype=torch.float32),
            labels=labels,
            ori_boxes=torch.as_tensor(keyframe.boxes, dtype=torch.float32),
            video_id=keyframe.video_id,
            timestamp=keyframe.timestamp,
        )


def ava_collate(samples: Sequence[AvaSample]) -> dict[str, Any]:
    """Batch samples into the dict the trainer and :class:`~vidact.engine.ava_task.AvaBatchEvaluator` use.

    Keys: ``inputs`` (one ``N x C x T x H x W`` tensor per pathway), ``boxes`` (K, 5)
    ``[batch_index, x1, y1, x2, y2]`` in input pixels, ``labels`` (K, num_classes)
    multi-hot, ``ori_boxes`` (K, 4) normalised as annotated, ``video_ids`` (K strings)
    and ``timestamps`` (K,): one row per box.
    """
    shapes = {tuple(s.inputs[-1].shape) for s in samples}
    if len(shapes) > 1:
        raise VidactError(
            f"clips in one batch differ in size {sorted(shapes)}; use videos of one aspect ratio or batch size 1"
        )
    return {
        "inputs": [torch.stack([s.inputs[p] for s in samples]) for p in range(len(samples[0].inputs))],
        "boxes": torch.cat([F.pad(s.boxes, (1, 0), value=float(i)) for i, s in enumerate(samples)]),
        "labels": torch.cat([s.labels for s in samples]),
        "ori_boxes": torch.cat([s.ori_boxes for s in samples]),
        "video_ids": [s.video_id for s in samples for _ in range(len(s.boxes))],
        "timestamps": torch.tensor([s.timestamp for s in samples for _ in range(len(s.boxes))], dtype=torch.long),
    }


# ---------------------------------------------------------------------------------------
# From a PySlowFast AVA config
# ---------------------------------------------------------------------------------------


def box_sample_rate(split: Split, ava: AvaConfig) -> int:
    """PySlowFast reads every 4th second for validation unless ``AVA.FULL_TEST_ON_VAL``."""
    return 4 if split == "val" and not ava.full_test_on_val else 1


def build_ava_dataset(
    ava: AvaConfig,
    spec: InputSpec,
    split: Split,
    *,
    num_classes: int = AVA_NUM_CLASSES,
    video_dir: str | os.PathLike | None = None,
    time_offset: float = AVA_TIME_OFFSET,
    valid_seconds: range = AVA_VALID_SECONDS,
    seed: int = 0,
    random_flip: bool = True,
) -> AvaDataset:
    """The AVA ``split`` described by ``ava`` (PySlowFast's ``AVA.*`` keys); ``random_flip`` is
    ``DATA.RANDOM_FLIP``.

    Training reads ``train_gt_box_lists`` and ``train_predict_box_lists``; val/test read
    ``test_predict_box_lists``; all relative to ``annotation_dir``. The frame lists
    (``frame_list_dir``) fix which videos belong to the split. Pixels come from
    ``frame_dir`` or, when ``video_dir`` is given, from ``<video_dir>/<video_id>.<ext>``;
    then the frame lists are optional (without them every annotated video is used).
    """
    if ava.annotation_dir is None:
        raise VidactError("AVA.ANNOTATION_DIR is not set; pass it with --opts AVA.ANNOTATION_DIR <dir>")
    train = split == "train"
    annotation_dir = Path(ava.annotation_dir)
    box_files = [(annotation_dir / name, False) for name in (ava.train_predict_box_lists if train else ava.test_predict_box_lists)]
    if train:
        box_files = [(annotation_dir / name, True) for name in ava.train_gt_box_lists] + box_files
    sample_rate = box_sample_rate(split, ava)
    boxes = read_box_lists(box_files, ava.detection_score_threshold, sample_rate)
    frames: dict[str, list[Path]] = {}
    if ava.frame_list_dir is not None:
        lists = ava.train_lists if train else ava.test_lists
        frames = read_frame_lists([Path(ava.frame_list_dir) / name for name in lists], ava.frame_dir or "")
    elif video_dir is None:
        raise VidactError("AVA.FRAME_LIST_DIR is not set; pass it with --opts AVA.FRAME_LIST_DIR <dir>")
    keyframes = keyframes_from_boxes(boxes, frames if frames else boxes, valid_seconds)
    if not keyframes and sample_rate > 1:
        every_second = read_box_lists(box_files, ava.detection_score_threshold)
        if keyframes_from_boxes(every_second, frames if frames else every_second, valid_seconds):
            raise VidactError(
                f"the AVA annotations give no keyframe with boxes at a second divisible by {sample_rate}, the only ones "
                "validation during training reads (as PySlowFast); set AVA.FULL_TEST_ON_VAL True to validate on every "
                "keyframe, or annotate longer videos"
            )
    if video_dir is not None:
        source: FrameListSource | VideoFileSource = VideoFileSource(video_dir, time_offset)
    else:
        if ava.frame_dir is None:
            raise VidactError("AVA.FRAME_DIR is not set; pass it with --opts or read the videos directly")
        source = FrameListSource(frames, time_offset)
    source.check({keyframe.video_id for keyframe in keyframes})
    return AvaDataset(keyframes, source, spec, split=split, num_classes=num_classes, seed=seed, random_flip=random_flip)


__all__ = [
    "AVA_TIME_OFFSET",
    "AVA_VALID_SECONDS",
    "AvaDataset",
    "AvaKeyframe",
    "AvaSample",
    "FrameListSource",
    "VideoFileSource",
    "ava_collate",
    "ava_test_transform",
    "ava_train_transform",
    "box_sample_rate",
    "build_ava_dataset",
    "clip_boxes",
    "keyframes_from_boxes",
    "read_box_lists",
    "read_frame_lists",
    "to_pathways",
]
