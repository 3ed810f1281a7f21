"""Spatio-temporal action detection on raw video: persons, their tracks and their actions.

Schedule: keyframes at ``k / rate`` seconds (default 1 Hz, AVA's keyframe rate). On each
keyframe a person detector finds boxes, ByteTrack gives them ids, and the action model
scores every person at once on the clip of ``NUM_FRAMES x SAMPLING_RATE`` frames centred on
the keyframe: the instants ``t + k / target_fps`` (``k`` stepping by the sampling rate over
``[-span/2, span/2)``, as :func:`vidact.io.sampling.centered_clip_indices_at_time`), each
taken from the nearest frame by the frames' real timestamps.
Frames are resized and normalised as PySlowFast's AVA demo does
(:func:`vidact.transforms.ava_test_clip`), boxes scaled with
:func:`vidact.transforms.scale_boxes`.

Stages run in their own threads joined by bounded queues, so decoding, detection, clip
preparation, the action model, drawing and encoding overlap:

    decode -> [frame store] -> detect+track -> prepare clip -> act -> results
                           \\-> render (every frame, boxes interpolated) -> encode

Each frame is decoded once and kept in a bounded store until no clip and no frame still to
be drawn needs it; the decoder waits while the store is full, so memory stays at about the
longest clip plus a small margin, whatever the video's length. A live source (webcam,
RTSP or other real-time stream, a URL with no duration) is never paused: frames that arrive
while the store is full are dropped, which bounds latency. A URL of a finished video (http
with a duration) is read like a file: every frame, at the pipeline's pace.
"""

from __future__ import annotations

import atexit
import inspect
import math
import os
import queue
import re
import resource
import signal
import sys
import threading
import time
import urllib.parse
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import numpy as np
import torch
from torch import nn

from vidact.config.model import InputSpec
from vidact.config.pyslowfast_defaults import DEFAULTS
from vidact.data.labels import Labels, names_by_id
from vidact.detectors.base import Detections, PersonDetector
from vidact.errors import VidactError
from vidact.fileutil import atomic_paths, check_writable_folder
from vidact.io.video import Frame, VideoReader, is_url
from vidact.track import UNTRACKED, PersonTracker, TrackedDetections, interpolate_tracks, interpolation_weight
from vidact.transforms import normalize, pack_pathways, scale_boxes, scale_short_side_cv2, short_side_size

# PySlowFast's DEMO.COMMON_CLASS_NAMES default: frequent AVA classes get the higher threshold.
PYSLOWFAST_COMMON_CLASS_NAMES: tuple[str, ...] = tuple(dict.fromkeys(DEFAULTS["DEMO"]["COMMON_CLASS_NAMES"]))
STAGES = ("decode", "detect", "track", "prepare", "act", "render", "encode")
_POLL_S = 0.1  # how often blocked stages look for an abort
_MAX_LABELS = 5  # actions written beside a box (all of them go to the data files)
_FRAME_MARGIN = 8  # frames beyond the computed window: queue slack and timestamp jitter
# Prepared clips may wait for a CUDA model's first call up to this many bytes (see _prepared_clips).
_WAITING_CLIP_BYTES = 512 << 20


def _scaling_workers() -> int:
    """Threads that scale a clip's frames: one for each 4 cores, from 1 to 4. Converting to RGB and
    resizing let go of the GIL, so a few run at once; on a machine of few cores decoding needs the cores."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(4, cores // 4))


class DetectNotice(UserWarning):
    """Something the user should know that is not an error (no person found, a key mapped)."""


def notice(message: str) -> None:
    """Emit a :class:`DetectNotice`; the CLI prints it as one line."""
    warnings.warn(message, DetectNotice, stacklevel=2)


# --------------------------------------------------------------------------- results


class Action(NamedTuple):
    """One action of one person: class index (0-based), its name and the model's score."""

    index: int
    name: str
    score: float


@dataclass(frozen=True)
class PersonActions:
    """A person on a keyframe: track id (-1: not yet tracked), box in frame pixels, actions.

    ``actions`` are those above threshold, highest score first; ``scores`` holds every
    class's score (float32, one per class).
    """

    track_id: int
    box: tuple[float, float, float, float]
    detection_score: float
    actions: tuple[Action, ...]
    scores: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class KeyframeResult:
    """The persons found on one keyframe and what they do."""

    time: float  # keyframe time, video seconds
    frame_index: int  # the frame shown at that time
    width: int
    height: int
    persons: tuple[PersonActions, ...]


# --------------------------------------------------------------------------- thresholds


@dataclass(frozen=True)
class ActionThresholds:
    """Which actions count as present: a score threshold per class, or the top k classes.

    :meth:`pyslowfast` gives PySlowFast's demo rule (``VIS_MODE: thres``): 0.7 for the common
    classes, 0.3 for the others.
    """

    per_class: tuple[float, ...] | None = None
    top_k: int | None = None

    def __post_init__(self) -> None:
        if (self.per_class is None) == (self.top_k is None):
            raise ValueError("give exactly one of per_class and top_k")
        if self.top_k is not None and self.top_k < 1:
            raise VidactError(f"top-k must be at least 1, got {self.top_k}")

    @classmethod
    def uniform(cls, threshold: float, num_classes: int) -> "ActionThresholds":
        if not 0.0 <= threshold <= 1.0:
            raise VidactError(f"action threshold {threshold} is not in [0, 1]; pass e.g. --threshold 0.5")
        return cls(per_class=(float(threshold),) * num_classes)

    @classmethod
    def pyslowfast(
        cls,
        class_names: Sequence[str],
        common_names: Sequence[str] = PYSLOWFAST_COMMON_CLASS_NAMES,
        common: float = 0.7,
        uncommon: float = 0.3,
    ) -> "ActionThresholds":
        common_set = set(common_names)
        return cls(per_class=tuple(common if name in common_set else uncommon for name in class_names))

    def select(self, scores: np.ndarray) -> list[int]:
        """Indices of the classes present in ``scores``, highest score first."""
        order = np.argsort(-scores, kind="stable")
        if self.top_k is not None:
            return [int(i) for i in order[: self.top_k]]
        thresholds = np.asarray(self.per_class, dtype=np.float32)
        if len(thresholds) != len(scores):
            raise VidactError(f"{len(thresholds)} action thresholds for a model with {len(scores)} classes")
        return [int(i) for i in order if scores[i] >= thresholds[i]]


# --------------------------------------------------------------------------- the action model


