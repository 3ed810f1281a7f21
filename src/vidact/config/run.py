"""Typed configuration of what ``vidact run/train/test`` need beyond the model.

Built from a PySlowFast YAML file by :func:`vidact.config.pyslowfast.to_run_config`; the
comment on each field names the PySlowFast key it comes from. Paths are kept as written:
like PySlowFast, vidact resolves relative paths against the working directory. An empty
PySlowFast path (``''``) becomes ``None``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from vidact.config.model import ModelConfig


@dataclass(frozen=True)
class DemoConfig:
    """Running a model over a video or a webcam and drawing its predictions."""

    enable: bool = False  # DEMO.ENABLE
    input_video: str | None = None  # DEMO.INPUT_VIDEO
    webcam: int = -1  # DEMO.WEBCAM: camera index, -1 = read input_video
    output_file: str | None = None  # DEMO.OUTPUT_FILE: None = show in a window
    output_fps: int = -1  # DEMO.OUTPUT_FPS: -1 = the source's fps
    label_file: str | None = None  # DEMO.LABEL_FILE_PATH: JSON {"class name": 0-based id}
    vis_mode: str = "thres"  # DEMO.VIS_MODE: "thres" or "top-k"
    common_class_threshold: float = 0.7  # DEMO.COMMON_CLASS_THRES
    uncommon_class_threshold: float = 0.3  # DEMO.UNCOMMON_CLASS_THRES
    common_class_names: tuple[str, ...] = ()  # DEMO.COMMON_CLASS_NAMES
    top_k: int = 1  # TENSORBOARD.MODEL_VIS.TOPK_PREDS (vis_mode "top-k")
    buffer_size: int = 0  # DEMO.BUFFER_SIZE: frames of the previous clip reused
    clip_vis_size: int = 10  # DEMO.CLIP_VIS_SIZE: frames drawn either side of the keyframe
    detector_config: str = "COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml"  # DEMO.DETECTRON2_CFG
    detector_weights: str = ""  # DEMO.DETECTRON2_WEIGHTS
    detector_threshold: float = 0.9  # DEMO.DETECTRON2_THRESH: person score threshold
    preds_boxes: str | None = None  # DEMO.PREDS_BOXES: precomputed boxes instead of a detector
    starting_second: int = 900  # DEMO.STARTING_SECOND (timestamp of the first frame, AVA files)
    fps: int = 30  # DEMO.FPS (frame rate of a precomputed-boxes video)


@dataclass(frozen=True)
class CheckpointConfig:
    """Which weights to start from and when to save."""

    train_path: str | None = None  # TRAIN.CHECKPOINT_FILE_PATH
    train_type: str = "pytorch"  # TRAIN.CHECKPOINT_TYPE: pytorch | caffe2
    test_path: str | None = None  # TEST.CHECKPOINT_FILE_PATH
    test_type: str = "pytorch"  # TEST.CHECKPOINT_TYPE: pytorch | caffe2
    auto_resume: bool = True  # TRAIN.AUTO_RESUME: continue from OUTPUT_DIR/checkpoints
    period: int = 10  # TRAIN.CHECKPOINT_PERIOD (epochs)
    inflate: bool = False  # TRAIN.CHECKPOINT_INFLATE: 2D -> 3D kernels
    epoch_reset: bool = False  # TRAIN.CHECKPOINT_EPOCH_RESET: ignore the stored epoch/optimizer
    clear_name_patterns: tuple[str, ...] = ()  # TRAIN.CHECKPOINT_CLEAR_NAME_PATTERN


@dataclass(frozen=True)
class TrainConfig:
    enable: bool = True  # TRAIN.ENABLE
    dataset: str = "kinetics"  # TRAIN.DATASET
    batch_size: int = 64  # TRAIN.BATCH_SIZE (over all GPUs)
    eval_period: int = 10  # TRAIN.EVAL_PERIOD (epochs)
    mixed_precision: bool = False  # TRAIN.MIXED_PRECISION
    # vidact only: "float16" (with a GradScaler) or "bfloat16"; None = float16 on GPU, bfloat16 on CPU
    mixed_precision_dtype: str | None = None
    loss: str = "cross_entropy"  # MODEL.LOSS_FUNC: cross_entropy | bce | ...
    precise_bn: bool = False  # BN.USE_PRECISE_STATS
    precise_bn_batches: int = 200  # BN.NUM_BATCHES_PRECISE


@dataclass(frozen=True)
class SolverConfig:
    base_lr: float = 0.1  # SOLVER.BASE_LR
    scale_lr_by_shards: bool = False  # SOLVER.BASE_LR_SCALE_NUM_SHARDS
    lr_policy: str = "cosine"  # SOLVER.LR_POLICY: cosine | steps_with_relative_lrs | ...
    max_epoch: int = 300  # SOLVER.MAX_EPOCH
    cosine_end_lr: float = 0.0  # SOLVER.COSINE_END_LR
    cosine_after_warmup: bool = False  # SOLVER.COSINE_AFTER_WARMUP
    steps: tuple[int, ...] = ()  # SOLVER.STEPS (epochs where each lrs entry starts)
    lrs: tuple[float, ...] = ()  # SOLVER.LRS (multipliers of base_lr)
    warmup_epochs: float = 0.0  # SOLVER.WARMUP_EPOCHS
    warmup_start_lr: float = 0.01  # SOLVER.WARMUP_START_LR
    optimizer: str = "sgd"  # SOLVER.OPTIMIZING_METHOD: sgd | adam | adamw
    momentum: float = 0.9  # SOLVER.MOMENTUM
    nesterov: bool = True  # SOLVER.NESTEROV
    dampening: float = 0.0  # SOLVER.DAMPENING
    betas: tuple[float, float] = (0.9, 0.999)  # SOLVER.BETAS (adam/adamw)
    weight_decay: float = 1e-4  # SOLVER.WEIGHT_DECAY
    bn_weight_decay: float = 0.0  # BN.WEIGHT_DECAY
    zero_wd_1d_param: bool = False  # SOLVER.ZERO_WD_1D_PARAM
    clip_grad_norm: float | None = None  # SOLVER.CLIP_GRAD_L2NORM
    clip_grad_value: float | None = None  # SOLVER.CLIP_GRAD_VAL


@dataclass(frozen=True)
class TestConfig:
    __test__ = False  # not a pytest test class

    enable: bool = True  # TEST.ENABLE
    dataset: str = "kinetics"  # TEST.DATASET
    batch_size: int = 8  # TEST.BATCH_SIZE
    num_ensemble_views: int = 10  # TEST.NUM_ENSEMBLE_VIEWS (temporal clips per video)
    num_spatial_crops: int = 3  # TEST.NUM_SPATIAL_CROPS
    ensemble_method: str = "sum"  # DATA.ENSEMBLE_METHOD: sum | max of a video's view scores


@dataclass(frozen=True)
class DataConfig:
    """Where a clip dataset's file lists and videos are."""

    data_dir: str | None = None  # DATA.PATH_TO_DATA_DIR (holds train.csv/val.csv/test.csv)
    path_prefix: str | None = None  # DATA.PATH_PREFIX (prepended to each video path)
    label_separator: str = " "  # DATA.PATH_LABEL_SEPARATOR
    random_flip: bool = True  # DATA.RANDOM_FLIP (training augmentation)


