"""The public entry point reproduces PySlowFast's outputs from both checkpoint formats."""

import numpy as np
import pytest
import torch

import vidact
from vidact.weights.checkpoint import convert_to_native

from conftest import shared_path

CASES = ["tiny_k400_slowfast", "tiny_ava_slowfast_r101_nln", "tiny_x3d", "tiny_slow_i3d_nln"]


def _run(model, case):
    inputs = np.load(case / "inputs.npz")
    pathways = [torch.from_numpy(inputs[k]) for k in ("pathway0", "pathway1") if k in inputs.files]
    args = (pathways, torch.from_numpy(inputs["boxes"])) if "boxes" in inputs.files else (pathways,)
    with torch.no_grad():
        return model.eval()(*args).numpy()


@pytest.mark.parametrize("weights", ["model.pyth", "model_c2.pkl"])
@pytest.mark.parametrize("name", CASES)
def test_create_model_reproduces_reference(name, weights):
    case = shared_path("fixtures", "parity", name)
    model = vidact.create_model(case / "config.yaml", weights=case / weights)
    report = model.load_report
    assert not report.missing and not report.shape_mismatched and not report.head_reinitialised
    expected = np.load(case / "expected.npz")["output"]
    assert np.abs(_run(model, case) - expected).max() <= 1e-5


def test_native_conversion_keeps_outputs(tmp_path):
    case = shared_path("fixtures", "parity", "tiny_k400_slowfast")
    native = convert_to_native(case / "model_c2.pkl", tmp_path / "tiny.safetensors", cfg_path=case / "config.yaml")
    model = vidact.create_model(case / "config.yaml", weights=native)
    expected = np.load(case / "expected.npz")["output"]
    assert np.abs(_run(model, case) - expected).max() <= 1e-5


def test_head_of_another_size_is_reinitialised():
    case = shared_path("fixtures", "parity", "tiny_k400_slowfast")
    with pytest.warns(UserWarning, match="re-initialised"):
        model = vidact.create_model(case / "config.yaml", weights=case / "model.pyth", num_classes=3)
    assert model.load_report.head_reinitialised
    assert model.head.projection.out_features == 3
