"""The PySlowFast config adapter, vidact's own model YAML and the typed run config."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import yaml
from conftest import shared_path

from vidact.config.io import dump_model_config, load_vidact_model_config
from vidact.config.model import ModelConfig, ResNetConfig
from vidact.config.pyslowfast import (
    ConfigWarning,
    _Reader,
    _run_config,
    load_model_config,
    load_pyslowfast,
    load_pyslowfast_text,
    load_run_config,
    to_model_config,
    to_run_config,
    used_keys,
)
from vidact.config.pyslowfast_defaults import DEFAULTS
from vidact.config.run_io import load_run_config as run_io_load
from vidact.errors import VidactError

PYSLOWFAST = ("configs", "pyslowfast")
UPSTREAM_FILES = [
    "configs/AVA/SLOWFAST_32x2_R50_SHORT.yaml",
    "configs/AVA/c2/SLOWFAST_32x2_R101_50_50.yaml",
    "configs/AVA/c2/SLOWFAST_32x2_R101_50_50_v2.1.yaml",
    "configs/AVA/c2/SLOWFAST_64x2_R101_50_50.yaml",
    "configs/AVA/c2/SLOW_8x8_R50.yaml",
    "configs/Kinetics/X3D_L.yaml",
    "configs/Kinetics/X3D_M.yaml",
    "configs/Kinetics/X3D_S.yaml",
    "configs/Kinetics/X3D_XS.yaml",
    "configs/Kinetics/c2/C2D_NOPOOL_8x8_R50.yaml",
    "configs/Kinetics/c2/I3D_8x8_R50.yaml",
    "configs/Kinetics/c2/I3D_NLN_8x8_R50.yaml",
    "configs/Kinetics/c2/SLOWFAST_4x16_R50.yaml",
    "configs/Kinetics/c2/SLOWFAST_8x8_R50.yaml",
    "configs/Kinetics/c2/SLOW_4x16_R50.yaml",
    "configs/Kinetics/c2/SLOW_8x8_R50.yaml",
    "demo/AVA/SLOWFAST_32x2_R101_50_50.yaml",
    "demo/Kinetics/SLOWFAST_8x8_R50.yaml",
]
REFERENCE_FILES = [f"fork/{name}" for name in ("c.yaml", "c2.yaml", "c3.yaml", "c3_train.yaml")] + [
    f"upstream/{name}" for name in UPSTREAM_FILES
]
# The warnings vidact gives where the reference refuses a file (shared README).
EXPECTED_WARNINGS = {
    "upstream/demo/AVA/SLOWFAST_32x2_R101_50_50.yaml": ["TENSORBOARD.MODEL_VIS.TOPK"],
    "upstream/demo/Kinetics/SLOWFAST_8x8_R50.yaml": ["SOLVER.WARMUP_EPOCHS"],
}
# parity fixture -> (base config, --opts it was made with), from the fixtures' READMEs.
PARITY = {
    "tiny_ava_slowfast_r101_nln": ("fork/c3.yaml", "RESNET.WIDTH_PER_GROUP 8 MODEL.NUM_CLASSES 80 NUM_GPUS 0"),
    "tiny_k400_slowfast": ("fork/c2.yaml", "RESNET.WIDTH_PER_GROUP 8 MODEL.NUM_CLASSES 10 NUM_GPUS 0"),
    "tiny_slow_i3d_nln": (
        "upstream/configs/Kinetics/c2/I3D_NLN_8x8_R50.yaml",
        "RESNET.WIDTH_PER_GROUP 8 MODEL.NUM_CLASSES 10 NUM_GPUS 0",
    ),
    "tiny_x3d": ("upstream/configs/Kinetics/X3D_XS.yaml", "X3D.WIDTH_FACTOR 0.5 NUM_GPUS 0"),
}


def reference(name: str):
    return shared_path(*PYSLOWFAST, *name.split("/"))


def load_quietly(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConfigWarning)
        return load_pyslowfast(*args, **kwargs)


def config_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, ConfigWarning)]


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def same_typed(a, b) -> bool:
    """Equal values of equal types, recursively (1 != 1.0 != True here)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_typed(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same_typed(x, y) for x, y in zip(a, b))
    return a == b


# --- the generated defaults table ----------------------------------------------------


def test_defaults_table_equals_reference_dump():
    dump = yaml.safe_load(reference("defaults_dump.yaml").read_text())
    assert same_typed(DEFAULTS, dump)
    assert DEFAULTS["CONTRASTIVE"]["DELTA_CLIPS_MAX"] == math.inf  # YAML .inf survives generation


# --- every real file loads ------------------------------------------------------------


