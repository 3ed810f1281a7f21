"""Checkpoint formats: Caffe2 names, PySlowFast .pyth, PyTorchVideo hub names, vidact safetensors, loading."""

from __future__ import annotations

import json
import os
import pickle
import re
import warnings

import numpy as np
import pytest
import torch
from conftest import shared_path
from torch import nn

from vidact.cli.main import main
from vidact.config.model import ModelConfig
from vidact.errors import VidactError
from vidact.weights import caffe2, native, pytorchvideo
from vidact.weights.checkpoint import Checkpoint, SkippedWeightsWarning, load_into, read_checkpoint, sniff_format

PARITY_CASES = ("tiny_k400_slowfast", "tiny_ava_slowfast_r101_nln", "tiny_x3d", "tiny_slow_i3d_nln")
C2NAME_FILES = ("AVA_SLOWFAST_32x2_R101_50_50", "K400_SLOWFAST_8x8_R50", "X3D_M")
KEY_FILES = (
    "K400_SLOWFAST_8x8_R50", "AVA_SLOWFAST_32x2_R101_50_50", "K400_SLOWFAST_4x16_R50", "K400_SLOW_8x8_R50",
    "K400_SLOW_4x16_R50", "K400_I3D_8x8_R50", "K400_I3D_NLN_8x8_R50", "X3D_XS", "X3D_S", "X3D_M", "X3D_L",
    "AVA_SLOWFAST_64x2_R101_50_50", "AVA_SLOW_8x8_R50",
)  # fmt: skip
# PyTorchVideo hub listing -> (variant, matching PySlowFast listing); the README names the pairs.
PTV_PAIRS = {
    "ptv_hub_slowfast_r50_state_dict": ("slowfast", "K400_SLOWFAST_8x8_R50"),
    "ptv_hub_slowfast_r50_detection_state_dict": ("slowfast_detection", "K400_SLOWFAST_8x8_R50"),
    "ptv_hub_slow_r50_state_dict": ("slow", "K400_SLOW_8x8_R50"),
    "ptv_hub_x3d_m_state_dict": ("x3d", "X3D_M"),
}


def keys_listing(name: str) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for line in shared_path("fixtures", "keys", f"{name}.txt").read_text().splitlines():
        if line.startswith("#"):
            continue
        key, shape, _ = line.split("\t")
        shapes[key] = tuple(int(d) for d in re.findall(r"\d+", shape))
    return shapes


def ptv_listing(name: str) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for line in shared_path("fixtures", "ptv_keys", f"{name}.txt").read_text().splitlines():
        if m := re.fullmatch(r"(\S+) \((.*)\)", line):
            shapes[m[1]] = tuple(int(d) for d in re.findall(r"\d+", m[2]))
    return shapes


def pyth_state(case: str) -> dict[str, torch.Tensor]:
    return torch.load(shared_path("fixtures", "parity", case, "model.pyth"), weights_only=True)["model_state"]


class StateModule(nn.Module):
    """A module whose state_dict has exactly the given names and shapes (a stand-in for a built model)."""

    def __init__(self, shapes: dict[str, tuple[int, ...]], *, fill: float = 0.0):
        super().__init__()
        for name, shape in shapes.items():
            *path, leaf = name.split(".")
            owner = self
            for part in path:
                if not hasattr(owner, part):
                    owner.add_module(part, nn.Module())
                owner = getattr(owner, part)
            if leaf == "num_batches_tracked":
                owner.register_buffer(leaf, torch.tensor(0))
            elif leaf.startswith("running_"):
                owner.register_buffer(leaf, torch.full(shape, fill))
            else:
                owner.register_parameter(leaf, nn.Parameter(torch.full(shape, fill)))


def one_line_error(excinfo, path) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    assert str(path) in message
    return message


# --- Caffe2 names --------------------------------------------------------------------------


@pytest.mark.parametrize("listing", C2NAME_FILES)
def test_c2_names_map_both_ways_exactly(listing):
    rows = [line.split("\t") for line in shared_path("fixtures", "c2names", f"{listing}.txt").read_text().splitlines() if not line.startswith("#")]
    assert rows
    to_c2 = caffe2.pytorch_to_c2_names(pt for _, pt, _ in rows)
    for c2_name, pt_name, _ in rows:
        assert caffe2.c2_to_pytorch_name(c2_name) == pt_name
        assert to_c2[pt_name] == c2_name


@pytest.mark.parametrize("listing", KEY_FILES)
def test_every_model_name_survives_inverse_then_forward(listing):
    names = list(keys_listing(listing))
    to_c2 = caffe2.pytorch_to_c2_names(names)
    assert set(to_c2) == {n for n in names if not n.endswith("num_batches_tracked")}
    assert len(set(to_c2.values())) == len(to_c2)
    for name, c2_name in to_c2.items():
        assert caffe2.c2_to_pytorch_name(c2_name) == name