class ActionModel:
    """An AVA box model with its input spec, class names and device: clip + boxes in, scores out."""

    def __init__(self, model: nn.Module, class_names: Labels, device: str | torch.device = "cpu"):
        """``class_names``: a label-map file, a :class:`~vidact.data.labels.LabelMap`, a ``{name: id}``
        dict or a list of names, one per class; ids consecutive from any first one (AVA's: 1..80)."""
        config = getattr(model, "config", None)
        if config is None or not config.detection.enable:
            raise VidactError("the action model has no box head (DETECTION.ENABLE false); use an AVA model")
        names = names_by_id(class_names, from_zero=False)
        if len(names) != config.num_classes:
            raise VidactError(
                f"{len(names)} class names for a model with {config.num_classes} classes; "
                "pass a matching label file"
            )
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.spec: InputSpec = config.input
        self.class_names = names

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def clip_offsets(self) -> np.ndarray:
        """Seconds from the keyframe to each sampled instant of its clip."""
        half = self.spec.clip_span // 2
        return np.arange(-half, half, self.spec.sampling_rate, dtype=np.float64) / self.spec.target_fps

    def prepare(self, scaled_frames: np.ndarray, boxes: np.ndarray, height: int, width: int):
        """Model inputs from frames already scaled by :func:`scale_short_side_cv2` and pixel boxes
        of the ``height x width`` source frame: ``(clip, rois)``, for :meth:`__call__`.

        On CPU the clip is normalised here (the prepare stage runs beside the model); for a GPU
        it stays uint8 and is normalised there: a quarter of the bytes to copy, and the CPU
        work that limited 1080p input is gone.
        """
        clip = torch.from_numpy(np.ascontiguousarray(scaled_frames))
        if self.device.type != "cuda":
            clip = self._pathways(clip)
        scaled = scale_boxes(np.asarray(boxes, np.float32), height, width, self.spec.test_crop_size)
        rois = torch.cat([torch.zeros(len(scaled), 1), torch.as_tensor(scaled, dtype=torch.float32)], dim=1)
        return clip, rois

    def _pathways(self, clip: torch.Tensor) -> list[torch.Tensor]:
        """``T x H x W x 3`` RGB frames -> the network's normalised pathway tensors."""
        return pack_pathways(normalize(clip, self.spec).permute(3, 0, 1, 2).contiguous(), self.spec)

    def warm_up(self, height: int, width: int) -> None:
        """Score one box on a blank clip of ``height x width`` frames, the shapes the video will give.

        On CUDA the first call is the slow one (cuDNN tries its kernels for every convolution,
        the kernels load, the CUDA graph is captured): seconds against milliseconds. The detect
        pipeline makes it here, while the first frames are decoded and detected.
        """
        frame = np.zeros((height, width, 3), np.uint8)
        scaled = scale_short_side_cv2(frame, self.spec.test_crop_size)
        clip = np.broadcast_to(scaled, (len(self.clip_offsets()), *scaled.shape))
        self(*self.prepare(clip, np.array([[0.0, 0.0, width - 1.0, height - 1.0]]), height, width))

    @torch.inference_mode()
    def __call__(self, inputs: list[torch.Tensor] | torch.Tensor, rois: torch.Tensor) -> np.ndarray:
        """Scores ``(persons, classes)`` for :meth:`prepare`'s output."""
        if isinstance(inputs, torch.Tensor):  # a uint8 clip, normalised on the device
            device_inputs = self._pathways(inputs.to(self.device, non_blocking=True))
        else:
            device_inputs = [x.to(self.device, non_blocking=True) for x in inputs]
        persons = len(rois)
        if self.device.type == "cuda" and persons > 0:
            # Each box is scored on its own, so padding the boxes to a power of two changes no
            # score and leaves few input shapes: one CUDA graph and autotuning each, not one per count.
            padded = 1 << (persons - 1).bit_length()
            rois = torch.cat([rois, rois[:1].expand(padded - persons, -1)])
        scores = self.model(device_inputs, rois.to(self.device))
        return scores[:persons].float().cpu().numpy()


def default_class_names(model: nn.Module, label_file: str | os.PathLike | None = None) -> tuple[str, ...]:
    """Class names for an AVA model: a label file, else the zoo entry's, else AVA's 80 classes."""
    num_classes = model.config.num_classes
    if label_file is not None:
        path = Path(label_file)
        if not path.is_file():
            # A config's relative path (PySlowFast's ./ava_classids.json) is read from the current
            # folder, not the config's: say which file was looked for.
            where = "" if path.is_absolute() else f" (resolved against the current folder: {os.path.abspath(path)})"
            raise VidactError(
                f"label file not found: {os.fspath(label_file)}{where}; pass a JSON, pbtxt or text label map"
            )
        names = names_by_id(path, from_zero=False)
        if len(names) != num_classes:
            raise VidactError(f"{path}: {len(names)} classes, not the model's {num_classes}; pass the model's label map")
        return names
    from vidact.api import load_labels
    from vidact.data.label_sets import AVA80

    names = load_labels(model)
    if names is not None:
        return tuple(names)
    if num_classes == len(AVA80):
        return AVA80
    return tuple(f"class {i}" for i in range(num_classes))


# --------------------------------------------------------------------------- shared state


class _Aborted(Exception):
    """Raised inside a stage when another stage failed or the consumer stopped."""


@dataclass
class _Entry:
    frame: Frame  # its RGB array is made by the first stage that needs it
    scaled: np.ndarray | None = None  # short side scaled for the model, made on first use

    @property
    def index(self) -> int:
        return self.frame.index

    @property
    def time(self) -> float:
        return self.frame.pts_seconds


class _Shared:
    """The frame store and the keyframe board, under one condition variable.

    Frames are released once they are before the clip floor (no pending clip needs them)
    and before the render floor (drawn). ``put`` blocks while the store is full unless a
    stage is blocked waiting for frames that only a fuller store can give.
    """

    def __init__(self, capacity: int, live: bool, rendering: bool):
        self.cond = threading.Condition()
        self.abort = threading.Event()
        self.stop = threading.Event()  # end the input here, as if the video ended (live sources)
        self.error: BaseException | None = None
        self.capacity = capacity
        self.live = live
        self.rendering = rendering
        self.frames: deque[_Entry] = deque()
        self.eof = False
        self.last_time = -math.inf
        self.end_time = math.inf  # when the last frame stops showing, known at eof
        self.clip_floor = -math.inf  # time: frames wholly before it serve no pending clip
        self.render_floor = 0 if rendering else math.inf  # frame index: next frame to draw
        self.frame_waits: dict[int, int] = {}  # thread id -> keyframe it waits for frames for
        self.unprepared = 0  # the oldest keyframe whose clip is not prepared yet
        self.render_waiting: int | None = None  # the keyframe the renderer waits for
        self.peak_frames = 0
        self.decoded_frames = 0
        self.dropped_frames = 0
        self.tracked: dict[int, tuple[float, TrackedDetections]] = {}
        self.results: dict[int, KeyframeResult] = {}
        self.num_keyframes: int | None = None  # known once detection has finished
        self.forgotten_below = 0  # keyframes before this one are no longer held
        self.busy = dict.fromkeys(STAGES, 0.0)
        self.warmup_s = 0.0  # the action model's first call, on CUDA, before the first keyframe

    def fail(self, error: BaseException) -> None:
        with self.cond:
            if self.error is None and not isinstance(error, _Aborted):
                self.error = error
            self.abort.set()
            self.cond.notify_all()

    def _wait(self) -> None:
        if self.abort.is_set():
            raise _Aborted
        self.cond.wait(_POLL_S)
        if self.abort.is_set():
            raise _Aborted

    # frames -----------------------------------------------------------------

    def put(self, frame: Frame) -> bool:
        """Store ``frame``; False if it was dropped (a live source while the store is full)."""
        if self.abort.is_set():  # a live source never waits below, where an abort is noticed
            raise _Aborted
        with self.cond:
            while len(self.frames) >= self.capacity and not self._stuck():
                if self.live:
                    self.dropped_frames += 1
                    return False
                self._wait()
            self.decoded_frames += 1
            self.frames.append(_Entry(frame))
            self.last_time = frame.pts_seconds
            self._collect()
            self.peak_frames = max(self.peak_frames, len(self.frames))
            self.cond.notify_all()
            return True

    def _stuck(self) -> bool:
        # The stage everything waits for (the oldest keyframe still to prepare, or the keyframe the
        # renderer needs) waits for frames the full store cannot take: only a fuller store helps.
        # With the capacity computed in DetectionRun this happens only on irregular timestamps.
        still_drawing = self.rendering and math.isfinite(self.render_floor)
        limit = self.render_waiting if still_drawing else self.unprepared
        return limit is not None and any(number <= limit for number in self.frame_waits.values())

    def finish(self, end_time: float) -> None:
        with self.cond:
            self.eof, self.end_time = True, end_time
            self.cond.notify_all()

    def wait_past(self, seconds: float, keyframe: int) -> bool:
        """Block until a frame later than ``seconds`` is decoded (True) or the video ended (False).

        ``keyframe`` is the keyframe the caller needs the frames for.
        """
        with self.cond:
            me = threading.get_ident()
            self.frame_waits[me] = keyframe
            try:
                while self.last_time <= seconds and not self.eof:
                    self._wait()
            finally:
                del self.frame_waits[me]
            return self.last_time > seconds

    def frame_at(self, seconds: float) -> _Entry:
        """The held frame nearest ``seconds`` (the earlier of two as near), as ``ffmpeg -r 30``
        samples AVA's frames; by nearness, not "shown at", since containers round frame times
        to their time base (MKV: 1 ms, so 30 fps frame 2 sits at 0.067 s, after 2/30 s)."""
        with self.cond:
            chosen = self.frames[0]
            for entry in self.frames:
                if abs(entry.time - seconds) < abs(chosen.time - seconds):
                    chosen = entry
                elif entry.time > seconds:
                    break
            return chosen

    def next_frame(self, after_index: int) -> _Entry | None:
        """The first held frame with an index above ``after_index``; None at the end."""
        with self.cond:
            while True:
                for entry in self.frames:
                    if entry.index > after_index:
                        return entry
                if self.eof:
                    return None
                self._wait()

    def set_clip_floor(self, seconds: float, next_keyframe: int) -> None:
        """Keyframes before ``next_keyframe`` are prepared; no clip needs frames wholly before ``seconds``."""
        with self.cond:
            self.clip_floor = seconds
            self.unprepared = next_keyframe
            self._collect()
            self.cond.notify_all()

    def set_render_floor(self, index: float) -> None:
        with self.cond:
            self.render_floor = index
            self._collect()
            self.cond.notify_all()

    def _collect(self) -> None:
        # A frame stays while it is the last one at or before the clip floor: that instant still picks it.
        while (
            len(self.frames) > 1
            and self.frames[1].time <= self.clip_floor + 1e-6
            and self.frames[0].index < self.render_floor
        ):
            self.frames.popleft()

    # keyframes --------------------------------------------------------------

    # Only the renderer reads (and forgets) these tables: without it, storing them would keep
    # every keyframe of a webcam run in memory.

    def publish_tracked(self, number: int, seconds: float, tracked: TrackedDetections) -> None:
        if self.rendering:
            with self.cond:
                self.tracked[number] = (seconds, tracked)
                self.cond.notify_all()

    def publish_result(self, number: int, result: KeyframeResult) -> None:
        if self.rendering:
            with self.cond:
                self.results[number] = result
                self.cond.notify_all()

    def end_keyframes(self, count: int) -> None:
        with self.cond:
            self.num_keyframes = count
            self.cond.notify_all()

    def wait_keyframe(self, number: int, need_result: bool) -> bool:
        """Block until keyframe ``number`` is tracked (or has its result); False if it does not exist."""
        with self.cond:
            self.render_waiting = number
            try:
                while True:
                    if self.num_keyframes is not None and number >= self.num_keyframes:
                        return False
                    if number < self.forgotten_below:  # never coming back: waiting would hang
                        return False
                    if number in (self.results if need_result else self.tracked):
                        return True
                    self.cond.notify_all()  # the decoder re-checks whether it is stuck
                    self._wait()
            finally:
                self.render_waiting = None

    def forget_keyframes_before(self, number: int) -> None:
        with self.cond:
            self.forgotten_below = max(self.forgotten_below, number)
            for table in (self.tracked, self.results):
                for old in [k for k in table if k < number]:
                    del table[old]


