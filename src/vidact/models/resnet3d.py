"""3D ResNet building blocks and the C2D / I3D / Slow / SlowFast networks.

Module names and registration order follow PySlowFast exactly (``s1.pathway0_stem.conv``,
``s2.pathway1_res0.branch2.a_bn``, ``s3_fuse.conv_f2s`` ...), so its checkpoints load with
``strict=True``. Every module that takes several pathways works on a list of tensors
(slow first, then fast) and returns a new list.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from vidact.config.model import ModelConfig
from vidact.errors import VidactError
from vidact.models.heads import ResNetBasicHead, ResNetRoIHead
from vidact.models.nonlocal_block import NonLocal

# Residual blocks per stage (res2..res5) for each supported depth.
STAGE_DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}

# Temporal kernel sizes per pathway for conv1 and res2..res5. A stage with several
# values cycles through them block by block (I3D: 3,1,3,1,...).
_C2D_KERNELS = (((1,),), ((1,),), ((1,),), ((1,),), ((1,),))
_I3D_KERNELS = (((5,),), ((3,),), ((3, 1),), ((3, 1),), ((1, 3),))
TEMPORAL_KERNELS = {
    "c2d": _C2D_KERNELS,
    "c2d_nopool": _C2D_KERNELS,
    "i3d": _I3D_KERNELS,
    "i3d_nopool": _I3D_KERNELS,
    "slow": (((1,),), ((1,),), ((1,),), ((3,),), ((3,),)),
    "slowfast": (((1,), (5,)), ((1,), (3,)), ((1,), (3,)), ((3,), (3,)), ((3,), (3,))),
}

# Temporal max-pool kernel (and stride) applied to each pathway after res2.
POOL1_TEMPORAL = {
    "c2d": (2,), "c2d_nopool": (1,), "i3d": (2,), "i3d_nopool": (1,), "slow": (1,), "slowfast": (1, 1),
}


def per_pathway(values: Sequence, num_pathways: int, what: str) -> tuple:
    """One value per pathway.

    A single value is shared by all pathways; extra values are ignored, as PySlowFast
    indexes these lists by pathway (its default non-local pool lists two pathways even
    for single-pathway models).
    """
    values = tuple(values)
    if len(values) == 1:
        return values * num_pathways
    if len(values) < num_pathways:
        raise VidactError(
            f"model config {what} has {len(values)} per-pathway values for a "
            f"{num_pathways}-pathway model; give one value or one per pathway"
        )
    return values[:num_pathways]


class ResNetStem(nn.Module):
    """Conv (T x 7 x 7, spatial stride 2), BN, ReLU, spatial max-pool 3x3 stride 2."""

    def __init__(
        self, dim_in: int, dim_out: int, temporal_kernel: int, bn_eps: float, bn_momentum: float,
        inplace_relu: bool = True,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv3d(
            dim_in, dim_out, (temporal_kernel, 7, 7), stride=(1, 2, 2),
            padding=(temporal_kernel // 2, 3, 3), bias=False,
        )
        self.bn = nn.BatchNorm3d(dim_out, eps=bn_eps, momentum=bn_momentum)
        self.relu = nn.ReLU(inplace_relu)
        self.pool_layer = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool_layer(self.relu(self.bn(self.conv(x))))


class VideoStem(nn.Module):
    """One stem per pathway, registered as ``pathway{p}_stem``."""

    def __init__(self, stems: Sequence[nn.Module]) -> None:
        super().__init__()
        for pathway, stem in enumerate(stems):
            self.add_module(f"pathway{pathway}_stem", stem)
        self.num_pathways = len(stems)

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(x) != self.num_pathways:
            raise ValueError(f"expected {self.num_pathways} pathway tensors, got {len(x)}")
        return [getattr(self, f"pathway{p}_stem")(t) for p, t in enumerate(x)]


class FuseFastToSlow(nn.Module):
    """Lateral connection: time-strided conv of the fast pathway, concatenated to the slow one."""

    def __init__(
        self, dim_in: int, channel_ratio: int, kernel_size: int, alpha: int,
        bn_eps: float, bn_momentum: float, inplace_relu: bool = True,
    ) -> None:
        super().__init__()
        self.conv_f2s = nn.Conv3d(
            dim_in, dim_in * channel_ratio, (kernel_size, 1, 1), stride=(alpha, 1, 1),
            padding=(kernel_size // 2, 0, 0), bias=False,
        )
        self.bn = nn.BatchNorm3d(dim_in * channel_ratio, eps=bn_eps, momentum=bn_momentum)
        self.relu = nn.ReLU(inplace_relu)

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        slow, fast = x
        fused = self.relu(self.bn(self.conv_f2s(fast)))
        return [torch.cat([slow, fused], 1), fast]


class BottleneckTransform(nn.Module):
    """T x 1 x 1 -> 1 x 3 x 3 (strided, dilated, grouped) -> 1 x 1 x 1, each with BN."""

    final_layers = ("c", "c_bn")  # the branch's last conv and BN, for zero-init

    def __init__(
        self, dim_in: int, dim_out: int, temporal_kernel: int, stride: int, dim_inner: int,
        num_groups: int = 1, stride_1x1: bool = False, inplace_relu: bool = True,
        bn_eps: float = 1e-5, bn_momentum: float = 0.1, dilation: int = 1, block_index: int = 0,
    ) -> None:
        super().__init__()
        stride_a, stride_b = (stride, 1) if stride_1x1 else (1, stride)
        self.a = nn.Conv3d(
            dim_in, dim_inner, (temporal_kernel, 1, 1), stride=(1, stride_a, stride_a),
            padding=(temporal_kernel // 2, 0, 0), bias=False,
        )
        self.a_bn = nn.BatchNorm3d(dim_inner, eps=bn_eps, momentum=bn_momentum)
        self.a_relu = nn.ReLU(inplace_relu)
        self.b = nn.Conv3d(
            dim_inner, dim_inner, (1, 3, 3), stride=(1, stride_b, stride_b),
            padding=(0, dilation, dilation), dilation=(1, dilation, dilation),
            groups=num_groups, bias=False,
        )
        self.b_bn = nn.BatchNorm3d(dim_inner, eps=bn_eps, momentum=bn_momentum)
        self.b_relu = nn.ReLU(inplace_relu)
        self.c = nn.Conv3d(dim_inner, dim_out, 1, bias=False)
        self.c_bn = nn.BatchNorm3d(dim_out, eps=bn_eps, momentum=bn_momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.a_relu(self.a_bn(self.a(x)))
        x = self.b_relu(self.b_bn(self.b(x)))
        return self.c_bn(self.c(x))


class BasicTransform(nn.Module):
    """T x 3 x 3 (strided) -> 1 x 3 x 3 (dilated), each with BN (ResNet-18/34 style)."""

    final_layers = ("b", "b_bn")

    def __init__(
        self, dim_in: int, dim_out: int, temporal_kernel: int, stride: int, dim_inner: int,
        num_groups: int = 1, stride_1x1: bool = False, inplace_relu: bool = True,
        bn_eps: float = 1e-5, bn_momentum: float = 0.1, dilation: int = 1, block_index: int = 0,
    ) -> None:
        super().__init__()
        self.a = nn.Conv3d(
            dim_in, dim_out, (temporal_kernel, 3, 3), stride=(1, stride, stride),
            padding=(temporal_kernel // 2, 1, 1), bias=False,
        )
        self.a_bn = nn.BatchNorm3d(dim_out, eps=bn_eps, momentum=bn_momentum)
        self.a_relu = nn.ReLU(inplace_relu)
        self.b = nn.Conv3d(
            dim_out, dim_out, (1, 3, 3), padding=(0, dilation, dilation),
            dilation=(1, dilation, dilation), bias=False,
        )
        self.b_bn = nn.BatchNorm3d(dim_out, eps=bn_eps, momentum=bn_momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b_bn(self.b(self.a_relu(self.a_bn(self.a(x)))))


class ResBlock(nn.Module):
    """Residual block: ReLU(shortcut(x) + branch2(x)); projection shortcut when shape changes."""

    def __init__(
        self, dim_in: int, dim_out: int, stride: int, branch2: nn.Module,
        bn_eps: float, bn_momentum: float, inplace_relu: bool = True,
    ) -> None:
        super().__init__()
        if dim_in != dim_out or stride != 1:
            self.branch1 = nn.Conv3d(dim_in, dim_out, 1, stride=(1, stride, stride), bias=False)
            self.branch1_bn = nn.BatchNorm3d(dim_out, eps=bn_eps, momentum=bn_momentum)
        else:
            self.branch1 = None
        self.branch2 = branch2
        self.relu = nn.ReLU(inplace_relu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.branch1 is None else self.branch1_bn(self.branch1(x))
        return self.relu(shortcut + self.branch2(x))


TRANSFORMS: dict[str, type[nn.Module]] = {
    "bottleneck_transform": BottleneckTransform,
    "basic_transform": BasicTransform,
}


def block_temporal_kernels(basis: Sequence[int], num_blocks: int, num_temporal: int) -> list[int]:
    """Temporal kernel of each block: the basis repeated over the first ``num_temporal`` blocks, then 1."""
    if not 0 <= num_temporal <= num_blocks:
        raise VidactError(
            f"model config num_block_temp_kernel {num_temporal} is outside 0..{num_blocks} "
            "(the number of blocks in the stage); lower it"
        )
    cycled = (list(basis) * num_blocks)[:num_temporal]
    return cycled + [1] * (num_blocks - num_temporal)


class ResStage(nn.Module):
    """One ResNet stage for each pathway, with optional non-local blocks after chosen blocks.

    Per-pathway arguments are sequences with one entry per pathway. Non-local blocks are
    applied on groups of ``nonlocal_group`` consecutive time slices folded into the batch.
    """

    def __init__(
        self,
        dim_in: Sequence[int],
        dim_out: Sequence[int],
        dim_inner: Sequence[int],
        stride: Sequence[int],
        temporal_kernels: Sequence[Sequence[int]],
        num_groups: Sequence[int],
        dilation: Sequence[int],
        nonlocal_indices: Sequence[Sequence[int]],
        nonlocal_group: Sequence[int],
        nonlocal_pool: Sequence[Sequence[int]],
        nonlocal_instantiation: str,
        transform: type[nn.Module],
        stride_1x1: bool = False,
        inplace_relu: bool = True,
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        self.num_pathways = len(dim_in)
        self.num_blocks = [len(k) for k in temporal_kernels]
        self.nonlocal_group = list(nonlocal_group)
        for p in range(self.num_pathways):
            for i, temporal_kernel in enumerate(temporal_kernels[p]):
                block_in = dim_in[p] if i == 0 else dim_out[p]
                block_stride = stride[p] if i == 0 else 1
                branch2 = transform(
                    block_in, dim_out[p], temporal_kernel, block_stride, dim_inner[p],
                    num_groups=num_groups[p], stride_1x1=stride_1x1, inplace_relu=inplace_relu,
                    bn_eps=bn_eps, bn_momentum=bn_momentum, dilation=dilation[p], block_index=i,
                )
                block = ResBlock(
                    block_in, dim_out[p], block_stride, branch2, bn_eps, bn_momentum, inplace_relu
                )
                self.add_module(f"pathway{p}_res{i}", block)
                if i in nonlocal_indices[p]:
                    nonlocal_block = NonLocal(
                        dim_out[p], dim_out[p] // 2, tuple(nonlocal_pool[p]),
                        instantiation=nonlocal_instantiation, bn_eps=bn_eps, bn_momentum=bn_momentum,
                    )
                    self.add_module(f"pathway{p}_nonlocal{i}", nonlocal_block)

    def forward(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        outputs = []
        for p in range(self.num_pathways):
            x = inputs[p]
            for i in range(self.num_blocks[p]):
                x = getattr(self, f"pathway{p}_res{i}")(x)
                nonlocal_block = getattr(self, f"pathway{p}_nonlocal{i}", None)
                if nonlocal_block is not None:
                    x = self._apply_nonlocal(nonlocal_block, x, self.nonlocal_group[p])
            outputs.append(x)
        return outputs

    @staticmethod
    def _apply_nonlocal(block: nn.Module, x: torch.Tensor, group: int) -> torch.Tensor:
        if group == 1:
            return block(x)
        n, c, t, h, w = x.shape
        # Fold ``group`` temporal chunks into the batch so attention stays within each chunk.
        folded = x.permute(0, 2, 1, 3, 4).reshape(n * group, t // group, c, h, w)
        out = block(folded.permute(0, 2, 1, 3, 4))
        return out.permute(0, 2, 1, 3, 4).reshape(n, t, c, h, w).permute(0, 2, 1, 3, 4)


class ResNet3D(nn.Module):
    """C2D, I3D and Slow (one pathway) and SlowFast (two pathways) ResNets with a clip or RoI head.

    ``forward(x, boxes=None)`` takes a list with one (N, C, T, H, W) tensor per pathway and,
    for detection models, boxes (K, 5) ``[batch_index, x1, y1, x2, y2]`` in input pixels.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        arch = config.arch
        if arch not in TEMPORAL_KERNELS:
            raise VidactError(f"model arch {arch!r} is not a ResNet; use one of {sorted(TEMPORAL_KERNELS)}")
        res = config.resnet
        if res.depth not in STAGE_DEPTHS:
            raise VidactError(f"ResNet depth {res.depth} is not supported; use 50 or 101")
        if res.trans_func not in TRANSFORMS:
            raise VidactError(
                f"ResNet block {res.trans_func!r} is not supported; use one of {sorted(TRANSFORMS)}"
            )
        self.num_pathways = num_pathways = config.num_pathways
        self.detection = config.detection.enable
        sf = config.slowfast
        kernels = TEMPORAL_KERNELS[arch]
        pool1 = POOL1_TEMPORAL[arch]
        bn = {"bn_eps": config.bn_eps, "bn_momentum": config.bn_momentum}
        input_channels = per_pathway(config.input_channels, num_pathways, "input_channels")

        width = res.width_per_group
        dim_inner = res.num_groups * width
        # Channel multiplier per pathway: the fast pathway is 1/beta_inv as wide.
        ratios = (1, sf.beta_inv)[:num_pathways]
        lateral = num_pathways > 1
        if lateral and width // sf.beta_inv < 1:  # else a conv of 0 channels fails at the first step
            raise VidactError(f"RESNET.WIDTH_PER_GROUP {width} is below SLOWFAST.BETA_INV {sf.beta_inv}: the fast "
                              "pathway would have no channels; raise WIDTH_PER_GROUP or lower BETA_INV")
        if lateral and sf.beta_inv // sf.fusion_conv_channel_ratio < 1:
            raise VidactError(f"SLOWFAST.FUSION_CONV_CHANNEL_RATIO {sf.fusion_conv_channel_ratio} is above "
                              f"SLOWFAST.BETA_INV {sf.beta_inv}; PySlowFast's lateral width needs it at most BETA_INV")

        def with_lateral(slow_width: int) -> int:
            # Slow-pathway input width after a lateral connection concatenated fast features.
            return slow_width + (slow_width // (sf.beta_inv // sf.fusion_conv_channel_ratio) if lateral else 0)

        self.s1 = VideoStem([
            ResNetStem(input_channels[p], width // ratios[p], kernels[0][p][0],
                       inplace_relu=res.inplace_relu, **bn)
            for p in range(num_pathways)
        ])
        if lateral:
            self.s1_fuse = self._fuse(width // sf.beta_inv, config)

        stage_in = [with_lateral(width)] + [width // r for r in ratios[1:]]
        for stage in range(4):
            mult = 2**stage
            dim_out = [width * 4 * mult // r for r in ratios]
            num_blocks = STAGE_DEPTHS[res.depth][stage]
            num_temporal = per_pathway(res.num_block_temp_kernel[stage], num_pathways, "num_block_temp_kernel")
            stage_module = ResStage(
                dim_in=stage_in,
                dim_out=dim_out,
                dim_inner=[dim_inner * mult // r for r in ratios],
                stride=per_pathway(res.spatial_strides[stage], num_pathways, "spatial_strides"),
                temporal_kernels=[
                    block_temporal_kernels(kernels[stage + 1][p], num_blocks, num_temporal[p])
                    for p in range(num_pathways)
                ],
                num_groups=[res.num_groups] * num_pathways,
                dilation=per_pathway(res.spatial_dilations[stage], num_pathways, "spatial_dilations"),
                nonlocal_indices=per_pathway(config.nonlocal_.location[stage], num_pathways, "nonlocal location"),
                nonlocal_group=per_pathway(config.nonlocal_.group[stage], num_pathways, "nonlocal group"),
                nonlocal_pool=per_pathway(config.nonlocal_.pool[stage], num_pathways, "nonlocal pool"),
                nonlocal_instantiation=config.nonlocal_.instantiation,
                transform=TRANSFORMS[res.trans_func],
                stride_1x1=res.stride_1x1,
                inplace_relu=res.inplace_relu,
                **bn,
            )
            self.add_module(f"s{stage + 2}", stage_module)
            if lateral and stage < 3:
                self.add_module(f"s{stage + 2}_fuse", self._fuse(dim_out[1], config))
            if stage == 0:
                for p in range(num_pathways):
                    kernel = (pool1[p], 1, 1)
                    self.add_module(f"pathway{p}_pool", nn.MaxPool3d(kernel, stride=kernel))
            stage_in = [with_lateral(dim_out[0])] + dim_out[1:]

        head_dims = [width * 32 // r for r in ratios]
        # Frames reaching the head per pathway: the slow one sees num_frames / alpha.
        frames_per_head_frame = [(sf.alpha if lateral and p == 0 else 1) * pool1[p] for p in range(num_pathways)]
        frames = [config.input.num_frames // n for n in frames_per_head_frame]
        if min(frames) < 1:  # else a pooling kernel of 0 fails at the first call, as a torch error
            raise VidactError(f"DATA.NUM_FRAMES {config.input.num_frames} leaves a pathway without frames; "
                              f"use at least {max(frames_per_head_frame)}")
        if self.detection:
            self.head = ResNetRoIHead(
                head_dims, config.num_classes, temporal_pool=frames,
                resolution=config.detection.roi_resolution,
                spatial_scale=1.0 / config.detection.spatial_scale_factor,
                aligned=config.detection.aligned, dropout_rate=config.dropout_rate,
                activation=config.head_act,
            )
        else:
            side = config.input.train_crop_size // 32
            if side < 1:
                raise VidactError(f"DATA.TRAIN_CROP_SIZE {config.input.train_crop_size} is below the network's stride "
                                  "of 32 (it sets the head's pooling); use at least 32")
            self.head = ResNetBasicHead(
                head_dims, config.num_classes, pool_size=[(t, side, side) for t in frames],
                dropout_rate=config.dropout_rate, activation=config.head_act,
            )

    @staticmethod
    def _fuse(dim_fast: int, config: ModelConfig) -> FuseFastToSlow:
        sf = config.slowfast
        return FuseFastToSlow(
            dim_fast, sf.fusion_conv_channel_ratio, sf.fusion_kernel_size, sf.alpha,
            bn_eps=config.bn_eps, bn_momentum=config.bn_momentum,
            inplace_relu=config.resnet.inplace_relu,
        )

    def forward(self, x: list[torch.Tensor], boxes: torch.Tensor | None = None) -> torch.Tensor:
        if isinstance(x, torch.Tensor):  # list() would split the batch into 4D pathways
            raise TypeError("pass a list of pathway tensors, e.g. model([clip]); see vidact.transforms.pack_pathways")
        x = self._fused(self.s1(list(x)), 1)
        x = self._fused(self.s2(x), 2)
        x = [getattr(self, f"pathway{p}_pool")(t) for p, t in enumerate(x)]
        x = self._fused(self.s3(x), 3)
        x = self._fused(self.s4(x), 4)
        x = self.s5(x)
        if self.detection:
            if boxes is None:
                raise ValueError("this detection model needs boxes: model(inputs, boxes)")
            return self.head(x, boxes)
        return self.head(x)

    def _fused(self, x: list[torch.Tensor], stage: int) -> list[torch.Tensor]:
        fuse = getattr(self, f"s{stage}_fuse", None)
        return x if fuse is None else fuse(x)