def test_c2_fit_rules_trailing_ones_sub_bn_tiling_and_skips():
    blobs = {
        "pred_w": np.arange(6, dtype=np.float32).reshape(3, 2),
        "res_conv1_bn_rm": np.array([1.0, 2.0], dtype=np.float32),
        "res_conv1_bn_s": np.ones(5, dtype=np.float32),  # 5 does not divide 4: mismatch
        "conv1_w_momentum": np.zeros(3, dtype=np.float32),
        "model_iter": np.array(1000),
        "lr": np.array(0.1, dtype=np.float32),
        "foo_w": np.zeros(1, dtype=np.float32),
    }
    state = caffe2.convert_blobs(blobs)
    assert set(state) == {"head.projection.weight", "s1.pathway0_stem.bn.running_mean", "s1.pathway0_stem.bn.weight", "foo.weight"}
    target = {
        "head.projection.weight": (3, 2, 1, 1, 1),
        "s1.pathway0_stem.bn.split_bn.running_mean": (6,),
        "s1.pathway0_stem.bn.weight": (4,),
    }
    fit = caffe2.fit_to_target(state, target)
    assert torch.equal(fit.state_dict["head.projection.weight"], torch.arange(6.0).reshape(3, 2, 1, 1, 1))
    assert fit.state_dict["s1.pathway0_stem.bn.split_bn.running_mean"].tolist() == [1, 2, 1, 2, 1, 2]
    assert fit.shape_mismatched == [("s1.pathway0_stem.bn.weight", (5,), (4,))]
    assert fit.unexpected == ["foo.weight"]


def test_c2_has_no_temporal_inflation():
    state = caffe2.convert_blobs({"conv1_w": np.zeros((4, 3, 7, 7), dtype=np.float32)})
    fit = caffe2.fit_to_target(state, {"s1.pathway0_stem.conv.weight": (4, 3, 5, 7, 7)})
    assert fit.state_dict == {}
    assert fit.shape_mismatched == [("s1.pathway0_stem.conv.weight", (4, 3, 7, 7, 1), (4, 3, 5, 7, 7))]


# --- parity checkpoints ---------------------------------------------------------------------


@pytest.mark.parametrize("case", PARITY_CASES)
def test_caffe2_pickle_gives_the_pyth_tensors_exactly(case):
    expected = pyth_state(case)
    checkpoint = read_checkpoint(shared_path("fixtures", "parity", case, "model_c2.pkl"))
    assert checkpoint.format == "caffe2" and checkpoint.cfg_text is None
    fit = caffe2.fit_to_target(checkpoint.state_dict, {n: tuple(t.shape) for n, t in expected.items()})
    assert fit.unexpected == [] and fit.shape_mismatched == []
    assert set(fit.state_dict) == {n for n in expected if not n.endswith("num_batches_tracked")}
    for name, tensor in fit.state_dict.items():
        assert tensor.dtype == expected[name].dtype and torch.equal(tensor, expected[name]), name

    model = StateModule({n: tuple(t.shape) for n, t in expected.items()}, fill=float("nan"))
    report = load_into(model, checkpoint)
    assert report.missing == [] and report.unexpected == [] and not report.head_reinitialised
    loaded = model.state_dict()
    assert all(torch.equal(loaded[n], t) for n, t in expected.items())


@pytest.mark.parametrize("case", PARITY_CASES)
def test_pyth_gives_model_state_and_cfg_text(case):
    folder = shared_path("fixtures", "parity", case)
    checkpoint = read_checkpoint(folder / "model.pyth")
    assert checkpoint.format == "pyslowfast"
    assert checkpoint.cfg_text == (folder / "config.yaml").read_text()
    assert checkpoint.metadata["epoch"] == 0
    expected = pyth_state(case)
    assert list(checkpoint.state_dict) == list(expected)
    assert all(torch.equal(checkpoint.state_dict[n], t) for n, t in expected.items())


def test_clear_name_patterns_and_legacy_torch_format(tmp_path):
    path = tmp_path / "legacy.pyth"
    state = {"module.head.projection.weight": torch.randn(3, 4), "module.head.projection.bias": torch.randn(3)}
    torch.save({"epoch": 4, "model_state": state}, path, _use_new_zipfile_serialization=False)
    assert sniff_format(path) == "torch"
    checkpoint = read_checkpoint(path, clear_name_patterns=("module.",))
    assert checkpoint.metadata["epoch"] == 4
    assert set(checkpoint.state_dict) == {"head.projection.weight", "head.projection.bias"}
    assert torch.equal(checkpoint.state_dict["head.projection.weight"], state["module.head.projection.weight"])


