"""The model-zoo catalogue: one entry per published checkpoint.

Each entry carries everything needed to use its weights: the architecture and
input spec (:class:`ModelConfig`), the official URL, the label set, and the
published accuracy. Nothing else in vidact hard-codes frame counts, crop sizes
or normalisation for a zoo model.

Sources: the PySlowFast model zoo (``MODEL_ZOO.md`` of facebookresearch/SlowFast;
configs under ``configs/Kinetics`` and ``configs/AVA``) and the PyTorchVideo hub
(``pytorchvideo/models/hub``; accuracies from its ``model_zoo.md``). No checksums
are published for these files, so none are pinned here; a user may pin one.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field

from vidact.config.model import (
    DetectionConfig,
    InputSpec,
    ModelConfig,
    NonLocalConfig,
    ResNetConfig,
    SlowFastConfig,
    X3DConfig,
)
from vidact.errors import VidactError

PYSLOWFAST = "https://dl.fbaipublicfiles.com/pyslowfast"
PYTORCHVIDEO = "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo"


@dataclass(frozen=True)
class ZooEntry:
    name: str
    task: str  # "kinetics" (clip classification) or "ava" (per-person actions)
    config: ModelConfig
    url: str
    labels: str  # key of vidact.data.label_sets.LABEL_SETS
    metrics: dict = field(default_factory=dict)  # published accuracy, e.g. {"top1": 77.0}
    source: str = "pyslowfast"  # or "pytorchvideo"
    sha256: str | None = None  # none published; users may pin their own
    params: int | None = None  # parameter count of the built model (checked by tests)
    gflops: float | None = None  # one view at the test crop, multiply-adds (fvcore convention)
    notes: str = ""

    @property
    def filename(self) -> str:
        """Cache file name: the source prefixed, since both zoos reuse file names."""
        return f"{self.source}_{self.url.rsplit('/', 1)[-1]}"

    @property
    def input(self) -> InputSpec:
        return self.config.input


def _per_stage(values, pathways):
    return tuple((v,) * pathways for v in values)


def _resnet(
    arch: str,
    *,
    depth: int = 50,
    frames: int,
    rate: int,
    alpha: int = 4,
    fusion_kernel: int = 5,
    nonlocal_blocks=((), (), (), ()),
    nonlocal_kind: str = "dot_product",
    nonlocal_pool=(1, 2, 2),
    ava: bool = False,
    num_classes: int | None = None,
) -> ModelConfig:
    """A ResNet-3D family config as the PySlowFast zoo configs spell them out.

    ``ava`` selects the detection variant: RoI head, sigmoid, res5 with stride 1
    and dilation 2 (feature stride 16), RoIAlign without the half-pixel offset.
    """
    pathways = 2 if arch == "slowfast" else 1
    nonlocal_ = NonLocalConfig(
        location=tuple((tuple(blocks),) + ((),) * (pathways - 1) for blocks in nonlocal_blocks),
        group=_per_stage((1, 1, 1, 1), pathways),
        instantiation=nonlocal_kind,
        pool=_per_stage((nonlocal_pool,) * 4, pathways),
    )
    resnet = ResNetConfig(
        depth=depth,
        zero_init_final_bn=True,
        num_block_temp_kernel=_per_stage((3, 4, 6, 3), pathways),
        spatial_strides=_per_stage((1, 2, 2, 1 if ava else 2), pathways),
        spatial_dilations=_per_stage((1, 1, 1, 2 if ava else 1), pathways),
    )
    return ModelConfig(
        arch=arch,
        num_classes=num_classes or (80 if ava else 400),
        head_act="sigmoid" if ava else "softmax",
        input_channels=(3,) * pathways,
        resnet=resnet,
        slowfast=SlowFastConfig(alpha=alpha, beta_inv=8, fusion_conv_channel_ratio=2, fusion_kernel_size=fusion_kernel),
        nonlocal_=nonlocal_,
        detection=DetectionConfig(enable=ava, aligned=not ava),
        input=InputSpec(
            num_frames=frames,
            sampling_rate=rate,
            test_crop_size=256,
            train_crop_size=224,
            train_jitter_scales=(256, 320),
            alpha=alpha if pathways == 2 else 1,
            num_pathways=pathways,
        ),
    )


def _x3d(*, frames: int, rate: int, crop: int, train_crop: int, jitter: tuple[int, int], depth_factor: float) -> ModelConfig:
    return ModelConfig(
        arch="x3d",
        input_channels=(3,),
        resnet=ResNetConfig(zero_init_final_bn=True),
        x3d=X3DConfig(width_factor=2.0, depth_factor=depth_factor, bottleneck_factor=2.25, dim_c1=12, dim_c5=2048),
        input=InputSpec(
            num_frames=frames,
            sampling_rate=rate,
            test_crop_size=crop,
            train_crop_size=train_crop,
            train_jitter_scales=jitter,
        ),
    )


X3D_XS = _x3d(frames=4, rate=12, crop=182, train_crop=160, jitter=(182, 228), depth_factor=2.2)
X3D_S = _x3d(frames=13, rate=6, crop=182, train_crop=160, jitter=(182, 228), depth_factor=2.2)
X3D_M = _x3d(frames=16, rate=5, crop=256, train_crop=224, jitter=(256, 320), depth_factor=2.2)
X3D_L = _x3d(frames=16, rate=5, crop=356, train_crop=312, jitter=(356, 446), depth_factor=5.0)

AVA_SLOWFAST_R101 = dict(depth=101, frames=32, rate=2, alpha=4, fusion_kernel=5, nonlocal_blocks=((), (), (6, 13, 20), ()), nonlocal_pool=(2, 2, 2), ava=True)

_K400 = f"{PYSLOWFAST}/model_zoo/kinetics400"
_AVA = f"{PYSLOWFAST}/model_zoo/ava"

_ENTRIES = [
    # Kinetics-400, PySlowFast (Caffe2 .pkl); 3 crops x 10 clips.
    ZooEntry("c2d_nopool_8x8_r50", "kinetics", _resnet("c2d_nopool", frames=8, rate=8, nonlocal_kind="softmax"),
             f"{_K400}/C2D_NOPOOL_8x8_R50.pkl", "kinetics400", {"top1": 67.2, "top5": 87.8}),
    ZooEntry("i3d_8x8_r50", "kinetics", _resnet("i3d", frames=8, rate=8, nonlocal_kind="softmax"),
             f"{_K400}/I3D_8x8_R50.pkl", "kinetics400", {"top1": 73.5, "top5": 90.8}),
    ZooEntry("i3d_nln_8x8_r50", "kinetics",
             _resnet("i3d", frames=8, rate=8, nonlocal_kind="softmax", nonlocal_blocks=((), (1, 3), (1, 3, 5), ())),
             f"{_K400}/I3D_NLN_8x8_R50.pkl", "kinetics400", {"top1": 74.0, "top5": 91.1}),
    ZooEntry("slow_4x16_r50", "kinetics", _resnet("slow", frames=4, rate=16),
             f"{_K400}/SLOWONLY_4x16_R50.pkl", "kinetics400", {"top1": 72.7, "top5": 90.3}),
    ZooEntry("slow_8x8_r50", "kinetics", _resnet("slow", frames=8, rate=8),
             f"{_K400}/SLOWONLY_8x8_R50.pkl", "kinetics400", {"top1": 74.8, "top5": 91.6}),
    ZooEntry("slowfast_4x16_r50", "kinetics", _resnet("slowfast", frames=32, rate=2, alpha=8, fusion_kernel=5),
             f"{_K400}/SLOWFAST_4x16_R50.pkl", "kinetics400", {"top1": 75.6, "top5": 92.0}),
    ZooEntry("slowfast_8x8_r50", "kinetics", _resnet("slowfast", frames=32, rate=2, alpha=4, fusion_kernel=7),
             f"{_K400}/SLOWFAST_8x8_R50.pkl", "kinetics400", {"top1": 77.0, "top5": 92.6}),
    # X3D (PySlowFast .pyth); accuracy is top-1 over 30 views (10-view in notes).
    ZooEntry("x3d_xs", "kinetics", X3D_XS, f"{PYSLOWFAST}/x3d_models/x3d_xs.pyth", "kinetics400",
             {"top1": 69.5}, notes="top-1 68.7 with 10 views"),
    ZooEntry("x3d_s", "kinetics", X3D_S, f"{PYSLOWFAST}/x3d_models/x3d_s.pyth", "kinetics400",
             {"top1": 73.5}, notes="top-1 73.1 with 10 views"),
    ZooEntry("x3d_m", "kinetics", X3D_M, f"{PYSLOWFAST}/x3d_models/x3d_m.pyth", "kinetics400",
             {"top1": 76.2}, notes="top-1 75.1 with 10 views"),
    ZooEntry("x3d_l", "kinetics", X3D_L, f"{PYSLOWFAST}/x3d_models/x3d_l.pyth", "kinetics400",
             {"top1": 77.5}, notes="top-1 76.9 with 10 views"),
    # AVA (frame-mAP@0.5 on the AVA version named). The zoo's AVA .pkl files are
    # Caffe2 pickles whatever the configs say; the format is read from the bytes.
    ZooEntry("ava_slow_4x16_r50_v2.2", "ava", _resnet("slow", frames=4, rate=16, nonlocal_kind="softmax", ava=True),
             f"{_AVA}/C2D_8x8_R50.pkl", "ava80", {"mAP": 19.5}, notes="AVA v2.2; Kinetics-400 pretrained"),
    ZooEntry("ava_slowfast_32x2_r101_v2.1", "ava", _resnet("slowfast", **AVA_SLOWFAST_R101),
             f"{_AVA}/SLOWFAST_32x2_R101_50_50_v2.1.pkl", "ava80", {"mAP": 28.2},
             notes="AVA v2.1; Kinetics-600 pretrained"),
    ZooEntry("ava_slowfast_32x2_r101_v2.2", "ava", _resnet("slowfast", **AVA_SLOWFAST_R101),
             f"{_AVA}/SLOWFAST_32x2_R101_50_50.pkl", "ava80", {"mAP": 29.1},
             notes="AVA v2.2; Kinetics-600 pretrained; the PySlowFast AVA demo model"),
    ZooEntry("ava_slowfast_64x2_r101_v2.2", "ava", _resnet("slowfast", **{**AVA_SLOWFAST_R101, "frames": 64}),
             f"{_AVA}/SLOWFAST_64x2_R101_50_50.pkl", "ava80", {"mAP": 29.4},
             notes="AVA v2.2; Kinetics-600 pretrained"),
    # PyTorchVideo hub checkpoints (ptv parameter names, mapped on load).
    ZooEntry("ptv_slow_r50", "kinetics", _resnet("slow", frames=8, rate=8),
             f"{PYTORCHVIDEO}/kinetics/SLOW_8x8_R50.pyth", "kinetics400", {"top1": 74.58, "top5": 91.63},
             source="pytorchvideo"),
    ZooEntry("ptv_slowfast_r50", "kinetics", _resnet("slowfast", frames=32, rate=2, alpha=4, fusion_kernel=7),
             f"{PYTORCHVIDEO}/kinetics/SLOWFAST_8x8_R50.pyth", "kinetics400", {"top1": 76.94, "top5": 92.69},
             source="pytorchvideo"),
    ZooEntry("ptv_slowfast_r50_detection", "ava",
             _resnet("slowfast", frames=32, rate=2, alpha=4, fusion_kernel=7, ava=True),
             f"{PYTORCHVIDEO}/ava/SLOWFAST_8x8_R50_DETECTION.pyth", "ava80", {},
             source="pytorchvideo", notes="SlowFast 32x2 R50 on AVA v2.2; no accuracy published in the hub tables"),
    ZooEntry("ptv_x3d_xs", "kinetics", X3D_XS, f"{PYTORCHVIDEO}/kinetics/X3D_XS.pyth", "kinetics400",
             {"top1": 69.12, "top5": 88.63}, source="pytorchvideo"),
    ZooEntry("ptv_x3d_s", "kinetics", X3D_S, f"{PYTORCHVIDEO}/kinetics/X3D_S.pyth", "kinetics400",
             {"top1": 73.33, "top5": 91.27}, source="pytorchvideo"),
    ZooEntry("ptv_x3d_m", "kinetics", X3D_M, f"{PYTORCHVIDEO}/kinetics/X3D_M.pyth", "kinetics400",
             {"top1": 75.94, "top5": 92.72}, source="pytorchvideo"),
    ZooEntry("ptv_x3d_l", "kinetics", X3D_L, f"{PYTORCHVIDEO}/kinetics/X3D_L.pyth", "kinetics400",
             {"top1": 77.44, "top5": 93.31}, source="pytorchvideo"),
]

# Parameter count and GFLOPs of each built model (vidact.models.flops.model_gflops:
# one test view, fvcore convention); tests/test_zoo.py checks them against the models.
_COST = {
    "c2d_nopool_8x8_r50": (24_327_632, 42.94),
    "i3d_8x8_r50": (28_043_472, 37.28),
    "i3d_nln_8x8_r50": (35_401_936, 49.10),
    "slow_4x16_r50": (32_454_096, 27.38),
    "slow_8x8_r50": (32_454_096, 54.75),
    "slowfast_4x16_r50": (34_480_216, 36.34),
    "slowfast_8x8_r50": (34_566_488, 66.07),
    "x3d_xs": (3_794_322, 0.87),
    "x3d_s": (3_794_322, 2.82),
    "x3d_m": (3_794_322, 6.40),
    "x3d_l": (6_153_432, 25.53),
    "ava_slow_4x16_r50_v2.2": (31_798_416, 41.69),
    "ava_slowfast_32x2_r101_v2.1": (59_342_488, 147.13),
    "ava_slowfast_32x2_r101_v2.2": (59_342_488, 147.13),
    "ava_slowfast_64x2_r101_v2.2": (59_342_488, 297.48),
    "ptv_slow_r50": (32_454_096, 54.75),
    "ptv_slowfast_r50": (34_566_488, 66.07),
    "ptv_slowfast_r50_detection": (33_828_888, 97.29),
    "ptv_x3d_xs": (3_794_322, 0.87),
    "ptv_x3d_s": (3_794_322, 2.82),
    "ptv_x3d_m": (3_794_322, 6.40),
    "ptv_x3d_l": (6_153_432, 25.53),
}

ZOO: dict[str, ZooEntry] = {
    entry.name: dataclasses.replace(entry, params=_COST[entry.name][0], gflops=_COST[entry.name][1]) for entry in _ENTRIES
}

DEFAULT_KINETICS_MODEL = "slowfast_8x8_r50"
DEFAULT_AVA_MODEL = "ava_slowfast_32x2_r101_v2.2"


def list_models(task: str | None = None) -> list[str]:
    """Names of the zoo entries, optionally only those of one task (``"kinetics"`` or ``"ava"``)."""
    if task is None:
        return sorted(ZOO)
    tasks = sorted({entry.task for entry in ZOO.values()})
    if task.lower() not in tasks:
        raise VidactError(f"unknown task {task!r}; pass one of: {', '.join(tasks)}")
    return sorted(name for name, entry in ZOO.items() if entry.task == task.lower())


def get_entry(name: str) -> ZooEntry:
    try:
        return ZOO[name]
    except KeyError:
        close = ([n for n in ZOO if name.lower() in n]
                 or difflib.get_close_matches(name.lower().replace("-", "_"), list(ZOO), n=8, cutoff=0.6)
                 or list_models())
        raise VidactError(f"unknown model {name!r}; known models include: {', '.join(close[:8])} (see `vidact models`)") from None
