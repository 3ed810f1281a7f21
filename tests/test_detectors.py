"""Person detector backends: ONNX (FastestDet, YOLO layout), torchvision wrapper, precomputed CSV, factory."""

from __future__ import annotations

import math
import time
import warnings

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import shared_path

from vidact.detectors import create_detector
from vidact.detectors import onnx as onnx_detector
from vidact.detectors.onnx import OnnxPersonDetector, _decode_fastestdet, resize_area
from vidact.detectors.precomputed import PrecomputedDetector
from vidact.detectors.torchvision_frcnn import TorchvisionPersonDetector, cached_weights_path
from vidact.errors import VidactError

FASTESTDET = ("data", "weights", "fastestdet", "FastestDet.onnx")


def _frames_at(video: str, times: list[float]) -> list[tuple[float, np.ndarray]]:
    """The first decoded frame at or after each time (seconds), stopping after the last."""
    wanted = sorted(times)
    found = []
    with av.open(str(shared_path("data", "videos", video))) as container:
        for frame in container.decode(video=0):
            if frame.time + 1e-6 >= wanted[len(found)]:
                found.append((frame.time, frame.to_ndarray(format="rgb24")))
                if len(found) == len(wanted):
                    break
    assert len(found) == len(wanted), f"{video} ended before {wanted[len(found)]} s"
    return found


@pytest.fixture(scope="module")
def fastestdet() -> OnnxPersonDetector:
    return OnnxPersonDetector(shared_path(*FASTESTDET))


# ---------------------------------------------------------------- area resize


def test_area_resize_equals_block_mean_for_integer_factors():
    image = np.random.default_rng(0).integers(0, 256, (8, 12, 3), dtype=np.uint8)
    out = resize_area(image, 3, 4)  # 2x rows, 4x columns
    expected = image.reshape(4, 2, 3, 4, 3).mean(axis=(1, 3))
    np.testing.assert_array_equal(out, np.rint(expected))
    torch_area = F.interpolate(torch.from_numpy(image).permute(2, 0, 1)[None].float(), size=(4, 3), mode="area")
    np.testing.assert_array_equal(out, torch_area[0].permute(1, 2, 0).round().numpy())


def test_area_resize_keeps_a_constant_image_and_the_mean():
    image = np.full((432, 768, 3), 77, np.uint8)
    np.testing.assert_array_equal(resize_area(image, 352, 352), 77)
    noise = np.random.default_rng(1).integers(0, 256, (240, 426, 1), dtype=np.uint8)
    # Shrinking by area preserves the image mean (each input pixel's total weight is equal),
    # up to the rounding of each output pixel.
    assert resize_area(noise, 213, 100).mean() == pytest.approx(noise.mean(), abs=0.05)


# Each of OpenCV's INTER_AREA paths: 2x2 blocks (its integer kernel rounds half up), other
# integer blocks, non-integer shrinks (float sums in OpenCV's order), enlarging either axis or
# both (fixed-point bilinear), odd output sizes and channel counts.
_AREA_CASES = [
    ((704, 704, 3), (352, 352)),
    ((704, 704, 2), (352, 352)),
    ((1056, 704, 3), (352, 352)),
    ((1080, 1920, 3), (352, 352)),
    ((720, 1280, 3), (352, 352)),
    ((480, 640, 3), (352, 352)),
    ((353, 351, 4), (352, 352)),
    ((240, 320, 3), (352, 352)),
    ((200, 500, 3), (352, 352)),
    ((1000, 300, 1), (352, 352)),
    ((77, 55, 3), (333, 101)),
]


@pytest.mark.parametrize(("shape", "size"), _AREA_CASES)
def test_area_resize_equals_opencv_byte_for_byte(shape, size):
    cv2 = pytest.importorskip("cv2")  # OpenCV is not a vidact dependency; compare when present
    image = np.random.default_rng(2).integers(0, 256, shape, dtype=np.uint8)
    theirs = cv2.resize(image, size, interpolation=cv2.INTER_AREA).reshape(size[1], size[0], shape[2])
    np.testing.assert_array_equal(resize_area(image, *size), theirs)


