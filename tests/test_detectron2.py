"""Detectron2 Faster R-CNN without Detectron2: parity with Detectron2's own detections on the fixture."""

from __future__ import annotations

import pickle
import sys
import types
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import shared_path
from vidact.detectors.base import Detections, PersonDetector
from vidact.detectors.detectron2_frcnn import Detectron2FasterRCNN, Detectron2PersonDetector, _shortest_edge_size
from vidact.errors import VidactError
from vidact.weights.detectron2 import (
    DETECTRON2_ZOO,
    detector_spec_from_demo,
    load_detectron2_state_dict,
    resolve_detectron2_checkpoint,
)
from vidact.weights.safe_pickle import UnsafePickleError
from torchvision.ops import box_iou

FIXTURE = ("fixtures", "detectron2")


@pytest.fixture(scope="module")
def expected():
    return dict(np.load(shared_path(*FIXTURE, "expected.npz"), allow_pickle=False))


@pytest.fixture(scope="module")
def debug():
    return dict(np.load(shared_path(*FIXTURE, "debug_extra.npz"), allow_pickle=False))


@pytest.fixture(scope="module")
def detector() -> Detectron2PersonDetector:
    return Detectron2PersonDetector.from_checkpoint(shared_path(*FIXTURE, "model_final_random_small.pkl"))


@pytest.fixture(scope="module")
def images(expected) -> list[np.ndarray]:
    return [np.asarray(Image.open(shared_path(*FIXTURE, "images", str(name))).convert("RGB")) for name in expected["image_files"]]


@pytest.fixture(scope="module")
def outputs(detector, images):
    return [detector.detect_all_classes(image) for image in images]


def match_one_to_one(boxes_a, classes_a, boxes_b, classes_b, min_iou: float) -> list[tuple[int, int]]:
    """Pairs (i, j) of same-class boxes, each index used once, greedily by IoU; unmatched are left out."""
    iou = box_iou(torch.as_tensor(boxes_a), torch.as_tensor(boxes_b)).numpy()
    iou[np.asarray(classes_a)[:, None] != np.asarray(classes_b)[None, :]] = -1.0
    pairs = []
    while iou.size and iou.max() >= min_iou:
        i, j = np.unravel_index(np.argmax(iou), iou.shape)
        pairs.append((int(i), int(j)))
        iou[i, :] = -1.0
        iou[:, j] = -1.0
    return pairs


@pytest.mark.parametrize("index", [0, 1, 2])
def test_detections_match_detectron2(outputs, expected, index):
    out = outputs[index]
    boxes, scores, classes = out.boxes.numpy(), out.scores.numpy(), out.classes.numpy()
    want_boxes, want_scores, want_classes = (expected[f"{k}_{index}"] for k in ("boxes", "scores", "classes"))
    assert len(scores) == len(want_scores)
    pairs = match_one_to_one(boxes, classes, want_boxes, want_classes, min_iou=0.99)
    assert len(pairs) == len(want_scores)
    got, want = zip(*pairs)
    assert np.abs(boxes[list(got)] - want_boxes[list(want)]).max() <= 1e-2
    assert np.abs(scores[list(got)] - want_scores[list(want)]).max() <= 1e-4
    assert out.classes.dtype == torch.int64 and boxes.dtype == np.float32


@pytest.mark.parametrize("index", [0, 1, 2])
def test_rpn_proposals_match_as_sets(outputs, debug, index):
    out = outputs[index]
    want_boxes = debug[f"rpn_proposals_{index}"]
    want_logits = debug[f"rpn_objectness_logits_{index}"]
    assert out.proposals.shape == want_boxes.shape
    iou = box_iou(torch.as_tensor(want_boxes), out.proposals).numpy()
    partner = iou.argmax(axis=1)
    assert (iou.max(axis=1) >= 0.999).all()
    assert np.abs(out.proposal_logits.numpy()[partner] - want_logits).max() <= 1e-3


@pytest.mark.parametrize("index", [0, 1, 2])
def test_resize_is_detectron2s(detector, images, expected, debug, index):
    resized = detector.model.resize(images[index][:, :, ::-1])
    assert resized.shape[:2] == tuple(expected[f"resized_hw_{index}"])
    np.testing.assert_array_equal(resized, debug[f"resized_bgr_uint8_{index}"])


