"""The person-detector interface shared by every backend."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Detections:
    """Person boxes on one frame, in that frame's pixel coordinates.

    ``boxes`` is float32 (N, 4) as x1, y1, x2, y2; ``scores`` float32 (N,).
    """

    boxes: np.ndarray
    scores: np.ndarray

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32))

    def __len__(self) -> int:
        return len(self.scores)


@runtime_checkable
class PersonDetector(Protocol):
    """Frames in (RGB uint8 HxWx3 numpy arrays), person detections out, one per frame."""

    def __call__(self, frames: list[np.ndarray]) -> list[Detections]: ...