@pytest.mark.parametrize("shape", [(704, 704), (480, 640), (240, 320), (200, 500)])
def test_fastestdet_input_without_opencv_equals_opencv(shape, monkeypatch):
    pytest.importorskip("cv2")
    frame = np.random.default_rng(3).integers(0, 256, (*shape, 3), dtype=np.uint8)
    with_opencv = onnx_detector._fastestdet_input(frame, (352, 352))
    monkeypatch.setattr(onnx_detector, "opencv", lambda: None)  # as if OpenCV were not installed
    np.testing.assert_array_equal(onnx_detector._fastestdet_input(frame, (352, 352)), with_opencv)


# ---------------------------------------------------------------- FastestDet decoding


def test_fastestdet_decoding_of_one_cell():
    output = np.full((85, 22, 22), -10.0, np.float32)
    output[0] = 0.0  # objectness
    output[5:] = 0.0
    row, col = 5, 10
    output[0, row, col] = 0.9
    output[1, row, col] = math.atanh(0.5)  # cx offset
    output[2, row, col] = 0.0
    output[3, row, col] = 0.0  # width: sigmoid(0) = half the image
    output[4, row, col] = math.log(0.25 / 0.75)  # height: a quarter of the image
    output[5, row, col] = 0.8  # person
    # A cell whose best class is not a person is dropped even with a high person score.
    output[0, 1, 1], output[5, 1, 1], output[7, 1, 1] = 0.9, 0.7, 0.95
    boxes, scores = _decode_fastestdet(output, width=440, height=220, person_class=0)
    keep = scores > 0.01
    assert keep.sum() == 1
    cx, cy = (col + 0.5) / 22 * 440, row / 22 * 220
    np.testing.assert_allclose(boxes[keep][0], [cx - 110, cy - 27.5, cx + 110, cy + 27.5], rtol=1e-5)
    assert scores[keep][0] == pytest.approx(0.9**0.6 * 0.8**0.4, rel=1e-6)


def test_yolo_outputs_of_every_export_layout_give_the_person():
    """[4+C, N] (YOLOv8/11), its transpose [N, 4+C] and an end-to-end [N, 6] (YOLO26):
    one person (cx 320, cy 240, 200x400 in a 640x640 input letterboxed from a 1280x960 frame)."""
    from vidact.detectors.onnx import _decode_yolo

    raw = np.zeros((84, 8400), np.float32)
    raw[:4, 7] = [320, 240, 200, 400]
    raw[4 + 0, 7] = 0.9  # person
    raw[4 + 2, 8] = 0.8  # a car elsewhere
    raw[:4, 8] = [100, 100, 50, 50]
    end_to_end = np.array([[220, 40, 420, 440, 0.9, 0], [75, 75, 125, 125, 0.8, 2]] + [[0] * 6] * 298, np.float32)
    scale, left, top = 0.5, 0, 80  # 1280x960 -> 640x480, padded by 80 rows above
    expected = np.array([[440, -80, 840, 720]], np.float32)
    for output, nms_due in ((raw, True), (raw.T.copy(), True), (end_to_end, False)):
        boxes, scores, needs_nms = _decode_yolo(output, scale, left, top, person_class=0)
        keep = scores > 0.5
        np.testing.assert_allclose(boxes[keep], expected)
        assert scores[keep].tolist() == pytest.approx([0.9]) and needs_nms == nms_due


def test_fastestdet_finds_people_on_keyframes(fastestdet):
    for video, times in [
        ("mmaction2_demo.mp4", [s + 0.5 for s in range(10)]),
        # the last second of this clip is a blurred camera pan: keyframes up to 8.5 s
        ("mmaction2_test_video_structuralize.mp4", [s + 0.5 for s in range(9)]),
    ]:
        frames = _frames_at(video, times)
        results = fastestdet([frame for _, frame in frames])
        for (seconds, frame), found in zip(frames, results):
            assert len(found) >= 1, f"no person in {video} at {seconds:.2f} s"
            height, width = frame.shape[:2]
            assert found.boxes.dtype == np.float32 and found.scores.dtype == np.float32
            assert (found.boxes[:, :2] >= 0).all() and (found.boxes[:, 2] <= width).all()
            assert (found.boxes[:, 3] <= height).all()
            assert (found.scores >= 0.5).all() and (np.diff(found.scores) <= 0).all()
    # two arm-wrestlers fill the demo clip's frame: at least one box covers most of it
    demo = fastestdet([_frames_at("mmaction2_demo.mp4", [3.5])[0][1]])[0]
    areas = (demo.boxes[:, 2] - demo.boxes[:, 0]) * (demo.boxes[:, 3] - demo.boxes[:, 1])
    assert areas.max() > 0.4 * 340 * 256


