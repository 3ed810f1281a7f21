"""Typed configuration of a model and of the input it expects.

Everything past the YAML adapter (``vidact.config.pyslowfast``) works with these
dataclasses only. Per-stage settings are tuples of four entries (res2..res5),
each entry a tuple with one value per pathway (slow first, then fast).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

PerStage = tuple  # ((pathway0, pathway1, ...), ...) for res2..res5

MULTI_PATHWAY_ARCHS = ("slowfast",)
RESNET_ARCHS = ("c2d", "i3d", "slow", "slowfast")


@dataclass(frozen=True)
class InputSpec:
    """How frames must be sampled and normalised for a model."""

    num_frames: int = 8  # frames of the fastest pathway
    sampling_rate: int = 8  # stride between sampled source frames (at target_fps)
    target_fps: int = 30
    test_crop_size: int = 256
    train_crop_size: int = 224
    train_jitter_scales: tuple[int, int] = (256, 320)
    mean: tuple[float, float, float] = (0.45, 0.45, 0.45)
    std: tuple[float, float, float] = (0.225, 0.225, 0.225)
    channel_order: str = "RGB"  # order the network expects its input channels in
    alpha: int = 1  # fast/slow frame ratio; 1 for single-pathway models
    num_pathways: int = 1

    @property
    def clip_span(self) -> int:
        """Source frames covered by one clip (NUM_FRAMES x SAMPLING_RATE)."""
        return self.num_frames * self.sampling_rate

    def pathway_shapes(self, height: int, width: int, batch: int = 1) -> list[tuple[int, ...]]:
        """(N, C, T, H, W) of each pathway's input, slow pathway first."""
        fast = (batch, 3, self.num_frames, height, width)
        if self.num_pathways == 1:
            return [fast]
        return [(batch, 3, self.num_frames // self.alpha, height, width), fast]


@dataclass(frozen=True)
class ResNetConfig:
    depth: int = 50
    num_groups: int = 1
    width_per_group: int = 64
    stride_1x1: bool = False
    trans_func: str = "bottleneck_transform"
    inplace_relu: bool = True
    zero_init_final_bn: bool = False
    zero_init_final_conv: bool = False
    num_block_temp_kernel: PerStage = ((3,), (4,), (6,), (3,))
    spatial_strides: PerStage = ((1,), (2,), (2,), (2,))
    spatial_dilations: PerStage = ((1,), (1,), (1,), (1,))


@dataclass(frozen=True)
class SlowFastConfig:
    alpha: int = 8
    beta_inv: int = 8
    fusion_conv_channel_ratio: int = 2
    fusion_kernel_size: int = 5


@dataclass(frozen=True)
class NonLocalConfig:
    # Block indices per stage and pathway after which a non-local block follows.
    location: PerStage = (((),), ((),), ((),), ((),))
    group: PerStage = ((1,), (1,), (1,), (1,))
    instantiation: str = "dot_product"  # or "softmax"
    pool: PerStage = (
        ((1, 2, 2),),
        ((1, 2, 2),),
        ((1, 2, 2),),
        ((1, 2, 2),),
    )


@dataclass(frozen=True)
class X3DConfig:
    width_factor: float = 1.0
    depth_factor: float = 1.0
    bottleneck_factor: float = 1.0
    dim_c1: int = 12
    dim_c5: int = 2048
    scale_res2: bool = False
    bn_lin5: bool = False
    channelwise_3x3x3: bool = True


@dataclass(frozen=True)
class DetectionConfig:
    """AVA RoI head settings; ``enable`` switches the head from clip to box level."""

    enable: bool = False
    aligned: bool = True
    roi_resolution: int = 7
    spatial_scale_factor: int = 16


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "slowfast"  # c2d | i3d | slow | slowfast | x3d
    num_classes: int = field(default=400, metadata={"min": 1})  # checked where vidact YAML is read
    dropout_rate: float = 0.5
    head_act: str = "softmax"  # softmax | sigmoid
    fc_init_std: float = 0.01
    input_channels: tuple[int, ...] = (3, 3)
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1
    resnet: ResNetConfig = field(default_factory=ResNetConfig)
    slowfast: SlowFastConfig = field(default_factory=SlowFastConfig)
    nonlocal_: NonLocalConfig = field(default_factory=NonLocalConfig)
    x3d: X3DConfig = field(default_factory=X3DConfig)
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    input: InputSpec = field(default_factory=InputSpec)

    @property
    def num_pathways(self) -> int:
        return 2 if self.arch in MULTI_PATHWAY_ARCHS else 1

    def replace(self, **changes: Any) -> "ModelConfig":
        return dataclasses.replace(self, **changes)


def to_dict(config: Any) -> dict:
    """A JSON-ready dict of a config dataclass (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def model_config_from_dict(data: dict) -> ModelConfig:
    """Inverse of :func:`to_dict` for :class:`ModelConfig` (lists back to tuples)."""

    def tup(value):
        return tuple(tup(v) for v in value) if isinstance(value, (list, tuple)) else value

    def build(cls, values):
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name not in values:
                continue
            value = values[f.name]
            sub = _NESTED.get(f.name)
            kwargs[f.name] = build(sub, value) if sub and cls is ModelConfig else tup(value)
        return cls(**kwargs)

    return build(ModelConfig, data)


_NESTED = {
    "resnet": ResNetConfig,
    "slowfast": SlowFastConfig,
    "nonlocal_": NonLocalConfig,
    "x3d": X3DConfig,
    "detection": DetectionConfig,
    "input": InputSpec,
}