def test_pickled_numpy_arrays_keep_their_shapes(tmp_path):
    """0-d arrays (num_batches_tracked) stay 0-d: np.ascontiguousarray makes them 1-d."""
    from vidact.weights.detectron2 import load_detectron2_state_dict

    state = pyth_state("tiny_k400_slowfast")
    path = tmp_path / "np_state.pkl"  # a PySlowFast model_state of numpy arrays
    path.write_bytes(pickle.dumps({"epoch": 0, "model_state": {n: t.numpy() for n, t in state.items()}}, protocol=2))
    checkpoint = read_checkpoint(path)
    assert all(checkpoint.state_dict[n].shape == t.shape and torch.equal(checkpoint.state_dict[n], t) for n, t in state.items())
    assert load_into(StateModule({n: tuple(t.shape) for n, t in state.items()}), checkpoint).missing == []

    transposed = np.arange(6, dtype=np.float32).reshape(2, 3).T
    arrays = {"conv1_w": transposed, "res_conv1_bn_s": np.array(2.0, dtype=np.float32)}
    converted = caffe2.convert_blobs(arrays)
    assert converted["s1.pathway0_stem.bn.weight"].shape == ()
    assert converted["s1.pathway0_stem.conv.weight"].is_contiguous()
    d2 = tmp_path / "d2.pkl"
    d2.write_bytes(pickle.dumps({"model": arrays}, protocol=2))
    loaded = load_detectron2_state_dict(d2)
    assert loaded["res_conv1_bn_s"].shape == () and torch.equal(loaded["conv1_w"], torch.from_numpy(transposed.copy()))


# --- loading into a model -----------------------------------------------------------------


def test_head_of_another_size_is_reinitialised_and_reported():
    state = pyth_state("tiny_k400_slowfast")
    shapes = {n: tuple(t.shape) for n, t in state.items()}
    shapes["head.projection.weight"] = (7, shapes["head.projection.weight"][1])
    shapes["head.projection.bias"] = (7,)
    model = StateModule(shapes, fill=5.0)
    with pytest.warns(UserWarning, match="re-initialised"):
        report = load_into(model, Checkpoint(shared_path("fixtures", "parity", "tiny_k400_slowfast", "model.pyth"), "pyslowfast", state))
    assert report.head_reinitialised
    assert sorted(n for n, _, _ in report.shape_mismatched) == ["head.projection.bias", "head.projection.weight"]
    assert "head.projection.weight" in report.missing
    head = model.state_dict()
    assert torch.all(head["head.projection.bias"] == 0)
    assert 0 < head["head.projection.weight"].std() < 0.1  # N(0, 0.01), no longer the fill value
    assert torch.equal(head["s1.pathway0_stem.conv.weight"], state["s1.pathway0_stem.conv.weight"])
    assert "head re-initialised" in report.summary()


def test_wrong_architecture_is_one_line_error():
    path = shared_path("fixtures", "parity", "tiny_x3d", "model.pyth")
    model = StateModule({n: tuple(t.shape) for n, t in pyth_state("tiny_k400_slowfast").items()})
    with pytest.raises(VidactError) as excinfo:
        load_into(model, path)
    assert "do not fit" in one_line_error(excinfo, path)
    with pytest.raises(VidactError) as excinfo:  # fine-tuning skips misfits, but not most of the model
        load_into(model, path, strict_architecture=False)
    assert re.search(r"only \d+ of \d+ tensors match by name and shape\); use the config", one_line_error(excinfo, path))


def test_not_strict_skips_tensors_that_do_not_fit_with_one_warning():
    """Fine-tuning loads as PySlowFast does: other shapes ("does not match") and names the model
    lacks are skipped, here a fusion kernel of another size and an extra block."""
    path = shared_path("fixtures", "parity", "tiny_k400_slowfast", "model.pyth")
    state = pyth_state("tiny_k400_slowfast")
    shapes = {n: tuple(t.shape) for n, t in state.items()}
    fusions = [n for n in shapes if n.endswith("_fuse.conv_f2s.weight")]
    for name in fusions:
        shapes[name] = (*shapes[name][:2], 5, *shapes[name][3:])
    state = {**state, "s5.pathway0_res9.branch2.a.weight": torch.zeros(1)}
    model = StateModule(shapes, fill=5.0)
    with pytest.warns(SkippedWeightsWarning) as caught:
        report = load_into(model, Checkpoint(path, "pyslowfast", state), strict_architecture=False)
    assert len(caught) == 1
    assert str(caught[0].message).startswith(
        f"{path}: skipped {len(fusions) + 1} tensors this model cannot take, as PySlowFast does ({', '.join(fusions[:3])}, ...)"
    )
    assert sorted(report.missing) == sorted(fusions) and report.unexpected == ["s5.pathway0_res9.branch2.a.weight"]
    loaded = model.state_dict()
    assert all(torch.all(loaded[n] == 5.0) for n in fusions)
    assert all(torch.equal(loaded[n], t) for n, t in state.items() if n in shapes and n not in fusions)


def test_dataparallel_prefix_is_named(tmp_path):
    state = pyth_state("tiny_k400_slowfast")
    path = tmp_path / "module.pyth"
    torch.save({"epoch": 0, "model_state": {f"module.{n}": t for n, t in state.items()}}, path)
    model = StateModule({n: tuple(t.shape) for n, t in state.items()})
    for strict in (True, False):
        with pytest.raises(VidactError) as excinfo:
            load_into(model, path, strict_architecture=strict)
        assert one_line_error(excinfo, path).endswith(
            "its names carry the prefix 'module.' (saved from DataParallel): strip it (vidact convert IN "
            "OUT.safetensors --strip-prefix module.), or for training set TRAIN.CHECKPOINT_CLEAR_NAME_PATTERN ['module.']"
        )
    assert load_into(model, read_checkpoint(path, clear_name_patterns=("module.",))).missing == []
    # What the message says to run: the converted file loads everywhere.
    out = tmp_path / "stripped.safetensors"
    config = shared_path("fixtures", "parity", "tiny_k400_slowfast", "config.yaml")
    assert main(["convert", str(path), str(out), "--cfg", str(config), "--strip-prefix", "module."]) == 0
    assert load_into(model, out).missing == []


