"""X3D (Feichtenhofer, "X3D: Expanding Architectures for Efficient Video Recognition", 2020).

Names and order follow PySlowFast's X3D (``s1.pathway0_stem.conv_xy``, ``branch2.se.fc1``,
``head.conv_5`` ...), so its checkpoints load with ``strict=True``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vidact.config.model import ModelConfig
from vidact.errors import VidactError
from vidact.models.heads import X3DHead
from vidact.models.resnet3d import ResStage, VideoStem, per_pathway

STEM_TEMPORAL_KERNEL = 5
BLOCK_TEMPORAL_KERNEL = 3
# Blocks per stage before the depth factor; every stage halves the resolution.
BASE_STAGE_DEPTHS = (1, 2, 5, 3)
STAGE_STRIDE = 2
SE_RATIO = 0.0625


def round_width(width: float, multiplier: float, min_width: int = 1, divisor: int = 1) -> int:
    """Scale a channel count and round it to a multiple of ``divisor`` (at least ``min_width``)."""
    if not multiplier:
        return int(width)
    width *= multiplier
    rounded = max(min_width, int(width + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * width:
        rounded += divisor
    return int(rounded)


def round_repeats(repeats: int, multiplier: float) -> int:
    return int(math.ceil(multiplier * repeats)) if multiplier else repeats


class Swish(nn.Module):
    """x * sigmoid(x)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


class SqueezeExcitation(nn.Module):
    """Global average pool, 1x1x1 conv, ReLU, 1x1x1 conv, sigmoid gate on the input channels."""

    def __init__(self, dim_in: int, ratio: float) -> None:
        super().__init__()
        dim_fc = round_width(dim_in, ratio, min_width=8, divisor=8)
        self.avg_pool = nn.AdaptiveAvgPool3d(1)
        self.fc1 = nn.Conv3d(dim_in, dim_fc, 1)
        self.fc1_act = nn.ReLU()
        self.fc2 = nn.Conv3d(dim_fc, dim_in, 1)
        self.fc2_sig = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.fc2_sig(self.fc2(self.fc1_act(self.fc1(self.avg_pool(x)))))
        return x * gate


