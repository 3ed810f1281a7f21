"""Whole-video action classification: Kinetics multi-view scores and a sliding-window timeline.

Views follow PySlowFast's Kinetics test protocol: ``K`` temporal clips placed
uniformly over the video (``delta * k / K``, :func:`vidact.io.sampling.kinetics_clip_indices`)
times ``C`` spatial crops (3: left/centre/right at short side ``TEST_CROP_SIZE``; 1: the
centre crop at short side ``TRAIN_JITTER_SCALES[0]``); the per-view softmax scores are
summed. A single clip (``1x1``) is taken from the middle of the video, as PySlowFast's
``USE_OFFSET_SAMPLING`` places it (its default would start it at frame 0).

The timeline tiles the video with back-to-back centre-crop clips (the last one moved
back to end with the video), so its cost grows with the video's length, not with how
many windows overlap. Windows of ``window`` seconds every ``stride`` seconds cover
``[0, duration]``; a window's scores are the mean of the tiles centred in it (or of the
nearest tile, for a window shorter than a clip).

Frames are streamed: every clip's frame indices are known up front, each needed frame
is decoded once and dropped as soon as no pending clip uses it, and long stretches no
clip needs are skipped by seeking.
"""

from __future__ import annotations

import bisect
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from vidact.config.model import InputSpec, ModelConfig
from vidact.data.labels import Labels, names_by_id
from vidact.errors import VidactError
from vidact.io.sampling import kinetics_clip_indices, temporal_sample_indices
from vidact.io.video import VideoReader
from vidact.transforms import kinetics_test_clip, normalize, pack_pathways, short_side_scale, uniform_crop
from vidact.weights.zoo import DEFAULT_KINETICS_MODEL

__all__ = [
    "ClassScore",
    "ClassifyResult",
    "ViewScores",
    "WindowPrediction",
    "class_names_for",
    "classify",
    "parse_views",
    "render_timeline",
    "top_classes",
]

# Decoding through a gap is dearer than seeking over it once the gap is longer than this.
_SEEK_GAP_SECONDS = 10.0
# A seek starts this much before the first needed frame, so that a rounding of
# timestamps to frame indices never lands after it.
_SEEK_MARGIN_SECONDS = 1.0


@dataclass(frozen=True)
class ClassScore:
    """One class and its score."""

    index: int
    name: str
    score: float

    def to_dict(self) -> dict:
        return {"index": self.index, "name": self.name, "score": self.score}


@dataclass(frozen=True)
class ViewScores:
    """The softmax scores of one view: a temporal clip seen through one spatial crop."""

    clip_index: int  # 0..K-1
    spatial_index: int  # 0 left/top, 1 centre, 2 right/bottom
    start: float  # seconds: presentation time of the clip's first sampled frame
    end: float  # seconds: presentation time of its last sampled frame
    scores: np.ndarray  # (num_classes,), sums to 1

    def to_dict(self) -> dict:
        return {
            "clip": self.clip_index,
            "crop": self.spatial_index,
            "start": self.start,
            "end": self.end,
            "scores": self.scores.tolist(),
        }


@dataclass(frozen=True)
class WindowPrediction:
    """The timeline entry for ``[start, end)`` seconds."""

    start: float
    end: float
    scores: np.ndarray  # (num_classes,), mean of the scores of the timeline clips centred in it
    top_k: tuple[ClassScore, ...]

    def to_dict(self) -> dict:
        return {"start": self.start, "end": self.end, "top_k": [c.to_dict() for c in self.top_k]}