def test_the_detector_leaves_the_cores_alone_between_calls(fastestdet):
    """onnxruntime's threads spin after a call by default, ~40 ms of CPU a call on 2 cores, taken from
    decoding, which runs beside the detector and calls it once a second."""
    frame = _frames_at("mmaction2_demo.mp4", [0.5])[0][1]
    fastestdet([frame])
    time.sleep(0.2)  # the first call's threads still start up after it returns
    fastestdet([frame])
    start = time.process_time()
    time.sleep(0.2)
    assert time.process_time() - start < 0.01


def test_fastestdet_finds_nobody_on_the_empty_opening(fastestdet):
    # intel_one-by-one-person-detection.mp4 shows an empty room for its first 5.5 s (checked by eye).
    frames = _frames_at("intel_one-by-one-person-detection.mp4", [t / 2 for t in range(12)])
    assert all(len(found) == 0 for found in fastestdet([frame for _, frame in frames]))
    # ... and a person at 7 s, standing at the table from 9 s
    frames = _frames_at("intel_one-by-one-person-detection.mp4", [7.0, 12.0])
    assert [len(found) for found in fastestdet([frame for _, frame in frames])] == [1, 1]


def test_options_threshold_min_size_and_class(fastestdet):
    frame = _frames_at("mmaction2_demo.mp4", [0.5])[0][1]
    everyone = fastestdet([frame])[0]
    strict = OnnxPersonDetector(shared_path(*FASTESTDET), score_threshold=0.7)([frame])[0]
    assert 0 < len(strict) < len(everyone) and (strict.scores >= 0.7).all()
    large = OnnxPersonDetector(shared_path(*FASTESTDET), min_box_size=100)([frame])[0]
    sides = np.minimum(large.boxes[:, 2] - large.boxes[:, 0], large.boxes[:, 3] - large.boxes[:, 1])
    assert 0 < len(large) < len(everyone) and (sides >= 100).all()
    chairs = OnnxPersonDetector(shared_path(*FASTESTDET), person_class=56)([frame])[0]
    assert len(chairs) < len(everyone)


# ---------------------------------------------------------------- YOLO layout