@dataclass(frozen=True)
class DataLoaderConfig:
    num_workers: int = 8  # DATA_LOADER.NUM_WORKERS
    pin_memory: bool = True  # DATA_LOADER.PIN_MEMORY


@dataclass(frozen=True)
class AvaConfig:
    """The AVA dataset layout; list files are relative to frame_list_dir / annotation_dir."""

    frame_dir: str | None = None  # AVA.FRAME_DIR
    frame_list_dir: str | None = None  # AVA.FRAME_LIST_DIR
    annotation_dir: str | None = None  # AVA.ANNOTATION_DIR
    train_lists: tuple[str, ...] = ("train.csv",)  # AVA.TRAIN_LISTS
    test_lists: tuple[str, ...] = ("val.csv",)  # AVA.TEST_LISTS
    train_gt_box_lists: tuple[str, ...] = ("ava_train_v2.2.csv",)  # AVA.TRAIN_GT_BOX_LISTS
    train_predict_box_lists: tuple[str, ...] = ()  # AVA.TRAIN_PREDICT_BOX_LISTS
    test_predict_box_lists: tuple[str, ...] = ("ava_val_predicted_boxes.csv",)  # AVA.TEST_PREDICT_BOX_LISTS
    detection_score_threshold: float = 0.9  # AVA.DETECTION_SCORE_THRESH (predicted boxes kept)
    exclusion_file: str | None = None  # AVA.EXCLUSION_FILE
    label_map_file: str | None = None  # AVA.LABEL_MAP_FILE
    groundtruth_file: str | None = None  # AVA.GROUNDTRUTH_FILE
    bgr: bool = False  # AVA.BGR: dataset frames stay in cv2's BGR order
    full_test_on_val: bool = False  # AVA.FULL_TEST_ON_VAL


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs; ``source`` names the file (or checkpoint) it came from."""

    model: ModelConfig = field(default_factory=ModelConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    test: TestConfig = field(default_factory=TestConfig)
    data: DataConfig = field(default_factory=DataConfig)
    data_loader: DataLoaderConfig = field(default_factory=DataLoaderConfig)
    ava: AvaConfig = field(default_factory=AvaConfig)
    num_gpus: int = 1  # NUM_GPUS (0 = CPU)
    num_shards: int = 1  # NUM_SHARDS (machines)
    output_dir: str = "."  # OUTPUT_DIR (checkpoints go to OUTPUT_DIR/checkpoints)
    seed: int = 1  # RNG_SEED
    log_period: int = 10  # LOG_PERIOD (iterations)
    tensorboard: bool = False  # TENSORBOARD.ENABLE
    tensorboard_dir: str | None = None  # TENSORBOARD.LOG_DIR, relative to OUTPUT_DIR (None = runs-<dataset>)
    source: str = ""

    def replace(self, **changes: Any) -> "RunConfig":
        return dataclasses.replace(self, **changes)