@dataclass(frozen=True)
class ClassifyResult:
    """What :func:`classify` found; :meth:`to_dict` is the JSON form."""

    video: str
    model: str  # zoo name, config path or "custom"
    weights: str | None
    views: tuple[int, int]  # (spatial crops, temporal clips)
    fps: float
    num_frames: int
    duration: float  # seconds, num_frames / fps
    class_names: tuple[str, ...]
    view_scores: tuple[ViewScores, ...]
    scores: np.ndarray  # whole video: per-view softmax summed, divided by the number of views
    top_k: tuple[ClassScore, ...]
    windows: tuple[WindowPrediction, ...] = ()
    timeline_clips: tuple[ViewScores, ...] = ()  # the back-to-back clips the windows average
    window: float | None = None  # seconds
    stride: float | None = None  # seconds

    @property
    def top1(self) -> ClassScore:
        return self.top_k[0]

    def to_dict(self) -> dict:
        crops, clips = self.views
        return {
            "video": self.video,
            "model": self.model,
            "weights": self.weights,
            "views": {"spatial_crops": crops, "temporal_clips": clips, "ensemble": "sum"},
            "fps": self.fps,
            "num_frames": self.num_frames,
            "duration": self.duration,
            "classes": list(self.class_names),
            "top_k": [c.to_dict() for c in self.top_k],
            "scores": self.scores.tolist(),
            "view_scores": [v.to_dict() for v in self.view_scores],
            "timeline": {
                "window": self.window,
                "stride": self.stride,
                "windows": [w.to_dict() for w in self.windows],
            },
        }


def parse_views(views: str | tuple[int, int]) -> tuple[int, int]:
    """``"3x10"`` -> ``(3, 10)``: spatial crops (1 or 3) x temporal clips (>= 1)."""
    if isinstance(views, str):
        parts = views.lower().split("x")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise VidactError(f"views {views!r}: write CROPSxCLIPS, e.g. 3x10 (Kinetics test protocol) or 1x1")
        views = (int(parts[0]), int(parts[1]))
    crops, clips = views
    if crops not in (1, 3) or clips < 1:
        raise VidactError(f"views {crops}x{clips}: spatial crops must be 1 or 3 and clips at least 1, e.g. 3x10 or 1x1")
    return crops, clips


def top_classes(scores: np.ndarray, class_names: Sequence[str], k: int) -> tuple[ClassScore, ...]:
    """The ``k`` best classes, best first; ties go to the lower class index."""
    order = np.argsort(-scores, kind="stable")[: max(0, k)]
    return tuple(ClassScore(int(i), class_names[i], float(scores[i])) for i in order)


def class_names_for(model: nn.Module, labels: Labels | None = None) -> tuple[str, ...]:
    """Names of a model's classes: ``labels`` (a label-map file, a :class:`~vidact.data.labels.LabelMap`,
    a ``{name: id}`` dict or a list of names; ids 0..N-1), else the zoo entry's, else the Kinetics-400
    names for a 400-class model, else ``class N``."""
    from vidact.api import load_labels
    from vidact.data.label_sets import LABEL_SETS

    num_classes = model.config.num_classes
    if labels is None:
        names = load_labels(model)
        if names is None and num_classes == len(LABEL_SETS["kinetics400"]):
            names = LABEL_SETS["kinetics400"]
        return tuple(names) if names is not None else tuple(f"class {i}" for i in range(num_classes))
    names = names_by_id(labels)
    if len(names) != num_classes:
        source = labels if isinstance(labels, (str, os.PathLike)) else "labels"
        raise VidactError(f"{source}: {len(names)} class names for a model with {num_classes} classes; pass the model's label file")
    return names


# ---------------------------------------------------------------------------------------
# Clip planning
# ---------------------------------------------------------------------------------------


@dataclass
class _Clip:
    """A clip to run: its source frames and the crops to take of it."""

    indices: list[int]
    spatial_indices: tuple[int, ...]
    num_spatial_crops: int
    owner: tuple[str, int]  # ("view", clip k) or ("tile", timeline clip j)
    centre: float = 0.0  # seconds, timeline tiles only
    times: tuple[float, float] = (0.0, 0.0)  # filled in when run
    scores: list[np.ndarray] = field(default_factory=list)  # one per spatial index

    @property
    def last(self) -> int:
        return max(self.indices)


def _view_clips(num_frames: int, fps: float, spec: InputSpec, crops: int, clips: int) -> list[_Clip]:
    spatial = (0, 1, 2) if crops == 3 else (1,)
    planned = []
    for k in range(clips):
        indices = kinetics_clip_indices(num_frames, fps, spec, k, clips, use_offset=clips == 1)
        planned.append(_Clip(indices.tolist(), spatial, crops, ("view", k)))
    return planned