def _constant_onnx(path, output: np.ndarray, input_size: int, input_dtype=np.float32) -> None:
    """An ONNX model whose output is ``output`` (of its dtype) whatever its [1, 3, S, S] input."""
    import onnx  # a dev dependency, used only to write test models
    from onnx import helper, numpy_helper

    output_type = helper.np_dtype_to_tensor_dtype(output.dtype)
    nodes = [
        helper.make_node("Constant", [], ["table"], value=numpy_helper.from_array(output, "table")),
        helper.make_node("Cast", ["images"], ["pixels"], to=output_type),
        helper.make_node("ReduceMax", ["pixels"], ["peak"], keepdims=0),
        helper.make_node("Constant", [], ["zero"], value=numpy_helper.from_array(np.zeros((), output.dtype), "zero")),
        helper.make_node("Mul", ["peak", "zero"], ["nothing"]),
        helper.make_node("Add", ["table", "nothing"], ["output0"]),
    ]
    input_type = helper.np_dtype_to_tensor_dtype(np.dtype(input_dtype))
    graph = helper.make_graph(
        nodes,
        "constant_detector",
        [helper.make_tensor_value_info("images", input_type, [1, 3, input_size, input_size])],
        [helper.make_tensor_value_info("output0", output_type, list(output.shape))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def test_yolo_layout_is_decoded_and_unletterboxed(tmp_path):
    candidates = np.zeros((1, 84, 120), np.float32)  # real exports hold thousands of candidates

    def put(index, cx, cy, w, h, person, other=0.0):
        candidates[0, :4, index] = [cx, cy, w, h]
        candidates[0, 4, index] = person
        candidates[0, 5, index] = other

    put(0, 320, 320, 100, 200, person=0.9)  # centre of the letterboxed image
    put(1, 322, 318, 100, 200, person=0.6)  # overlaps box 0: removed by NMS
    put(2, 100, 300, 40, 80, person=0.8)
    put(3, 500, 300, 40, 80, person=0.55, other=0.9)  # best class is not a person
    put(4, 500, 400, 40, 80, person=0.3)  # below the threshold
    path = tmp_path / "yolo.onnx"
    _constant_onnx(path, candidates, 640)

    detector = OnnxPersonDetector(path)
    assert detector.format == "yolo"
    frame = np.zeros((480, 1280, 3), np.uint8)  # letterbox: scale 0.5, 200 px bands on top and bottom
    found = detector([frame])[0]
    np.testing.assert_allclose(found.scores, [0.9, 0.8])
    # (cx - w/2, cy - h/2 - 200, ...) / 0.5
    np.testing.assert_allclose(found.boxes, [[540, 40, 740, 440], [160, 120, 240, 280]], rtol=1e-5)


def test_onnx_format_is_recognised_or_refused(tmp_path, fastestdet):
    assert fastestdet.format == "fastestdet" and fastestdet.input_size == (352, 352)
    odd = tmp_path / "odd.onnx"
    _constant_onnx(odd, np.zeros((1, 7), np.float32), 64)
    # the CLI has no format option: the message names the Python call that takes one
    with pytest.raises(VidactError, match=r"odd.onnx.*create_detector\(PATH, detector_format='fastestdet'"):
        OnnxPersonDetector(odd)
    assert OnnxPersonDetector(odd, output_format="yolo").format == "yolo"
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(VidactError, match="broken.onnx"):
        OnnxPersonDetector(broken)


def _yolov5_output(rows: list[tuple], num_classes: int = 80, candidates: int = 200) -> np.ndarray:
    """A YOLOv5 export's output [1, N, 5 + C]: per row (cx, cy, w, h, objectness, {class: score})."""
    output = np.zeros((1, candidates, 5 + num_classes), np.float32)
    for index, (cx, cy, w, h, objectness, classes) in enumerate(rows):
        output[0, index, :5] = [cx, cy, w, h, objectness]
        for cls, score in classes.items():
            output[0, index, 5 + cls] = score
    return output


def test_yolov5_layout_scores_objectness_times_class(tmp_path):
    """YOLOv5 keeps objectness apart from the class scores: score = obj * cls, best class of obj * cls,
    NMS at IoU 0.45 (its detect.py default)."""
    path = tmp_path / "yolov5.onnx"
    _constant_onnx(path, _yolov5_output([
        (320, 320, 100, 200, 0.95, {2: 0.60}),  # a car, however sure its objectness
        (100, 300, 40, 80, 0.9, {0: 0.95}),  # a person: 0.855
        (300, 100, 40, 80, 0.5, {0: 0.9}),  # 0.45, under the threshold
        (108, 300, 40, 80, 0.8, {0: 0.9}),  # 0.72, IoU 0.67 with the second: suppressed
        (500, 300, 40, 80, 0.7, {0: 0.8, 16: 0.3}),  # 0.56
        (500, 100, 40, 80, 0.9, {0: 0.6, 16: 0.7}),  # a dog
    ]), 640)
    detector = OnnxPersonDetector(path)
    assert detector.format == "yolov5"
    found = detector([np.zeros((480, 1280, 3), np.uint8)])[0]  # scale 0.5, 200 px bands on top and bottom
    np.testing.assert_allclose(found.scores, [0.9 * 0.95, 0.7 * 0.8], rtol=1e-6)
    np.testing.assert_allclose(found.boxes, [[160, 120, 240, 280], [960, 120, 1040, 280]], rtol=1e-5)
    # 84 columns is the transposed YOLOv8 layout: no objectness
    transposed_v8 = tmp_path / "v8t.onnx"
    _constant_onnx(transposed_v8, np.zeros((1, 200, 84), np.float32), 640)
    assert OnnxPersonDetector(transposed_v8).format == "yolo"


def test_yolov5_format_can_be_forced_for_other_class_counts(tmp_path):
    """A two-class YOLOv5 model's [1, N, 7] cannot be told from a transposed YOLOv8 output: forced, it is read right."""
    path = tmp_path / "two_classes.onnx"
    _constant_onnx(path, _yolov5_output([(100, 300, 40, 80, 0.6, {1: 0.9}), (500, 300, 40, 80, 0.9, {0: 0.8})],
                                        num_classes=2), 640)
    detector = create_detector(str(path), detector_format="yolov5")
    assert detector.format == "yolov5"
    found = detector([np.zeros((640, 640, 3), np.uint8)])[0]
    np.testing.assert_allclose(found.scores, [0.9 * 0.8], rtol=1e-6)
    np.testing.assert_allclose(found.boxes, [[480, 260, 520, 340]], rtol=1e-5)


def test_a_half_precision_onnx_model_is_fed_float16(tmp_path):
    """Ultralytics' half=True exports take and give float16."""
    candidates = np.zeros((1, 84, 120), np.float16)
    candidates[0, :5, 0] = [320, 320, 100, 200, 0.9]
    path = tmp_path / "half.onnx"
    _constant_onnx(path, candidates, 640, input_dtype=np.float16)
    found = OnnxPersonDetector(path)([np.zeros((640, 640, 3), np.uint8)])[0]
    np.testing.assert_allclose(found.scores, [np.float16(0.9)])
    np.testing.assert_allclose(found.boxes, [[270, 220, 370, 420]])
    quantized = tmp_path / "uint8_input.onnx"
    _constant_onnx(quantized, np.zeros((1, 84, 120), np.float32), 640, input_dtype=np.uint8)
    with pytest.raises(VidactError, match=r"uint8_input.onnx takes tensor\(uint8\)") as err:
        OnnxPersonDetector(quantized)
    assert "\n" not in str(err.value)


_BAD_FRAMES = {
    "grey HxW": np.zeros((48, 64), np.uint8),
    "RGBA": np.zeros((48, 64, 4), np.uint8),
    "float in [0, 1]": np.full((48, 64, 3), 0.5, np.float32),
    "0x0": np.zeros((0, 0, 3), np.uint8),
}


@pytest.mark.parametrize("name", _BAD_FRAMES)
@pytest.mark.parametrize("backend", ["onnx", "torchvision"])
def test_frames_that_are_not_rgb_uint8_are_one_line(tmp_path, backend, name):
    if backend == "onnx":
        path = tmp_path / "yolo.onnx"
        _constant_onnx(path, np.zeros((1, 84, 120), np.float32), 64)
        detector = OnnxPersonDetector(path)
    else:
        detector = TorchvisionPersonDetector(_FixedDetector())
    good = np.zeros((48, 64, 3), np.uint8)
    with pytest.raises(VidactError, match=r"RGB uint8 HxWx3 array, got shape .*; convert the frame") as err:
        detector([good, _BAD_FRAMES[name]])
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "option", [{"score_threshold": math.nan}, {"score_threshold": -1.0}, {"score_threshold": 1.5},
               {"min_box_size": math.nan}, {"min_box_size": -2.0}, {"min_box_size": math.inf}],
)
def test_factory_refuses_thresholds_out_of_range(tmp_path, option):
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("v1,0,0.1,0.1,0.5,0.9,,0.95\n")
    for spec in (str(shared_path(*FASTESTDET)), str(boxes)):
        with pytest.raises(VidactError, match=f"{next(iter(option)).replace('_', ' ')} {next(iter(option.values()))}"):
            create_detector(spec, **option)


# ---------------------------------------------------------------- torchvision


class _FixedDetector(torch.nn.Module):
    """Stands in for a torchvision detector: fixed outputs, records the images it saw."""

    def __init__(self):
        super().__init__()
        self.calls: list[list[tuple[int, ...]]] = []

    def forward(self, images):
        self.calls.append([tuple(image.shape) for image in images])
        assert all(0.0 <= float(image.min()) and float(image.max()) <= 1.0 for image in images)
        outputs = []
        for image in images:
            height, width = image.shape[1:]
            boxes = torch.tensor(
                [[10, 10, 60, 90], [0, 0, 5, 5], [20, 20, 80, 100], [30, 30, 70, 70], [-5, 10, width + 9, height + 3]],
                dtype=torch.float32,
            )
            outputs.append(
                {
                    "boxes": boxes,
                    "labels": torch.tensor([1, 1, 3, 1, 1]),
                    "scores": torch.tensor([0.9, 0.95, 0.99, 0.5, 0.8]),
                }
            )
        return outputs


def test_torchvision_wrapper_filters_and_batches():
    model = _FixedDetector()
    detector = TorchvisionPersonDetector(model, score_threshold=0.7, min_box_size=8, batch_size=2)
    frames = [np.full((120, 160, 3), i * 50, np.uint8) for i in range(5)]
    results = detector(frames)
    assert [len(batch) for batch in model.calls] == [2, 2, 1]
    assert model.calls[0][0] == (3, 120, 160)  # CHW, the frame's own size
    for found in results:
        # person boxes above 0.7 and at least 8 px: the first and the frame-filling one, clipped
        np.testing.assert_allclose(found.scores, [0.9, 0.8])
        np.testing.assert_allclose(found.boxes, [[10, 10, 60, 90], [0, 10, 160, 120]])
    assert len(TorchvisionPersonDetector(model, person_class=3, score_threshold=0.7)(frames[:1])[0]) == 1


def test_torchvision_wrapper_with_a_random_model_keeps_the_frame_coordinates():
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

    torch.manual_seed(0)
    model = fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, num_classes=3, box_score_thresh=0.0, min_size=64, max_size=96
    )
    detector = TorchvisionPersonDetector(model, score_threshold=0.0, person_class=1)
    frames = [np.random.default_rng(0).integers(0, 256, (90, 200, 3), dtype=np.uint8)]
    found = detector(frames)[0]
    assert len(found) > 0
    # a model working at 64-96 px still answers in the 200x90 frame's pixels
    assert found.boxes[:, 2].max() > 96 and (found.boxes[:, 2] <= 200).all() and (found.boxes[:, 3] <= 90).all()


