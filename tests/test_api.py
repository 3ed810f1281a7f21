"""The Python API's front door: create_model's arguments, model inputs, detect/classify wrappers."""

import inspect
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import vidact
import vidact.api
import vidact.models
from vidact.errors import VidactError
from vidact.pipeline.detect import build_detector

from conftest import shared_path


@pytest.fixture
def no_build(monkeypatch):
    """Fail any test that builds a model: bad weights must be refused first (an R101 takes seconds)."""
    def build_model(config):
        raise AssertionError("the model was built before weights were checked")

    monkeypatch.setattr(vidact.models, "build_model", build_model)


@pytest.mark.parametrize("spelling", ["DEFAULT", "Default"])
def test_weights_default_in_any_case_is_the_zoo_checkpoint(monkeypatch, no_build, spelling):
    fetched = []

    def fetch_weights(entry, *, progress=True):
        fetched.append(entry.name)
        raise VidactError("offline")

    monkeypatch.setattr(vidact.api, "fetch_weights", fetch_weights)
    with pytest.raises(VidactError, match="offline"):
        vidact.create_model("x3d_xs", weights=spelling)
    assert fetched == ["x3d_xs"]


def test_weights_zoo_name_says_how_to_load_it(no_build):
    with pytest.raises(VidactError) as err:
        vidact.create_model("x3d_xs", weights="x3d_m")
    assert str(err.value) == "'x3d_m' is a zoo model name; use create_model('x3d_m', weights='default')"


@pytest.mark.parametrize("weights", ["nope/x3d_m.pyth", Path("x3d_m.pyth")])
def test_weights_missing_file_is_refused_before_building(tmp_path, monkeypatch, no_build, weights):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(VidactError, match=r"no such file; weights takes None, 'default' or a checkpoint path"):
        vidact.create_model("x3d_xs", weights=weights)


def test_weights_and_num_classes_are_keyword_only(no_build):
    with pytest.raises(TypeError, match="positional argument"):
        vidact.create_model("x3d_xs", True)
    with pytest.raises(TypeError, match="positional argument"):
        vidact.create_model("x3d_xs", None, 10)


@pytest.mark.parametrize("weights, hint", [(True, "timm's pretrained=True is weights='default'"), (1, "got 1")])
def test_weights_of_another_type_is_a_one_line_error(no_build, weights, hint):
    with pytest.raises(VidactError, match="weights must be None, 'default' or a checkpoint path") as err:
        vidact.create_model("x3d_xs", weights=weights)
    assert hint in str(err.value)


@pytest.mark.parametrize("case", ["tiny_x3d", "tiny_k400_slowfast"])
def test_model_called_with_one_tensor_says_to_pass_a_list(case):
    model = vidact.create_model(shared_path("fixtures", "parity", case, "config.yaml"))
    with pytest.raises(TypeError, match=r"pass a list of pathway tensors, e\.g\. model\(\[clip\]\)"):
        model(torch.zeros(1, 3, 4, 32, 32))


def test_detector_path_object_is_a_spec():
    onnx = shared_path("data", "weights", "fastestdet", "FastestDet.onnx")
    assert type(build_detector(onnx)) is type(build_detector(str(onnx)))


@pytest.mark.parametrize("wrapper, target", [("detect", "vidact.pipeline.detect:detect"),
                                             ("classify", "vidact.pipeline.classify:classify")])
def test_wrappers_show_the_real_signature(wrapper, target):
    module, name = target.split(":")
    real = getattr(__import__(module, fromlist=[name]), name)
    shown = getattr(vidact, wrapper)

    def parameters(function):  # annotations aside: the wrapper may state a wider accepted type
        return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]

    assert parameters(shown) == parameters(real)
    assert f"vidact.pipeline.{wrapper}.{wrapper}" in shown.__doc__  # where the arguments are documented


def test_import_vidact_leaves_the_pipelines_unimported():
    heavy = ["vidact.pipeline.detect", "vidact.pipeline.classify", "av", "cv2", "matplotlib", "onnxruntime"]
    code = f"import sys, vidact; print([m for m in {heavy!r} if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
