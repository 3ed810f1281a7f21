"""Person detectors: frames in, person boxes and scores out.

:func:`create_detector` builds one from a short spec string; every backend takes a score
threshold, a person class id and a minimum box side (pixels).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from vidact.detectors._common import MinBoxSizeFilter
from vidact.detectors.base import Detections, PersonDetector
from vidact.errors import VidactError
from vidact.paths import weights_dir

__all__ = ["Detections", "PersonDetector", "create_detector", "DETECTOR_SPECS"]

DETECTOR_SPECS = (
    "torchvision (default)",
    "fastestdet",
    "yolo",
    "PATH.onnx",
    "csv:PATH or PATH.csv",
    "detectron2:NAME or PATH.pkl/.pth",
)

FASTESTDET_URL = "https://github.com/dog-qiuqiu/FastestDet/raw/main/example/onnx-runtime/FastestDet.onnx"


def _named_onnx(name: str, file: Path, how: str) -> Path:
    if not file.is_file():
        raise VidactError(f"the {name} detector needs {file}: {how}, or pass the path of an .onnx file")
    return file


def is_onnx_spec(spec: str) -> bool:
    """Whether :func:`create_detector` runs ``spec`` through onnxruntime."""
    return spec in ("fastestdet", "yolo") or Path(spec).suffix.lower() == ".onnx"


def create_detector(
    spec: str = "torchvision",
    *,
    score_threshold: float | None = None,
    person_class: int | None = None,
    min_box_size: float = 0.0,
    device: str = "cpu",
    detector_format: str | None = None,
    video_id: str | None = None,
    starting_second: float | None = None,
) -> PersonDetector:
    """A person detector for ``spec``.

    ``spec`` is ``"torchvision"`` (COCO Faster R-CNN R50-FPN v2, weights from torchvision's
    cache), ``"fastestdet"`` / ``"yolo"`` (ONNX files in vidact's weight cache), ``"csv:PATH"``
    (precomputed AVA-format boxes), ``"detectron2:NAME"`` (a Detectron2 model-zoo name) or a
    path: ``.onnx`` (FastestDet, YOLOv5 or YOLOv8/YOLO11 layout, recognised from the output shape
    or forced with ``detector_format``: ``"fastestdet"``, ``"yolov5"`` or ``"yolo"``), ``.csv``,
    ``.pkl``/``.pth`` (Detectron2 checkpoint).

    ``score_threshold`` and ``person_class`` default to each backend's own (0.7 and COCO id 1
    for torchvision, 0.5 and 0 for ONNX and Detectron2, 0 for CSV boxes);
    ``min_box_size`` is the smallest box side kept, in pixels. ``video_id`` picks the video
    in a CSV with boxes for several; ``starting_second`` is the CSV's timestamp of the video's
    first frame (AVA: 900).
    """
    # Out of range, either would silently change the boxes: nan or 1.5 keeps none, -1 keeps every one.
    if score_threshold is not None and not 0 <= score_threshold <= 1:
        raise VidactError(f"person score threshold {score_threshold} is not in [0, 1]; pass e.g. 0.5")
    if not (math.isfinite(min_box_size) and min_box_size >= 0):
        raise VidactError(f"min box size {min_box_size} is not a finite number >= 0 (pixels); pass e.g. 0 or 16")
    options = {"min_box_size": min_box_size}
    if score_threshold is not None:
        options["score_threshold"] = score_threshold
    kind, _, argument = spec.partition(":")
    suffix = Path(spec).suffix.lower()

    from vidact.detectors.precomputed import PrecomputedDetector, is_csv_spec

    if is_csv_spec(spec):

        if person_class is not None:
            raise VidactError(f"precomputed boxes ({spec}) are all persons: drop the person class option")
        return PrecomputedDetector(argument if kind == "csv" else spec, video_id=video_id,
                                   starting_second=starting_second or 0.0, **options)

    if starting_second is not None:
        raise VidactError(f"a starting second (--boxes-start) applies to csv: boxes, not {spec}; drop it")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise VidactError(f"no CUDA GPU here for the {spec} detector; use device='cpu'")
    if person_class is not None:
        options["person_class"] = person_class

    if kind == "detectron2" or suffix in (".pkl", ".pth"):
        from vidact.detectors.detectron2_frcnn import Detectron2PersonDetector

        detector = Detectron2PersonDetector.from_checkpoint(
            argument if kind == "detectron2" else spec,
            device=device,
            **({"score_threshold": score_threshold} if score_threshold is not None else {}),
        )
        if person_class is not None:
            detector.person_class = person_class
        return MinBoxSizeFilter(detector, min_box_size) if min_box_size > 0 else detector

    if spec == "torchvision":
        from vidact.detectors.torchvision_frcnn import TorchvisionPersonDetector

        return TorchvisionPersonDetector.from_pretrained(device=device, **options)

    if is_onnx_spec(spec):
        from vidact.detectors.onnx import OnnxPersonDetector

        if spec == "fastestdet":
            path = _named_onnx("fastestdet", weights_dir() / "fastestdet" / "FastestDet.onnx", f"download {FASTESTDET_URL}")
        elif spec == "yolo":
            path = _named_onnx(
                "yolo",
                weights_dir() / "yolo" / "yolo11n.onnx",
                "export it with Ultralytics (`yolo export model=yolo11n.pt format=onnx`) and copy it there",
            )
        else:
            path = Path(spec)
        output_format = detector_format or ("fastestdet" if spec == "fastestdet" else "yolo" if spec == "yolo" else None)
        return OnnxPersonDetector(path, device=device, output_format=output_format, **options)

    raise VidactError(f"unknown detector {spec!r}: use one of {', '.join(DETECTOR_SPECS)}")