@pytest.mark.parametrize("name", REFERENCE_FILES)
def test_reference_file_loads(name):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        cfg = load_pyslowfast(reference(name))
    messages = config_warnings(record)
    expected = EXPECTED_WARNINGS.get(name, [])
    assert len(messages) == len(expected), messages
    for message, key in zip(messages, expected):
        assert key in message and name.split("/")[-1] in message
    run = to_run_config(cfg)
    # ResNet_nopool (the zoo's C2D) is no registered PySlowFast model; vidact builds it.
    nopool = "_nopool" if cfg.get("MODEL.MODEL_NAME") == "ResNet_nopool" else ""
    assert run.model.arch == cfg.get("MODEL.ARCH") + nopool
    assert run.source == str(reference(name))


def test_demo_files_lenient_values():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConfigWarning)
        ava = load_run_config(reference("upstream/demo/AVA/SLOWFAST_32x2_R101_50_50.yaml"))
        kinetics = load_run_config(reference("upstream/demo/Kinetics/SLOWFAST_8x8_R50.yaml"))
    assert ava.demo.top_k == 2  # TOPK read as TOPK_PREDS
    assert ava.demo.webcam == 0 and ava.demo.label_file is None  # bare "LABEL_FILE_PATH:" is None
    assert kinetics.solver.warmup_epochs == 34.0 and type(kinetics.solver.warmup_epochs) is float


def test_c3_maps_to_ava_slowfast_r101_nonlocal():
    run = load_run_config(reference("fork/c3.yaml"))
    m = run.model
    assert (m.arch, m.num_pathways, m.resnet.depth, m.num_classes, m.head_act) == ("slowfast", 2, 101, 80, "sigmoid")
    assert m.slowfast.alpha == 4 and m.slowfast.beta_inv == 8 and m.slowfast.fusion_kernel_size == 5
    assert m.nonlocal_.location == (((), ()), ((), ()), ((6, 13, 20), ()), ((), ()))
    assert m.nonlocal_.pool[2] == ((2, 2, 2), (2, 2, 2)) and m.nonlocal_.instantiation == "dot_product"
    assert m.detection.enable and not m.detection.aligned
    assert m.resnet.spatial_dilations[3] == (2, 2) and m.resnet.spatial_strides[3] == (1, 1)
    assert m.resnet.num_block_temp_kernel == ((3, 3), (4, 4), (6, 6), (3, 3))
    assert m.resnet.zero_init_final_bn
    assert (m.input.num_frames, m.input.sampling_rate, m.input.alpha, m.input.num_pathways) == (32, 2, 4, 2)
    assert m.input.channel_order == "RGB" and m.input.test_crop_size == 256
    assert run.demo.buffer_size == 20 and run.demo.detector_threshold == 0.7
    assert run.demo.label_file == "./ava_classids.json" and run.demo.input_video == "stock.mp4"
    assert len(run.demo.common_class_names) == 19 and "stand" in run.demo.common_class_names
    assert run.checkpoint.train_path == "./SLOWFAST_32x2_R101_50_50.pkl"
    assert run.checkpoint.train_type == "pytorch" and run.checkpoint.test_path is None
    assert run.ava.detection_score_threshold == 0.8 and run.seed == 0 and run.output_dir == "."
    assert not run.train.enable and run.train.dataset == "ava" and run.train.loss == "bce"


def test_c2_maps_to_kinetics_slowfast_r50():
    run = load_run_config(reference("fork/c2.yaml"))
    m = run.model
    assert (m.arch, m.resnet.depth, m.num_classes, m.head_act) == ("slowfast", 50, 400, "softmax")
    assert m.slowfast.fusion_kernel_size == 7 and not m.detection.enable
    assert run.checkpoint.train_type == "caffe2"
    assert run.solver.weight_decay == pytest.approx(1e-4) and type(run.solver.weight_decay) is float
    assert run.solver.warmup_epochs == 34.0 and run.train.precise_bn


def test_x3d_and_single_pathway_mapping():
    x3d = load_model_config(reference("upstream/configs/Kinetics/X3D_M.yaml"))
    assert x3d.arch == "x3d" and x3d.input.num_pathways == 1 and x3d.input.alpha == 1
    assert (x3d.x3d.width_factor, x3d.x3d.depth_factor, x3d.x3d.bottleneck_factor) == (2.0, 2.2, 2.25)
    assert x3d.resnet.trans_func == "x3d_transform" and x3d.input_channels == (3,)
    i3d = load_model_config(reference("upstream/configs/Kinetics/c2/I3D_NLN_8x8_R50.yaml"))
    assert i3d.arch == "i3d" and i3d.nonlocal_.location == (((),), ((1, 3),), ((1, 3, 5),), ((),))
    assert i3d.nonlocal_.instantiation == "softmax"


@pytest.mark.parametrize("fixture", sorted(PARITY))
def test_parity_dump_equals_base_file_with_opts(fixture):
    base, opts = PARITY[fixture]
    dumped = load_quietly(shared_path("fixtures", "parity", fixture, "config.yaml"))
    rebuilt = load_quietly(reference(base), opts.split())
    assert same_typed(dict(dumped.values), dict(rebuilt.values))
    assert to_model_config(dumped) == to_model_config(rebuilt)


