"""Model architectures against the PySlowFast reference fixtures.

Full-size models are built on the meta device (names, shapes and GFLOPs need no
memory or compute); the reduced-size parity cases run real forwards on CPU.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import shared_path
from torch import nn

from vidact.config import model as mc
from vidact.config.pyslowfast import load_model_config
from vidact.errors import VidactError
from vidact.models import build_model, count_gflops
from vidact.models.nonlocal_block import NonLocal
from vidact.models.resnet3d import ResStage

KEY_LISTINGS = [
    "AVA_SLOWFAST_32x2_R101_50_50", "AVA_SLOWFAST_64x2_R101_50_50", "AVA_SLOW_8x8_R50",
    "K400_I3D_8x8_R50", "K400_I3D_NLN_8x8_R50", "K400_SLOWFAST_4x16_R50", "K400_SLOWFAST_8x8_R50",
    "K400_SLOW_4x16_R50", "K400_SLOW_8x8_R50", "X3D_L", "X3D_M", "X3D_S", "X3D_XS",
]
PARITY_CASES = ["tiny_ava_slowfast_r101_nln", "tiny_k400_slowfast", "tiny_slow_i3d_nln", "tiny_x3d"]
TOLERANCE = 1e-5


def _listing(name: str) -> tuple[dict[str, str], list[str]]:
    lines = shared_path("fixtures", "keys", f"{name}.txt").read_text().splitlines()
    header = lines[0]
    fields = {
        "config": re.search(r"config=([^;]+);", header).group(1),
        "params": re.search(r"params=(\d+)", header).group(1),
        "gflops": re.search(r"gflops=([\d.]+)", header).group(1),
        "flop_input": header.split("flop input:")[1].split(";")[0],
    }
    return fields, lines[1:]


def _config_path(config: str) -> Path:
    # Header paths are relative to the PySlowFast checkout: configs/... upstream, c2/c3.yaml the fork's.
    if config.startswith("configs/"):
        return shared_path("configs", "pyslowfast", "upstream", config)
    return shared_path("configs", "pyslowfast", "fork", config)


def _meta_model(config: mc.ModelConfig) -> nn.Module:
    with torch.device("meta"):
        return build_model(config)


def _describe(state_dict: dict) -> list[str]:
    return [f"{k}\t{list(v.shape)}\t{str(v.dtype).removeprefix('torch.')}" for k, v in state_dict.items()]


@pytest.fixture(scope="module", params=KEY_LISTINGS)
def full_size(request):
    fields, entries = _listing(request.param)
    config = load_model_config(_config_path(fields["config"]))
    return fields, entries, _meta_model(config)


def test_state_dict_matches_reference_listing(full_size):
    _, entries, model = full_size
    assert _describe(model.state_dict()) == entries


def test_parameter_count_matches_reference(full_size):
    fields, _, model = full_size
    assert sum(p.numel() for p in model.parameters()) == int(fields["params"])


def test_gflops_match_reference(full_size):
    fields, _, model = full_size
    shapes = re.findall(r"\((\d+),(\d+),(\d+),(\d+),(\d+)\)", fields["flop_input"])
    inputs = [torch.empty(*map(int, shape), device="meta") for shape in shapes]
    boxes = torch.tensor([[0.0, 0.0, 1.0, 0.0, 1.0]], device="meta") if "box" in fields["flop_input"] else None
    model.train()
    assert count_gflops(model, inputs, boxes) == pytest.approx(float(fields["gflops"]), rel=1e-3)
    assert model.training, "count_gflops must restore the train/eval mode"


def _parity_case(name: str):
    case = shared_path("fixtures", "parity", name)
    config = load_model_config(case / "config.yaml")
    model = build_model(config)
    state = torch.load(case / "model.pyth", weights_only=True, map_location="cpu")["model_state"]
    model.load_state_dict(state, strict=True)
    inputs = np.load(case / "inputs.npz")
    pathways = [torch.from_numpy(inputs[k]) for k in ("pathway0", "pathway1") if k in inputs.files]
    boxes = torch.from_numpy(inputs["boxes"]) if "boxes" in inputs.files else None
    return model, pathways, boxes, np.load(case / "expected.npz")


@pytest.mark.parametrize("name", PARITY_CASES)
def test_eval_output_matches_pyslowfast(name):
    model, pathways, boxes, expected = _parity_case(name)
    model.eval()
    given = list(pathways)
    with torch.no_grad():
        out = model(given) if boxes is None else model(given, boxes)
    assert all(a is b for a, b in zip(given, pathways)), "forward must not replace the caller's tensors"
    assert out.shape == expected["output"].shape
    assert np.abs(out.numpy() - expected["output"]).max() <= TOLERANCE


def test_train_outputs_match_pyslowfast():
    model, pathways, _, expected = _parity_case("tiny_k400_slowfast")
    model.train()
    model.head.dropout.p = 0.0
    with torch.no_grad():
        full = model(pathways)
        crop = model([x[..., 16:240, 16:240] for x in pathways])
    assert np.abs(full.numpy() - expected["output_train"]).max() <= TOLERANCE
    assert np.abs(crop.numpy() - expected["output_train_crop224"]).max() <= TOLERANCE


def _tiny(config: mc.ModelConfig, num_frames: int | None = None, crop: int = 64) -> mc.ModelConfig:
    """Width 8, 5 classes, head pool for ``crop``-pixel inputs of ``num_frames`` frames."""
    frames = num_frames or config.input.num_frames
    return config.replace(num_classes=5, resnet=dataclasses.replace(config.resnet, width_per_group=8),
                          input=dataclasses.replace(config.input, train_crop_size=crop, num_frames=frames))


def test_c2d_has_no_temporal_kernels_and_pools_time_after_res2():
    slow_name = "K400_SLOW_8x8_R50"
    fields, slow_entries = _listing(slow_name)
    config = load_model_config(_config_path(fields["config"])).replace(arch="c2d")
    c2d = _meta_model(config)
    # Same modules as Slow; every conv kernel has temporal size 1.
    expected = []
    for line in slow_entries:
        name, shape, dtype = line.split("\t")
        dims = [int(d) for d in shape.strip("[]").split(", ") if d]
        if len(dims) == 5:
            dims[2] = 1
        expected.append(f"{name}\t{dims}\t{dtype}")
    assert _describe(c2d.state_dict()) == expected

    model = build_model(_tiny(config))
    model.eval()
    features = {}

    def record_s3_input(_module, inputs):
        features["s3_in"] = inputs[0][0].shape

    model.s3.register_forward_pre_hook(record_s3_input)
    with torch.no_grad():
        out = model([torch.randn(1, 3, 8, 64, 64)])
    assert features["s3_in"][2] == 4  # pool1 halves time for C2D
    assert out.shape == (1, 5)
    assert torch.allclose(out.sum(1), torch.ones(1))


def test_init_follows_pyslowfast():
    config = _tiny(load_model_config(_config_path("configs/Kinetics/c2/I3D_NLN_8x8_R50.yaml")))
    assert config.resnet.zero_init_final_bn
    torch.manual_seed(0)
    model = build_model(config.replace(fc_init_std=0.05))
    res = model.s3.pathway0_res1
    assert torch.all(res.branch2.c_bn.weight == 0) and torch.all(res.branch2.a_bn.weight == 1)
    assert torch.all(model.s3.pathway0_nonlocal1.bn.weight == 0)
    assert torch.all(res.branch2.c_bn.bias == 0) and torch.all(model.s1.pathway0_stem.bn.weight == 1)
    conv = model.s4.pathway0_res0.branch2.a  # kaiming normal, fan_out = out_channels x kernel volume
    fan_out = conv.weight.shape[0] * conv.weight[0, 0].numel()
    assert conv.weight.std().item() == pytest.approx((2.0 / fan_out) ** 0.5, rel=0.1)
    assert model.head.projection.weight.std().item() == pytest.approx(0.05, rel=0.1)
    assert torch.all(model.head.projection.bias == 0)
    plain = build_model(dataclasses.replace(config, resnet=dataclasses.replace(config.resnet, zero_init_final_bn=False)))
    assert torch.all(plain.s3.pathway0_res1.branch2.c_bn.weight == 1)


def test_nonlocal_group_attends_within_time_chunks():
    torch.manual_seed(0)
    block = NonLocal(8, 4, (1, 2, 2), instantiation="softmax").eval()
    x = torch.randn(2, 8, 4, 4, 4)
    grouped = ResStage._apply_nonlocal(block, x, group=2)
    by_chunk = torch.cat([block(x[:, :, :2]), block(x[:, :, 2:])], dim=2)
    assert torch.allclose(grouped, by_chunk, atol=1e-6)
    assert not torch.allclose(block(x), by_chunk, atol=1e-4)


@pytest.mark.parametrize(
    "location, expected",
    [
        ("[[[1]], [[]], [[]], [[]]]", ["s2", "s3", "s4", "s5"]),
        ("[[[]], [[]], [[2]], [[]]]", []),
    ],
)
def test_x3d_takes_nonlocal_settings_of_res2_for_every_stage(location, expected):
    # PySlowFast's X3D passes NONLOCAL.LOCATION[0] (and GROUP[0], POOL[0]) to all its stages.
    config = load_model_config(_config_path("configs/Kinetics/X3D_XS.yaml"), ["NONLOCAL.LOCATION", location])
    model = _meta_model(config)
    stages = [name.split(".")[0] for name, module in model.named_modules() if isinstance(module, NonLocal)]
    assert stages == expected


def test_detection_model_needs_boxes_and_scores_each_box():
    config = _tiny(load_model_config(_config_path("configs/AVA/c2/SLOW_8x8_R50.yaml")))
    model = build_model(config).eval()
    clip = [torch.randn(1, 3, 4, 64, 96)]
    boxes = torch.tensor([[0, 4.0, 4.0, 40.0, 60.0], [0, 50.0, 10.0, 90.0, 62.0]])
    with torch.no_grad():
        out = model(clip, boxes)
        with pytest.raises(ValueError, match="boxes"):
            model(clip)
    assert out.shape == (2, 5) and torch.all((out > 0) & (out < 1))


def test_train_step_updates_every_parameter():
    config = _tiny(load_model_config(_config_path("c2.yaml")), num_frames=8, crop=32)
    model = build_model(config.replace(dropout_rate=0.0))
    model.train()
    clip = [torch.randn(2, 3, 2, 32, 32), torch.randn(2, 3, 8, 32, 32)]
    loss = nn.functional.cross_entropy(model(clip), torch.tensor([1, 3]))
    loss.backward()
    without_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert without_grad == []


def test_count_gflops_counts_multiply_adds():
    conv = nn.Conv3d(4, 6, (3, 3, 3), padding=1, groups=2)
    model = _SinglePathway(nn.Sequential(conv, nn.BatchNorm3d(6), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 2 * 5 * 5, 7)))
    x = torch.randn(1, 4, 2, 5, 5)
    conv_macs = 6 * 2 * 5 * 5 * (4 // 2) * 27
    bn_flops = 2 * 6 * 2 * 5 * 5
    linear_macs = 6 * 2 * 5 * 5 * 7
    assert count_gflops(model, [x]) * 1e9 == pytest.approx(conv_macs + bn_flops + linear_macs)


class _SinglePathway(nn.Module):
    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        return self.body(x[0])


@pytest.mark.parametrize(
    "change, message",
    [
        ({"arch": "mvit"}, "arch"),
        ({"resnet": mc.ResNetConfig(depth=34)}, "depth"),
        ({"arch": "x3d", "detection": mc.DetectionConfig(enable=True)}, "detection"),
        ({"arch": "slow", "resnet": mc.ResNetConfig(num_block_temp_kernel=((3,), (4,), (7,), (3,)))}, "num_block_temp_kernel"),
    ],
)
def test_bad_config_is_a_vidact_error(change, message):
    config = mc.ModelConfig().replace(**change)
    with torch.device("meta"), pytest.raises(VidactError, match=message):
        build_model(config)


@pytest.mark.parametrize(("old", "new", "message"), [
    ("TRAIN_CROP_SIZE: 224", "TRAIN_CROP_SIZE: 16", "DATA.TRAIN_CROP_SIZE 16 is below the network's stride of 32"),
    ("NUM_FRAMES: 32", "NUM_FRAMES: 2", "DATA.NUM_FRAMES 2 leaves a pathway without frames; use at least 4"),
    ("WIDTH_PER_GROUP: 8", "WIDTH_PER_GROUP: 4", "RESNET.WIDTH_PER_GROUP 4 is below SLOWFAST.BETA_INV 8"),
    ("FUSION_CONV_CHANNEL_RATIO: 2", "FUSION_CONV_CHANNEL_RATIO: 16", "FUSION_CONV_CHANNEL_RATIO 16 is above"),
])
def test_a_config_whose_head_would_pool_nothing_is_refused_at_build(tmp_path, old, new, message):
    """It built, then failed at the first call with torch's "kernel size should be greater than zero"."""
    text = shared_path("fixtures", "parity", "tiny_k400_slowfast", "config.yaml").read_text()
    assert old in text
    (tmp_path / "config.yaml").write_text(text.replace(old, new))
    with pytest.raises(VidactError, match=re.escape(message)):
        build_model(load_model_config(tmp_path / "config.yaml"))
