"""Detectron2 checkpoints: the model-zoo catalogue and a loader that needs no Detectron2.

Two on-disk layouts exist:

* model-zoo ``.pkl``: a (latin-1) pickle of ``{'model': {name: numpy array}, '__author__': ...}``,
  read through :func:`vidact.weights.safe_pickle.load_pickle` so it cannot run code;
* training ``.pth``: ``torch.save({'model': state_dict, 'optimizer': ..., ...})``, read with
  ``torch.load(weights_only=True)``.

Either way the result is Detectron2's own ``state_dict`` names mapped to CPU tensors.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vidact.errors import VidactError
from vidact.weights.safe_pickle import array_to_tensor, load_pickle

ZOO_URL_PREFIX = "https://dl.fbaipublicfiles.com/detectron2/"
DETECTRON2_SCHEME = "detectron2://"

# COCO's thing classes in Detectron2's contiguous order; the detectors report person as class 0.
COCO_PERSON_CLASS = 0


@dataclass(frozen=True)
class Detectron2ZooEntry:
    """One Detectron2 model-zoo checkpoint and the config facts needed to run it."""

    config: str  # Detectron2 config name, e.g. "COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml"
    url: str
    depth: int
    box_ap: float  # COCO val2017 box AP from Detectron2's MODEL_ZOO.md
    score_thresh_test: float = 0.05  # MODEL.ROI_HEADS.SCORE_THRESH_TEST in the zoo config
    nms_thresh_test: float = 0.5
    detections_per_image: int = 100
    min_size_test: int = 800
    max_size_test: int = 1333


# URLs as listed in Detectron2's MODEL_ZOO.md. No checksums are published there, so none are pinned.
DETECTRON2_ZOO: dict[str, Detectron2ZooEntry] = {
    "faster_rcnn_R_50_FPN_3x": Detectron2ZooEntry(
        config="COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml",
        url=ZOO_URL_PREFIX + "COCO-Detection/faster_rcnn_R_50_FPN_3x/137849458/model_final_280758.pkl",
        depth=50,
        box_ap=40.2,
    ),
    "faster_rcnn_R_101_FPN_3x": Detectron2ZooEntry(
        config="COCO-Detection/faster_rcnn_R_101_FPN_3x.yaml",
        url=ZOO_URL_PREFIX + "COCO-Detection/faster_rcnn_R_101_FPN_3x/137851257/model_final_f6e8b1.pkl",
        depth=101,
        box_ap=42.0,
    ),
}


def resolve_detectron2_checkpoint(name_or_path: str | os.PathLike) -> Path:
    """A local checkpoint file for a zoo name, a ``detectron2://``/``https://`` URL or a path.

    Zoo names and URLs are fetched into vidact's download cache (once).
    """
    spec = os.fspath(name_or_path)
    if spec in DETECTRON2_ZOO:
        url = DETECTRON2_ZOO[spec].url
    elif spec.startswith(DETECTRON2_SCHEME):
        url = ZOO_URL_PREFIX + spec[len(DETECTRON2_SCHEME):]
    elif spec.startswith(("https://", "http://")):
        url = spec
    else:
        path = Path(spec).expanduser()
        if not path.is_file():
            known = ", ".join(sorted(DETECTRON2_ZOO))
            raise VidactError(f"{spec}: no such Detectron2 checkpoint; give a .pkl/.pth path or one of: {known}")
        return path
    from vidact.weights.download import download  # imported here: only zoo names need the network

    return Path(download(url))


def load_detectron2_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a Detectron2 checkpoint (zoo ``.pkl`` or training ``.pth``) into ``{name: tensor}``.

    Nothing from the file is executed: pickles go through the restricted unpickler and
    ``.pth`` files through ``torch.load(weights_only=True)``.
    """
    path = Path(path)
    if not path.is_file():
        raise VidactError(f"{path}: no such checkpoint file; check the path")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic.startswith(b"PK"):  # torch.save's zip container, whatever the file is called
        return _load_pth(path)
    if path.suffix == ".pkl" or magic[:1] == b"\x80":
        return _load_pkl(path)
    return _load_pth(path)