def _put(shared: _Shared, q: queue.Queue | queue.SimpleQueue, item: Any) -> None:
    while True:
        if shared.abort.is_set():
            raise _Aborted
        try:
            q.put(item, timeout=_POLL_S)
            return
        except queue.Full:
            continue


def _one_sentence(error: VidactError) -> str:
    """An error's finding without its advice for files ("; re-encode it ...")."""
    return str(error).split("; ")[0]


def _get(shared: _Shared, q: queue.Queue | queue.SimpleQueue) -> Any:
    while True:
        if shared.abort.is_set():
            raise _Aborted
        try:
            return q.get(timeout=_POLL_S)
        except queue.Empty:
            continue


class _Timer:
    """Adds the time spent in a ``with`` block to a stage's busy time."""

    def __init__(self, shared: _Shared, stage: str):
        self.shared, self.stage = shared, stage

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc) -> None:
        self.shared.busy[self.stage] += time.perf_counter() - self.start


_END = object()


# --------------------------------------------------------------------------- the run


@dataclass
class _Job:
    number: int
    time: float
    frame_index: int
    width: int
    height: int
    tracked: TrackedDetections
    inputs: list[torch.Tensor] | None = None
    rois: torch.Tensor | None = None


class DetectionRun:
    """One pass over a video; iterate it for :class:`KeyframeResult` in time order.

    Created by :func:`detect`. While iterating, the annotated video (if asked for) is
    drawn and encoded alongside; it is complete once iteration ends. Afterwards
    :attr:`metrics` holds the per-stage busy seconds, frames/s, peak frames held, peak RSS,
    ``warmup_s`` (the action model's first call, on CUDA) and ``decoder``: what decoded the
    video, "nvdec" or "cpu". Stopping the iteration early stops every stage and discards the
    video. ``decode`` ("auto", "cpu" or
    "cuda") picks the decoder when ``source`` is not an open :class:`VideoReader`; "auto"
    tries NVDEC only when the action model runs on CUDA.

    On a live source (a webcam, a real-time stream) the first Ctrl-C during the iteration ends
    the input and the iteration finishes; the handler stays until the iteration ends, so a
    caller that stops early without a ``for`` loop should close the iterator.
    """

    def __init__(
        self,
        source: str | int | os.PathLike | VideoReader,
        action_model: ActionModel,
        detector: PersonDetector,
        thresholds: ActionThresholds,
        *,
        rate: float = 1.0,
        end: float | None = None,
        video_path: str | os.PathLike | None = None,
        video_fps: float | None = None,
        video_preset: str = "veryfast",
        tracker_factory: Callable[[float], PersonTracker] | None = None,
        decode: str = "cpu",
    ):
        _check_schedule(rate, end)
        if isinstance(source, VideoReader):
            self.reader = source
        else:
            self.reader = VideoReader(source, hwaccel=_reader_hwaccel(decode, action_model.device))
        self.action_model = action_model
        self.detector = detector
        self.thresholds = thresholds
        self.rate = float(rate)
        self.end = end
        self.video_path = Path(video_path) if video_path is not None else None
        self.fps = float(self.reader.fps) if self.reader.fps else 30.0
        self.video_fps = video_fps or self.reader.fps or 30
        self.video_preset = video_preset
        self.width, self.height = self.reader.width, self.reader.height
        self.name = self.reader.name
        # The tracker is updated once per keyframe: its "frame rate" is the keyframe rate.
        self.tracker = (tracker_factory or (lambda rate: PersonTracker(frame_rate=rate)))(self.rate)
        self._detector_takes_times = "timestamps" in inspect.signature(detector.__call__).parameters
        offsets = action_model.clip_offsets()
        self.clip_offsets = offsets
        # Frames held at once: a clip; or, for drawing, from a frame to the next keyframe (its
        # boxes are interpolated) or to the end of the nearer keyframe's clip (its actions).
        # One keyframe interval more lets the decoder run on while a keyframe is detected,
        # prepared and scored; without it the stages took turns.
        window_s = max(offsets[-1] - offsets[0], 1.0 / self.rate, 0.5 / self.rate + offsets[-1]) + 1.0 / self.fps
        self.capacity = math.ceil((window_s + 1.0 / self.rate) * self.fps) + 1 + _FRAME_MARGIN
        self.frames_written = 0
        self.frames_in_range = 0  # decoded up to --end
        self._first_size: tuple[int, int] | None = None  # every frame must have the first one's
        self._video_colorspace = None  # the drawn video's YUV matrix tag, set on its first frame
        self.metrics: dict[str, float | str] = {}
        self._started = False

    def __iter__(self) -> Iterator[KeyframeResult]:
        if self._started:
            raise RuntimeError("a DetectionRun can be iterated once")
        self._started = True
        rendering = self.video_path is not None
        if rendering:
            from vidact.pipeline.render import check_label_font

            check_label_font(self.action_model.class_names)
        shared = _Shared(self.capacity, live=self.reader.live, rendering=rendering)
        self._shared = shared
        prepare_q: queue.Queue = queue.Queue(maxsize=2)
        act_q: queue.Queue = queue.Queue(maxsize=self._prepared_clips())
        # What the main thread waits on takes no lock in Python code: a Ctrl-C raised just after
        # queue.Queue's ``with`` took its mutex kept it taken (bpo-29988), and the act stage, its
        # other user, then blocked for ever. SimpleQueue's lock is in C; it has no bound, but
        # results are small and the frames they come from are bounded upstream.
        out_q: queue.SimpleQueue = queue.SimpleQueue()
        encode_q: queue.Queue = queue.Queue(maxsize=4)
        stages = [
            (self._decode, ()),
            (self._detect, (prepare_q,)),
            (self._prepare, (prepare_q, act_q)),
            (self._act, (act_q, out_q)),
        ]
        if rendering:
            stages += [(self._render, (encode_q,)), (self._encode, (encode_q,))]
        threads = [
            threading.Thread(target=self._guard, args=(shared, fn, args), name=f"vidact-{fn.__name__[1:]}", daemon=True)
            for fn, args in stages
        ]
        gpu_usage = None
        finished = False
        previous_sigint = None
        _unjoined_runs[shared] = threads
        try:  # from the first start(): a Ctrl-C or SIGTERM may land between two of them
            gpu_usage = _gpu_usage(self.action_model.device)
            wall = time.perf_counter()
            for thread in threads:
                thread.start()
            previous_sigint = self._stop_on_first_interrupt(shared)
            while True:
                item = _get(shared, out_q)
                if item is _END:
                    break
                yield item
            finished = True
        except _Aborted:
            pass
        finally:
            if previous_sigint is not None:
                signal.signal(signal.SIGINT, previous_sigint)
            if not finished:
                shared.fail(_Aborted())
            interrupted = self._join(threads, shared)
            _unjoined_runs.pop(shared, None)
            self.reader.close()
            gpu_metrics = gpu_usage.stop() if gpu_usage is not None else {}
            if interrupted is not None:
                raise interrupted
        if shared.error is not None:
            raise shared.error
        self._finish_metrics(time.perf_counter() - wall, gpu_metrics)

    @staticmethod
    def _join(threads: list[threading.Thread], shared: _Shared) -> KeyboardInterrupt | None:
        """Wait for every stage to end, through further Ctrl-Cs (the last of them is returned).

        Leaving on one would let the interpreter shut down under stages still in native code
        (FFmpeg, the encoder): it aborts (SIGABRT) and leaves their files half-written. Once
        aborted, each stage ends within its poll interval.
        """
        interrupted = None
        for thread in threads:
            while thread.is_alive():
                try:
                    thread.join()
                except KeyboardInterrupt as error:
                    interrupted = error
                    shared.fail(_Aborted())
        return interrupted

    def _stop_on_first_interrupt(self, shared: _Shared):
        """A live source has no end but Ctrl-C: the first one ends the input there and the run
        finishes with what it found (outputs written); a second one aborts. Returns the SIGINT
        handler replaced (None: files, or not the main thread, keep Ctrl-C as it is)."""
        if not self.reader.live or threading.current_thread() is not threading.main_thread():
            return None

        def stop(signum, frame):
            if shared.stop.is_set():
                raise KeyboardInterrupt
            shared.stop.set()
            notice(f"{self.name}: stopping the input (Ctrl-C again aborts); finishing the last keyframes")

        return signal.signal(signal.SIGINT, stop)

    def _guard(self, shared: _Shared, fn, args) -> None:
        if shared.abort.is_set():  # a start() cut short by Ctrl-C: the join saw no live thread
            return
        try:
            fn(shared, *args)
        except BaseException as error:  # noqa: BLE001 - re-raised in the consumer's thread
            shared.fail(error)

    # stages -------------------------------------------------------------------

    def _decode(self, shared: _Shared) -> None:
        last_needed = None if self.end is None else self.end + self.clip_offsets[-1]
        frames = iter(self.reader)
        frame = previous = None
        try:
            while not shared.stop.is_set():
                try:
                    with _Timer(shared, "decode"):
                        frame = next(frames, None)
                    if frame is None:
                        break
                    self._check_follows(frame, previous)
                except VidactError as error:
                    if not self.reader.live:
                        raise
                    # A stream ends so (its sender gone, its size changed): as at a first Ctrl-C,
                    # the keyframes seen are finished and the outputs written.
                    notice(f"{_one_sentence(error)}; the input ends here, finishing the keyframes seen")
                    frame = previous
                    break
                previous = frame
                kept = shared.put(frame)
                if kept and (self.end is None or frame.pts_seconds <= self.end + 0.5 / self.fps):
                    self.frames_in_range += 1  # the frames drawn with a video; not the last clip's tail
                if last_needed is not None and frame.pts_seconds > last_needed:
                    break
        finally:
            frames.close()
            shared.finish(self._shown_until(shared.last_time, video_ended=frame is None))

    def _check_follows(self, frame: Frame, previous: Frame | None) -> None:
        """Refuse a frame whose size is not the first's, or whose time is not after ``previous``'s.

        Both happen in files joined with ``cat`` (MPEG-TS plays on across the seam): the
        schedule, the frame store and the drawing assume rising times (a time going back made
        the renderer wait for ever), and the outputs one frame size. A live source may skip
        frames, which is fine.
        """
        if previous is None:
            self._first_size = frame.size
            return
        size = frame.size
        if size != self._first_size:
            (width, height), (new_width, new_height) = self._first_size, size
            raise VidactError(
                f"{self.name}: frame size changes from {width}x{height} to {new_width}x{new_height} at frame "
                f"{frame.index}; re-encode it to one size, e.g. ffmpeg -i IN -vf scale={width}:{height} OUT"
            )
        if frame.pts_seconds <= previous.pts_seconds:
            raise VidactError(
                f"{self.name}: frame {frame.index} is at {frame.pts_seconds:.3f} s, not after frame {previous.index} "
                f"({previous.pts_seconds:.3f} s): its timestamps go back or repeat (files joined with cat?); "
                "re-encode it, e.g. ffmpeg -i IN -c:v libx264 OUT, or join the files with ffmpeg's concat"
            )

    def _shown_until(self, last_time: float, video_ended: bool) -> float:
        """When the last frame stored, shown from ``last_time``, stops showing: one frame later, or
        at the video's end (its stream's duration) where that is later: a slide or a paused
        recording can end on a frame held for seconds."""
        one_frame_later = last_time + 1.0 / self.fps
        return max(one_frame_later, self.reader.duration or 0.0) if video_ended else one_frame_later

    def _detect(self, shared: _Shared, prepare_q: queue.Queue) -> None:
        number = 0
        while self.end is None or number / self.rate <= self.end + 1e-9:
            seconds = number / self.rate
            if not shared.wait_past(seconds, number) and seconds > shared.end_time - 1e-6:
                break  # the video ended before this keyframe (past the last frame's display time)
            entry = shared.frame_at(seconds)
            with _Timer(shared, "detect"):
                found = self._persons_at(entry, seconds)
            with _Timer(shared, "track"):
                tracked = self.tracker.update(found, seconds) if len(found) else self._track_nobody(seconds)
            shared.publish_tracked(number, seconds, tracked)
            _put(shared, prepare_q, _Job(number, seconds, entry.index, self.width, self.height, tracked))
            number += 1
        shared.end_keyframes(number)
        _put(shared, prepare_q, _END)

    def _persons_at(self, entry: _Entry, seconds: float) -> Detections:
        """The detector's persons on a keyframe, checked: a detector of the user's own (any callable)
        that breaks its contract would otherwise fail later, in the tracker, with another's message."""
        if self._detector_takes_times:
            results = self.detector([entry.frame.rgb], timestamps=[seconds])
        else:
            results = self.detector([entry.frame.rgb])
        if len(results) != 1:
            raise VidactError(f"the person detector returned {len(results)} results for 1 frame at {seconds:g} s; "
                              "a detector returns one Detections per frame it is given")
        found = results[0]
        if not np.isfinite(found.boxes).all():
            raise VidactError(f"the person detector returned boxes that are not finite (NaN/inf) at {seconds:g} s")
        return found

    def _track_nobody(self, seconds: float) -> TrackedDetections:
        # Still update: the tracker ages its tracks by the keyframes it sees.
        self.tracker.update(Detections.empty(), seconds)
        return TrackedDetections.empty()

    def _prepared_clips(self) -> int:
        """How many prepared clips may wait for the action model.

        On a CPU the model is the slowest stage: two keep it busy, more would only hold memory.
        From a live source, clips waiting are seconds of delay (a GPU slower than the stream would
        lag further and further): two. On CUDA its first call (kernels loaded, the CUDA graph captured) took 0.8-0.9 s on an H100
        (3-5 s with cuDNN's autotuner), and then a clip takes milliseconds: a
        queue of two stopped the preparing, and with it the decoding (the frame store full), for
        the whole warm-up; a queue that holds the warm-up's clips lets both go on. Bounded in
        bytes: a uint8 clip of 32 frames at 256x455 is 10.7 MiB.
        """
        if self.action_model.device.type != "cuda" or self.reader.live:
            return 2
        height, width = short_side_size(self.height, self.width, self.action_model.spec.test_crop_size)
        clip_bytes = len(self.clip_offsets) * height * width * 3
        return max(2, _WAITING_CLIP_BYTES // clip_bytes)

    def _prepare(self, shared: _Shared, prepare_q: queue.Queue, act_q: queue.Queue) -> None:
        model = self.action_model
        size = model.spec.test_crop_size

        def scale(entry: _Entry) -> None:
            entry.scaled = scale_short_side_cv2(entry.frame.rgb, size)

        # A clip is 32 frames, half of them new at 1 keyframe/s; at 1080p their conversion to RGB
        # and resizing, one after another, made this the slowest stage on a 16-core GPU machine.
        with ThreadPoolExecutor(_scaling_workers(), thread_name_prefix="vidact-scale") as pool:
            while (job := _get(shared, prepare_q)) is not _END:
                if len(job.tracked):
                    instants = job.time + self.clip_offsets
                    shared.wait_past(float(instants[-1]), job.number)
                    entries = [shared.frame_at(float(t)) for t in instants]
                    with _Timer(shared, "prepare"):
                        # each frame once, though it may be the nearest to two instants (a low frame rate)
                        unscaled = {id(entry): entry for entry in entries if entry.scaled is None}
                        for _ in pool.map(scale, unscaled.values()):
                            pass
                        clip = np.stack([entry.scaled for entry in entries])
                        job.inputs, job.rois = model.prepare(clip, job.tracked.boxes, job.height, job.width)
                shared.set_clip_floor(job.time + 1.0 / self.rate + float(self.clip_offsets[0]), job.number + 1)
                _put(shared, act_q, job)
        _put(shared, act_q, _END)

    def _act(self, shared: _Shared, act_q: queue.Queue, out_q: queue.SimpleQueue) -> None:
        names = self.action_model.class_names
        if self.action_model.device.type == "cuda":  # on a CPU it would only take cores from decoding
            start = time.perf_counter()
            self.action_model.warm_up(self.height, self.width)
            shared.warmup_s = time.perf_counter() - start
        while (job := _get(shared, act_q)) is not _END:
            persons: list[PersonActions] = []
            if job.inputs is not None:
                with _Timer(shared, "act"):
                    scores = self.action_model(job.inputs, job.rois)
                if not np.isfinite(scores).all():  # fp16/bf16 overflow: the scores mean nothing
                    raise VidactError(f"{self.name}: the action model returned NaN/inf scores at {job.time:g} s; "
                                      "try --precision fp32")
                for k in range(len(job.tracked)):
                    chosen = self.thresholds.select(scores[k])
                    persons.append(
                        PersonActions(
                            track_id=int(job.tracked.track_ids[k]),
                            box=tuple(float(v) for v in job.tracked.boxes[k]),
                            detection_score=float(job.tracked.scores[k]),
                            actions=tuple(Action(i, names[i], float(scores[k, i])) for i in chosen),
                            scores=scores[k],
                        )
                    )
            result = KeyframeResult(job.time, job.frame_index, job.width, job.height, tuple(persons))
            shared.publish_result(job.number, result)
            _put(shared, out_q, result)
        _put(shared, out_q, _END)

    def _render(self, shared: _Shared, encode_q: queue.Queue) -> None:
        from vidact.pipeline.render import BoxOverlay, I420Painter, PanelOverlay, action_label_lines, track_color

        num_classes = self.action_model.num_classes
        even = self.width % 2 == 0 and self.height % 2 == 0
        painter = I420Painter.create(self.height, self.width) if even else None
        index = -1
        while (entry := shared.next_frame(index)) is not None:
            index = entry.index
            if self.end is not None and entry.time > self.end + 0.5 / self.fps:
                break
            before = max(0, math.floor(entry.time * self.rate + 1e-6))
            has_before = shared.wait_keyframe(before, need_result=False)
            has_after = has_before and shared.wait_keyframe(before + 1, need_result=False)
            nearer = before
            # interpolate_tracks's rule, on the same times: the labels must come from the
            # keyframe whose boxes are shown (they can differ at a midpoint otherwise).
            if has_after and interpolation_weight(shared.tracked[before][0], shared.tracked[before + 1][0],
                                                  entry.time) >= 0.5:
                nearer = before + 1
            if not has_before:  # past the last keyframe: hold the last one
                nearer = before = (shared.num_keyframes or 1) - 1
            overlays: list = []
            if before >= 0 and shared.wait_keyframe(nearer, need_result=True):
                with _Timer(shared, "render"):
                    before_time, tracked_before = shared.tracked[before]
                    after = shared.tracked.get(before + 1) if has_after else None
                    after_tracked, after_time = (after[1], after[0]) if after else (None, None)
                    boxes = interpolate_tracks(tracked_before, before_time, after_tracked, after_time, entry.time)
                    for k in range(len(boxes)):
                        person = _person_for(shared.results[nearer], boxes.track_ids[k], boxes.boxes[k])
                        track_id = int(boxes.track_ids[k])
                        head = f"#{track_id}" if track_id != UNTRACKED else "person"
                        actions = person.actions if person is not None else ()
                        shown = actions[:_MAX_LABELS]
                        lines = [head, *action_label_lines([(a.name, a.score) for a in shown], num_classes,
                                                           {a.name: a.index for a in shown})]
                        if len(actions) > len(shown):
                            lines.append(f"+{len(actions) - len(shown)} more")
                        color = track_color(track_id) if track_id != UNTRACKED else (0, 255, 0)
                        overlays.append(BoxOverlay(tuple(boxes.boxes[k]), color, tuple(lines)))
                shared.forget_keyframes_before(before - 1)
            overlays.append(PanelOverlay((f"{entry.time:7.2f} s",)))
            # Drawn here and made ready for the encoder, whose thread is the busier one.
            with _Timer(shared, "render"):
                frame = self._draw(entry.frame, overlays, painter)
            _put(shared, encode_q, (frame, entry.time))  # at the source frame's time
            shared.set_render_floor(index + 1)
        shared.set_render_floor(math.inf)  # frames after --end are still decoded for the last clip
        # The last frame drawn shows until the first one not drawn (--end), else to the video's end.
        _put(shared, encode_q, (_END, entry.time if entry is not None else shared.end_time))

    def _draw(self, frame: Frame, overlays: list, painter):
        """The encoder's frame of ``frame`` with ``overlays`` drawn.

        Drawn on the decoder's own YUV planes where it can (OpenCV, 4:2:0, even sides): no
        conversion of the whole frame to RGB and back, 1.5-2.7x faster at 1080p on 2 cores
        (benchmarks/video_stages.py). (Pools of worker threads for drawing and converting made
        1080p slower instead: 64 against 80 frames/s on 16 cores; they queued for the GIL.)
        """
        from vidact.io.video import VideoWriter
        from vidact.pipeline.render import draw_overlays

        i420 = frame.i420() if painter is not None else None
        if self._video_colorspace is None:  # the first frame picks the tag for the whole video
            self._video_colorspace = frame.colorspace if i420 is not None else VideoWriter.RGB_COLORSPACE
        if i420 is not None:
            return VideoWriter.frame_from_i420(painter.draw(i420, overlays))
        return VideoWriter.frame_from_rgb(draw_overlays(frame.rgb.copy(), overlays))

    def _encode(self, shared: _Shared, encode_q: queue.Queue) -> None:
        from vidact.io.video import VideoWriter

        frame, seconds = _get(shared, encode_q)
        if frame is _END:
            raise VidactError(f"{self.name}: no frame to draw into the video")
        # Opened on the first frame, whose drawing decided the video's colour tag.
        # Frames keep their source times (video of a variable frame rate stays in step), scaled
        # when the video plays at another rate than the source's (DEMO.OUTPUT_FPS). Each is
        # written once the next arrives: the last one is given how long it shows.
        speed = Fraction(self.reader.fps or self.video_fps) / Fraction(self.video_fps)
        with VideoWriter(self.video_path, self.video_fps, self.width, self.height, preset=self.video_preset,
                         colorspace=self._video_colorspace,
                         sample_aspect_ratio=self.reader.sample_aspect_ratio) as writer:
            while frame is not _END:
                following, following_seconds = _get(shared, encode_q)
                duration = float((following_seconds - seconds) * speed) if following is _END else None
                with _Timer(shared, "encode"):
                    writer.write(frame, seconds=float(seconds * speed), duration=duration)
                self.frames_written += 1
                frame, seconds = following, following_seconds

    # metrics -----------------------------------------------------------------

    def _finish_metrics(self, wall: float, gpu_metrics: dict[str, float]) -> None:
        shared = self._shared
        # Frames through the pipeline: the drawn ones, or without a video those decoded up to
        # --end (not the tail decoded for the last clip), so that frames/s compares the two.
        frames = self.frames_written if self.video_path is not None else self.frames_in_range
        metrics: dict[str, float | str] = {
            f"time_{stage}_s": round(seconds, 4) for stage, seconds in shared.busy.items()
        }
        metrics.update(
            wall_s=round(wall, 4),
            keyframes=float(shared.num_keyframes or 0),
            peak_frames_held=float(shared.peak_frames),
            frame_capacity=float(self.capacity),
            dropped_frames=float(shared.dropped_frames),
            peak_rss_gib=round(peak_rss_bytes() / 2**30, 4),
            warmup_s=round(shared.warmup_s, 4),
        )
        metrics["frames"] = float(frames)
        metrics["frames_per_s"] = round(frames / wall, 3) if wall > 0 else 0.0
        metrics["decoder"] = self.reader.decoder
        metrics.update(gpu_metrics)
        self.metrics = metrics


def _check_schedule(rate: float, end: float | None) -> None:
    """Refuse a keyframe rate or end that is not a finite number: ``inf`` passes a test of ``> 0``
    and ``nan`` one of ``< 0``, and neither gives a schedule."""
    if not (math.isfinite(rate) and rate > 0):
        raise VidactError(f"--rate must be a finite number of predictions per second above 0, got {rate}; "
                          "pass e.g. --rate 1")
    if end is not None and not (math.isfinite(end) and end >= 0):
        raise VidactError(f"--end must be a finite number of seconds, 0 or more, got {end}; pass e.g. --end 10")


def _person_for(result: KeyframeResult, track_id: int, box: np.ndarray) -> PersonActions | None:
    """The keyframe person a drawn box belongs to: same track id, or the same box if untracked."""
    for person in result.persons:
        if track_id != UNTRACKED and person.track_id == track_id:
            return person
        if track_id == UNTRACKED and person.track_id == UNTRACKED and np.allclose(person.box, box):
            return person
    return None


def _reader_hwaccel(decode: str, device: torch.device) -> str:
    """VideoReader's ``hwaccel`` for ``decode``: "auto" tries NVDEC only when the action model runs on CUDA."""
    if decode == "auto":
        return "auto" if device.type == "cuda" else "cpu"
    return decode


# The stages of runs not yet joined, stopped at exit (below).
_unjoined_runs: dict[_Shared, list[threading.Thread]] = {}


@atexit.register
def _stop_unjoined_runs() -> None:
    """Stop and wait for the stages of runs the interpreter is leaving: one whose iteration was
    left unfinished (``next()`` once, then exit), or whose stages a signal caught while they
    started. Shutting down under stages still in native code (FFmpeg, ONNX Runtime) aborts the
    process (SIGABRT) with their files half-written."""
    while _unjoined_runs:
        shared, threads = _unjoined_runs.popitem()
        shared.fail(_Aborted())
        DetectionRun._join(threads, shared)


def _gpu_usage(device: torch.device):
    """A started GPU usage recorder (mean utilisation, peak memory over the run) when the
    model runs on CUDA and NVML answers; None otherwise."""
    if device.type != "cuda":
        return None
    from vidact.tools.gpu_monitor import GpuSampler, GpuUsageRecorder

    try:
        sampler = GpuSampler()
    except VidactError:
        return None
    if not sampler.available:
        return None
    return GpuUsageRecorder(sampler).start()


def peak_rss_bytes() -> int:
    """This process's peak resident set size."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


# --------------------------------------------------------------------------- building blocks


def load_action_model(
    model: str | os.PathLike | nn.Module | Any = None,
    weights: str | os.PathLike | None = None,
    *,
    device: str | torch.device | None = None,
    label_file: str | os.PathLike | None = None,
    class_names: Labels | None = None,
    precision: str = "auto",
    compile: bool = False,
) -> ActionModel:
    """An :class:`ActionModel` from a zoo name (weights ``"default"`` unless given), a YAML config or
    :class:`~vidact.config.model.ModelConfig` (random weights unless given, with a notice), a checkpoint that
    stores its config (its own weights unless given) or a built model (no ``weights``: it has its own)."""
    from vidact.api import create_inference_model, parse_device, resolve_model
    from vidact.weights.zoo import DEFAULT_AVA_MODEL

    device = parse_device(device)
    if isinstance(model, nn.Module):
        if weights is not None:
            raise VidactError("weights= applies to a model name or config, not a model already built; "
                              "load them with vidact.create_model(..., weights=...) instead")
        built = model
    else:
        spec = model if model is not None else DEFAULT_AVA_MODEL
        resolved = resolve_model(spec)
        if not resolved.config.detection.enable:  # before its weights are fetched (hundreds of MB) to be refused
            raise VidactError(f"{spec}: a Kinetics classifier, without a box head (DETECTION.ENABLE false); "
                              "detect needs an AVA model (vidact models --task ava)")
        if weights is None and resolved.entry is not None:
            weights = "default"
        if weights is None and resolved.checkpoint is None:  # a checkpoint file brings its own weights
            notice(f"{spec}: no weights given; the action model has random weights (scores are meaningless)")
        built = create_inference_model(spec, weights=weights)
    names = class_names if class_names is not None else default_class_names(built, label_file)
    from vidact.models.optimize import inference_model

    # Without cuDNN's autotuner: in detect the model is not the slowest stage, and the autotuner's
    # first call (3-5 s on an H100, every other stage waiting on its results) cost more than its
    # faster kernels gave back (1080p data outputs: 170-265 frames/s on, 486-518 off).
    network = inference_model(built, device=device, precision=precision, compile=compile, cudnn_benchmark=False)
    return ActionModel(network, names, device)


def build_detector(
    detector: str | os.PathLike | PersonDetector = "torchvision",
    *,
    score_threshold: float | None = None,
    device: str | torch.device = "cpu",
    video_id: str | None = None,
    starting_second: float | None = None,
) -> PersonDetector:
    """A person detector from a spec string or path (see :func:`vidact.detectors.create_detector`) or as given."""
    from vidact.detectors.precomputed import check_starting_second, is_csv_spec

    check_starting_second(starting_second)
    if score_threshold is not None and not 0 <= score_threshold <= 1:  # above 1 finds no one, silently
        raise VidactError(f"person score threshold {score_threshold} is not in [0, 1]; pass e.g. --detector-threshold 0.5")
    if isinstance(detector, os.PathLike):
        detector = os.fspath(detector)
    if not isinstance(detector, str):
        if starting_second is not None:
            raise VidactError("a starting second (--boxes-start) applies to csv: boxes only; drop it")
        if score_threshold is not None:
            raise VidactError("a person score threshold (--detector-threshold) applies to a detector spec, "
                              "not a detector object; set it on the detector, or drop it")
        return detector
    from vidact.detectors import create_detector, is_onnx_spec

    options = dict(score_threshold=score_threshold, device=str(device), starting_second=starting_second)
    if is_onnx_spec(detector) and options["device"].startswith("cuda"):
        from vidact.detectors.onnx import onnxruntime_has_cuda

        if not onnxruntime_has_cuda():
            # The ONNX detectors are small and run once per keyframe: the CPU keeps up.
            notice(f"onnxruntime has no CUDA support here (install onnxruntime-gpu); "
                   f"the {detector} detector runs on the CPU")
            options["device"] = "cpu"
    if is_csv_spec(detector):
        try:  # a file with one video's boxes serves whatever the video is called
            return create_detector(detector, **options)
        except VidactError:
            if video_id is None:
                raise
            return create_detector(detector, video_id=video_id, **options)
    return create_detector(detector, **options)


def detect(
    source: str | int | os.PathLike,
    *,
    detector: str | PersonDetector = "torchvision",
    model: str | os.PathLike | nn.Module | ActionModel | None = None,
    weights: str | os.PathLike | None = None,
    rate: float = 1.0,
    device: str | torch.device | None = None,
    thresholds: ActionThresholds | float | None = None,
    detector_threshold: float | None = None,
    boxes_start: float | None = None,
    label_file: str | os.PathLike | None = None,
    end: float | None = None,
    video_path: str | os.PathLike | None = None,
    video_fps: float | None = None,
    video_preset: str = "veryfast",
    precision: str = "auto",
    compile: bool = False,
    decode: str = "cpu",
) -> DetectionRun:
    """Detect persons and their actions in a video; iterate the result for :class:`KeyframeResult`.

    Args:
        source: a video file, a webcam index or a stream URL.
        detector: a person-detector spec (``"torchvision"``, ``"fastestdet"``, ``"csv:PATH"``,
            a path, ...) or a detector object.
        boxes_start: for ``csv:`` boxes, the file's timestamp of the video's first frame (AVA
            files count from the movie's start: 900 for a clip cut at 15 min; PySlowFast's
            ``DEMO.STARTING_SECOND``).
        model: an AVA zoo name (default :data:`vidact.weights.zoo.DEFAULT_AVA_MODEL`), a YAML
            config, a built model (with ``model.config``) or an :class:`ActionModel`.
        weights: a checkpoint; zoo models default to their official weights. Not for a built model,
            which already has its weights.
        rate: predictions per second (keyframes at ``k / rate`` s).
        thresholds: an :class:`ActionThresholds`, one threshold for every class, or None for
            PySlowFast's common (0.7) / uncommon (0.3) rule.
        end: stop after the keyframe at this time (seconds), for a part of a long video.
        video_path: also draw the boxes, track ids and actions on every frame into this MP4.
        video_fps: that video's frame rate (default: the source's).
        video_preset: its x264 preset (:data:`vidact.io.video.X264_PRESETS`): faster presets make
            larger files.
        precision: the action model's inference mode: "auto" (optimised, bf16 where the hardware
            has it), "fp32", "bf16", "fp16" or "eager" (the unoptimised reference path).
        compile: also ``torch.compile`` the optimised model.
        decode: the video decoder: "cuda" (NVDEC), "cpu", or "auto": NVDEC when the action
            model runs on CUDA and NVDEC can decode the source, else the CPU.
    """
    from vidact.api import parse_device

    _check_schedule(rate, end)  # before a model is fetched
    if isinstance(model, ActionModel):
        if weights is not None:
            raise VidactError("weights= applies to a model name or config, not an ActionModel already loaded; "
                              "pass the weights to load_action_model instead")
        model_device = model.device
    else:
        model_device = parse_device(device)
    # Unreadable input fails here, before a model is fetched or a file written.
    reader = VideoReader(source, hwaccel=_reader_hwaccel(decode, model_device))
    try:
        action_model = model if isinstance(model, ActionModel) else load_action_model(
            model, weights, device=device, label_file=label_file, precision=precision, compile=compile
        )
        if thresholds is None:
            thresholds = ActionThresholds.pyslowfast(action_model.class_names)
        elif not isinstance(thresholds, ActionThresholds):
            thresholds = ActionThresholds.uniform(float(thresholds), action_model.num_classes)
        person_detector = build_detector(
            detector, score_threshold=detector_threshold, device=action_model.device, video_id=_video_id(source),
            starting_second=boxes_start,
        )
        return DetectionRun(
            reader, action_model, person_detector, thresholds, rate=rate, end=end, video_path=video_path,
            video_fps=video_fps, video_preset=video_preset,
        )
    except BaseException:
        reader.close()
        raise


def _video_id(source: str | int | os.PathLike) -> str:
    if isinstance(source, int) or (isinstance(source, str) and source.isdigit()):
        return f"webcam{source}"
    text = os.fspath(source)
    if is_url(text):
        # The file name in the URL's path (rtsp://cam/live/front -> "front"); "stream" if none.
        name = Path(urllib.parse.urlsplit(text).path).stem
        return re.sub(r"[^\w.-]", "_", name) or "stream"
    return Path(text.removeprefix("file://")).stem


@dataclass(frozen=True)
class DetectOutputs:
    """The files written for one video and the run's metrics."""

    video: Path | None
    actions_csv: Path
    tracks_csv: Path
    jsonl: Path
    timeline: Path | None
    metrics_json: Path
    keyframes: int
    persons: int
    metrics: dict[str, float | str]


