"""Every zoo entry: builds from its config, and its metadata tells the truth."""

import re

import pytest
import torch

import vidact
from vidact.api import load_labels
from vidact.data.label_sets import LABEL_SETS
from vidact.errors import VidactError
from vidact.models import build_model
from vidact.models.flops import model_gflops
from vidact.weights.zoo import ZOO, get_entry

from conftest import shared_path


@pytest.mark.parametrize("name", sorted(ZOO))
def test_entry_cost_matches_built_model(name):
    entry = ZOO[name]
    with torch.device("meta"):
        model = build_model(entry.config)
    assert sum(p.numel() for p in model.parameters()) == entry.params
    assert model_gflops(model, entry.config) == pytest.approx(entry.gflops, abs=0.005)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_entry_metadata(name):
    entry = ZOO[name]
    assert entry.url.startswith("https://dl.fbaipublicfiles.com/")
    assert len(LABEL_SETS[entry.labels]) == entry.config.num_classes
    assert (entry.task == "ava") == entry.config.detection.enable
    assert entry.input.num_pathways == entry.config.num_pathways


def _reference_gflops():
    """GFLOPs in the headers of the reference key listings, by config file name."""
    found = {}
    for listing in shared_path("fixtures", "keys").glob("*.txt"):
        header = listing.read_text().splitlines()[0]
        if "gflops=" in header:
            config = re.search(r"config=([^;]+);", header).group(1).rsplit("/", 1)[-1]
            found[config] = float(re.search(r"gflops=([\d.]+)", header).group(1))
    return found


def test_costs_agree_with_reference_listings():
    reference = _reference_gflops()
    pairs = {
        "slowfast_8x8_r50": "c2.yaml",
        "ava_slowfast_32x2_r101_v2.2": "c3.yaml",
        "x3d_m": "X3D_M.yaml",
        "x3d_l": "X3D_L.yaml",
        "i3d_nln_8x8_r50": "I3D_NLN_8x8_R50.yaml",
        "ava_slowfast_64x2_r101_v2.2": "SLOWFAST_64x2_R101_50_50.yaml",
    }
    for name, config in pairs.items():
        assert ZOO[name].gflops == pytest.approx(reference[config], rel=0.02), name


def test_unknown_name_is_a_clear_error():
    with pytest.raises(VidactError, match="unknown model 'slowfast_9x9'"):
        get_entry("slowfast_9x9")


@pytest.mark.parametrize("spec", ["nope/model.pyth", "converted.safetensors", "missing.yaml"])
def test_a_missing_checkpoint_or_config_path_says_so(spec):
    with pytest.raises(VidactError, match=f"^{re.escape(spec)}: no such file") as caught:
        vidact.create_model(spec)
    assert "unknown model" not in str(caught.value)


def test_list_models_refuses_an_unknown_task():
    assert vidact.list_models("Kinetics") == vidact.list_models("kinetics") != []
    with pytest.raises(VidactError, match="unknown task 'kinetics400'.*ava, kinetics"):
        vidact.list_models("kinetics400")


@pytest.mark.parametrize("num_classes", [0, -3, 2.5, True])
def test_num_classes_must_be_a_positive_int(num_classes):
    with pytest.raises(VidactError, match="num_classes must be a whole number of at least 1"):
        vidact.create_model("x3d_xs", num_classes=num_classes)


def test_create_model_from_name_carries_its_entry():
    model = vidact.create_model("x3d_xs", num_classes=7)
    assert model.config.num_classes == 7
    assert model.zoo_entry.name == "x3d_xs"
    assert load_labels(model) is None  # 7 classes: the Kinetics names no longer apply
    assert load_labels(vidact.create_model("x3d_xs")) == LABEL_SETS["kinetics400"]


def test_default_weights_need_a_zoo_name(tmp_path):
    with pytest.raises(VidactError, match="zoo model name"):
        vidact.create_model(ZOO["x3d_xs"].config, weights="default")


def test_docs_table_is_generated_from_the_zoo():
    from pathlib import Path

    from vidact.cli.models import markdown_table

    docs = (Path(__file__).resolve().parents[1] / "docs" / "models.md").read_text()
    assert docs.endswith(markdown_table()), "regenerate docs/models.md with `vidact models --markdown`"