def _window_bounds(duration: float, window: float, stride: float) -> list[tuple[float, float]]:
    """``[start, end)`` windows from 0 every ``stride`` seconds until one reaches the end (or the
    next would start after it, when ``stride`` exceeds ``window``)."""
    bounds = []
    start = 0.0
    while True:
        end = min(start + window, duration)
        bounds.append((start, end))
        start = len(bounds) * stride
        if end >= duration - 1e-9 or start >= duration - 1e-9:
            return bounds


def _timeline_clips(num_frames: int, fps: float, spec: InputSpec) -> list[_Clip]:
    """Back-to-back clips over the whole video, the last one ending with it."""
    clip_size = spec.clip_span / spec.target_fps * fps  # source frames one clip spans
    count = max(1, math.ceil(num_frames / clip_size - 1e-6))
    last_start = max(num_frames - clip_size, 0.0)
    planned = []
    for j in range(count):
        start = min(j * clip_size, last_start)
        indices = temporal_sample_indices(start, start + clip_size - 1, spec.num_frames, num_frames)
        planned.append(_Clip(indices.tolist(), (1,), 1, ("tile", j), centre=(start + clip_size / 2) / fps))
    return planned


def _tiles_in(start: float, end: float, tiles: list[_Clip], last: bool) -> list[_Clip]:
    """The tiles centred in ``[start, end)`` (``[start, end]`` for the last window), else the nearest one."""
    inside = [t for t in tiles if start <= t.centre < end or (last and t.centre == end)]
    return inside or [min(tiles, key=lambda t: abs(t.centre - (start + end) / 2))]


# ---------------------------------------------------------------------------------------
# Streaming the frames the clips need
# ---------------------------------------------------------------------------------------


def _segments(needed: list[int], gap: int) -> list[tuple[int, int]]:
    """Runs of sorted frame indices, split where consecutive ones are more than ``gap`` apart."""
    runs = [[needed[0], needed[0]]]
    for index in needed[1:]:
        if index - runs[-1][1] > gap:
            runs.append([index, index])
        else:
            runs[-1][1] = index
    return [(a, b) for a, b in runs]


def _needed_frames(reader: VideoReader, needed: list[int], fps: float) -> Iterator[tuple[int, float, np.ndarray]]:
    """``(index, seconds, rgb)`` of the needed frames in order, each decoded once; seeks over long gaps."""
    wanted = set(needed)
    # A source that cannot seek (an http URL of a finished video) is read in one pass.
    gap = max(1, int(_SEEK_GAP_SECONDS * fps)) if reader.seekable else needed[-1] + 1
    for first, last in _segments(needed, gap):
        # From the frame's own timestamp: at a variable frame rate, first / fps is elsewhere.
        start = None if first <= gap else max(0.0, reader.frame_time(first) - _SEEK_MARGIN_SECONDS)
        frames = reader.frames(start=start)
        try:
            for frame in frames:
                if frame.index > last:
                    break
                if frame.index in wanted:
                    yield frame.index, frame.pts_seconds, frame.rgb
        finally:
            frames.close()


class _FrameCache:
    """Decoded frames that pending clips still need; a frame leaves when its last user has run."""

    def __init__(self, clips: list[_Clip]):
        self._users: dict[int, int] = {}
        for clip in clips:
            for index in set(clip.indices):
                self._users[index] = self._users.get(index, 0) + 1
        self._frames: dict[int, tuple[float, np.ndarray]] = {}
        self._keys: list[int] = []  # sorted indices held
        self._latest: tuple[float, np.ndarray] | None = None  # stand-in for frames past the end

    def add(self, index: int, seconds: float, rgb: np.ndarray) -> None:
        self._latest = (seconds, rgb)
        if self._users.get(index, 0) > 0:
            if index not in self._frames:
                bisect.insort(self._keys, index)
            self._frames[index] = (seconds, rgb)

    def gather(self, indices: list[int]) -> tuple[np.ndarray, float, float]:
        """``T x H x W x 3`` frames of a clip and the times of its first and last frame.

        An index the stream did not deliver (a video shorter than its header says) takes
        the nearest earlier frame held, else the nearest later one, else the last decoded.
        """
        picked = []
        for index in indices:
            if index in self._frames:
                picked.append(self._frames[index])
            elif self._keys:
                position = bisect.bisect_right(self._keys, index)
                picked.append(self._frames[self._keys[max(position - 1, 0)]])
            elif self._latest is not None:
                picked.append(self._latest)
            else:
                raise VidactError("no frame of the video could be decoded; the file may be truncated or corrupt")
        return np.stack([rgb for _, rgb in picked]), picked[0][0], picked[-1][0]

    def release(self, indices: list[int]) -> None:
        for index in set(indices):
            self._users[index] -= 1
            if self._users[index] == 0 and index in self._frames:
                del self._frames[index]
                self._keys.remove(index)


