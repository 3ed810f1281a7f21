"""Person detection with an ONNX model through onnxruntime: FastestDet, YOLOv5 and YOLOv8/YOLO11 exports.

Three output layouts are understood, recognised from the model's output shape or forced
with ``output_format``:

- ``"fastestdet"`` (FastestDet, output ``[1, 85, H, W]``): the BGR frame is resized to the
  model input (352x352) with area interpolation, /255. Each grid cell holds objectness,
  two centre offsets (tanh), width and height relative to the image (sigmoid) and 80 class
  scores; score = obj^0.6 * max(cls)^0.4; NMS at IoU 0.45.
- ``"yolo"`` (Ultralytics YOLOv8/YOLO11 ONNX export, output ``[1, 4 + C, N]``): the RGB frame
  is letterboxed to the model input (640x640, grey 114 padding), /255. Each of the N
  candidates holds cx, cy, w, h in input pixels and C class scores; NMS at IoU 0.7
  (Ultralytics' default). The transposed layout ``[1, N, 4 + C]`` is read too, and an
  end-to-end export ``[1, N, 6]`` (YOLO26's default, NMS inside the model: x1, y1, x2, y2,
  score, class per row) gets no second NMS.
- ``"yolov5"`` (YOLOv5 ONNX export, output ``[1, N, 5 + C]``, recognised when C is COCO's 80):
  input as for ``"yolo"``; each row holds cx, cy, w, h, objectness and C class scores, and as
  in YOLOv5's ``non_max_suppression`` a class scores objectness x class score; NMS at IoU
  0.45 (YOLOv5's default).

Models taking float16 (``half=True`` exports) are fed float16. A candidate is a person when its
best class is ``person_class``, as in the reference runtimes. NMS runs on the person candidates
alone, before the boxes are clipped to the frame, as FastestDet's PyTorch post-processing
(class-aware NMS) and Ultralytics do; FastestDet's ONNX example runs one NMS over all classes,
where a stronger box of another class can suppress a person.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vidact.detectors._common import check_frame, finish_detections, import_optional
from vidact.detectors.base import Detections
from vidact.errors import VidactError
from vidact.optional import opencv

FORMATS = ("fastestdet", "yolo", "yolov5")
_DEFAULT_INPUT_SIZE = {"fastestdet": 352, "yolo": 640, "yolov5": 640}
_DEFAULT_NMS_IOU = {"fastestdet": 0.45, "yolo": 0.7, "yolov5": 0.45}
_COCO_CLASSES = 80
_INPUT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}
_LETTERBOX_FILL = 114
# OpenCV's fixed-point interpolation: weights are scaled by 2**11 and rounded to int16.
_CV_COEF_SCALE = 1 << 11


@functools.lru_cache(maxsize=16)
def _area_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Input indices and float32 weights (out_size, taps) of OpenCV's area shrink of one axis.

    A transcription of OpenCV's ``computeResizeAreaTab``: output pixel ``o`` covers the input
    span ``[o * s, (o + 1) * s)`` (``s = in / out``, inverted as OpenCV does), its first and
    last input pixels weighted by the part they overlap, all divided by the span width. The
    taps keep OpenCV's order, as the sums they feed are rounded in that order; pixels with
    fewer taps are padded with zero weights, which leave a float sum unchanged.
    """
    scale = 1.0 / (out_size / in_size)
    taps: list[list[tuple[int, float]]] = []
    for o in range(out_size):
        start = o * scale
        end = start + scale
        span = min(scale, in_size - start)
        first = math.ceil(start)
        last = min(math.floor(end), in_size - 1)
        first = min(first, last)
        pixel_taps = []
        if first - start > 1e-3:
            pixel_taps.append((first - 1, (first - start) / span))
        pixel_taps.extend((i, 1.0 / span) for i in range(first, last))
        if end - last > 1e-3:
            pixel_taps.append((last, min(end - last, 1.0, span) / span))
        taps.append(pixel_taps)
    index = np.zeros((out_size, max(map(len, taps))), np.int64)
    weights = np.zeros(index.shape, np.float32)
    for o, pixel_taps in enumerate(taps):
        for t, (i, weight) in enumerate(pixel_taps):  # weights computed in double, stored as float32
            index[o, t], weights[o, t] = i, weight
    index.flags.writeable = weights.flags.writeable = False  # shared through the cache
    return index, weights