def output_paths(out_dir: str | os.PathLike, video_id: str) -> dict[str, Path]:
    """Where :func:`detect_video` writes each output of ``video_id`` inside ``out_dir``."""
    out = Path(out_dir)
    return {
        "video": out / f"{video_id}.detect.mp4",
        "actions_csv": out / f"{video_id}.actions.csv",
        "tracks_csv": out / f"{video_id}.tracks.csv",
        "jsonl": out / f"{video_id}.keyframes.jsonl",
        "timeline": out / f"{video_id}.timeline.png",
        "metrics_json": out / f"{video_id}.metrics.json",
    }


def detect_video(
    source: str | int | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    video: bool = True,
    timeline: bool = True,
    video_path: str | os.PathLike | None = None,
    on_keyframe: Callable[[KeyframeResult], None] | None = None,
    **options: Any,
) -> DetectOutputs:
    """Run :func:`detect` on one video and write every output into ``out_dir`` (each atomically).

    Outputs (``ID`` = the file name without extension): ``ID.detect.mp4`` (annotated video,
    unless ``video=False``; ``video_path`` puts it elsewhere), ``ID.actions.csv`` (AVA format,
    every class's score per person and keyframe), ``ID.tracks.csv`` (the same boxes with track
    ids), ``ID.keyframes.jsonl``, ``ID.timeline.png`` and ``ID.metrics.json``. ``options`` go to
    :func:`detect`.
    """
    from vidact.pipeline import outputs

    video_id = _video_id(source)
    paths = output_paths(out_dir, video_id)
    if video_path is not None:
        paths["video"] = Path(video_path)
    written = {key: path for key, path in paths.items()
               if (video or key != "video") and (timeline or key != "timeline")}
    run = detect(source, video_path=paths["video"] if video else None, **options)  # a bad source fails here
    # The files are one result: a failure on the last (a full disk) must not leave the first.
    with atomic_paths(written) as tmp:
        run.video_path = tmp.get("video")
        results: list[KeyframeResult] = []
        for result in run:
            results.append(result)
            if on_keyframe is not None:
                on_keyframe(result)
        persons = sum(len(r.persons) for r in results)
        if persons == 0:
            notice(f"{run.name}: no person found on any of {len(results)} keyframes; the outputs are empty")
        outputs.write_actions_csv(tmp["actions_csv"], video_id, results)
        outputs.write_tracks_csv(tmp["tracks_csv"], video_id, results)
        outputs.write_jsonl(tmp["jsonl"], video_id, results)
        if timeline:
            outputs.write_timeline(tmp["timeline"], video_id, results, run.action_model.class_names, rate=run.rate)
        outputs.write_json(tmp["metrics_json"], {"video_id": video_id, "source": run.name, **run.metrics})
    return DetectOutputs(
        video=paths["video"] if video else None,
        actions_csv=paths["actions_csv"],
        tracks_csv=paths["tracks_csv"],
        jsonl=paths["jsonl"],
        timeline=paths["timeline"] if timeline else None,
        metrics_json=paths["metrics_json"],
        keyframes=len(results),
        persons=persons,
        metrics=run.metrics,
    )


