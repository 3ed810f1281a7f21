"""Helpers shared by the detector backends: frame checks, box filtering and optional imports."""

from __future__ import annotations

import importlib
from types import ModuleType

import numpy as np
import torch
from torchvision.ops import nms

from vidact.detectors.base import Detections
from vidact.errors import VidactError


def import_optional(module: str, feature: str) -> ModuleType:
    """Import a package of the ``vidact[detect]`` extra, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise VidactError(
            f"{feature} needs the Python package '{module}' ({err}): pip install 'vidact[detect]'"
        ) from None


def check_frame(frame: np.ndarray) -> np.ndarray:
    """``frame`` if it is an RGB uint8 HxWx3 array with pixels, else a one-line error.

    Other frames would fail deep in a model, or worse pass: a float frame in [0, 1] read as
    0-255 pixels is a black image in which nobody is found.
    """
    is_rgb = isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8
    if not is_rgb or 0 in frame.shape:
        shape, dtype = getattr(frame, "shape", None), getattr(frame, "dtype", type(frame).__name__)
        raise VidactError(f"detector input must be an RGB uint8 HxWx3 array, got shape {shape} dtype {dtype}; convert the frame")
    return frame


def finish_detections(
    boxes: np.ndarray,
    scores: np.ndarray,
    *,
    width: int,
    height: int,
    score_threshold: float,
    min_box_size: float,
    nms_iou: float | None = None,
) -> Detections:
    """Drop weak boxes, optionally NMS, clip to the frame, drop small ones; highest score first.

    NMS sees the boxes as predicted, before clipping, as the detectors' own references do:
    clipped, two persons at the frame's edge overlap more and one would be suppressed.
    ``min_box_size`` is the smallest allowed side in pixels (both width and height), of the
    part inside the frame.
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
    scores = np.asarray(scores, np.float32).reshape(-1)
    keep = scores >= score_threshold
    boxes, scores = boxes[keep], scores[keep]
    if nms_iou is not None and len(scores):
        kept = nms(torch.from_numpy(boxes), torch.from_numpy(scores), nms_iou).numpy()
        boxes, scores = boxes[kept], scores[kept]
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    keep = (sides >= min_box_size) & (sides > 0)
    boxes, scores = boxes[keep], scores[keep]
    order = np.argsort(-scores, kind="stable")
    return Detections(np.ascontiguousarray(boxes[order]), np.ascontiguousarray(scores[order]))


class MinBoxSizeFilter:
    """Wraps a detector that has no minimum-size option and drops its boxes smaller than ``min_box_size``."""

    def __init__(self, detector, min_box_size: float) -> None:
        self.detector = detector
        self.min_box_size = min_box_size

    def __call__(self, frames: list[np.ndarray]) -> list[Detections]:
        results = []
        for found in self.detector(frames):
            sides = np.minimum(found.boxes[:, 2] - found.boxes[:, 0], found.boxes[:, 3] - found.boxes[:, 1])
            keep = sides >= self.min_box_size
            results.append(Detections(found.boxes[keep], found.scores[keep]))
        return results
