"""Classification heads: clip-level (ResNet, X3D) and box-level (AVA RoI head).

Clip heads are fully convolutional: the average pool kernel is fixed from the training
crop, so a larger test input yields several positions. In training they return the
logits of every position flattened to (N, positions x classes) — (N, classes) when the
input matches the training crop; in eval they apply the activation per position and
average over positions, giving (N, classes).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torchvision.ops import RoIAlign


def _activation(name: str, class_dim: int) -> nn.Module:
    if name == "softmax":
        return nn.Softmax(dim=class_dim)
    if name == "sigmoid":
        return nn.Sigmoid()
    raise ValueError(f"unknown head activation {name!r}; use softmax or sigmoid")


def _positions_to_output(head: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(N, T, H, W, classes) logits -> training logits or eval position-averaged scores."""
    if not head.training:
        # Scores in float32 even under bf16/fp16 autocast, so that they sum to 1 as they should.
        x = head.act(x.float()).mean((1, 2, 3))
    return x.reshape(x.shape[0], -1)


class ResNetBasicHead(nn.Module):
    """Per-pathway average pool, concat, dropout, linear projection at every position."""

    def __init__(
        self,
        dim_in: Sequence[int],
        num_classes: int,
        pool_size: Sequence[tuple[int, int, int] | None],
        dropout_rate: float = 0.0,
        activation: str = "softmax",
    ) -> None:
        super().__init__()
        self.num_pathways = len(dim_in)
        for p, size in enumerate(pool_size):
            pool = nn.AdaptiveAvgPool3d(1) if size is None else nn.AvgPool3d(size, stride=1)
            self.add_module(f"pathway{p}_avgpool", pool)
        if dropout_rate > 0.0:
            self.dropout = nn.Dropout(dropout_rate)
        self.projection = nn.Linear(sum(dim_in), num_classes)
        self.act = _activation(activation, class_dim=4)

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        pooled = [getattr(self, f"pathway{p}_avgpool")(x) for p, x in enumerate(inputs)]
        x = torch.cat(pooled, 1).permute(0, 2, 3, 4, 1)
        if hasattr(self, "dropout"):
            x = self.dropout(x)
        return _positions_to_output(self, self.projection(x))


class X3DHead(nn.Module):
    """conv_5 (1x1x1) + BN + ReLU, average pool, lin_5 (1x1x1) [+ BN] + ReLU, dropout, projection."""

    def __init__(
        self,
        dim_in: int,
        dim_inner: int,
        dim_out: int,
        num_classes: int,
        pool_size: tuple[int, int, int] | None,
        dropout_rate: float = 0.0,
        activation: str = "softmax",
        bn_lin5: bool = False,
        inplace_relu: bool = True,
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        self.conv_5 = nn.Conv3d(dim_in, dim_inner, 1, bias=False)
        self.conv_5_bn = nn.BatchNorm3d(dim_inner, eps=bn_eps, momentum=bn_momentum)
        self.conv_5_relu = nn.ReLU(inplace_relu)
        self.avg_pool = nn.AdaptiveAvgPool3d(1) if pool_size is None else nn.AvgPool3d(pool_size, stride=1)
        self.lin_5 = nn.Conv3d(dim_inner, dim_out, 1, bias=False)
        if bn_lin5:
            self.lin_5_bn = nn.BatchNorm3d(dim_out, eps=bn_eps, momentum=bn_momentum)
        self.lin_5_relu = nn.ReLU(inplace_relu)
        if dropout_rate > 0.0:
            self.dropout = nn.Dropout(dropout_rate)
        self.projection = nn.Linear(dim_out, num_classes)
        self.act = _activation(activation, class_dim=4)

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        (x,) = inputs
        x = self.avg_pool(self.conv_5_relu(self.conv_5_bn(self.conv_5(x))))
        x = self.lin_5(x)
        if hasattr(self, "lin_5_bn"):
            x = self.lin_5_bn(x)
        x = self.lin_5_relu(x).permute(0, 2, 3, 4, 1)
        if hasattr(self, "dropout"):
            x = self.dropout(x)
        return _positions_to_output(self, self.projection(x))


class ResNetRoIHead(nn.Module):
    """AVA box head: per-pathway temporal average, RoIAlign, spatial max, concat, linear.

    ``boxes`` is (K, 5) ``[batch_index, x1, y1, x2, y2]`` in input pixels; the output is
    (K, classes) after the activation, which is applied in training too (AVA trains with
    BCE on sigmoid scores).
    """

    def __init__(
        self,
        dim_in: Sequence[int],
        num_classes: int,
        temporal_pool: Sequence[int],
        resolution: int = 7,
        spatial_scale: float = 1.0 / 16,
        aligned: bool = True,
        dropout_rate: float = 0.0,
        activation: str = "sigmoid",
    ) -> None:
        super().__init__()
        self.num_pathways = len(dim_in)
        for p, frames in enumerate(temporal_pool):
            self.add_module(f"s{p}_tpool", nn.AvgPool3d((frames, 1, 1), stride=1))
            roi = RoIAlign(resolution, spatial_scale=spatial_scale, sampling_ratio=0, aligned=aligned)
            self.add_module(f"s{p}_roi", roi)
            self.add_module(f"s{p}_spool", nn.MaxPool2d(resolution, stride=1))
        if dropout_rate > 0.0:
            self.dropout = nn.Dropout(dropout_rate)
        self.projection = nn.Linear(sum(dim_in), num_classes)
        self.act = _activation(activation, class_dim=1)

    def forward(self, inputs: list[torch.Tensor], boxes: torch.Tensor) -> torch.Tensor:
        pooled = []
        for p, x in enumerate(inputs):
            tpool = getattr(self, f"s{p}_tpool")
            if x.shape[2] != tpool.kernel_size[0]:
                raise ValueError(
                    f"pathway {p} reaches the head with {x.shape[2]} frames; "
                    f"the model was built for {tpool.kernel_size[0]} (input num_frames)"
                )
            x = tpool(x).squeeze(2)
            # RoIAlign in (at least) float32, as torchvision's autocast wrapper runs it, and on
            # the boxes as given: cast to bf16 (8 mantissa bits), pixel coordinates round by 1-2 px.
            dtype = torch.promote_types(x.dtype, torch.float32)
            x = getattr(self, f"s{p}_roi")(x.to(dtype), boxes.to(dtype)).to(x.dtype)
            pooled.append(getattr(self, f"s{p}_spool")(x))
        x = torch.cat(pooled, 1)
        if hasattr(self, "dropout"):
            x = self.dropout(x)
        return self.act(self.projection(x.flatten(1)).float())  # float32 scores under autocast too