def test_torchvision_weights_missing_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(VidactError) as err:
        TorchvisionPersonDetector.from_pretrained()
    message = str(err.value)
    assert "\n" not in message
    assert str(tmp_path / "checkpoints" / "fasterrcnn_resnet50_fpn_v2_coco-dd69338a.pth") in message
    assert "https://download.pytorch.org/models/fasterrcnn_resnet50_fpn_v2_coco-dd69338a.pth" in message
    assert cached_weights_path() == tmp_path / "checkpoints" / "fasterrcnn_resnet50_fpn_v2_coco-dd69338a.pth"


# ---------------------------------------------------------------- precomputed CSV


def test_precomputed_ava_ground_truth_rows():
    path = shared_path("data", "ava", "real_v2.1", "ava_val_v2.1_head27163.csv")
    detector = PrecomputedDetector(path, video_id="1j20qq1JyX4", starting_second=900)
    assert detector.timestamps[0] == 2.0
    found = detector.detections_at(2.0, width=1000, height=500)
    # person 1 is listed twice (actions 12 and 79): one box
    rows = [line.split(",") for line in path.read_text().splitlines() if line.startswith("1j20qq1JyX4,0902,")]
    unique = {tuple(map(float, row[2:6])) for row in rows}
    assert len(found) == len(unique) and len(rows) > len(unique)
    assert [2.0, 59.0, 714.0, 488.5] in found.boxes.round(1).tolist()  # 0.002,0.118,0.714,0.977
    assert (found.scores == 1.0).all()
    assert len(detector.detections_at(2.5, 1000, 500)) == 0  # no row within the tolerance
    frames = [np.zeros((500, 1000, 3), np.uint8)] * 2
    assert [len(d) for d in detector(frames, timestamps=[2.0, 2.02])] == [len(unique)] * 2


