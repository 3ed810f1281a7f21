"""Directories of extracted frames, in the AVA layout ``<video_id>/<video_id>_000001.jpg``.

AVA's frames are extracted from the 15-minute cut (seconds 900-1800) at 30 fps,
numbered from 1, so frame number ``k`` shows time ``(k - 1) / 30`` from the
start of the cut and PySlowFast's keyframe index for second ``s`` is
``(s - 900) * 30`` (0-based).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vidact.errors import VidactError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
AVA_FPS = 30


def ava_frame_path(root: str | os.PathLike, video_id: str, frame_number: int) -> Path:
    """The path of 1-based ``frame_number`` of ``video_id`` under an AVA frames root."""
    return Path(root) / video_id / f"{video_id}_{frame_number:06d}.jpg"


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode one JPEG/PNG file to an ``HxWx3`` uint8 RGB array.

    Pillow decodes JPEG with libjpeg-turbo's defaults, as ``cv2.imread`` does,
    and like ``cv2.imread`` the EXIF orientation is applied.
    """
    try:
        with Image.open(path) as image:
            return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    except FileNotFoundError:
        raise VidactError(f"{path}: no such file; check the path") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise VidactError(f"{path}: cannot decode image ({error}); re-extract the frame") from None


class FrameDirectory:
    """The frames of one video stored as numbered images, read on demand.

    Frames are ordered by the number that ends each file name (``x_000002.jpg``, ``2.png``),
    which must run without gaps from the first: frame ``i`` (0-based) is shown at ``i / fps``
    seconds. Hidden files (``._x_000001.jpg`` from macOS) are skipped. Pass the directory of
    one video (``<root>/<video_id>``).
    """

    def __init__(self, path: str | os.PathLike, fps: float = AVA_FPS):
        self.path = Path(path)
        if not self.path.is_dir():
            raise VidactError(f"{self.path}: not a directory of frames; pass a folder of .jpg/.png files")
        self.files = _numbered_frames(self.path)
        if fps <= 0:
            raise VidactError(f"{self.path}: frame rate must be positive, got {fps}")
        self.fps = fps
        first = self.read(0)
        self.height, self.width = first.shape[:2]

    @property
    def num_frames(self) -> int:
        return len(self.files)

    def __len__(self) -> int:
        return len(self.files)

    @property
    def duration(self) -> float:
        return len(self.files) / self.fps

    def read(self, index: int) -> np.ndarray:
        """Frame ``index`` (0-based) as ``HxWx3`` uint8 RGB."""
        return read_image(self.files[index])

    def read_clip(self, indices) -> np.ndarray:
        """The frames at ``indices`` stacked as ``TxHxWx3`` uint8 RGB."""
        return np.stack([self.read(int(i)) for i in indices])

    def index_at(self, t: float) -> int:
        """The last frame shown at or before ``t`` seconds (clamped to the first and last)."""
        return min(max(math.floor(t * self.fps + 1e-9), 0), len(self.files) - 1)

    def iter_frames(self, start: int = 0) -> Iterator[tuple[int, float, np.ndarray]]:
        """``(index, seconds, rgb)`` from frame ``start`` on, one image in memory at a time."""
        for index in range(start, len(self.files)):
            yield index, index / self.fps, self.read(index)


def _numbered_frames(folder: Path) -> list[Path]:
    """The image files of ``folder`` in frame-number order; a gap or a number given twice is an
    error (every later frame would be shown at another frame's time)."""
    numbered: dict[int, Path] = {}
    for path in folder.iterdir():
        if path.name.startswith(".") or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        match = re.search(r"(\d+)$", path.stem)
        if match is None:
            raise VidactError(f"{path}: frame file names must end in the frame number (x_000001.jpg); rename it")
        number = int(match.group(1))
        if number in numbered:
            raise VidactError(f"{folder}: frame {number} is there twice ({numbered[number].name}, {path.name}); keep one")
        numbered[number] = path
    if not numbered:
        raise VidactError(f"{folder}: directory contains no frames (.jpg/.png); pass a folder of extracted frames")
    first = min(numbered)
    missing = next((n for n in range(first, first + len(numbered)) if n not in numbered), None)
    if missing is not None:
        raise VidactError(f"{folder}: frame {missing} is missing (frames run from {first} to {max(numbered)}); "
                          "re-extract the frames")
    return [numbered[n] for n in sorted(numbered)]
