"""Detectron2's Faster R-CNN (ResNet + FPN), rebuilt on plain PyTorch and torchvision.ops.

The module tree mirrors Detectron2's, so a Detectron2 ``state_dict`` loads by name. Each step
repeats Detectron2's inference arithmetic in the same order (PIL resize on uint8, BGR mean
subtraction, stride on the 1x1 conv, ``F.batch_norm`` FrozenBN, unrounded anchors, per-level RPN
top-k and NMS, ROIAlignV2 with Detectron2's level rule, background-last softmax, class-specific
box decoding, per-class NMS, rescaling to the original image), because the detections of a
Faster R-CNN hinge on discrete decisions that small numeric differences can flip.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn
from torchvision.ops import batched_nms, roi_align

from vidact.detectors._common import check_frame
from vidact.detectors.base import Detections
from vidact.errors import VidactError
from vidact.weights.detectron2 import (
    COCO_PERSON_CLASS,
    DETECTRON2_ZOO,
    load_detectron2_state_dict,
    resolve_detectron2_checkpoint,
)


@dataclass(frozen=True)
class RCNNTestConfig:
    """Detectron2's test-time settings of the COCO Faster R-CNN FPN zoo configs."""

    min_size: int = 800
    max_size: int = 1333
    pixel_mean_bgr: tuple[float, float, float] = (103.530, 116.280, 123.675)
    pixel_std_bgr: tuple[float, float, float] = (1.0, 1.0, 1.0)
    size_divisibility: int = 32
    anchor_sizes: tuple[int, ...] = (32, 64, 128, 256, 512)  # one per P2..P6
    anchor_aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)  # height / width
    rpn_pre_nms_topk: int = 1000  # per level
    rpn_post_nms_topk: int = 1000  # per image
    rpn_nms_thresh: float = 0.7
    roi_box_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)
    pooler_resolution: int = 7
    canonical_box_size: float = 224.0
    canonical_level: int = 4
    score_thresh: float = 0.05
    nms_thresh: float = 0.5
    detections_per_image: int = 100
    stride_in_1x1: bool = True  # MSRA ResNet, as in every Detectron2 COCO zoo model


@dataclass(frozen=True)
class RCNNOutput:
    """Detections of one image (original pixels) plus the RPN proposals (resized-image pixels)."""

    boxes: Tensor  # (N, 4) x1, y1, x2, y2
    scores: Tensor  # (N,)
    classes: Tensor  # (N,) int64, 0-based contiguous dataset classes
    proposals: Tensor  # (P, 4) sorted by objectness
    proposal_logits: Tensor  # (P,)


# Bounding-box regression exactly as Detectron2's Box2BoxTransform.apply_deltas computes it.
_SCALE_CLAMP = math.log(1000.0 / 16)


def _apply_deltas(deltas: Tensor, boxes: Tensor, weights: tuple[float, float, float, float]) -> Tensor:
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    ctr_x = boxes[:, 0] + 0.5 * widths
    ctr_y = boxes[:, 1] + 0.5 * heights
    wx, wy, ww, wh = weights
    dx = deltas[:, 0::4] / wx
    dy = deltas[:, 1::4] / wy
    dw = torch.clamp(deltas[:, 2::4] / ww, max=_SCALE_CLAMP)
    dh = torch.clamp(deltas[:, 3::4] / wh, max=_SCALE_CLAMP)
    pred_ctr_x = dx * widths[:, None] + ctr_x[:, None]
    pred_ctr_y = dy * heights[:, None] + ctr_y[:, None]
    pred_w = torch.exp(dw) * widths[:, None]
    pred_h = torch.exp(dh) * heights[:, None]
    x1 = pred_ctr_x - 0.5 * pred_w
    y1 = pred_ctr_y - 0.5 * pred_h
    x2 = pred_ctr_x + 0.5 * pred_w
    y2 = pred_ctr_y + 0.5 * pred_h
    return torch.stack((x1, y1, x2, y2), dim=-1).reshape(deltas.shape)


def _clip(boxes: Tensor, height: int, width: int) -> Tensor:
    return torch.stack(
        (
            boxes[:, 0].clamp(min=0, max=width),
            boxes[:, 1].clamp(min=0, max=height),
            boxes[:, 2].clamp(min=0, max=width),
            boxes[:, 3].clamp(min=0, max=height),
        ),
        dim=-1,
    )