def shard(items: Sequence[Any], rank: int | None = None, world_size: int | None = None) -> list[Any]:
    """This process's share of ``items`` under ``torchrun`` (``RANK``/``WORLD_SIZE``): every world_size-th item."""
    rank = int(os.environ.get("RANK", 0)) if rank is None else rank
    world_size = int(os.environ.get("WORLD_SIZE", 1)) if world_size is None else world_size
    if not 0 <= rank < world_size:
        raise VidactError(f"rank {rank} is outside a world of {world_size} processes")
    return list(items[rank::world_size])


def read_video_list(path: str | os.PathLike) -> list[Path | str]:
    """Videos from a text file, one a line (blank lines and ``#`` comments skipped): paths,
    relative to the file, or URLs."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise VidactError(f"{path}: cannot read the video list ({error.strerror or error}); check the path") from None
    except UnicodeDecodeError:
        raise VidactError(f"{path}: is not a text list of videos (one path or URL per line); "
                          "to run on a video, give it without --list") from None
    entries = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    # URLs stay text (a Path would fold "//"); file paths are relative to the list.
    videos = [entry if is_url(entry) else path.parent / entry.removeprefix("file://") for entry in entries]
    stems = [_video_id(video) for video in videos]
    duplicates = sorted({stem for stem in stems if stems.count(stem) > 1})
    if duplicates:
        raise VidactError(f"{path}: several videos are named {duplicates[0]!r}; their outputs would collide")
    if not videos:
        raise VidactError(f"{path}: lists no video; put one video path a line")
    return videos


def detect_many(
    videos: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    on_video: Callable[[DetectOutputs], None] | None = None,
    **options: Any,
) -> list[DetectOutputs]:
    """:func:`detect_video` on this rank's share of ``videos`` (all of them in a single process).

    The model and detector are built once; each video gets its own tracker, so the results
    do not depend on which process handles which video. ``on_video`` is called as each one
    is written. A video that fails on the way (corrupt in the middle, say) does not cost the
    others: each failure is a notice, and a :class:`VidactError` naming them all ends the call.
    """
    from vidact.detectors.precomputed import check_starting_second, is_csv_spec

    _check_schedule(options.get("rate", 1.0), options.get("end"))  # before a model is fetched
    check_starting_second(options.get("boxes_start"))
    mine = shard(videos)
    if not mine:
        return []
    for video in mine:  # fail on unreadable files before fetching models or writing anything
        if isinstance(video, (str, os.PathLike)) and not is_url(video):
            VideoReader(video).close()
    check_writable_folder(out_dir)  # and on an output that cannot be written, not after the work
    device = options.pop("device", None)
    if device is None and torch.cuda.is_available():
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    action_model = load_action_model(
        options.pop("model", None),
        options.pop("weights", None),
        device=device,
        label_file=options.pop("label_file", None),
        precision=options.pop("precision", "auto"),
        compile=options.pop("compile", False),
    )
    detector = options.pop("detector", "torchvision")
    if isinstance(detector, str) and not is_csv_spec(detector):
        detector = build_detector(detector, score_threshold=options.pop("detector_threshold", None),
                                  device=action_model.device)
    written, failed = [], []
    for video in mine:
        try:
            outputs = detect_video(video, out_dir, model=action_model, detector=detector, **options)
        except (VidactError, OSError) as err:
            if len(mine) == 1:
                raise
            failed.append(_video_id(video))
            notice(f"{err}; going on with the next video" if video is not mine[-1] else str(err))
            continue
        written.append(outputs)
        if on_video is not None:
            on_video(outputs)
    if failed:
        raise VidactError(f"{len(failed)} of {len(mine)} videos failed ({', '.join(failed)}); "
                          "the others' outputs are written, each failure's reason is above")
    return written


# --------------------------------------------------------------------------- PySlowFast's demo


def run_ava_demo(
    run_config,
    *,
    detector: str | PersonDetector | None = None,
    device: str | torch.device | None = None,
    rate: float = 1.0,
) -> DetectOutputs:
    """PySlowFast's AVA demo (``DEMO.ENABLE`` and ``DETECTION.ENABLE``) from a :class:`RunConfig`.

    Reads ``DEMO.INPUT_VIDEO`` (or ``DEMO.WEBCAM``), writes the annotated video to
    ``DEMO.OUTPUT_FILE`` and vidact's data outputs beside it (named after the input video). The checkpoint is
    PySlowFast's choice (:func:`vidact.engine.checkpoint.demo_checkpoint`): ``TEST.CHECKPOINT_FILE_PATH``,
    else the latest in ``OUTPUT_DIR/checkpoints``, else ``TRAIN.CHECKPOINT_FILE_PATH``. ``DEMO.PREDS_BOXES``
    replaces the detector; ``DEMO.DETECTRON2_*`` map to vidact's Detectron2-compatible Faster
    R-CNN (a notice says so) unless ``detector`` is given. Thresholds follow ``DEMO.VIS_MODE``.
    """
    demo = run_config.demo
    if not demo.enable:
        raise VidactError(f"{run_config.source}: DEMO.ENABLE is false; set DEMO.ENABLE True to run the demo")
    if not run_config.model.detection.enable:
        raise VidactError(f"{run_config.source}: DETECTION.ENABLE is false; the AVA demo needs a box model")
    source: str | int | None = demo.webcam if demo.webcam >= 0 else demo.input_video
    if source is None:
        raise VidactError(f"{run_config.source}: set DEMO.INPUT_VIDEO to a video file (or DEMO.WEBCAM to a camera)")
    if demo.output_file is None:
        output = Path(run_config.output_dir) / f"{_video_id(source)}.detect.mp4"
        notice(f"DEMO.OUTPUT_FILE is empty: vidact does not open a window; writing {output}")
    else:
        output = Path(demo.output_file)
    from vidact.engine.checkpoint import demo_checkpoint

    checkpoint = demo_checkpoint(run_config)
    if checkpoint is None:
        notice("no TEST.CHECKPOINT_FILE_PATH or TRAIN.CHECKPOINT_FILE_PATH: the model has random weights")
    if device is None:
        device = "cuda" if run_config.num_gpus > 0 and torch.cuda.is_available() else "cpu"
    action_model = _demo_model(run_config, checkpoint, device, demo.label_file)
    if demo.vis_mode == "top-k":
        thresholds = ActionThresholds(top_k=demo.top_k)
    else:
        thresholds = ActionThresholds.pyslowfast(
            action_model.class_names,
            demo.common_class_names if demo.label_file else (),
            demo.common_class_threshold,
            demo.uncommon_class_threshold,
        )
    if detector is None:
        detector = _demo_detector(run_config, source, action_model.device)
    return detect_video(
        source,
        output.parent,
        video_path=output,
        model=action_model,
        detector=detector,
        thresholds=thresholds,
        rate=rate,
        video_fps=demo.output_fps if demo.output_fps > 0 else None,
    )


def _demo_model(run_config, checkpoint, device, label_file) -> ActionModel:
    return load_action_model(run_config.model, checkpoint, device=device, label_file=label_file)


def _demo_detector(run_config, source: str | int, device: torch.device) -> PersonDetector:
    demo = run_config.demo
    if demo.preds_boxes:
        from vidact.detectors.precomputed import PrecomputedDetector

        notice(f"DEMO.PREDS_BOXES: person boxes from {demo.preds_boxes} instead of a detector")
        # PySlowFast's load_boxes_labels: rows scoring under AVA.DETECTION_SCORE_THRESH are
        # dropped, and a file of several videos gives the input video's: its file name up to a dot.
        options = dict(starting_second=demo.starting_second, score_threshold=run_config.ava.detection_score_threshold)
        try:
            return PrecomputedDetector(demo.preds_boxes, **options)
        except VidactError:
            if isinstance(source, int):
                raise
            return PrecomputedDetector(demo.preds_boxes, video_id=Path(os.fspath(source)).name.split(".")[0], **options)
    from vidact.weights.detectron2 import detector_spec_from_demo

    name, threshold = detector_spec_from_demo(demo.detector_config, demo.detector_weights, demo.detector_threshold)
    notice(
        f"DEMO.DETECTRON2_CFG={demo.detector_config}: using vidact's Detectron2-compatible Faster R-CNN "
        f"(detectron2:{name}, person threshold {threshold}); Detectron2 itself is not needed"
    )
    spec = name if name.endswith((".pkl", ".pth")) else f"detectron2:{name}"
    return build_detector(spec, score_threshold=threshold, device=device)