def test_shortest_edge_size_rounds_like_detectron2():
    assert _shortest_edge_size(256, 340, 800, 1333) == (800, 1063)  # 1062.5 rounds up
    assert _shortest_edge_size(240, 426, 800, 1333) == (751, 1333)  # capped by the long side
    assert _shortest_edge_size(1333, 800, 800, 1333) == (1333, 800)  # portrait, unchanged


def test_person_detector_returns_confident_persons_in_frame_pixels(detector, images, expected):
    # Also checks that putting the threshold inside the model (as PySlowFast does with
    # SCORE_THRESH_TEST) gives Detectron2's 0.05-threshold persons filtered afterwards.
    assert isinstance(detector, PersonDetector)
    default = detector.model.config
    detector.model.config = replace(default, score_thresh=detector.score_threshold)
    try:
        (result,) = detector([images[0]])
    finally:
        detector.model.config = default
    assert isinstance(result, Detections)
    want = (expected["classes_0"] == 0) & (expected["scores_0"] > detector.score_threshold)
    assert 0 < want.sum() < (expected["classes_0"] == 0).sum()  # the threshold must matter here
    assert len(result) == want.sum()
    order = np.argsort(-result.scores, kind="stable")
    np.testing.assert_allclose(result.boxes[order], expected["boxes_0"][want], atol=1e-2)
    np.testing.assert_allclose(result.scores[order], expected["scores_0"][want], atol=1e-4)
    assert result.boxes.dtype == np.float32 and result.scores.dtype == np.float32


@pytest.mark.parametrize("frame", [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8, 3), np.float32)])
def test_bad_frame_is_a_user_error(detector, frame):
    with pytest.raises(VidactError, match="RGB uint8"):
        detector([frame])


def test_architecture_is_read_from_checkpoint_shapes(detector):
    model = detector.model
    bottom_up = model.backbone.bottom_up
    assert [len(getattr(bottom_up, f"res{k}")) for k in range(2, 6)] == [3, 4, 6, 3]
    assert bottom_up.stem.conv1.out_channels == 16 and model.backbone.fpn_output2.out_channels == 64
    assert model.roi_heads.box_head.fc1.in_features == 64 * 7 * 7 and model.roi_heads.box_head.fc1.out_features == 256
    first = bottom_up.res3[0]  # MSRA ResNet: the stride sits on the 1x1 convolution
    assert first.conv1.stride == (2, 2) and first.conv2.stride == (1, 1)


def test_depth_101_and_class_agnostic_layout_round_trip():
    tiny = Detectron2FasterRCNN(
        stem_channels=4, stages=[(3, 2, 8), (4, 4, 16), (23, 4, 32), (3, 8, 64)], fpn_channels=8, fc_dim=16, num_classes=1, num_bbox_reg_classes=1
    )
    rebuilt = Detectron2FasterRCNN.from_state_dict(tiny.state_dict())
    assert len(rebuilt.backbone.bottom_up.res4) == 23
    assert rebuilt.roi_heads.box_predictor.cls_score.out_features == 2
    assert rebuilt.roi_heads.box_predictor.bbox_pred.out_features == 4
    out = rebuilt(np.full((64, 96, 3), 128, np.uint8), (32, 48))
    assert out.boxes.shape[1] == 4 and (out.boxes[:, 2] <= 48).all() and (out.boxes[:, 3] <= 32).all()


@pytest.fixture(scope="module")
def fixture_state():
    return load_detectron2_state_dict(shared_path(*FIXTURE, "model_final_random_small.pkl"))


def test_pkl_loads_every_array_bit_for_bit(fixture_state):
    raw = pickle.load(open(shared_path(*FIXTURE, "model_final_random_small.pkl"), "rb"), encoding="latin1")["model"]
    assert list(fixture_state) == list(raw) and len(raw) == 295
    for name, array in raw.items():
        assert torch.equal(fixture_state[name], torch.from_numpy(array)), name


def test_pth_checkpoint_loads_like_the_pkl(fixture_state, tmp_path):
    path = tmp_path / "model_final.pth"
    torch.save({"model": fixture_state, "iteration": 270000, "__author__": "someone"}, path)
    loaded = load_detectron2_state_dict(path)
    assert loaded.keys() == fixture_state.keys()
    assert all(torch.equal(loaded[k], fixture_state[k]) for k in loaded)