@pytest.mark.parametrize("fixture", sorted(PARITY))
def test_checkpoint_cfg_loads_like_the_file(fixture):
    folder = shared_path("fixtures", "parity", fixture)
    text = torch.load(folder / "model.pyth", map_location="cpu", weights_only=True)["cfg"]
    from_text = load_pyslowfast_text(text, "model.pyth (stored cfg)")
    from_file = load_pyslowfast(folder / "config.yaml")
    assert same_typed(dict(from_text.values), dict(from_file.values))
    assert to_run_config(from_text) == to_run_config(from_file).replace(source="model.pyth (stored cfg)")


def test_checkpoint_cfg_with_foreign_keys_loads_when_not_strict():
    text = load_pyslowfast(reference("fork/c2.yaml")).dump() + "NEWER_SECTION:\n  KEY: 1\n"
    with pytest.raises(VidactError, match="ckpt: unknown key NEWER_SECTION"):
        load_pyslowfast_text(text, "ckpt")
    with pytest.warns(ConfigWarning, match="ckpt: skipped keys .*: NEWER_SECTION$"):
        cfg = load_pyslowfast_text(text, "ckpt", strict=False)
    assert to_model_config(cfg) == load_model_config(reference("fork/c2.yaml"))


def test_dump_reloads_to_the_same_config():
    cfg = load_pyslowfast(reference("fork/c3.yaml"))
    again = load_pyslowfast_text(cfg.dump(), "dump")
    assert same_typed(dict(again.values), dict(cfg.values))


# --- _BASE_, unknown keys, types, --opts -------------------------------------------------


def test_base_files_resolve_relative_and_recursively(tmp_path):
    write(tmp_path, "bases/grand.yaml", "RESNET:\n  DEPTH: 101\nMODEL:\n  NUM_CLASSES: 80\n  DROPOUT_RATE: 0.3\n")
    write(tmp_path, "bases/base.yaml", "_BASE_: grand.yaml\nMODEL:\n  NUM_CLASSES: 60\n")
    child = write(tmp_path, "child.yaml", "_BASE_: bases/base.yaml\nMODEL:\n  NUM_CLASSES: 10\n")
    model = load_model_config(child)
    assert (model.resnet.depth, model.num_classes, model.dropout_rate) == (101, 10, 0.3)


def test_base_list_merges_each_base_in_order_then_the_file(tmp_path):
    """fvcore: each listed base with its own bases, later ones winning, then the file."""
    write(tmp_path, "first.yaml", "MODEL:\n  NUM_CLASSES: 7\nSOLVER:\n  BASE_LR: 0.5\n")
    write(tmp_path, "sub/grand.yaml", "MODEL:\n  NUM_CLASSES: 9\nSOLVER:\n  MAX_EPOCH: 3\n")
    write(tmp_path, "sub/second.yaml", "_BASE_: grand.yaml\nDATA:\n  NUM_FRAMES: 4\n")
    child = write(tmp_path, "child.yaml", "_BASE_: [first.yaml, sub/second.yaml]\nSOLVER:\n  BASE_LR: 0.25\n")
    cfg = load_pyslowfast(child)
    assert cfg.get("MODEL.NUM_CLASSES") == 9 and cfg.get("SOLVER.MAX_EPOCH") == 3
    assert cfg.get("DATA.NUM_FRAMES") == 4 and cfg.get("SOLVER.BASE_LR") == 0.25
    write(tmp_path, "loop.yaml", "_BASE_: [first.yaml, looped.yaml]\n")
    write(tmp_path, "looped.yaml", "_BASE_: loop.yaml\n")
    with pytest.raises(VidactError, match="include each other"):
        load_pyslowfast(tmp_path / "loop.yaml")
    with pytest.raises(VidactError, match="bad.yaml: _BASE_ must be a file path or a list of them"):
        load_pyslowfast(write(tmp_path, "bad.yaml", "_BASE_: [first.yaml, 3]\n"))


def test_base_values_are_typed_only_after_the_merge(tmp_path):
    """fvcore merges the raw files first: a base value its child replaces is never checked."""
    write(tmp_path, "base.yaml", "SOLVER:\n  WARMUP_EPOCHS: 34\nMODEL:\n  NUM_CLASSES: eighty\n")
    child = write(
        tmp_path, "child.yaml", "_BASE_: base.yaml\nSOLVER:\n  WARMUP_EPOCHS: 34.0\nMODEL:\n  NUM_CLASSES: 80\n"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfigWarning)
        cfg = load_pyslowfast(child)
    assert cfg.get("SOLVER.WARMUP_EPOCHS") == 34.0 and cfg.get("MODEL.NUM_CLASSES") == 80
    # A value that survives the merge is still checked, and named with the file that set it.
    kept = write(tmp_path, "kept.yaml", "_BASE_: base.yaml\nSOLVER:\n  WARMUP_EPOCHS: 34.0\n")
    with pytest.raises(VidactError, match=r"base.yaml: MODEL.NUM_CLASSES must be an int"):
        load_pyslowfast(kept)


