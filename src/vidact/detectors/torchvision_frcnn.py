"""Person detection with torchvision's Faster R-CNN R50-FPN v2 trained on COCO."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vidact.detectors._common import check_frame, finish_detections
from vidact.detectors.base import Detections
from vidact.errors import VidactError

# torchvision detection models number COCO classes from 1; 0 is the background.
COCO_PERSON = 1


def cached_weights_path() -> Path:
    """Where torchvision caches the COCO weights: ``torch.hub.get_dir()/checkpoints/<file>``."""
    from torchvision.models.detection import FasterRCNN_ResNet50_FPN_V2_Weights

    url = FasterRCNN_ResNet50_FPN_V2_Weights.DEFAULT.url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


class TorchvisionPersonDetector:
    """A :class:`~vidact.detectors.base.PersonDetector` around a torchvision detection model.

    ``model`` is any torchvision-style detector: in eval mode it takes a list of CHW float
    [0, 1] RGB tensors and returns, per image, a dict with ``boxes`` (in that image's
    pixels), ``labels`` and ``scores``. Frames go through it ``batch_size`` at a time.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        score_threshold: float = 0.7,
        person_class: int = COCO_PERSON,
        min_box_size: float = 0.0,
        device: str | torch.device = "cpu",
        batch_size: int = 4,
    ) -> None:
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        heads = getattr(self.model, "roi_heads", None)
        if heads is not None and hasattr(heads, "score_thresh"):
            # torchvision's Faster R-CNN drops boxes under its own 0.05 before we see them.
            heads.score_thresh = min(heads.score_thresh, score_threshold)
        self.score_threshold = score_threshold
        self.person_class = person_class
        self.min_box_size = min_box_size
        self.batch_size = batch_size

    @classmethod
    def from_pretrained(cls, **kwargs) -> "TorchvisionPersonDetector":
        """The COCO model with torchvision's own weights (``FasterRCNN_ResNet50_FPN_V2_Weights.DEFAULT``).

        The weights must already be in torchvision's cache; vidact does not download them.
        Keyword arguments are those of the constructor.
        """
        from torchvision.models.detection import FasterRCNN_ResNet50_FPN_V2_Weights, fasterrcnn_resnet50_fpn_v2

        weights = FasterRCNN_ResNet50_FPN_V2_Weights.DEFAULT
        path = cached_weights_path()
        if not path.is_file():
            raise VidactError(
                f"torchvision Faster R-CNN weights are not cached at {path}: download {weights.url} "
                "to that path (or set TORCH_HOME), or pick another detector"
            )
        model = fasterrcnn_resnet50_fpn_v2(weights=weights, weights_backbone=None)
        return cls(model, **kwargs)

    @torch.inference_mode()
    def __call__(self, frames: list[np.ndarray]) -> list[Detections]:
        frames = [check_frame(frame) for frame in frames]
        results: list[Detections] = []
        for start in range(0, len(frames), self.batch_size):
            batch = frames[start : start + self.batch_size]
            images = [
                torch.from_numpy(np.ascontiguousarray(frame)).to(self.device).permute(2, 0, 1).float() / 255.0
                for frame in batch
            ]
            for frame, output in zip(batch, self.model(images)):
                is_person = (output["labels"] == self.person_class).cpu().numpy()
                results.append(
                    finish_detections(
                        output["boxes"].float().cpu().numpy()[is_person],
                        output["scores"].float().cpu().numpy()[is_person],
                        width=frame.shape[1],
                        height=frame.shape[0],
                        score_threshold=self.score_threshold,
                        min_box_size=self.min_box_size,
                    )
                )
        return results