@pytest.mark.parametrize("change", ["extra block", "wider layer", "narrower caffe2 network"])
def test_weights_of_a_near_architecture_are_refused(change):
    """A checkpoint that fills most of the model but not all of it (a deeper, wider or narrower
    sibling) must not load silently; only the classifier head may differ."""
    case = shared_path("fixtures", "parity", "tiny_k400_slowfast")
    state = pyth_state("tiny_k400_slowfast")
    shapes = {n: tuple(t.shape) for n, t in state.items()}
    source = case / "model.pyth"
    if change == "extra block":  # the checkpoint has a tensor the model lacks
        state = {**state, "s5.pathway0_res9.branch2.a.weight": torch.zeros(1)}
    elif change == "wider layer":  # one tensor of the model is larger
        shapes["s1.pathway0_stem.bn.weight"] = (2 * shapes["s1.pathway0_stem.bn.weight"][0],)
    else:  # every BN vector of the model twice as long: Caffe2 loading used to tile them
        shapes = {n: (2 * s[0],) if len(s) == 1 and "bn" in n else s for n, s in shapes.items()}
        source = case / "model_c2.pkl"
    model = StateModule(shapes)
    checkpoint = read_checkpoint(source) if change == "narrower caffe2 network" else Checkpoint(source, "pyslowfast", state)
    with pytest.raises(VidactError, match="weights do not fit this model"):
        load_into(model, checkpoint)


def test_inflation_repeats_over_time_and_divides(tmp_path):
    weight2d = torch.randn(4, 3, 3, 3)
    path = tmp_path / "c2d.pyth"
    torch.save({"model_state": {"s1.pathway0_stem.conv.weight": weight2d, "s1.pathway0_stem.bn.weight": torch.ones(4)}}, path)
    model = StateModule({"s1.pathway0_stem.conv.weight": (4, 3, 5, 3, 3), "s1.pathway0_stem.bn.weight": (4,)})
    with pytest.warns(SkippedWeightsWarning, match=r"skipped 1 tensor this model cannot take"):
        report = load_into(model, path, strict_architecture=False)
    assert report.shape_mismatched == [("s1.pathway0_stem.conv.weight", (4, 3, 3, 3), (4, 3, 5, 3, 3))]
    report = load_into(model, path, inflate=True)
    assert report.inflated == ["s1.pathway0_stem.conv.weight"] and report.missing == []
    inflated = model.state_dict()["s1.pathway0_stem.conv.weight"]
    assert torch.allclose(inflated.sum(dim=2), weight2d, atol=1e-6)
    assert all(torch.equal(inflated[:, :, t], weight2d / 5) for t in range(5))


# --- unsafe and damaged files ---------------------------------------------------------------


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"blobs": {"conv1_w": _Payload(marker)}}, protocol=2))
    with pytest.raises(VidactError) as excinfo:
        read_checkpoint(path)
    assert "system" in one_line_error(excinfo, path)
    assert not marker.exists()


def test_pickle_may_not_build_a_bytearray(tmp_path):
    # bytearray(4_000_000_000) in a 58-byte file would allocate 4 GB; weight pickles hold no bytearray.
    path = tmp_path / "bytearray.pkl"
    path.write_bytes(pickle.dumps({"blobs": {"conv1_w": bytearray(4)}}, protocol=2))
    with pytest.raises(VidactError) as excinfo:
        read_checkpoint(path)
    assert "builtin__.bytearray: only containers" in one_line_error(excinfo, path)