def test_base_loop_and_missing_base_are_errors(tmp_path):
    write(tmp_path, "a.yaml", "_BASE_: b.yaml\n")
    write(tmp_path, "b.yaml", "_BASE_: a.yaml\n")
    with pytest.raises(VidactError, match="include each other"):
        load_pyslowfast(tmp_path / "a.yaml")
    missing = write(tmp_path, "m.yaml", "_BASE_: nowhere.yaml\n")
    with pytest.raises(VidactError) as error:
        load_pyslowfast(missing)
    assert str(error.value) == (
        f"{tmp_path / 'nowhere.yaml'} (the _BASE_ of {missing}) not found; _BASE_ paths are relative to the including file"
    )


def test_unknown_key_names_key_and_file(tmp_path):
    path = write(tmp_path, "mine.yaml", "MODEL:\n  NUM_CLASSES: 80\nTENSORBOARD:\n  MODEL_VIS:\n    TOPKK: 3\n")
    with pytest.raises(VidactError) as error:
        load_pyslowfast(path)
    message = str(error.value)
    assert message.startswith(f"{path}: unknown key TENSORBOARD.MODEL_VIS.TOPKK")
    assert "\n" not in message
    with pytest.raises(VidactError, match=r"unknown key NOPE\b"):
        load_pyslowfast(write(tmp_path, "top.yaml", "NOPE: 1\n"))
    with pytest.raises(VidactError, match="MODEL is a section"):
        load_pyslowfast(write(tmp_path, "section.yaml", "MODEL: 3\n"))


def test_values_coerced_like_yacs(tmp_path):
    path = write(
        tmp_path, "types.yaml",
        "SOLVER:\n  WEIGHT_DECAY: 1e-4\n  CLIP_GRAD_L2NORM: 1.0\n"
        "DATA:\n  TRAIN_JITTER_SCALES: '[288, 360]'\nDEMO:\n  LABEL_FILE_PATH:\n  INPUT_VIDEO: '1'\n",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfigWarning)
        cfg = load_pyslowfast(path)
        run = to_run_config(cfg)
    assert cfg.get("SOLVER.WEIGHT_DECAY") == 0.0001 and type(cfg.get("SOLVER.WEIGHT_DECAY")) is float
    assert run.solver.clip_grad_norm == 1.0  # a None default takes any type
    assert run.model.input.train_jitter_scales == (288, 360)
    assert run.demo.label_file is None and run.demo.input_video == "1"  # str keys are not evaluated


def test_numbers_in_lists_without_a_dot_are_numbers(tmp_path):
    """PyYAML reads 1e-1 as a string in a list too; PySlowFast would fail on it after an epoch."""
    path = write(
        tmp_path, "lrs.yaml",
        f"_BASE_: {reference('fork/c2.yaml')}\nSOLVER:\n  LR_POLICY: steps_with_relative_lrs\n  STEPS: [0, 44]\n"
        "  LRS: [1, 1e-1]\n  BETAS: [9e-1, 0.999]\n  CLIP_GRAD_L2NORM: 1e-1\nDATA:\n  STD: [0.225, 2.25e-1, 0.225]\n",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConfigWarning)
        run = load_run_config(path)
    assert run.solver.lrs == (1, 0.1) and run.solver.betas == (0.9, 0.999) and run.solver.clip_grad_norm == 0.1
    assert run.model.input.std == (0.225, 0.225, 0.225)


def test_int_for_float_converts_with_warning(tmp_path):
    path = write(tmp_path, "int.yaml", "MODEL:\n  DROPOUT_RATE: 0\n")
    with pytest.warns(ConfigWarning, match=r"int.yaml: MODEL.DROPOUT_RATE expects a float, converted int 0"):
        model = to_model_config(load_pyslowfast(path))
    assert model.dropout_rate == 0.0 and type(model.dropout_rate) is float


@pytest.mark.parametrize(
    "text, key",
    [
        ("MODEL:\n  NUM_CLASSES: eighty\n", "MODEL.NUM_CLASSES"),
        ("NUM_GPUS: true\n", "NUM_GPUS"),  # bool is not int, as in yacs
        ("MODEL:\n  DROPOUT_RATE: [0.5]\n", "MODEL.DROPOUT_RATE"),
        ("DATA:\n  MEAN: 0.45\n", "DATA.MEAN"),
        ("MODEL:\n  ARCH: {a: 1}\n", "MODEL.ARCH"),
        ("SOLVER:\n  CLIP_GRAD_VAL: {a: 1}\n", "SOLVER.CLIP_GRAD_VAL"),  # None default, still no section
    ],
)
def test_wrong_type_is_an_error(tmp_path, text, key):
    path = write(tmp_path, "bad.yaml", text)
    with pytest.raises(VidactError, match=rf"bad.yaml: {key} (must be|is a value)"):
        load_pyslowfast(path)