def _nonempty(boxes: Tensor) -> Tensor:
    return ((boxes[:, 2] - boxes[:, 0]) > 0) & ((boxes[:, 3] - boxes[:, 1]) > 0)


# --- backbone -----------------------------------------------------------------------------------


class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics; ``F.batch_norm`` in eval mode, as Detectron2 runs it at inference."""

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features) - eps)

    def forward(self, x: Tensor) -> Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, training=False, eps=self.eps)


class ConvFrozenBN(nn.Conv2d):
    """Bias-free convolution followed by ``.norm`` (Detectron2's ``Conv2d(norm=...)`` naming)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False)
        self.norm = FrozenBatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(super().forward(x))


class BasicStem(nn.Module):
    def __init__(self, out_channels: int):
        super().__init__()
        self.conv1 = ConvFrozenBN(3, out_channels, 7, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool2d(F.relu_(self.conv1(x)), kernel_size=3, stride=2, padding=1)


class BottleneckBlock(nn.Module):
    def __init__(self, in_channels: int, bottleneck_channels: int, out_channels: int, stride: int, stride_in_1x1: bool):
        super().__init__()
        self.shortcut = ConvFrozenBN(in_channels, out_channels, 1, stride=stride) if in_channels != out_channels else None
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = ConvFrozenBN(in_channels, bottleneck_channels, 1, stride=stride_1x1)
        self.conv2 = ConvFrozenBN(bottleneck_channels, bottleneck_channels, 3, stride=stride_3x3)
        self.conv3 = ConvFrozenBN(bottleneck_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu_(self.conv1(x))
        out = F.relu_(self.conv2(out))
        out = self.conv3(out)
        out += x if self.shortcut is None else self.shortcut(x)
        return F.relu_(out)


class ResNet(nn.Module):
    """Stem plus res2..res5; returns the four stage outputs."""

    def __init__(self, stem_channels: int, stages: list[tuple[int, int, int]], stride_in_1x1: bool):
        """``stages``: (number of blocks, bottleneck width, output width) for res2..res5."""
        super().__init__()
        self.stem = BasicStem(stem_channels)
        in_channels = stem_channels
        for index, (num_blocks, width, out_channels) in enumerate(stages):
            blocks = []
            for block in range(num_blocks):
                stride = 2 if block == 0 and index > 0 else 1
                blocks.append(BottleneckBlock(in_channels, width, out_channels, stride, stride_in_1x1))
                in_channels = out_channels
            self.add_module(f"res{index + 2}", nn.Sequential(*blocks))

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.stem(x)
        outputs = []
        for stage in (self.res2, self.res3, self.res4, self.res5):
            x = stage(x)
            outputs.append(x)
        return outputs


class FPN(nn.Module):
    """Feature pyramid P2..P6 (sum fusion, nearest x2 upsampling, P6 = stride-2 subsampled P5)."""

    def __init__(self, bottom_up: ResNet, in_channels: list[int], out_channels: int):
        super().__init__()
        self.bottom_up = bottom_up
        for level, channels in zip(range(2, 6), in_channels):
            self.add_module(f"fpn_lateral{level}", nn.Conv2d(channels, out_channels, 1))
            self.add_module(f"fpn_output{level}", nn.Conv2d(out_channels, out_channels, 3, padding=1))

    def forward(self, x: Tensor) -> list[Tensor]:
        c2, c3, c4, c5 = self.bottom_up(x)
        prev = self.fpn_lateral5(c5)
        results = [self.fpn_output5(prev)]
        for level, feature in ((4, c4), (3, c3), (2, c2)):
            top_down = F.interpolate(prev, scale_factor=2.0, mode="nearest")
            prev = getattr(self, f"fpn_lateral{level}")(feature) + top_down
            results.insert(0, getattr(self, f"fpn_output{level}")(prev))
        results.append(F.max_pool2d(results[-1], kernel_size=1, stride=2, padding=0))
        return results


# --- RPN and box head ---------------------------------------------------------------------------


class StandardRPNHead(nn.Module):
    def __init__(self, channels: int, num_anchors: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.objectness_logits = nn.Conv2d(channels, num_anchors, 1)
        self.anchor_deltas = nn.Conv2d(channels, num_anchors * 4, 1)

    def forward(self, feature: Tensor) -> tuple[Tensor, Tensor]:
        """Logits (H*W*A,) and deltas (H*W*A, 4), location-major, anchor-minor."""
        hidden = F.relu(self.conv(feature))
        logits = self.objectness_logits(hidden)
        deltas = self.anchor_deltas(hidden)
        n, a, h, w = logits.shape
        logits = logits.permute(0, 2, 3, 1).flatten(1)
        deltas = deltas.view(n, a, 4, h, w).permute(0, 3, 4, 1, 2).flatten(1, -2)
        return logits, deltas.reshape(-1, 4)


class RPN(nn.Module):
    def __init__(self, channels: int, num_anchors: int):
        super().__init__()
        self.rpn_head = StandardRPNHead(channels, num_anchors)


class BoxHead(nn.Module):
    def __init__(self, in_features: int, fc_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(in_features, fc_dim)
        self.fc2 = nn.Linear(fc_dim, fc_dim)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.fc2(F.relu(self.fc1(x.flatten(1)))))


class BoxPredictor(nn.Module):
    def __init__(self, fc_dim: int, num_classes: int, num_bbox_reg_classes: int):
        super().__init__()
        self.cls_score = nn.Linear(fc_dim, num_classes + 1)  # background is the last column
        self.bbox_pred = nn.Linear(fc_dim, num_bbox_reg_classes * 4)


class ROIHeads(nn.Module):
    def __init__(self, in_features: int, fc_dim: int, num_classes: int, num_bbox_reg_classes: int):
        super().__init__()
        self.box_head = BoxHead(in_features, fc_dim)
        self.box_predictor = BoxPredictor(fc_dim, num_classes, num_bbox_reg_classes)


# --- the detector -------------------------------------------------------------------------------


def _cell_anchors(size: float, aspect_ratios: tuple[float, ...]) -> Tensor:
    # Computed in Python floats and rounded to float32 only at the end, without rounding to
    # integers (torchvision rounds its base anchors, Detectron2 does not).
    anchors = []
    area = size**2.0
    for ratio in aspect_ratios:
        w = math.sqrt(area / ratio)
        h = ratio * w
        anchors.append([-w / 2.0, -h / 2.0, w / 2.0, h / 2.0])
    return torch.tensor(anchors)


def _grid_anchors(cell: Tensor, stride: int, height: int, width: int) -> Tensor:
    shifts_x = torch.arange(0, width * stride, step=stride, dtype=torch.float32, device=cell.device)
    shifts_y = torch.arange(0, height * stride, step=stride, dtype=torch.float32, device=cell.device)
    shift_y, shift_x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")
    shift_x, shift_y = shift_x.reshape(-1), shift_y.reshape(-1)
    shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=1)
    return (shifts.view(-1, 1, 4) + cell.view(1, -1, 4)).reshape(-1, 4)


class Detectron2FasterRCNN(nn.Module):
    """Detectron2's ``GeneralizedRCNN`` with ResNet-FPN backbone, at inference, one image at a time."""

    STRIDES = (4, 8, 16, 32, 64)

    def __init__(
        self,
        *,
        stem_channels: int,
        stages: list[tuple[int, int, int]],
        fpn_channels: int,
        fc_dim: int,
        num_classes: int,
        num_bbox_reg_classes: int,
        config: RCNNTestConfig = RCNNTestConfig(),
    ):
        super().__init__()
        self.config = config
        bottom_up = ResNet(stem_channels, stages, config.stride_in_1x1)
        self.backbone = FPN(bottom_up, [out for _, _, out in stages], fpn_channels)
        self.proposal_generator = RPN(fpn_channels, len(config.anchor_aspect_ratios))
        pooled = fpn_channels * config.pooler_resolution**2
        self.roi_heads = ROIHeads(pooled, fc_dim, num_classes, num_bbox_reg_classes)
        self.num_classes = num_classes
        # Config values, not weights: non-persistent, like Detectron2's.
        self.register_buffer("pixel_mean", torch.tensor(config.pixel_mean_bgr).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(config.pixel_std_bgr).view(-1, 1, 1), persistent=False)
        cells = [_cell_anchors(float(size), config.anchor_aspect_ratios) for size in config.anchor_sizes]
        for level, cell in enumerate(cells):
            self.register_buffer(f"cell_anchors_{level}", cell, persistent=False)

    @classmethod
    def from_state_dict(
        cls, state: dict[str, Tensor], config: RCNNTestConfig = RCNNTestConfig(), *, source: str = "checkpoint"
    ) -> "Detectron2FasterRCNN":
        """Build the model with depth and widths read from a Detectron2 ``state_dict`` and load it."""
        state = {k: v for k, v in state.items() if not _ignored_key(k)}

        def shape(key: str) -> torch.Size:
            if key not in state:
                raise VidactError(
                    f"{source}: no {key}, so not a Detectron2 R-50/R-101 FPN Faster/Mask R-CNN checkpoint"
                    " (C4/DC5, RetinaNet and cascade models are not supported); use e.g. faster_rcnn_R_50_FPN_3x"
                )
            return state[key].shape

        prefix = "backbone.bottom_up."
        stages = []
        for stage in range(2, 6):
            block_ids = [int(m.group(1)) for k in state if (m := _block_index(k, f"{prefix}res{stage}."))]
            num_blocks = 1 + max(block_ids, default=-1)
            conv1, conv2, conv3 = (shape(f"{prefix}res{stage}.0.conv{i}.weight") for i in (1, 2, 3))
            if conv2[1] != conv1[0]:
                raise VidactError(f"{source}: grouped (ResNeXt) bottlenecks are not supported; use an R_50/R_101 checkpoint")
            stages.append((num_blocks, conv1[0], conv3[0]))
        model = cls(
            stem_channels=shape(f"{prefix}stem.conv1.weight")[0],
            stages=stages,
            fpn_channels=shape("backbone.fpn_lateral2.weight")[0],
            fc_dim=shape("roi_heads.box_head.fc1.weight")[0],
            num_classes=shape("roi_heads.box_predictor.cls_score.weight")[0] - 1,
            num_bbox_reg_classes=shape("roi_heads.box_predictor.bbox_pred.weight")[0] // 4,
            config=config,
        )
        expected = model.state_dict()
        problems = {
            "missing": sorted(set(expected) - set(state)),
            "unexpected": sorted(set(state) - set(expected)),
            "shape-mismatched": [k for k in expected if k in state and expected[k].shape != state[k].shape],
        }
        if any(problems.values()):
            listed = "; ".join(f"{label} {keys[:3]}{'...' * (len(keys) > 3)}" for label, keys in problems.items() if keys)
            raise VidactError(
                f"{source}: does not fit Detectron2's Faster R-CNN FPN layout ({listed}); use a Detectron2 R-CNN FPN checkpoint"
            )
        model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})
        return model.eval()

    # -- steps -----------------------------------------------------------------------------------

    def resize(self, image_bgr: np.ndarray) -> np.ndarray:
        """Detectron2's ResizeShortestEdge(min_size, max_size) at test time: PIL bilinear on uint8."""
        height, width = image_bgr.shape[:2]
        new_h, new_w = _shortest_edge_size(height, width, self.config.min_size, self.config.max_size)
        return np.asarray(Image.fromarray(np.ascontiguousarray(image_bgr)).resize((new_w, new_h), Image.BILINEAR))

    @torch.inference_mode()
    def forward(self, resized_bgr: np.ndarray, original_hw: tuple[int, int]) -> RCNNOutput:
        """Detect on one resized BGR uint8 image; boxes come back in ``original_hw`` pixels."""
        cfg = self.config
        device = self.pixel_mean.device
        image = torch.as_tensor(resized_bgr.astype("float32").transpose(2, 0, 1)).to(device)
        height, width = image.shape[-2:]
        image = (image - self.pixel_mean) / self.pixel_std
        div = cfg.size_divisibility
        padded_h, padded_w = -(-height // div) * div, -(-width // div) * div
        batch = F.pad(image, [0, padded_w - width, 0, padded_h - height], value=0.0).unsqueeze_(0)

        features = self.backbone(batch)
        proposals, logits = self._proposals(features, (height, width))
        boxes, scores, classes = self._detect(features[:4], proposals, (height, width))

        # Back to the original image: scale, clip, drop empty boxes (detector_postprocess).
        out_h, out_w = original_hw
        boxes[:, 0::2] *= out_w / width
        boxes[:, 1::2] *= out_h / height
        boxes = _clip(boxes, out_h, out_w)
        keep = _nonempty(boxes)
        return RCNNOutput(boxes[keep], scores[keep], classes[keep], proposals, logits)

    def _proposals(self, features: list[Tensor], image_hw: tuple[int, int]) -> tuple[Tensor, Tensor]:
        cfg = self.config
        head = self.proposal_generator.rpn_head
        top_boxes, top_logits, levels = [], [], []
        for level, (feature, stride) in enumerate(zip(features, self.STRIDES)):
            logits, deltas = head(feature)
            anchors = _grid_anchors(getattr(self, f"cell_anchors_{level}"), stride, feature.shape[-2], feature.shape[-1])
            proposals = _apply_deltas(deltas, anchors, (1.0, 1.0, 1.0, 1.0))
            k = min(logits.shape[1], cfg.rpn_pre_nms_topk)
            level_logits, index = logits.topk(k, dim=1)
            top_logits.append(level_logits[0])
            top_boxes.append(proposals[index[0]])
            levels.append(torch.full((k,), level, dtype=torch.int64, device=logits.device))
        boxes, logits, levels = torch.cat(top_boxes), torch.cat(top_logits), torch.cat(levels)
        valid = torch.isfinite(boxes).all(dim=1) & torch.isfinite(logits)
        boxes, logits, levels = boxes[valid], logits[valid], levels[valid]
        boxes = _clip(boxes, *image_hw)
        keep = _nonempty(boxes)
        boxes, logits, levels = boxes[keep], logits[keep], levels[keep]
        keep = batched_nms(boxes, logits, levels, cfg.rpn_nms_thresh)[: cfg.rpn_post_nms_topk]
        return boxes[keep], logits[keep]

    def _pool(self, features: list[Tensor], boxes: Tensor) -> Tensor:
        """ROIAlignV2 (aligned, adaptive sampling) on the level Detectron2's ROIPooler assigns."""
        cfg = self.config
        sizes = torch.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
        levels = torch.floor(cfg.canonical_level + torch.log2(sizes / cfg.canonical_box_size + 1e-8))
        levels = (torch.clamp(levels, min=2, max=5) - 2).to(torch.int64)
        rois = torch.cat([torch.zeros((len(boxes), 1), dtype=boxes.dtype, device=boxes.device), boxes], dim=1)
        res = cfg.pooler_resolution
        pooled = torch.zeros((len(boxes), features[0].shape[1], res, res), dtype=features[0].dtype, device=boxes.device)
        for level, (feature, stride) in enumerate(zip(features, self.STRIDES)):
            index = torch.nonzero(levels == level, as_tuple=True)[0]
            pooled.index_put_((index,), roi_align(feature, rois[index], (res, res), 1.0 / stride, 0, True))
        return pooled

    def _detect(self, features: list[Tensor], proposals: Tensor, image_hw: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor]:
        cfg = self.config
        hidden = self.roi_heads.box_head(self._pool(features, proposals))
        predictor = self.roi_heads.box_predictor
        probs = F.softmax(predictor.cls_score(hidden), dim=-1)
        boxes = _apply_deltas(predictor.bbox_pred(hidden), proposals, cfg.roi_box_weights)
        valid = torch.isfinite(boxes).all(dim=1) & torch.isfinite(probs).all(dim=1)
        boxes, probs = boxes[valid], probs[valid]
        scores = probs[:, :-1]  # drop background
        num_reg = boxes.shape[1] // 4
        boxes = _clip(boxes.reshape(-1, 4), *image_hw).view(-1, num_reg, 4)
        passing = scores > cfg.score_thresh
        index = passing.nonzero()
        boxes = boxes[index[:, 0], 0] if num_reg == 1 else boxes[passing]
        scores = scores[passing]
        keep = batched_nms(boxes, scores, index[:, 1], cfg.nms_thresh)[: cfg.detections_per_image]
        return boxes[keep], scores[keep], index[keep, 1]


def _shortest_edge_size(height: int, width: int, short: int, max_size: int) -> tuple[int, int]:
    # Same float steps as Detectron2's ResizeShortestEdge.get_output_shape.
    size = short * 1.0
    scale = size / min(height, width)
    new_h, new_w = (size, scale * width) if height < width else (scale * height, size)
    if max(new_h, new_w) > max_size:
        scale = max_size * 1.0 / max(new_h, new_w)
        new_h, new_w = new_h * scale, new_w * scale
    return int(new_h + 0.5), int(new_w + 0.5)


def _block_index(key: str, stage_prefix: str) -> re.Match | None:
    return re.match(re.escape(stage_prefix) + r"(\d+)\.", key)


# Checkpoint entries that are not weights of the box detector: config buffers saved by older
# Detectron2 versions, and the mask/keypoint heads, which never change Detectron2's boxes.
_IGNORED_PREFIXES = ("proposal_generator.anchor_generator.", "roi_heads.mask_head.", "roi_heads.keypoint_head.")


def _ignored_key(key: str) -> bool:
    return key in ("pixel_mean", "pixel_std") or key.startswith(_IGNORED_PREFIXES)


class Detectron2PersonDetector:
    """Person boxes from a Detectron2 COCO Faster R-CNN checkpoint, without Detectron2.

    Frames are RGB uint8 HxWx3; boxes come back in each frame's pixels, scores > ``score_threshold``.
    """

    def __init__(self, model: Detectron2FasterRCNN, *, score_threshold: float = 0.5, person_class: int = COCO_PERSON_CLASS):
        self.model = model
        self.score_threshold = score_threshold
        self.person_class = person_class

    @classmethod
    def from_checkpoint(
        cls, path_or_zoo_name: str | os.PathLike, *, score_threshold: float = 0.5, device: str = "cpu"
    ) -> "Detectron2PersonDetector":
        """Load a zoo name (e.g. ``faster_rcnn_R_50_FPN_3x``), a ``detectron2://`` URL or a ``.pkl``/``.pth`` path.

        PySlowFast's demo uses ``score_threshold=0.9``; its AVA configs use 0.7.
        """
        if not 0.0 <= score_threshold <= 1.0:
            raise VidactError(f"score threshold {score_threshold} is outside [0, 1]; use e.g. 0.5, 0.7 or 0.9")
        path = resolve_detectron2_checkpoint(path_or_zoo_name)
        entry = DETECTRON2_ZOO.get(os.fspath(path_or_zoo_name))
        config = RCNNTestConfig() if entry is None else RCNNTestConfig(
            score_thresh=entry.score_thresh_test,
            min_size=entry.min_size_test,
            max_size=entry.max_size_test,
            nms_thresh=entry.nms_thresh_test,
            detections_per_image=entry.detections_per_image,
        )
        # PySlowFast sets SCORE_THRESH_TEST to its threshold. Above the config's own threshold,
        # filtering afterwards gives the same boxes (NMS and the top-100 cap keep the highest
        # scores first); below it, the model itself must keep the weaker boxes.
        config = replace(config, score_thresh=min(config.score_thresh, score_threshold))
        model = Detectron2FasterRCNN.from_state_dict(load_detectron2_state_dict(path), config, source=os.fspath(path))
        return cls(model.to(device), score_threshold=score_threshold)

    def detect_all_classes(self, frame_rgb: np.ndarray) -> RCNNOutput:
        """Every class Detectron2 would report for one RGB frame (its own 0.05 test threshold)."""
        frame_rgb = check_frame(frame_rgb)
        bgr = frame_rgb[:, :, ::-1]
        return self.model(self.model.resize(bgr), bgr.shape[:2])

    def __call__(self, frames: list[np.ndarray]) -> list[Detections]:
        results = []
        for frame in frames:
            out = self.detect_all_classes(frame)
            keep = (out.classes == self.person_class) & (out.scores > self.score_threshold)
            boxes, scores = out.boxes[keep].cpu().numpy(), out.scores[keep].cpu().numpy()
            results.append(Detections(boxes.astype(np.float32), scores.astype(np.float32)))
        return results