def _load_pkl(path: Path) -> dict[str, torch.Tensor]:
    data = load_pickle(path)
    if isinstance(data, dict) and "blobs" in data and "model" not in data:
        raise VidactError(f"{path}: a Detectron (Caffe2) checkpoint, not a Detectron2 one; use a Detectron2 zoo .pkl")
    model = data.get("model") if isinstance(data, dict) else None
    if not isinstance(model, dict) or not model:
        raise VidactError(f"{path}: not a Detectron2 model-zoo pickle (no 'model' dict of arrays); re-download it")
    state: dict[str, torch.Tensor] = {}
    for name, value in model.items():
        if not isinstance(value, np.ndarray):
            raise VidactError(f"{path}: entry {name!r} is {type(value).__name__}, not an array; re-download the checkpoint")
        state[name] = array_to_tensor(value)
    return state


def _load_pth(path: Path) -> dict[str, torch.Tensor]:
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or code-carrying files
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise VidactError(f"{path}: not a weights-only PyTorch checkpoint ({first_line}); re-download or re-save it") from None
    model = data.get("model", data) if isinstance(data, dict) else None
    if not isinstance(model, dict) or not model or not all(isinstance(v, torch.Tensor) for v in model.values()):
        raise VidactError(
            f"{path}: not a Detectron2 checkpoint (expected {{'model': state_dict}} as DetectionCheckpointer saves it); check the file"
        )
    return dict(model)


# --- PySlowFast DEMO.DETECTRON2_* -----------------------------------------------------------------

_CONFIG_NAME = re.compile(
    r"^(?:.*/)?(?P<dataset>COCO-Detection|COCO-InstanceSegmentation|COCO-Keypoints)/"
    r"(?P<meta>faster_rcnn|mask_rcnn|keypoint_rcnn)_R_(?P<depth>50|101)_FPN_(?P<schedule>1x|3x)\.yaml$"
)


def detector_spec_from_demo(cfg_name: str, weights: str, thresh: float) -> tuple[str, float]:
    """Map PySlowFast's DEMO.DETECTRON2_CFG / _WEIGHTS / _THRESH to ``(zoo name or checkpoint, threshold)``.

    Runnable configs are the COCO R-50/R-101 FPN Faster, Mask and Keypoint R-CNNs: their box
    branch is the same Faster R-CNN, and Detectron2's box outputs do not depend on the mask or
    keypoint head, so those heads' weights are ignored and the person boxes are identical.
    Anything else (C4/DC5 backbones, ResNeXt, RetinaNet, Cascade, LVIS, ...) is refused.
    The returned spec is a zoo name when the weights are a known zoo file, otherwise the URL or
    path as given (``detectron2://`` URLs are accepted by :func:`resolve_detectron2_checkpoint`).
    """
    match = _CONFIG_NAME.match(cfg_name.strip())
    if match is None:
        raise VidactError(
            f"DEMO.DETECTRON2_CFG={cfg_name!r} is not runnable without Detectron2; "
            "use COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml (or an R_50/R_101 FPN Faster/Mask/Keypoint R-CNN config)"
        )
    if not 0.0 <= thresh <= 1.0:
        raise VidactError(f"DEMO.DETECTRON2_THRESH={thresh} is not a probability; use a value in [0, 1] such as 0.9")
    weights = weights.strip()
    if not weights:
        raise VidactError("DEMO.DETECTRON2_WEIGHTS is empty; set it to a Detectron2 checkpoint path or detectron2:// URL")
    url = ZOO_URL_PREFIX + weights[len(DETECTRON2_SCHEME):] if weights.startswith(DETECTRON2_SCHEME) else weights
    for name, entry in DETECTRON2_ZOO.items():
        if url == entry.url:
            return name, float(thresh)
    return weights, float(thresh)