def test_opts_override_like_merge_from_list():
    opts = [
        "RESNET.SPATIAL_STRIDES", "[[1, 1], [2, 2], [2, 2], [2, 2]]",
        "MODEL.NUM_CLASSES", "10",
        "SOLVER.BASE_LR", "1e-3",
        "DEMO.OUTPUT_FILE", "out.mp4",
        "DATA.MEAN", (0.5, 0.4, 0.3),  # a tuple where the default is a list
    ]
    cfg = load_pyslowfast(reference("fork/c3.yaml"), opts)
    run = to_run_config(cfg)
    assert run.model.resnet.spatial_strides == ((1, 1), (2, 2), (2, 2), (2, 2))
    assert run.model.num_classes == 10 and run.solver.base_lr == 0.001
    assert run.demo.output_file == "out.mp4" and cfg.get("DATA.MEAN") == [0.5, 0.4, 0.3]
    single = load_model_config(
        reference("upstream/configs/Kinetics/c2/SLOW_8x8_R50.yaml"), ["RESNET.SPATIAL_STRIDES", "[[1],[2],[2],[2]]"]
    )
    assert single.resnet.spatial_strides == ((1,), (2,), (2,), (2,))


def test_opts_values_for_str_keys_are_literal_evaluated_like_yacs():
    cfg = load_pyslowfast(
        reference("fork/c2.yaml"), ["OUTPUT_DIR", "None", "MODEL.ARCH", '"slowfast"', "DEMO.OUTPUT_FILE", "out.mp4"]
    )
    assert cfg.get("OUTPUT_DIR") is None and cfg.get("MODEL.ARCH") == "slowfast"
    assert cfg.get("DEMO.OUTPUT_FILE") == "out.mp4"  # not a literal: the text itself
    with pytest.raises(VidactError, match="--opts: OUTPUT_DIR must be a string like its default '.', got an int 123"):
        load_pyslowfast(reference("fork/c2.yaml"), ["OUTPUT_DIR", "123"])


def test_opts_errors_name_opts():
    with pytest.raises(VidactError, match="--opts: unknown key MODEL.NUM_CLASSE;"):
        load_pyslowfast(reference("fork/c2.yaml"), ["MODEL.NUM_CLASSE", "3"])
    with pytest.raises(VidactError, match="--opts: expects KEY VALUE pairs, got 3"):
        load_pyslowfast(reference("fork/c2.yaml"), ["MODEL.NUM_CLASSES", "3", "NUM_GPUS"])
    with pytest.raises(VidactError, match="--opts: MODEL.NUM_CLASSES must be an int"):
        load_pyslowfast(reference("fork/c2.yaml"), ["MODEL.NUM_CLASSES", "many"])


def test_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(VidactError, match="broken.yaml: not valid YAML"):
        load_pyslowfast(write(tmp_path, "broken.yaml", "MODEL: [\n"))
    with pytest.raises(VidactError, match="list.yaml: a PySlowFast config must be a YAML mapping"):
        load_pyslowfast(write(tmp_path, "list.yaml", "- 1\n"))
    with pytest.raises(VidactError, match="config file not found"):
        load_model_config(tmp_path / "absent.yaml")


# --- unused keys ----------------------------------------------------------------------


def test_keys_vidact_does_not_act_on_warn_when_set():
    """TEST.SAVE_RESULTS_PATH (no results pickle is written) and TRAIN.CHECKPOINT_IN_INIT (MViT only)."""
    from vidact.config.pyslowfast import load_pyslowfast_text, to_run_config

    text = "TEST:\n  SAVE_RESULTS_PATH: preds.pkl\nTRAIN:\n  CHECKPOINT_IN_INIT: true\n"
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        to_run_config(load_pyslowfast_text(text, "t.yaml"))
    messages = config_warnings(record)
    assert any("vidact ignores TEST.SAVE_RESULTS_PATH" in m for m in messages)
    assert any("vidact ignores TRAIN.CHECKPOINT_IN_INIT" in m for m in messages)