# ---------------------------------------------------------------------------------------
# Running the model
# ---------------------------------------------------------------------------------------


def _crops(frames: np.ndarray, spec: InputSpec, spatial_indices: tuple[int, ...], num_spatial_crops: int) -> torch.Tensor:
    """The views of one clip, ``N x C x T x S x S``: :func:`kinetics_test_clip` for each spatial index.

    The three crops share one normalised, scaled clip instead of redoing those steps per crop.
    """
    if num_spatial_crops == 1:
        return torch.stack([kinetics_test_clip(frames, spec, s, 1) for s in spatial_indices])
    clip = short_side_scale(normalize(frames, spec).permute(3, 0, 1, 2), spec.test_crop_size)
    return torch.stack([uniform_crop(clip, spec.test_crop_size, s) for s in spatial_indices])


def _run_clip(model: nn.Module, clip: _Clip, frames: np.ndarray, device: torch.device) -> list[np.ndarray]:
    spec = model.config.input
    views = _crops(frames, spec, clip.spatial_indices, clip.num_spatial_crops)
    inputs = [x.to(device) for x in pack_pathways(views, spec)]
    with torch.inference_mode():
        # In eval mode the Kinetics head already returns softmax probabilities.
        probabilities = model(inputs).float().cpu().numpy()
    return list(probabilities)


def _resolve_model(
    model: str | os.PathLike | ModelConfig | nn.Module, weights: str | os.PathLike | None, progress: bool
) -> tuple[nn.Module, str, str | None]:
    """The model in eval mode, a name for it and a name for its weights."""
    if isinstance(model, nn.Module):
        if not isinstance(getattr(model, "config", None), ModelConfig):
            raise VidactError("a model passed to classify must carry .config (build it with vidact.create_model)")
        if weights is not None:
            raise VidactError("weights= applies to a model name or config, not a model already built; "
                              "load them with vidact.create_model(..., weights=...) instead")
        _check_classifier(model.config)
        return model, "custom", None
    from vidact.api import create_inference_model, resolve_model

    resolved = resolve_model(model)
    _check_classifier(resolved.config)
    if weights is None:
        if resolved.checkpoint is not None:  # a converted model: its own weights
            weights = resolved.checkpoint
        elif resolved.entry is None:
            raise VidactError(f"{model}: a config holds no weights; pass weights=CHECKPOINT (--weights PATH)")
        else:
            weights = "default"
    if resolved.entry is not None:
        built, name = create_inference_model(resolved.entry.name, weights=weights, progress=progress), resolved.entry.name
    else:
        built = create_inference_model(resolved.config, weights=weights, progress=progress)
        name = "custom" if isinstance(model, ModelConfig) else os.fspath(model)
    return built, name, os.fspath(getattr(weights, "path", weights))


def _check_classifier(config: ModelConfig) -> None:
    if config.detection.enable or config.head_act != "softmax":
        raise VidactError(
            "this is an action detection model (per-person sigmoid scores); classify needs a Kinetics "
            "classifier, use `vidact detect` for detection models"
        )


def _video_length(reader: VideoReader) -> tuple[float, int]:
    """The frame rate and frame count the clip positions are computed from."""
    if reader.live:
        raise VidactError(f"{reader.name}: classify needs a video file (a live stream has no length); record it first")
    if not reader.fps:
        raise VidactError(f"{reader.name}: the video has no frame rate; remux it, e.g. ffmpeg -i IN -c copy OUT.mp4")
    fps = float(reader.fps)
    num_frames = reader.shown_frames() or (round(reader.duration * fps) if reader.duration else None)
    if not num_frames:
        raise VidactError(f"{reader.name}: the video's length is unknown; remux it, e.g. ffmpeg -i IN -c copy OUT.mp4")
    return fps, int(num_frames)