def test_precomputed_prediction_rows_threshold_and_errors(tmp_path):
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("v1,0,0.1,0.1,0.5,0.9,,0.95\nv1,0,0.6,0.1,0.7,0.2,,0.40\nv1,1,0.1,0.1,0.5,0.9,,0.9\n")
    detector = create_detector(f"csv:{boxes}", score_threshold=0.5)
    found = detector.detections_at(0.0, 200, 100)
    np.testing.assert_allclose(found.boxes, [[20, 10, 100, 90]])
    np.testing.assert_allclose(found.scores, [0.95])
    assert len(create_detector(str(boxes), min_box_size=15).detections_at(0.0, 200, 100)) == 1
    two = tmp_path / "two.csv"
    two.write_text("a,0,0,0,1,1\nb,0,0,0,1,1\n")
    with pytest.raises(VidactError, match="2 videos"):
        PrecomputedDetector(two)
    bad = tmp_path / "bad.csv"
    bad.write_text("a,zero,0,0,1,1\n")
    with pytest.raises(VidactError, match=r"bad.csv:1"):
        PrecomputedDetector(bad)


def test_boxes_numbered_from_ava_second_900_without_a_start_are_noticed(tmp_path):
    """Without --boxes-start 900 no keyframe matches and the run ends with "no person found"."""
    from vidact.pipeline.detect import DetectNotice

    boxes = tmp_path / "boxes.csv"
    boxes.write_text("v1,0902,0.1,0.1,0.5,0.9,,0.95\nv1,0903,0.1,0.1,0.5,0.9,,0.9\n")
    with pytest.warns(DetectNotice, match="box times start at 902 s.*pass --boxes-start 900"):
        PrecomputedDetector(boxes)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DetectNotice)
        found = PrecomputedDetector(boxes, starting_second=900).detections_at(2.0, 200, 100)
        assert len(found) == 1
        boxes.write_text("v1,2,0.1,0.1,0.5,0.9,,0.95\n")
        PrecomputedDetector(boxes)