def test_unused_key_warns_only_when_changed(tmp_path):
    changed = write(tmp_path, "changed.yaml", "MVIT:\n  DEPTH: 24\nMODEL:\n  NUM_CLASSES: 80\n")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        load_pyslowfast(changed)
    messages = config_warnings(record)
    assert len(messages) == 1 and "changed.yaml: vidact ignores MVIT.DEPTH" in messages[0]
    at_default = write(tmp_path, "default.yaml", "MVIT:\n  DEPTH: 16\nAUG:\n  ENABLE: false\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfigWarning)
        load_pyslowfast(at_default)
    with pytest.warns(ConfigWarning, match="default.yaml: vidact ignores AUG.ENABLE"):
        load_pyslowfast(at_default, ["AUG.ENABLE", "True"])


def test_used_keys_come_from_the_mapping():
    used = used_keys()
    assert {"MODEL.ARCH", "NONLOCAL.LOCATION", "DEMO.BUFFER_SIZE", "AVA.BGR", "SOLVER.BASE_LR"} <= used
    assert "MVIT.DEPTH" not in used and "MODEL.LOSS_FUNC" in used
    # The mapping reads the same keys whatever the values, so the defaults list them all.
    for name in ("fork/c3.yaml", "fork/c2.yaml", "upstream/configs/Kinetics/X3D_M.yaml"):
        reader = _Reader(load_quietly(reference(name)))
        _run_config(reader)
        assert reader.read | {"DEMO.NUM_VIS_INSTANCES", "DEMO.THREAD_ENABLE"} == used
    # Read into no setting vidact acts on, these warn when set (the reference changes its output).
    assert not {"DEMO.INPUT_FORMAT", "DEMO.SLOWMO", "DEMO.NUM_CLIPS_SKIP", "DEMO.GT_BOXES", "SHARD_ID"} & used
    with pytest.warns(ConfigWarning, match="vidact ignores DEMO.INPUT_FORMAT"):
        load_pyslowfast(reference("fork/c3.yaml"), ["DEMO.INPUT_FORMAT", "RGB"])


# --- mapping rules --------------------------------------------------------------------


def test_channel_order_follows_the_training_pipeline():
    c3, c2 = reference("fork/c3.yaml"), reference("fork/c2.yaml")
    mean = ["DATA.MEAN", "[0.1, 0.2, 0.3]"]
    assert load_model_config(c2, mean).input.channel_order == "RGB"
    reversed_rgb = load_model_config(c2, [*mean, "DATA.REVERSE_INPUT_CHANNEL", "True"]).input
    assert reversed_rgb.channel_order == "BGR" and reversed_rgb.mean == (0.3, 0.2, 0.1)
    # AVA frames are normalised in cv2's BGR order and flipped to RGB unless AVA.BGR.
    ava_rgb = load_model_config(c3, mean).input
    assert ava_rgb.channel_order == "RGB" and ava_rgb.mean == (0.3, 0.2, 0.1)
    ava_bgr = load_model_config(c3, [*mean, "AVA.BGR", "True"]).input
    assert ava_bgr.channel_order == "BGR" and ava_bgr.mean == (0.1, 0.2, 0.3)


@pytest.mark.parametrize(
    "opts, match",
    [
        (["MODEL.MODEL_NAME", "X3D"], "MODEL.ARCH slowfast does not fit MODEL.MODEL_NAME X3D"),
        (["MODEL.MODEL_NAME", "MViT", "MODEL.ARCH", "mvit"], "MODEL.MODEL_NAME MViT is not a model vidact builds"),
        (["DATA.INPUT_CHANNEL_NUM", "[3]"], "DATA.INPUT_CHANNEL_NUM"),
        (["MODEL.HEAD_ACT", "none"], "MODEL.HEAD_ACT none"),
        (["RESNET.SPATIAL_STRIDES", "[[1, 1], [2, 2]]"], "RESNET.SPATIAL_STRIDES must list 4 stages"),
        (["TEST.CHECKPOINT_TYPE", "onnx"], "TEST.CHECKPOINT_TYPE 'onnx'"),
        (["DEMO.VIS_MODE", "topk"], "DEMO.VIS_MODE 'topk' is not one of thres, top-k"),
        (["DATA.MEAN", '["a", "b", "c"]'], "DATA.MEAN .* must hold numbers"),
        (["SOLVER.LRS", '[1, "x"]'], r"SOLVER.LRS \[1, 'x'\] must hold numbers; fix it$"),
        (["SOLVER.STEPS", '[0, "a"]'], r"SOLVER.STEPS \[0, 'a'\] must hold whole numbers; fix it$"),
        (["SOLVER.CLIP_GRAD_L2NORM", "1e-1x"], "SOLVER.CLIP_GRAD_L2NORM '1e-1x' must be a number, or None to leave it off"),
        (["SOLVER.CLIP_GRAD_VAL", "[1]"], r"SOLVER.CLIP_GRAD_VAL \[1\] must be a number"),
        (["DATA.TRAIN_JITTER_SCALES", "[256.5, 320]"], "DATA.TRAIN_JITTER_SCALES .* must hold whole numbers"),
        (["RESNET.SPATIAL_STRIDES", "[[1, 1], [2, 2], [2, 2], [2, 2.5]]"], "RESNET.SPATIAL_STRIDES .* a whole number"),
        (["NONLOCAL.POOL", "[[1], [1], [1], [1]]"], "NONLOCAL.POOL .* a list of whole numbers"),
        # PySlowFast's assert_and_infer_cfg
        (["NUM_GPUS", "4", "TRAIN.BATCH_SIZE", "10"], "TRAIN.BATCH_SIZE 10 must be divisible by NUM_GPUS 4"),
        (["NUM_GPUS", "2", "TEST.BATCH_SIZE", "3"], "TEST.BATCH_SIZE 3 must be divisible by NUM_GPUS 2"),
        (["NUM_SHARDS", "2", "SHARD_ID", "2"], "SHARD_ID 2 must be below NUM_SHARDS 2"),
        (["RESNET.NUM_GROUPS", "0"], "RESNET.NUM_GROUPS 0 must be positive"),
        (["RESNET.WIDTH_PER_GROUP", "-8"], "RESNET.WIDTH_PER_GROUP -8 must be positive"),
        (["RESNET.NUM_GROUPS", "3"], "RESNET.WIDTH_PER_GROUP 64 must be divisible by RESNET.NUM_GROUPS 3"),
        (["BN.NUM_BATCHES_PRECISE", "-1"], "BN.NUM_BATCHES_PRECISE -1 must be 0 or more"),
        # Counts and sizes that fail later with a traceback (ZeroDivisionError, cv2, torch)
        (["TRAIN.BATCH_SIZE", "0"], "TRAIN.BATCH_SIZE 0 must be at least 1; fix it$"),
        (["TRAIN.BATCH_SIZE", "-1"], "TRAIN.BATCH_SIZE -1 must be at least 1"),
        (["TEST.BATCH_SIZE", "0"], "TEST.BATCH_SIZE 0 must be at least 1"),
        (["TEST.NUM_ENSEMBLE_VIEWS", "0"], "TEST.NUM_ENSEMBLE_VIEWS 0 must be at least 1"),
        (["TEST.NUM_SPATIAL_CROPS", "0"], "TEST.NUM_SPATIAL_CROPS 0 must be at least 1"),
        (["SOLVER.MAX_EPOCH", "0"], "SOLVER.MAX_EPOCH 0 must be at least 1"),
        (["SOLVER.BASE_LR", "-1.0"], r"SOLVER.BASE_LR -1.0 must be 0 or more \(a learning rate\); fix it$"),
        (["DATA.NUM_FRAMES", "0"], "DATA.NUM_FRAMES 0 must be at least 1"),
        (["DATA.SAMPLING_RATE", "0"], "DATA.SAMPLING_RATE 0 must be at least 1"),
        (["DATA.SAMPLING_RATE", "-1"], "DATA.SAMPLING_RATE -1 must be at least 1"),
        (["DATA.TEST_CROP_SIZE", "0"], "DATA.TEST_CROP_SIZE 0 must be at least 1"),
        (["DATA.TEST_CROP_SIZE", "-3"], "DATA.TEST_CROP_SIZE -3 must be at least 1"),
    ],
)
def test_inconsistent_settings_are_errors(opts, match):
    with warnings.catch_warnings(), pytest.raises(VidactError, match=match):
        warnings.simplefilter("ignore", ConfigWarning)  # SHARD_ID: vidact ignores it once it is valid
        load_run_config(reference("fork/c2.yaml"), opts)


@pytest.mark.parametrize(
    "key",
    ["DATA.MEAN", "DATA.INPUT_CHANNEL_NUM", "DATA.TRAIN_JITTER_SCALES", "RESNET.SPATIAL_STRIDES",
     "NONLOCAL.LOCATION", "MODEL.NUM_CLASSES", "SLOWFAST.ALPHA", "TRAIN.ENABLE"],
)
def test_none_for_a_key_with_a_value_default_is_an_error(key):
    # yacs takes None for any key; nothing vidact builds can use it.
    with pytest.raises(VidactError, match=rf"c2.yaml: {key} is None; vidact needs an? \w+ here; set one$"):
        load_run_config(reference("fork/c2.yaml"), [key, "None"])


def test_x3d_is_built_with_x3d_blocks_only():
    # PySlowFast's X3D would build its stages from whatever RESNET.TRANS_FUNC names.
    with pytest.raises(VidactError, match="X3D_XS.yaml: RESNET.TRANS_FUNC bottleneck_transform is not built for X3D"):
        load_model_config(
            reference("upstream/configs/Kinetics/X3D_XS.yaml"), ["RESNET.TRANS_FUNC", "bottleneck_transform"]
        )


def test_dataset_names_in_any_case():
    """PySlowFast's dataset registry capitalises TRAIN/TEST.DATASET."""
    run = load_run_config(reference("fork/c2.yaml"), ["TRAIN.DATASET", "Kinetics", "TEST.DATASET", "KINETICS"])
    assert run.train.dataset == "kinetics" and run.test.dataset == "kinetics"
    # AVA's pipeline (BGR frames flipped after normalising) is told by the name too.
    ava = load_model_config(
        reference("fork/c3.yaml"), ["TRAIN.DATASET", "AVA", "DETECTION.ENABLE", "False", "DATA.MEAN", "[0.1, 0.2, 0.3]"]
    )
    assert ava.input.mean == (0.3, 0.2, 0.1)


# --- vidact's own YAML ----------------------------------------------------------------


def test_vidact_yaml_round_trip_detected_by_content(tmp_path):
    model = load_model_config(reference("fork/c3.yaml"))
    path = tmp_path / "model.cfg"  # the extension says nothing
    dump_model_config(model, path)
    assert "vidact_model:" in path.read_text()
    assert load_model_config(path) == model
    assert load_vidact_model_config(path) == model
    with pytest.raises(VidactError, match="--opts only apply to PySlowFast"):
        load_model_config(path, ["MODEL.NUM_CLASSES", "3"])


def test_vidact_yaml_partial_and_unknown_keys(tmp_path):
    partial = write(tmp_path, "p.yaml", "vidact_model:\n  arch: slow\n  resnet:\n    depth: 101\n")
    model = load_model_config(partial)
    assert model == ModelConfig(arch="slow", resnet=ResNetConfig(depth=101))
    typo = write(tmp_path, "t.yaml", "vidact_model:\n  resnet:\n    dept: 101\n")
    with pytest.raises(VidactError, match="t.yaml: unknown key vidact_model.resnet.dept"):
        load_model_config(typo)


@pytest.mark.parametrize(
    "setting, message",
    [
        ("num_classes: '400'", "vidact_model.num_classes must be a whole number, got '400'"),
        ("num_classes: 10.5", "vidact_model.num_classes must be a whole number, got 10.5"),
        ("num_classes: 0", "vidact_model.num_classes must be at least 1, got 0"),
        ("input_channels: 3", "vidact_model.input_channels must be a list, got 3"),
        ("input_channels: [3, '3']", "vidact_model.input_channels must be a whole number, got '3'"),
        ("arch: 3", "vidact_model.arch must be a string, got 3"),
        ("dropout_rate: true", "vidact_model.dropout_rate must be a number, got True"),
        ("resnet: {stride_1x1: 'no'}", "vidact_model.resnet.stride_1x1 must be true or false, got 'no'"),
        ("input: {mean: [0.45, 0.45]}", "vidact_model.input.mean must list 3 values, got [0.45, 0.45]"),
        ("resnet: {spatial_strides: 2}", "vidact_model.resnet.spatial_strides must be a list, got 2"),
    ],
)
def test_vidact_yaml_values_of_another_type_are_one_line_errors(tmp_path, setting, message):
    path = write(tmp_path, "m.yaml", f"vidact_model:\n  {setting}\n")
    with pytest.raises(VidactError) as error:
        load_model_config(path)
    assert str(error.value) == f"{path}: {message}"
    run_path = write(tmp_path, "r.yaml", f"vidact_run:\n  model:\n    {setting}\n")
    with pytest.raises(VidactError) as error:
        run_io_load(run_path)
    assert str(error.value) == f"{run_path}: {message.replace('vidact_model', 'vidact_run.model')}"


def test_vidact_yaml_floats_without_a_dot_are_numbers(tmp_path):
    """YAML 1.1 reads 1e-2 as a string; both vidact formats parse the model's float settings."""
    model_text = (
        "vidact_model:\n  arch: x3d\n  fc_init_std: 1e-2\n  x3d: {width_factor: 2e0}\n"
        "  input: {mean: [0.45, 4.5e-1, 0.45]}\n"
    )
    model = load_model_config(write(tmp_path, "m.yaml", model_text))
    assert (model.fc_init_std, model.x3d.width_factor, model.input.mean) == (0.01, 2.0, (0.45, 0.45, 0.45))
    assert type(model.fc_init_std) is float and all(type(m) is float for m in model.input.mean)
    run_path = write(tmp_path, "r.yaml", "vidact_run:\n  model: {arch: slow, dropout_rate: 5e-1}\n")
    assert run_io_load(run_path).model.dropout_rate == 0.5
    assert run_io_load(run_path, ["model.dropout_rate", "2e-1"]).model.dropout_rate == 0.2
    with pytest.raises(VidactError, match=r"r.yaml: vidact_run.model.input.std must be a number, got 'wide'"):
        run_io_load(run_path, ["model.input.std", "[0.2, wide, 0.2]"])
    with pytest.raises(VidactError, match=r"m.yaml: vidact_model.fc_init_std must be a number, got 'small'"):
        load_model_config(write(tmp_path, "m.yaml", "vidact_model:\n  fc_init_std: small\n"))