def classify(
    path: str | os.PathLike,
    model: str | os.PathLike | ModelConfig | nn.Module = DEFAULT_KINETICS_MODEL,
    *,
    weights: str | os.PathLike | None = None,
    labels: str | os.PathLike | Sequence[str] | None = None,
    views: str | tuple[int, int] = "3x10",
    window: float | None = None,
    stride: float | None = None,
    timeline: bool = False,
    top_k: int = 5,
    device: str | torch.device | None = None,
    precision: str = "auto",
    compile: bool = False,
    progress: bool = True,
) -> ClassifyResult:
    """Classify the actions of a whole video, optionally with a sliding-window timeline.

    Args:
        path: a video file (or a directory of extracted frames).
        model: a zoo name (``vidact.list_models("kinetics")``), a YAML config (PySlowFast or
            vidact), a :class:`ModelConfig`, or a model built by :func:`vidact.create_model`.
        weights: a checkpoint path; ``None`` means the zoo entry's official weights
            (``"default"``) and is an error for a config, which holds no weights. A built
            model already has its weights: passing any with it is an error.
        labels: class names, or a label-map file (e.g. PySlowFast's ``DEMO.LABEL_FILE_PATH``);
            by default the zoo's names (Kinetics-400 for any 400-class model).
        views: ``"CROPSxCLIPS"``: ``"3x10"`` is the Kinetics test protocol, ``"1x1"`` one
            centre view from the middle of the video.
        window, stride: timeline window length and step in seconds; the window defaults to
            one clip's length and the stride to the window.
        timeline: compute the timeline (implied by ``window`` or ``stride``).
        top_k: how many classes to report, for the video and for each window.
        device: where the model runs (default: CUDA when available).
        precision: inference mode: "auto" (optimised; bf16 where the hardware has it, else
            fp32), "fp32", "bf16", "fp16" or "eager" (the unoptimised reference path).
        compile: also ``torch.compile`` the optimised model.
        progress: show a progress bar over the clips (on a terminal).

    Raises :class:`VidactError` for an unreadable video or unusable model/weights, before
    any work is done.
    """
    from vidact.api import parse_device
    from vidact.models.optimize import inference_model

    crops, clips = parse_views(views)
    if top_k < 1:
        raise VidactError(f"top_k must be at least 1, got {top_k}")
    for name, value in (("window", window), ("stride", stride)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise VidactError(f"{name} must be a positive number of seconds, got {value}")
    with VideoReader(path) as reader:  # open first: a bad file fails before the model is built
        fps, num_frames = _video_length(reader)
        net, model_name, weights_name = _resolve_model(model, weights, progress)
        class_names = class_names_for(net, labels)
        top_k = min(top_k, len(class_names))
        device = parse_device(device)
        net = inference_model(net, device=device, precision=precision, compile=compile)
        spec: InputSpec = net.config.input

        duration = num_frames / fps
        timeline = timeline or window is not None or stride is not None
        if timeline:
            window = window or spec.clip_span / spec.target_fps
            stride = stride or window
        planned = _view_clips(num_frames, fps, spec, crops, clips)
        bounds = _window_bounds(duration, window, stride) if timeline else []
        tiles = _timeline_clips(num_frames, fps, spec) if timeline else []
        planned += tiles
        _run_planned(net, planned, reader, fps, device, progress)

    view_scores = tuple(
        ViewScores(c.owner[1], s, c.times[0], c.times[1], scores)
        for c in planned
        if c.owner[0] == "view"
        for s, scores in zip(c.spatial_indices, c.scores)
    )
    video_scores = np.sum([v.scores for v in view_scores], axis=0) / len(view_scores)
    windows = []
    for w, (start, end) in enumerate(bounds):
        members = _tiles_in(start, end, tiles, last=w == len(bounds) - 1)
        scores = np.mean([t.scores[0] for t in members], axis=0)
        windows.append(WindowPrediction(start, end, scores, top_classes(scores, class_names, top_k)))
    return ClassifyResult(
        video=os.fspath(path),
        model=model_name,
        weights=weights_name,
        views=(crops, clips),
        fps=fps,
        num_frames=num_frames,
        duration=duration,
        class_names=class_names,
        view_scores=view_scores,
        scores=video_scores,
        top_k=top_classes(video_scores, class_names, top_k),
        windows=tuple(windows),
        timeline_clips=tuple(ViewScores(t.owner[1], 1, t.times[0], t.times[1], t.scores[0]) for t in tiles),
        window=window,
        stride=stride,
    )


def _run_planned(
    model: nn.Module, planned: list[_Clip], reader: VideoReader, fps: float, device: torch.device, progress: bool
) -> None:
    """Decode the frames the clips need once, running each clip as soon as its frames are in."""
    from tqdm import tqdm

    pending = sorted(planned, key=lambda c: c.last)
    cache = _FrameCache(pending)
    needed = sorted({i for clip in pending for i in clip.indices})
    bar = tqdm(total=len(pending), unit="clip", desc=Path(reader.name).name, disable=None if progress else True)

    def run(clip: _Clip) -> None:
        frames, first, last = cache.gather(clip.indices)
        clip.times = (first, last)
        clip.scores = _run_clip(model, clip, frames, device)
        cache.release(clip.indices)
        bar.update(1)

    with bar:
        next_clip = 0
        for index, seconds, rgb in _needed_frames(reader, needed, fps):
            cache.add(index, seconds, rgb)
            while next_clip < len(pending) and pending[next_clip].last <= index:
                run(pending[next_clip])
                next_clip += 1
        # Clips reaching past the frames the stream delivered (its header overstated the length).
        for clip in pending[next_clip:]:
            run(clip)


# ---------------------------------------------------------------------------------------
# Rendering the timeline
# ---------------------------------------------------------------------------------------


def _window_at(windows: Sequence[WindowPrediction], seconds: float) -> WindowPrediction:
    """The window shown at a time: among those containing it, the one whose centre is nearest."""
    containing = [w for w in windows if w.start <= seconds < w.end]
    if not containing:  # after a window's end (the last, or a gap when the stride exceeds the window)
        started = [w for w in windows if w.start <= seconds]
        return started[-1] if started else windows[0]
    return min(containing, key=lambda w: abs((w.start + w.end) / 2 - seconds))


def render_timeline(
    result: ClassifyResult, output: str | os.PathLike, *, source: str | os.PathLike | None = None, progress: bool = True
) -> Path:
    """Write the video with each frame's window top-k (``[score] name``) drawn top-left.

    The output keeps the source's frame rate and size and appears only when complete.
    ``source`` defaults to the classified video.
    """
    from tqdm import tqdm

    from vidact.io.video import VideoWriter
    from vidact.pipeline.render import check_label_font, class_color, draw_text_panel

    if not result.windows:
        raise VidactError("the result has no timeline to render; classify with a window (--window SEC)")
    check_label_font(result.class_names)
    num_classes = len(result.class_names)
    with VideoReader(source if source is not None else result.video) as reader:
        fps = reader.fps or result.fps
        with VideoWriter(output, fps, reader.width, reader.height, sample_aspect_ratio=reader.sample_aspect_ratio) as writer:
            bar = tqdm(reader, total=result.num_frames, unit="frame", desc="render", disable=None if progress else True)
            # Each frame is written once the next is drawn: the last one is given how long it shows.
            drawn, seconds = None, 0.0
            for frame in bar:
                if drawn is not None:
                    writer.write(drawn, seconds=seconds)
                # Windows were laid out on index / fps (the clips sample frames by index).
                window = _window_at(result.windows, frame.index / result.fps)
                lines = [f"{window.start:.1f}-{window.end:.1f} s"]
                lines += [(f"[{c.score:.2f}] {c.name}", class_color(c.index, num_classes)) for c in window.top_k]
                rgb = frame.rgb if frame.rgb.flags.writeable else frame.rgb.copy()
                drawn, seconds = draw_text_panel(rgb, lines), frame.pts_seconds  # variable rates kept
            # One frame, or to the video's end where that is later: a slide or a paused recording
            # can end on a frame held for seconds.
            writer.write(drawn, seconds=seconds, duration=max(1 / float(fps), (reader.duration or 0.0) - seconds))
    return Path(output)