def test_malicious_torch_file_refused_by_weights_only(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pyth"
    torch.save({"model_state": {"w": torch.zeros(1)}, "x": _Payload(marker)}, path)
    assert path.read_bytes()[:2] == b"PK"
    with pytest.raises(VidactError) as excinfo:
        read_checkpoint(path)
    message = one_line_error(excinfo, path)
    assert "weights_only" in message and "system" in message
    assert not marker.exists()


@pytest.mark.parametrize("source", ["model.pyth", "model_c2.pkl"])
def test_truncated_checkpoint_is_one_line_error(tmp_path, source):
    data = shared_path("fixtures", "parity", "tiny_k400_slowfast", source).read_bytes()
    path = tmp_path / source
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(VidactError) as excinfo:
        read_checkpoint(path)
    assert "re-download" in one_line_error(excinfo, path)


@pytest.mark.parametrize("content", [b"", os.urandom(4096), b"\x80\x02}q\x00", b"<html>404 not found</html>"], ids=["empty", "random", "empty-dict", "html"])
def test_empty_random_and_foreign_files_are_one_line_errors(tmp_path, content):
    path = tmp_path / "weights.pkl"
    path.write_bytes(content)
    with pytest.raises(VidactError) as excinfo:
        read_checkpoint(path)
    one_line_error(excinfo, path)


def test_forged_pickle_lengths_do_not_allocate(tmp_path):
    import struct
    import tracemalloc

    from vidact.weights.safe_pickle import load_pickle

    memo = tmp_path / "memo.pkl"  # LONG_BINPUT at a huge index: the C unpickler would size its memo to it
    memo.write_bytes(b"\x80\x02Nr" + struct.pack("<I", 50_000_000) + b".")
    tracemalloc.start()
    try:
        assert load_pickle(memo) is None
        assert tracemalloc.get_traced_memory()[1] < 50_000_000
    finally:
        tracemalloc.stop()
    bytearray8 = tmp_path / "bytearray8.pkl"  # would zero-fill 1 TiB before reading
    bytearray8.write_bytes(b"\x80\x05\x96" + struct.pack("<Q", 1 << 40) + b".")
    with pytest.raises(VidactError) as excinfo:
        read_checkpoint(bytearray8)
    one_line_error(excinfo, bytearray8)


def test_a_caffe2_pickle_saved_again_with_protocol_5_loads_the_same(tmp_path):
    """Python 3.8+'s highest protocol stores arrays as numpy _frombuffer of BYTEARRAY8 bytes."""
    import pickle

    from vidact.weights.safe_pickle import load_pickle

    original = shared_path("fixtures", "parity", "tiny_x3d", "model_c2.pkl")
    blobs = load_pickle(original)
    resaved = tmp_path / "model_p5.pkl"
    resaved.write_bytes(pickle.dumps(blobs, protocol=5))
    assert b"_frombuffer" in resaved.read_bytes()
    first, again = read_checkpoint(original).state_dict, read_checkpoint(resaved).state_dict
    assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)
    # Read-only arrays are pickled over bytes: no warning from torch about them.
    for array in blobs["blobs"].values():
        array.flags.writeable = False
    resaved.write_bytes(pickle.dumps(blobs, protocol=5))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = read_checkpoint(resaved).state_dict
    assert all(torch.equal(first[k], again[k]) for k in first)


def test_garbage_is_a_short_error(tmp_path):
    garbage = tmp_path / "model.pyth"  # an INT opcode whose literal is 400 bytes of noise
    garbage.write_bytes(b"I" + bytes(range(14, 255)) * 2 + b"\n.")
    with pytest.raises(VidactError) as excinfo:
        read_checkpoint(garbage)
    one_line_error(excinfo, garbage)
    message = str(excinfo.value)
    assert len(message) < len(str(garbage)) + 200 and "pass a .pyth, .pkl or .safetensors checkpoint" in message


def test_truncated_native_file_is_one_line_error(tmp_path):
    path = native.save_native(tmp_path / "w.safetensors", {"a": torch.randn(100)}, labels=["x" * 50] * 400)
    data = path.read_bytes()
    for cut in (len(data) - 40, 8 + 1000):  # in the tensors, in the (20 kB) JSON header
        path.write_bytes(data[:cut])
        with pytest.raises(VidactError) as excinfo:
            read_checkpoint(path)
        assert "damaged" in one_line_error(excinfo, path)


# --- PyTorchVideo hub names ----------------------------------------------------------------