def test_mask_rcnn_heads_and_old_buffers_are_ignored(fixture_state):
    state = dict(fixture_state)
    state["roi_heads.mask_head.mask_fcn1.weight"] = torch.zeros(4, 4, 3, 3)
    state["pixel_mean"] = torch.zeros(3, 1, 1)
    state["proposal_generator.anchor_generator.cell_anchors.0"] = torch.zeros(3, 4)
    model = Detectron2FasterRCNN.from_state_dict(state)
    assert "pixel_mean" not in model.state_dict()


def test_incomplete_or_foreign_checkpoints_are_user_errors(fixture_state):
    state = dict(fixture_state)
    del state["backbone.fpn_output3.bias"]
    with pytest.raises(VidactError, match="missing.*fpn_output3"):
        Detectron2FasterRCNN.from_state_dict(state, source="ckpt.pkl")
    c4 = {k: v for k, v in fixture_state.items() if not k.startswith("backbone.fpn")}
    with pytest.raises(VidactError, match="FPN"):
        Detectron2FasterRCNN.from_state_dict(c4, source="c4.pkl")


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickle_with_code_payload_executes_nothing(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "model_final_evil.pkl"
    path.write_bytes(pickle.dumps({"model": {"w": _Payload(marker)}}, protocol=2))
    with pytest.raises(UnsafePickleError, match="model_final_evil.pkl"):
        load_detectron2_state_dict(path)
    assert not marker.exists()


def test_pth_with_code_payload_executes_nothing(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "model_final_evil.pth"
    torch.save({"model": {"w": _Payload(marker)}}, path)
    with pytest.raises(VidactError, match="model_final_evil.pth"):
        load_detectron2_state_dict(path)
    assert not marker.exists()


def test_zoo_names_and_urls_go_through_the_download_cache(monkeypatch, tmp_path):
    fetched = []
    fake = types.ModuleType("vidact.weights.download")
    fake.download = lambda url, *args, **kwargs: fetched.append(url) or tmp_path / "x.pkl"
    monkeypatch.setitem(sys.modules, "vidact.weights.download", fake)
    resolve_detectron2_checkpoint("faster_rcnn_R_50_FPN_3x")
    resolve_detectron2_checkpoint("detectron2://COCO-Detection/faster_rcnn_R_101_FPN_3x/137851257/model_final_f6e8b1.pkl")
    assert fetched == [
        "https://dl.fbaipublicfiles.com/detectron2/COCO-Detection/faster_rcnn_R_50_FPN_3x/137849458/model_final_280758.pkl",
        DETECTRON2_ZOO["faster_rcnn_R_101_FPN_3x"].url,
    ]
    with pytest.raises(VidactError, match="no_such_model.*faster_rcnn_R_50_FPN_3x"):
        resolve_detectron2_checkpoint("no_such_model")


def test_pyslowfast_demo_keys_map_to_the_zoo():
    default = detector_spec_from_demo(
        "COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml",
        "detectron2://COCO-Detection/faster_rcnn_R_50_FPN_3x/137849458/model_final_280758.pkl",
        0.9,
    )
    assert default == ("faster_rcnn_R_50_FPN_3x", 0.9)
    mask = detector_spec_from_demo("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml", "/data/mask.pkl", 0.7)
    assert mask == ("/data/mask.pkl", 0.7)
    for cfg in ("COCO-Detection/faster_rcnn_R_50_C4_3x.yaml", "COCO-Detection/faster_rcnn_X_101_32x8d_FPN_3x.yaml", "COCO-Detection/retinanet_R_50_FPN_3x.yaml"):
        with pytest.raises(VidactError, match="DETECTRON2_CFG"):
            detector_spec_from_demo(cfg, "x.pkl", 0.9)


def test_threshold_below_the_config_lowers_the_models_own():
    pkl = shared_path(*FIXTURE, "model_final_random_small.pkl")
    assert Detectron2PersonDetector.from_checkpoint(pkl, score_threshold=0.02).model.config.score_thresh == 0.02
    assert Detectron2PersonDetector.from_checkpoint(pkl, score_threshold=0.9).model.config.score_thresh == 0.05
    with pytest.raises(VidactError, match="threshold"):
        Detectron2PersonDetector.from_checkpoint(pkl, score_threshold=1.5)