def _shrink_by_area(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """OpenCV's INTER_AREA shrink by a non-integer factor (``ResizeArea_Invoker``), uint8 out.

    Like OpenCV, every input row is first reduced along x, then the rows are combined, each
    step a float32 multiply then add, in tap order; any other order rounds a few values differently.
    """
    src_h, src_w, channels = image.shape
    rows, row_weights = _area_taps(src_h, height)
    cols, col_weights = _area_taps(src_w, width)
    # Pixels flattened with their channels, so that each tap is a single gather of columns.
    pixels = image.reshape(src_h, src_w * channels).astype(np.float32)
    cols = cols[:, :, None] * channels + np.arange(channels)  # (width, taps, channels)
    cols = cols.transpose(1, 0, 2).reshape(-1, width * channels)
    col_weights = np.repeat(col_weights.T, channels, axis=1)
    reduced = np.zeros((src_h, width * channels), np.float32)
    for tap_cols, tap_weights in zip(cols, col_weights):
        reduced += np.take(pixels, tap_cols, axis=1) * tap_weights
    out = np.zeros((height, width * channels), np.float32)
    for tap_rows, tap_weights in zip(rows.T, row_weights.T):
        out += reduced[tap_rows] * tap_weights[:, None]
    # saturate_cast<uchar> rounds half to even, as np.rint does.
    return np.rint(out).clip(0, 255).astype(np.uint8).reshape(height, width, channels)


def _shrink_by_blocks(image: np.ndarray, scale_x: int, scale_y: int) -> np.ndarray:
    """OpenCV's INTER_AREA shrink by integer factors (``resizeAreaFast``): the mean of each block."""
    src_h, src_w, channels = image.shape
    blocks = image.reshape(src_h // scale_y, scale_y, src_w // scale_x, scale_x, channels)
    total = blocks.sum(axis=(1, 3), dtype=np.int32)
    if (scale_x, scale_y) == (2, 2) and channels in (1, 3, 4):
        # OpenCV's dedicated 2x2 kernel for these channel counts rounds half up in integers.
        return ((total + 2) >> 2).astype(np.uint8)
    # Elsewhere it multiplies the sum by 1.f / area and rounds half to even.
    mean = total.astype(np.float32) * (np.float32(1) / np.float32(scale_x * scale_y))
    return np.rint(mean).astype(np.uint8)


def _bilinear_area_taps(in_size: int, out_size: int, horizontal: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First/second input index and int32 fixed-point weights of one axis when OpenCV's
    INTER_AREA does not shrink both axes.

    Output pixel ``o`` starts at input pixel ``floor(o * in / out)`` and blends in the next one
    by the part of its span that lies beyond that pixel; when enlarging this is the box overlap.
    The arithmetic is OpenCV's (scales in double, the fraction in float32), so that spans ending
    exactly on a pixel border resolve the same way.
    """
    inverse_scale = out_size / in_size
    first = np.floor(np.arange(out_size) * (1.0 / inverse_scale)).astype(np.int64)
    beyond = (np.arange(1, out_size + 1) - (first + 1) * inverse_scale).astype(np.float32)
    fraction = np.where(beyond <= 0, np.float32(0), beyond - np.floor(beyond)).astype(np.float32)
    if horizontal:
        fraction[first >= in_size - 1] = 0  # OpenCV reads the last column alone
    second = np.minimum(first + 1, in_size - 1)  # the last row is read twice, with its weights
    one, coef_scale = np.float32(1), np.float32(_CV_COEF_SCALE)
    weights = np.stack([(one - fraction) * coef_scale, fraction * coef_scale], axis=-1)
    return first, second, np.rint(weights).astype(np.int32)  # cvRound: half to even


def _resize_bilinear_area(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """OpenCV's INTER_AREA when an axis is enlarged: its fixed-point bilinear kernel on area taps.

    The same integer arithmetic as :func:`vidact.transforms.resize_linear_numpy` (OpenCV's
    INTER_LINEAR), only the taps differ.
    """
    x0, x1, wx = _bilinear_area_taps(image.shape[1], width, horizontal=True)
    y0, y1, wy = _bilinear_area_taps(image.shape[0], height, horizontal=False)

    def horizontal(rows: np.ndarray) -> np.ndarray:  # only the input rows the output reads
        return rows[:, x0].astype(np.int32) * wx[:, 0, None] + rows[:, x1].astype(np.int32) * wx[:, 1, None]

    top = (horizontal(image[y0]) >> 4) * wy[:, 0, None, None] >> 16
    bottom = (horizontal(image[y1]) >> 4) * wy[:, 1, None, None] >> 16
    return np.clip((top + bottom + 2) >> 2, 0, 255).astype(np.uint8)


def resize_area(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)`` for a uint8 HxWxC image,
    byte for byte, in numpy (OpenCV is optional).

    OpenCV takes one of three paths, each followed here: a block mean when both axes shrink by
    integer factors, a true area average when both shrink otherwise, and a bilinear kernel with
    area-derived weights when either axis is enlarged.
    """
    if image.dtype != np.uint8 or image.ndim != 3:
        raise TypeError(f"resize_area takes HxWxC uint8 images, got {image.dtype} {image.shape}")
    src_h, src_w = image.shape[:2]
    if (src_h, src_w) == (height, width):
        return image.copy()
    # OpenCV's scales, computed as it does (it inverts out / in in double).
    scale_x, scale_y = 1.0 / (width / src_w), 1.0 / (height / src_h)
    if scale_x < 1 or scale_y < 1:
        return _resize_bilinear_area(image, width, height)
    if scale_x.is_integer() and scale_y.is_integer():
        return _shrink_by_blocks(image, int(scale_x), int(scale_y))
    return _shrink_by_area(image, width, height)


def _fastestdet_input(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    # The reference resizes its BGR uint8 image with OpenCV's INTER_AREA, rounded to uint8
    # (channels are resized alike, so RGB is resized first and reversed after).
    cv2 = opencv()
    if cv2 is not None:  # the same bytes as resize_area, 3x faster on a 1080p frame
        resized = cv2.resize(np.ascontiguousarray(frame), (size[1], size[0]), interpolation=cv2.INTER_AREA)
    else:
        resized = resize_area(frame, size[1], size[0])
    return (resized[:, :, ::-1].transpose(2, 0, 1)[None] / 255.0).astype(np.float32)


def _decode_fastestdet(
    output: np.ndarray, width: int, height: int, person_class: int
) -> tuple[np.ndarray, np.ndarray]:
    """Person boxes (pixels) and scores from one FastestDet output ``[85, H, W]``."""
    grid_h, grid_w = output.shape[1:]
    cells = output.reshape(output.shape[0], -1).T.astype(np.float64)  # (H*W, 85), row-major cells
    objectness, classes = cells[:, 0], cells[:, 5:]
    is_person = classes.argmax(axis=1) == person_class
    score = objectness.clip(min=0) ** 0.6 * classes[:, person_class].clip(min=0) ** 0.4
    row, col = np.divmod(np.arange(grid_h * grid_w), grid_w)
    cx = (col + np.tanh(cells[:, 1])) / grid_w
    cy = (row + np.tanh(cells[:, 2])) / grid_h
    box_w = 1.0 / (1.0 + np.exp(-cells[:, 3]))
    box_h = 1.0 / (1.0 + np.exp(-cells[:, 4]))
    boxes = np.stack([cx - box_w / 2, cy - box_h / 2, cx + box_w / 2, cy + box_h / 2], axis=1)
    boxes *= [width, height, width, height]
    return boxes[is_person], score[is_person]


def _letterbox(frame: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, float, int, int]:
    """Resize keeping the aspect ratio and pad to ``size`` (h, w); returns NCHW /255, scale, left, top."""
    height, width = frame.shape[:2]
    scale = min(size[0] / height, size[1] / width)
    new_h, new_w = round(height * scale), round(width * scale)
    image = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].float()
    image = F.interpolate(image, size=(new_h, new_w), mode="bilinear", align_corners=False)
    top, left = (size[0] - new_h) // 2, (size[1] - new_w) // 2
    canvas = torch.full((1, 3, *size), float(_LETTERBOX_FILL))
    canvas[:, :, top : top + new_h, left : left + new_w] = image.round().clamp(0, 255)
    return (canvas / 255.0).numpy(), scale, left, top


def _decode_yolo(
    output: np.ndarray, scale: float, left: int, top: int, person_class: int
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Person boxes (frame pixels) and scores from one YOLO output, and whether NMS is still due.

    Candidates outnumber the values each holds, which tells ``[4 + C, N]`` from ``[N, 4 + C]``;
    ``[N, 6]`` is an end-to-end export's final detections.
    """
    output = output.astype(np.float32)
    if output.shape[0] > output.shape[1] and output.shape[1] == 6:  # x1, y1, x2, y2, score, class
        rows = output[np.rint(output[:, 5]) == person_class]
        boxes = rows[:, :4] - np.array([left, top, left, top], np.float32)
        return boxes / scale, rows[:, 4], False
    candidates = output if output.shape[0] > output.shape[1] else output.T  # (N, 4 + C)
    classes = candidates[:, 4:]
    is_person = classes.argmax(axis=1) == person_class
    cx, cy, w, h = candidates[is_person, :4].T
    boxes = np.stack([cx - w / 2 - left, cy - h / 2 - top, cx + w / 2 - left, cy + h / 2 - top], axis=1)
    return boxes / scale, classes[is_person, person_class], True


def _decode_yolov5(
    output: np.ndarray, scale: float, left: int, top: int, person_class: int
) -> tuple[np.ndarray, np.ndarray]:
    """Person boxes (frame pixels) and scores from one YOLOv5 output ``[N, 5 + C]``."""
    output = output.astype(np.float32)
    scores = output[:, 5:] * output[:, 4:5]  # YOLOv5's conf = obj_conf * cls_conf
    is_person = scores.argmax(axis=1) == person_class
    cx, cy, w, h = output[is_person, :4].T
    boxes = np.stack([cx - w / 2 - left, cy - h / 2 - top, cx + w / 2 - left, cy + h / 2 - top], axis=1)
    return boxes / scale, scores[is_person, person_class]


def onnxruntime_has_cuda() -> bool:
    """Whether the installed onnxruntime can run on an NVIDIA GPU (onnxruntime-gpu)."""
    ort = import_optional("onnxruntime", "the ONNX person detector")
    return "CUDAExecutionProvider" in ort.get_available_providers()


def _providers(device: str) -> list:
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        device_id = int(device.partition(":")[2] or 0)
        return [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]
    raise VidactError(f"device {device!r} is not supported by the ONNX detector: use 'cpu' or 'cuda[:N]'")


class OnnxPersonDetector:
    """A :class:`~vidact.detectors.base.PersonDetector` running a FastestDet or YOLO (v5, v8/11) ONNX model."""

    def __init__(
        self,
        path: str | Path,
        *,
        score_threshold: float = 0.5,
        person_class: int = 0,
        min_box_size: float = 0.0,
        device: str = "cpu",
        output_format: str | None = None,
        nms_iou: float | None = None,
    ) -> None:
        ort = import_optional("onnxruntime", "the ONNX person detector")
        self.path = Path(path)
        if not self.path.is_file():
            raise VidactError(f"ONNX detector file not found: {self.path}: pass an existing .onnx file")
        providers = _providers(device)
        if device != "cpu" and not onnxruntime_has_cuda():
            raise VidactError(
                f"onnxruntime has no CUDA support here for {self.path}: install onnxruntime-gpu or use device='cpu'"
            )
        try:
            options = ort.SessionOptions()
            # Its threads otherwise spin after each call, waiting for the next one: one keyframe a
            # second comes, and the spinning took the cores decoding needs (2 cores: 40 ms of CPU a
            # call for a 15 ms call; its latency rises 1-3 ms without).
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as err:  # onnxruntime raises its own exception types for bad files
            message = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise VidactError(f"cannot load ONNX model {self.path}: {message}: pass a valid .onnx file") from None
        model_input = self.session.get_inputs()[0]
        if model_input.type not in _INPUT_TYPES:
            raise VidactError(
                f"{self.path} takes {model_input.type}: the ONNX detector feeds float or float16 images; "
                "export the model with float inputs"
            )
        self.input_dtype = _INPUT_TYPES[model_input.type]
        output_shape = self.session.get_outputs()[0].shape
        self.format = output_format or self._guess_format(output_shape)
        if self.format not in FORMATS:
            raise VidactError(f"unknown ONNX detector format {self.format!r}: use one of {', '.join(FORMATS)}")
        self.input_name = model_input.name
        dims = model_input.shape[2:4]
        default = _DEFAULT_INPUT_SIZE[self.format]
        self.input_size = tuple(d if isinstance(d, int) and d > 0 else default for d in dims)
        self.score_threshold = score_threshold
        self.person_class = person_class
        self.min_box_size = min_box_size
        self.nms_iou = _DEFAULT_NMS_IOU[self.format] if nms_iou is None else nms_iou

    def _guess_format(self, shape: list) -> str:
        if len(shape) == 4 and shape[1] == 85:
            return "fastestdet"
        # [1, N, 85] is YOLOv5 on COCO; a transposed YOLOv8 output on COCO has 84 columns.
        if len(shape) == 3 and shape[2] == 5 + _COCO_CLASSES and isinstance(shape[1], int) and shape[1] > shape[2]:
            return "yolov5"
        if len(shape) == 3 and isinstance(shape[1], int) and shape[1] > 4:
            return "yolo"
        raise VidactError(
            f"cannot tell the layout of {self.path} from its output shape {shape}: force it in Python with "
            "vidact.detectors.create_detector(PATH, detector_format='fastestdet' ([1,85,H,W]), "
            "'yolo' ([1,4+C,N]) or 'yolov5' ([1,N,5+C]))"
        )

    def detect_one(self, frame: np.ndarray) -> Detections:
        """Person detections on one RGB uint8 HxWx3 frame, in its pixel coordinates."""
        height, width = check_frame(frame).shape[:2]
        needs_nms = True
        if self.format == "fastestdet":
            output = self._run(_fastestdet_input(frame, self.input_size))
            boxes, scores = _decode_fastestdet(output, width, height, self.person_class)
        else:
            inputs, scale, left, top = _letterbox(frame, self.input_size)
            output = self._run(inputs)
            if self.format == "yolov5":
                boxes, scores = _decode_yolov5(output, scale, left, top, self.person_class)
            else:
                boxes, scores, needs_nms = _decode_yolo(output, scale, left, top, self.person_class)
        return finish_detections(
            boxes,
            scores,
            width=width,
            height=height,
            score_threshold=self.score_threshold,
            min_box_size=self.min_box_size,
            nms_iou=self.nms_iou if needs_nms else None,
        )

    def _run(self, inputs: np.ndarray) -> np.ndarray:
        """The model's first output for one image, the batch axis dropped."""
        return self.session.run(None, {self.input_name: inputs.astype(self.input_dtype, copy=False)})[0][0]

    def __call__(self, frames: list[np.ndarray]) -> list[Detections]:
        # The common exports have a fixed batch of one, so frames go through one at a time.
        return [self.detect_one(frame) for frame in frames]