@pytest.mark.parametrize("ptv_name", sorted(PTV_PAIRS))
def test_pytorchvideo_names_round_trip_against_pyslowfast_listing(ptv_name):
    variant, pyslowfast_name = PTV_PAIRS[ptv_name]
    ptv = ptv_listing(ptv_name)
    reference = keys_listing(pyslowfast_name)
    assert pytorchvideo.detect_variant(ptv) == variant
    converted = {pytorchvideo.ptv_to_pyslowfast_name(n, variant): n for n in ptv}
    missing = set(reference) - set(converted)
    if variant == "x3d":  # hub X3D has no BatchNorm after the stage-2 shortcut
        assert missing == {f"s2.pathway0_res0.branch1_bn.{leaf}" for leaf in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
    else:
        assert missing == set()
    assert set(converted) <= set(reference)
    for name, ptv_key in converted.items():
        assert pytorchvideo.pyslowfast_to_ptv_name(name, variant) == ptv_key
        if not (variant == "slowfast_detection" and name.startswith("head.")):  # 80-way AVA head vs 400-way listing
            assert ptv[ptv_key] == reference[name], name


def test_pytorchvideo_x3d_state_gets_identity_bn_and_converts_back():
    ptv = {n: torch.randn(s) if s else torch.tensor(0) for n, s in ptv_listing("ptv_hub_x3d_m_state_dict").items()}
    state = pytorchvideo.from_pytorchvideo(ptv)
    assert set(state) == set(keys_listing("X3D_M"))
    bn = nn.BatchNorm3d(24).eval()
    bn.load_state_dict({k.split("branch1_bn.")[1]: v for k, v in state.items() if "s2.pathway0_res0.branch1_bn." in k})
    x = torch.randn(2, 24, 3, 4, 4) * 10
    assert torch.equal(bn(x), x)
    back = pytorchvideo.to_pytorchvideo(state, "x3d")
    assert set(back) == set(ptv) and all(torch.equal(back[n], ptv[n]) for n in ptv)
    state["s2.pathway0_res0.branch1_bn.weight"] = torch.full((24,), 2.0)
    with pytest.raises(VidactError, match="not an identity"):
        pytorchvideo.to_pytorchvideo(state, "x3d")


def test_hub_checkpoint_is_read_with_pyslowfast_names(tmp_path):
    ptv = {n: torch.randn(s) if s else torch.tensor(0) for n, s in ptv_listing("ptv_hub_slow_r50_state_dict").items()}
    path = tmp_path / "SLOW_8x8_R50.pyth"
    torch.save({"model_state": ptv}, path)
    checkpoint = read_checkpoint(path)
    assert checkpoint.format == "pytorchvideo"
    assert set(checkpoint.state_dict) == set(keys_listing("K400_SLOW_8x8_R50"))
    assert torch.equal(checkpoint.state_dict["s5.pathway0_res2.branch2.c_bn.running_var"], ptv["blocks.4.res_blocks.2.branch2.norm_c.running_var"])


# --- vidact's own format -------------------------------------------------------------------


def _mixed_state():
    return {
        "conv.weight": torch.randn(4, 3, 1, 3, 3),
        "bn.num_batches_tracked": torch.tensor(7),
        "half": torch.randn(5).half(),
        "brain": torch.randn(2, 3).bfloat16(),
        "mask": torch.tensor([True, False]),
        "empty": torch.zeros(0, 3),
    }


def test_native_round_trip_tensors_and_metadata(tmp_path):
    state = _mixed_state()
    config = ModelConfig(arch="x3d", num_classes=11)
    path = native.save_native(tmp_path / "m.safetensors", state, model_config=config, labels=["a", "b c"], source="model.pyth")
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]
    checkpoint = read_checkpoint(path)
    assert checkpoint.format == "vidact"
    assert checkpoint.model_config == config
    assert checkpoint.metadata["labels"] == ["a", "b c"] and checkpoint.metadata["source"] == "model.pyth"
    assert list(checkpoint.state_dict) == list(state)
    for name, tensor in state.items():
        got = checkpoint.state_dict[name]
        assert got.dtype == tensor.dtype and got.shape == tensor.shape and torch.equal(got, tensor), name


def test_native_is_readable_by_safetensors_and_reads_its_files(tmp_path):
    safetensors_torch = pytest.importorskip("safetensors.torch", reason="dev extra")
    from safetensors import safe_open

    state = _mixed_state()
    config = ModelConfig(num_classes=3)
    path = native.save_native(tmp_path / "ours.safetensors", state, model_config=config, labels=["x"])
    theirs = safetensors_torch.load_file(path)
    assert set(theirs) == set(state) and all(torch.equal(theirs[n], t) for n, t in state.items())
    with safe_open(path, framework="pt") as f:
        assert json.loads(f.metadata()["labels"]) == ["x"]

    other = tmp_path / "theirs.safetensors"
    safetensors_torch.save_file(state, other, metadata={"format": "pt"})
    checkpoint = read_checkpoint(other)
    assert checkpoint.format == "safetensors" and checkpoint.model_config is None
    assert all(torch.equal(checkpoint.state_dict[n], t) for n, t in state.items())


# --- vidact convert ------------------------------------------------------------------------


def test_convert_pyth_uses_stored_cfg(tmp_path):
    folder = shared_path("fixtures", "parity", "tiny_x3d")
    out = tmp_path / "x3d.safetensors"
    assert main(["convert", str(folder / "model.pyth"), str(out)]) == 0
    converted = read_checkpoint(out)
    assert converted.model_config.arch == "x3d"
    assert converted.metadata["source_format"] == "pyslowfast"
    expected = pyth_state("tiny_x3d")
    assert all(torch.equal(converted.state_dict[n], t) for n, t in expected.items())


def test_convert_refuses_to_write_over_its_input(tmp_path, capsys):
    """`vidact convert mine.pyth mine.pyth` replaced the PySlowFast checkpoint with a safetensors file."""
    mine = tmp_path / "mine.pyth"
    mine.write_bytes(shared_path("fixtures", "parity", "tiny_x3d", "model.pyth").read_bytes())
    before = mine.read_bytes()
    native_copy = tmp_path / "mine.safetensors"
    assert main(["convert", str(mine), str(native_copy)]) == 0
    (tmp_path / "sub").mkdir()
    os.link(native_copy, tmp_path / "link.safetensors")
    for src, dst in [(mine, mine), (native_copy, tmp_path / "sub" / ".." / "mine.safetensors"),
                     (native_copy, tmp_path / "link.safetensors")]:
        native_before = native_copy.read_bytes()
        assert main(["convert", str(src), str(dst)]) == 2
        err = capsys.readouterr().err.strip()
        assert "is the input" in err and len(err.splitlines()) == 1
        assert native_copy.read_bytes() == native_before
    assert mine.read_bytes() == before