# ---------------------------------------------------------------- factory


def test_factory_specs(tmp_path, monkeypatch):
    onnx_detector = create_detector(str(shared_path(*FASTESTDET)), score_threshold=0.6, min_box_size=4)
    assert isinstance(onnx_detector, OnnxPersonDetector)
    assert (onnx_detector.format, onnx_detector.score_threshold, onnx_detector.min_box_size) == ("fastestdet", 0.6, 4)
    with pytest.raises(VidactError, match="FastestDet.onnx"):
        create_detector("fastestdet")  # VIDACT_HOME is an empty test folder
    with pytest.raises(VidactError, match="yolo11n.onnx"):
        create_detector("yolo")
    with pytest.raises(VidactError, match="unknown detector 'nonsense'"):
        create_detector("nonsense")
    with pytest.raises(VidactError, match="missing.onnx"):
        create_detector(str(tmp_path / "missing.onnx"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(VidactError, match="not cached"):
        create_detector()


def test_nms_sees_boxes_before_they_are_clipped_to_the_frame():
    """Two persons at the left edge: as predicted they overlap little (IoU 0.31), clipped a lot (0.91)."""
    from vidact.detectors._common import finish_detections

    boxes = np.array([[-150, 0, 100, 200], [0, 0, 110, 200], [5, 5, 108, 200]], np.float32)
    found = finish_detections(boxes, np.array([0.9, 0.8, 0.7], np.float32), width=320, height=240,
                              score_threshold=0.5, min_box_size=0, nms_iou=0.45)
    assert found.boxes.tolist() == [[0, 0, 100, 200], [0, 0, 110, 200]]  # the third overlaps the second
    assert found.scores.tolist() == pytest.approx([0.9, 0.8])


def test_torchvision_thresholds_under_its_own_floor_are_honoured():
    """torchvision's Faster R-CNN drops boxes under 0.05 inside the model: a lower threshold lowers it."""
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

    model = fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, num_classes=91)
    assert model.roi_heads.score_thresh == 0.05
    TorchvisionPersonDetector(model, score_threshold=0.02)
    assert model.roi_heads.score_thresh == 0.02


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without a GPU")
def test_a_detector_on_cuda_without_a_gpu_is_one_line():
    with pytest.raises(VidactError, match="no CUDA GPU here"):
        create_detector(str(shared_path("data", "weights", "fastestdet", "FastestDet.onnx")), device="cuda")