class X3DTransform(nn.Module):
    """1x1x1 -> T x 3 x 3 channel-wise (strided) [+ SE on even blocks] + Swish -> 1x1x1."""

    final_layers = ("c", "c_bn")

    def __init__(
        self, dim_in: int, dim_out: int, temporal_kernel: int, stride: int, dim_inner: int,
        num_groups: int = 1, stride_1x1: bool = False, inplace_relu: bool = True,
        bn_eps: float = 1e-5, bn_momentum: float = 0.1, dilation: int = 1, block_index: int = 0,
        se_ratio: float = SE_RATIO,
    ) -> None:
        super().__init__()
        stride_a, stride_b = (stride, 1) if stride_1x1 else (1, stride)
        self.a = nn.Conv3d(dim_in, dim_inner, 1, stride=(1, stride_a, stride_a), bias=False)
        self.a_bn = nn.BatchNorm3d(dim_inner, eps=bn_eps, momentum=bn_momentum)
        self.a_relu = nn.ReLU(inplace_relu)
        self.b = nn.Conv3d(
            dim_inner, dim_inner, (temporal_kernel, 3, 3), stride=(1, stride_b, stride_b),
            padding=(temporal_kernel // 2, dilation, dilation), dilation=(1, dilation, dilation),
            groups=num_groups, bias=False,
        )
        self.b_bn = nn.BatchNorm3d(dim_inner, eps=bn_eps, momentum=bn_momentum)
        if se_ratio > 0.0 and block_index % 2 == 0:
            self.se = SqueezeExcitation(dim_inner, se_ratio)
        self.b_relu = Swish()
        self.c = nn.Conv3d(dim_inner, dim_out, 1, bias=False)
        self.c_bn = nn.BatchNorm3d(dim_out, eps=bn_eps, momentum=bn_momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.a_relu(self.a_bn(self.a(x)))
        x = self.b_bn(self.b(x))
        if hasattr(self, "se"):
            x = self.se(x)
        x = self.b_relu(x)
        return self.c_bn(self.c(x))


class X3DStem(nn.Module):
    """Spatial 1x3x3 conv (stride 2), then a depth-wise temporal conv, BN, ReLU; no pooling."""

    def __init__(self, dim_in: int, dim_out: int, bn_eps: float, bn_momentum: float,
                 inplace_relu: bool = True) -> None:
        super().__init__()
        t = STEM_TEMPORAL_KERNEL
        self.conv_xy = nn.Conv3d(dim_in, dim_out, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), bias=False)
        self.conv = nn.Conv3d(dim_out, dim_out, (t, 1, 1), padding=(t // 2, 0, 0), groups=dim_out, bias=False)
        self.bn = nn.BatchNorm3d(dim_out, eps=bn_eps, momentum=bn_momentum)
        self.relu = nn.ReLU(inplace_relu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(self.conv_xy(x))))


class X3D(nn.Module):
    """X3D network with the X3D clip head. ``forward([x])`` with x (N, C, T, H, W)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.detection.enable:
            raise VidactError("X3D has no detection head; set detection.enable false or use a ResNet arch")
        x3d = config.x3d
        res = config.resnet
        bn = {"bn_eps": config.bn_eps, "bn_momentum": config.bn_momentum}
        (input_channels,) = per_pathway(config.input_channels[:1], 1, "input_channels")

        # Base widths double per stage; res2 keeps the stem width unless scale_res2.
        dim_res2 = round_width(x3d.dim_c1, 2.0, divisor=8) if x3d.scale_res2 else x3d.dim_c1
        base_widths = [dim_res2]
        for _ in range(3):
            base_widths.append(round_width(base_widths[-1], 2.0, divisor=8))

        dim_stem = round_width(x3d.dim_c1, x3d.width_factor)
        self.s1 = VideoStem([X3DStem(input_channels, dim_stem, inplace_relu=res.inplace_relu, **bn)])

        # PySlowFast's X3D hands NONLOCAL.LOCATION[0], GROUP[0] and POOL[0] to every stage: the
        # res2 entry places non-local blocks in all four stages and the other entries are unused.
        nonlocal_ = config.nonlocal_
        dim_in = dim_stem
        for stage, (base_depth, base_width) in enumerate(zip(BASE_STAGE_DEPTHS, base_widths)):
            dim_out = round_width(base_width, x3d.width_factor)
            dim_inner = int(x3d.bottleneck_factor * dim_out)
            num_blocks = round_repeats(base_depth, x3d.depth_factor)
            (dilation,) = per_pathway(res.spatial_dilations[stage][:1], 1, "spatial_dilations")
            stage_module = ResStage(
                dim_in=[dim_in],
                dim_out=[dim_out],
                dim_inner=[dim_inner],
                stride=[STAGE_STRIDE],
                temporal_kernels=[[BLOCK_TEMPORAL_KERNEL] * num_blocks],
                num_groups=[dim_inner if x3d.channelwise_3x3x3 else res.num_groups],
                dilation=[dilation],
                nonlocal_indices=nonlocal_.location[0][:1],
                nonlocal_group=nonlocal_.group[0][:1],
                nonlocal_pool=nonlocal_.pool[0][:1],
                nonlocal_instantiation=nonlocal_.instantiation,
                transform=X3DTransform,
                stride_1x1=res.stride_1x1,
                inplace_relu=res.inplace_relu,
                **bn,
            )
            self.add_module(f"s{stage + 2}", stage_module)
            dim_in = dim_out

        side = math.ceil(config.input.train_crop_size / 32)
        self.head = X3DHead(
            dim_in, dim_inner, x3d.dim_c5, config.num_classes,
            pool_size=(config.input.num_frames, side, side),
            dropout_rate=config.dropout_rate, activation=config.head_act, bn_lin5=x3d.bn_lin5,
            inplace_relu=res.inplace_relu, **bn,
        )

    def forward(self, x: list[torch.Tensor], boxes: torch.Tensor | None = None) -> torch.Tensor:
        if isinstance(x, torch.Tensor):  # list() would split the batch into 4D pathways
            raise TypeError("pass a list of pathway tensors, e.g. model([clip]); see vidact.transforms.pack_pathways")
        x = self.s1(list(x))
        for stage in ("s2", "s3", "s4", "s5"):
            x = getattr(self, stage)(x)
        return self.head(x)