@pytest.mark.parametrize("name", ["mine.pyth", "mine.pt", "mine"])
def test_convert_writes_only_a_safetensors_name(tmp_path, capsys, name):
    out = tmp_path / name
    assert main(["convert", str(shared_path("fixtures", "parity", "tiny_x3d", "model.pyth")), str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "OUT.safetensors" in err and len(err.splitlines()) == 1 and not out.exists()


def test_convert_may_replace_another_safetensors_file(tmp_path):
    out = tmp_path / "x3d.safetensors"
    out.write_bytes(b"an older conversion")
    assert main(["convert", str(shared_path("fixtures", "parity", "tiny_x3d", "model.pyth")), str(out)]) == 0
    assert read_checkpoint(out).model_config.arch == "x3d"


def test_convert_uses_the_cfg_given_over_the_stored_one(tmp_path):
    """--cfg was silently ignored for a .pyth that stores a training cfg."""
    folder = shared_path("fixtures", "parity", "tiny_x3d")
    cfg = tmp_path / "test_time.yaml"
    cfg.write_text((folder / "config.yaml").read_text().replace("TEST_CROP_SIZE: 182", "TEST_CROP_SIZE: 224"))
    out = tmp_path / "x3d.safetensors"
    assert main(["convert", str(folder / "model.pyth"), str(out), "--cfg", str(cfg)]) == 0
    assert read_checkpoint(out).model_config.input.test_crop_size == 224


def test_stored_cfg_of_a_newer_pyslowfast_skips_its_unknown_keys(tmp_path):
    from vidact.config.pyslowfast import ConfigWarning
    from vidact.weights.checkpoint import checkpoint_model_config

    saved = torch.load(shared_path("fixtures", "parity", "tiny_x3d", "model.pyth"), map_location="cpu", weights_only=True)
    saved["cfg"] = saved["cfg"] + "\nSOME_NEWER_SECTION:\n  KEY: 1\n"
    path = tmp_path / "newer.pyth"
    torch.save(saved, path)
    with pytest.warns(ConfigWarning, match="skipped keys .*: SOME_NEWER_SECTION"):
        config = checkpoint_model_config(read_checkpoint(path))
    assert config.arch == "x3d"


def test_a_converted_file_is_the_whole_model_with_its_labels(tmp_path):
    """vidact convert's file builds with its stored config and weights, names its classes, and
    keeps its provenance when converted again."""
    import vidact
    from vidact.api import load_labels
    from vidact.weights.checkpoint import convert_to_native

    folder = shared_path("fixtures", "parity", "tiny_k400_slowfast")
    (tmp_path / "names.txt").write_text("".join(f"action {i}\n" for i in range(10)))
    first, second = tmp_path / "sf.safetensors", tmp_path / "again.safetensors"
    assert main(["convert", str(folder / "model_c2.pkl"), str(first), "--cfg", str(folder / "config.yaml"),
                 "--labels", str(tmp_path / "names.txt")]) == 0
    model = vidact.create_model(first).eval()
    inputs = np.load(folder / "inputs.npz")
    with torch.no_grad():
        output = model([torch.from_numpy(inputs[k]) for k in sorted(inputs.files)]).numpy()
    assert np.abs(output - np.load(folder / "expected.npz")["output"]).max() <= 1e-5
    assert load_labels(model)[:2] == ("action 0", "action 1")
    assert main(["convert", str(first), str(second)]) == 0
    again = read_checkpoint(second).metadata
    assert (again["source"], again["source_format"]) == ("model_c2.pkl", "caffe2")
    with pytest.raises(VidactError, match="3 class names for a model of 10 classes"):
        convert_to_native(first, tmp_path / "bad.safetensors", labels=["a", "b", "c"])


def test_convert_names_classes_by_the_ids_the_model_counts_from(tmp_path, capsys, monkeypatch):
    """A Kinetics label map numbered from 1 was shifted silently (class 5 named by id 6's name);
    an AVA model's map is numbered from 1 (as its label files are)."""
    import json

    import vidact
    import vidact.weights.checkpoint as checkpoint_module
    from vidact.api import load_labels

    parity = shared_path("fixtures", "parity")
    kinetics = parity / "tiny_k400_slowfast" / "model.pyth"
    (tmp_path / "from1.json").write_text(json.dumps({f"class {i}": i for i in range(1, 11)}))
    assert main(["convert", str(kinetics), str(tmp_path / "k.safetensors"), "--labels", str(tmp_path / "from1.json")]) == 2
    assert "class ids must run 0..N-1" in capsys.readouterr().err and not (tmp_path / "k.safetensors").exists()
    (tmp_path / "from1.pbtxt").write_text("".join(f'item {{ name: "act {i}" id: {i} }}\n' for i in range(1, 81)))
    ava = tmp_path / "ava.safetensors"
    assert main(["convert", str(parity / "tiny_ava_slowfast_r101_nln" / "model.pyth"), str(ava),
                 "--labels", str(tmp_path / "from1.pbtxt")]) == 0
    assert load_labels(vidact.create_model(ava))[:2] == ("act 1", "act 2")
    # An output that cannot be written is refused before the checkpoint is read.
    monkeypatch.setattr(checkpoint_module, "read_checkpoint", lambda *a: pytest.fail("read first"))
    (tmp_path / "a_file").write_text("")
    assert main(["convert", str(kinetics), str(tmp_path / "a_file" / "x.safetensors")]) == 2


def test_stored_labels_are_dropped_for_a_head_of_another_size(tmp_path):
    import vidact
    from vidact.weights.checkpoint import convert_to_native

    folder = shared_path("fixtures", "parity", "tiny_k400_slowfast")
    names = [f"action {i}" for i in range(10)]
    converted = convert_to_native(folder / "model.pyth", tmp_path / "sf.safetensors", labels=names)
    assert vidact.create_model(converted).labels == names
    with pytest.warns(UserWarning, match="re-initialised"):
        assert vidact.create_model(converted, num_classes=5).labels is None


def test_a_caffe2_pickle_as_the_model_asks_for_its_config():
    import vidact

    # As the model, both parts are named: --cfg alone then said "a config holds no weights".
    with pytest.raises(VidactError, match=r"caffe2 checkpoint stores no model config; .* as the model and this file as "
                                          r"its weights \(--cfg CONFIG.yaml --weights .*model_c2.pkl\)"):
        vidact.create_model(shared_path("fixtures", "parity", "tiny_x3d", "model_c2.pkl"))


def test_convert_caffe2_needs_cfg(tmp_path, capsys):
    folder = shared_path("fixtures", "parity", "tiny_k400_slowfast")
    out = tmp_path / "sf.safetensors"
    assert main(["convert", str(folder / "model_c2.pkl"), str(out)]) == 2
    assert "--cfg" in capsys.readouterr().err and not out.exists()
    assert main(["convert", str(folder / "model_c2.pkl"), str(out), "--cfg", str(folder / "config.yaml")]) == 0
    converted = read_checkpoint(out)
    assert converted.model_config.arch == "slowfast" and converted.model_config.num_classes == 10
    assert converted.caffe2_layout
    model = StateModule({n: tuple(t.shape) for n, t in pyth_state("tiny_k400_slowfast").items()})
    assert load_into(model, out).missing == []


def test_convert_refuses_a_config_the_weights_do_not_fit(tmp_path, capsys):
    """The file would be written and then load into no model."""
    parity = shared_path("fixtures", "parity")
    out = tmp_path / "x.safetensors"
    weights = str(parity / "tiny_x3d" / "model_c2.pkl")
    assert main(["convert", weights, str(out), "--cfg", str(parity / "tiny_k400_slowfast" / "config.yaml")]) == 2
    assert "do not fit" in capsys.readouterr().err and not out.exists()
    other_head = tmp_path / "config.yaml"  # the right model with another number of classes
    other_head.write_text((parity / "tiny_x3d" / "config.yaml").read_text().replace("  NUM_CLASSES: 400", "  NUM_CLASSES: 7"))
    assert main(["convert", weights, str(out), "--cfg", str(other_head)]) == 2
    assert "MODEL.NUM_CLASSES 7" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("case", ["tiny_x3d", "tiny_k400_slowfast"])
def test_real_model_from_stored_cfg_loads_both_formats(case):
    from vidact.models.build import build_model
    from vidact.weights.checkpoint import checkpoint_model_config

    folder = shared_path("fixtures", "parity", case)
    model = build_model(checkpoint_model_config(read_checkpoint(folder / "model.pyth")))
    expected = pyth_state(case)
    for source in ("model_c2.pkl", "model.pyth"):
        report = load_into(model, folder / source)
        assert report.missing == [] and report.unexpected == [] and report.shape_mismatched == []
        assert all(torch.equal(model.state_dict()[n], t) for n, t in expected.items() if not n.endswith("num_batches_tracked"))
    other = "tiny_k400_slowfast" if case == "tiny_x3d" else "tiny_x3d"
    with pytest.raises(VidactError, match="do not fit"):
        load_into(model, shared_path("fixtures", "parity", other, "model_c2.pkl"))


def test_a_checkpoint_given_as_the_config_is_named_as_such(tmp_path, capsys):
    parity = shared_path("fixtures", "parity", "tiny_k400_slowfast")
    converted = tmp_path / "k.safetensors"
    assert main(["convert", str(parity / "model.pyth"), str(converted)]) == 0
    assert main(["convert", str(converted), str(tmp_path / "again.safetensors"), "--cfg", str(converted)]) == 2
    error = capsys.readouterr().err.strip()
    assert "k.safetensors: not a YAML config" in error and "utf-8" not in error and len(error.splitlines()) == 1
    latin1 = tmp_path / "latin1.yaml"  # text, only not UTF-8: said so, not called binary
    latin1.write_bytes(b"# r\xe9glages\n" + (parity / "config.yaml").read_bytes())
    assert main(["convert", str(converted), str(tmp_path / "again.safetensors"), "--cfg", str(latin1)]) == 2
    assert "latin1.yaml: a config must be UTF-8 text (byte 3 is not)" in capsys.readouterr().err
