"""Clip classification from a list file of ``path label`` lines (Kinetics, UCF101, your own videos).

The list format is PySlowFast's: one video per line, its path and its 0-based integer
label separated by ``DATA.PATH_LABEL_SEPARATOR`` (a space by default), the label being the
last field (a path may hold the separator); the path is joined to ``DATA.PATH_PREFIX`` when
one is given, else used as written (relative paths resolve against the working directory, as
in PySlowFast). Every listed file must exist when the dataset is built. ``DATA.PATH_TO_DATA_DIR`` holds
``train.csv``, ``val.csv`` and ``test.csv`` (:func:`split_list_file`).

Videos are decoded on the fly with :class:`vidact.io.video.VideoReader`.

* ``mode="train"``: one random temporal clip per video, short-side scale jitter in
  ``train_jitter_scales``, a random ``train_crop_size`` crop and (``random_flip``) a
  horizontal flip with probability 0.5, as PySlowFast's Kinetics loader.
* ``mode="test"``: ``num_ensemble_views`` uniformly placed clips x ``num_spatial_crops``
  crops per video (:func:`vidact.transforms.kinetics_test_clip`), item ``i`` being view
  ``i % views`` of video ``i // views``.

The randomness of a training item depends only on ``(seed, epoch, index)``
(:meth:`VideoClipDataset.set_epoch`), not on which worker process loads it, so runs are
reproducible whatever ``num_workers`` is.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from vidact.config.model import InputSpec
from vidact.errors import VidactError, first_few
from vidact.io.sampling import kinetics_clip_indices
from vidact.io.video import Frame, VideoReader
from vidact.transforms import (
    horizontal_flip,
    kinetics_test_clip,
    normalize,
    pack_pathways,
    random_crop,
    random_short_side_scale,
)

__all__ = ["MODES", "VideoClipDataset", "VideoEntry", "read_list_file", "split_list_file"]

MODES = ("train", "val", "test")


@dataclass(frozen=True)
class VideoEntry:
    path: str
    label: int
    line: int = field(default=0, compare=False)  # in the list file, for messages


def split_list_file(data_dir: str | os.PathLike | None, split: str) -> Path:
    """``DATA.PATH_TO_DATA_DIR/<split>.csv`` (``train``, ``val`` or ``test``)."""
    if not data_dir:
        raise VidactError("DATA.PATH_TO_DATA_DIR is not set; point it at the folder holding train.csv, val.csv and test.csv")
    return Path(data_dir) / f"{split}.csv"


def read_list_file(
    list_file: str | os.PathLike, separator: str = " ", path_prefix: str | None = None
) -> list[VideoEntry]:
    """The ``path label`` entries of a list file; a malformed line is a :class:`VidactError` naming it."""
    list_file = Path(list_file)
    try:
        lines = list_file.read_text(encoding="utf-8-sig").splitlines()  # a BOM is no part of the first path
    except FileNotFoundError:
        raise VidactError(f"{list_file}: list file not found; check DATA.PATH_TO_DATA_DIR") from None
    except (OSError, UnicodeDecodeError) as err:
        raise VidactError(f"{list_file}: cannot read the list file ({err})") from None
    entries = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        # The label is the last field: separators inside the path (a space in a file name) stay in it.
        parts = line.strip().rsplit(separator if separator.strip() else None, 1)
        label = parts[-1].strip()
        # ASCII only: str.isdigit() also accepts "²" (which int() refuses) and "٣" (which it reads as 3).
        if len(parts) != 2 or not (label.isascii() and label.isdigit()):
            raise VidactError(
                f"{list_file}:{number}: expected 'path{separator}label' with a 0-based integer label, "
                f"got {line!r}; fix the line or DATA.PATH_LABEL_SEPARATOR"
            )
        path = os.path.join(path_prefix, parts[0].strip()) if path_prefix else parts[0].strip()
        entries.append(VideoEntry(path, int(label), number))
    if not entries:
        raise VidactError(f"{list_file}: the list file names no videos; add 'path label' lines")
    return entries


def _check_videos_exist(list_file: Path, entries: list[VideoEntry]) -> None:
    """Refuse a list naming missing files now, not when the loader reaches them hours into a run."""
    # URLs (file:// too) are left to FFmpeg: checking them here would cost a request per video.
    missing = [entry for entry in entries if "://" not in entry.path and not os.path.exists(entry.path)]
    if missing:
        named = first_few(f"{list_file}:{entry.line} ({entry.path})" for entry in missing)
        raise VidactError(
            f"{list_file}: {len(missing)} of {len(entries)} listed videos not found: {named}; "
            "fix the paths or DATA.PATH_PREFIX"
        )


def _item_seed(seed: int, epoch: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


class VideoClipDataset(Dataset):
    """Clips of the videos in a list file, for training or multi-view testing.

    Items are dicts: ``inputs`` (a list with one ``C x T x H x W`` float tensor per
    pathway, ready for the model once batched), ``label``, ``video_index`` and
    ``view_index`` (0 in training).
    """

    def __init__(
        self,
        list_file: str | os.PathLike,
        spec: InputSpec,
        mode: str = "train",
        *,
        separator: str = " ",
        path_prefix: str | None = None,
        num_ensemble_views: int = 10,
        num_spatial_crops: int = 3,
        random_flip: bool = True,
        seed: int = 0,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if num_spatial_crops not in (1, 3):
            raise VidactError(f"TEST.NUM_SPATIAL_CROPS must be 1 or 3, got {num_spatial_crops}")
        self.list_file = Path(list_file)
        self.entries = read_list_file(list_file, separator, path_prefix)
        _check_videos_exist(self.list_file, self.entries)
        self.spec = spec
        self.mode = mode
        # PySlowFast's "val" mode samples like training; vidact validates with centred test views.
        self.training = mode == "train"
        self.num_ensemble_views = 1 if self.training else num_ensemble_views
        self.num_spatial_crops = 1 if self.training else num_spatial_crops
        self.random_flip = random_flip
        self.seed = seed
        self.epoch = 0

    @property
    def views_per_video(self) -> int:
        return self.num_ensemble_views * self.num_spatial_crops

    @property
    def labels(self) -> list[int]:
        return [entry.label for entry in self.entries]

    def set_epoch(self, epoch: int) -> None:
        """Draw another set of augmentations; call before iterating (workers copy the dataset then)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.entries) * self.views_per_video

    def __getitem__(self, index: int) -> dict[str, Any]:
        video_index, view_index = divmod(index, self.views_per_video)
        entry = self.entries[video_index]
        if self.training:
            seed = _item_seed(self.seed, self.epoch, index)
            frames = self._decode(entry, clip_index=-1, num_clips=1, rng=random.Random(seed))
            clip = self._augment(frames, torch.Generator().manual_seed(seed))
        else:
            temporal_index, spatial_index = divmod(view_index, self.num_spatial_crops)
            frames = self._decode(entry, clip_index=temporal_index, num_clips=self.num_ensemble_views)
            spatial = spatial_index if self.num_spatial_crops > 1 else 1
            clip = kinetics_test_clip(frames, self.spec, spatial, self.num_spatial_crops)
        inputs = [pathway[0] for pathway in pack_pathways(clip, self.spec)]
        return {"inputs": inputs, "label": entry.label, "video_index": video_index, "view_index": view_index}

    def _augment(self, frames: np.ndarray, generator: torch.Generator) -> torch.Tensor:
        spec = self.spec
        clip = normalize(frames, spec).permute(3, 0, 1, 2)
        clip = random_short_side_scale(clip, *spec.train_jitter_scales, generator=generator)
        clip = random_crop(clip, spec.train_crop_size, generator=generator)
        if self.random_flip:
            clip = horizontal_flip(clip, 0.5, generator=generator)
        return clip.contiguous()

    def _decode(
        self, entry: VideoEntry, clip_index: int, num_clips: int, rng: random.Random | None = None
    ) -> np.ndarray:
        """The ``num_frames`` RGB frames (T x H x W x 3 uint8) of one clip of a video."""

        def place(num_frames: int) -> list[int]:
            return kinetics_clip_indices(num_frames, fps, self.spec, clip_index, num_clips, rng=rng).tolist()

        try:
            with VideoReader(entry.path) as reader:
                fps = float(reader.fps) if reader.fps else float(self.spec.target_fps)
                # Frames a player shows: a header also counts those an edit list hides (an `-ss -c copy` cut).
                shown = reader.shown_frames()
                indices = place(shown) if shown else None
                kept, decoded = _decode_frames(reader, indices)
            if decoded and (indices is None or decoded <= max(indices)):
                # The length was unknown or over-reported: the clip is placed over the frames the stream
                # delivered, which are decoded again rather than all held until their count is known.
                kept.clear()  # frames of a clip placed past the end: not held during the second pass
                indices = place(decoded)
                with VideoReader(entry.path) as reader:
                    kept, _ = _decode_frames(reader, indices)
        except VidactError as err:
            raise VidactError(f"{self.list_file}: video {entry.path} cannot be decoded ({err}); fix or remove its line") from None
        if not decoded:
            raise VidactError(f"{self.list_file}: video {entry.path} has no frames; remove its line")
        return np.stack([kept[i].rgb for i in indices])


def _decode_frames(reader: VideoReader, indices: list[int] | None) -> tuple[dict[int, Frame], int]:
    """The frames at ``indices`` and how many were decoded: up to the last index, or all for None
    (then only counted). Only the clip's frames are kept: a clip late in a long video would
    otherwise hold every frame before it (GBs a loader worker)."""
    wanted = set(indices or ())
    last = max(wanted) if indices else None
    kept, decoded = {}, 0
    for frame in reader:
        if decoded in wanted:
            kept[decoded] = frame
        decoded += 1
        if last is not None and decoded > last:
            break
    return kept, decoded
