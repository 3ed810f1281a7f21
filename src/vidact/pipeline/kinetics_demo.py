"""PySlowFast's Kinetics demo (``DEMO.ENABLE`` without detection), run from a :class:`RunConfig`.

As PySlowFast does it: the video is cut into tasks of ``NUM_FRAMES * SAMPLING_RATE``
consecutive frames, each task but the first starting with the last ``BUFFER_SIZE``
frames of the previous one. The model sees ``NUM_FRAMES`` of them
(``linspace(0, len - 1, NUM_FRAMES)``), the whole frame with its short side scaled to
``TEST_CROP_SIZE`` (OpenCV-style linear resize), no crop. The predicted classes
(``VIS_MODE`` "thres": score over ``COMMON_CLASS_THRES`` for ``COMMON_CLASS_NAMES``,
``UNCOMMON_CLASS_THRES`` for the rest; "top-k": the ``TOPK_PREDS`` best) are written as
``[score] name`` on the ``2 * CLIP_VIS_SIZE + 1`` frames around the task's keyframe,
and the video is written to ``DEMO.OUTPUT_FILE`` at the source's rate and size.

One deliberate difference: PySlowFast drops the frames of the last, incomplete task,
so its output is shorter than its input. vidact classifies that task too (its missing
frames repeat the last one, as clip sampling does at a video's end) and writes every
frame, so the output has the input's frame count.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from vidact.config.run import DemoConfig, RunConfig
from vidact.engine.checkpoint import demo_checkpoint
from vidact.errors import VidactError
from vidact.io.sampling import demo_clip_indices
from vidact.io.video import VideoReader, VideoWriter
from vidact.transforms import ava_test_clip, pack_pathways

__all__ = ["DemoSummary", "predicted_classes", "run_kinetics_demo"]

_DEFAULT_FPS = 30  # output rate when neither the source nor DEMO.OUTPUT_FPS gives one


@dataclass(frozen=True)
class DemoSummary:
    """What a demo run wrote."""

    output: Path
    num_frames: int
    num_tasks: int
    fps: Fraction
    checkpoint: Path


def _class_names(demo: DemoConfig, num_classes: int) -> tuple[str, ...]:
    """Names from ``DEMO.LABEL_FILE_PATH`` (JSON ``{"name": id}``), PySlowFast's list of max id + 1."""
    if demo.label_file is None:
        return tuple(f"class {i}" for i in range(num_classes))
    from vidact.data.labels import read_label_map

    label_map = read_label_map(demo.label_file)
    if min(label_map.ids) < 0 or max(label_map.ids) + 1 != num_classes:
        raise VidactError(
            f"{demo.label_file}: class ids must run 0..{num_classes - 1} for the model's {num_classes} classes "
            f"(found {min(label_map.ids)}..{max(label_map.ids)}); "
            "set DEMO.LABEL_FILE_PATH to the label file of the model's dataset"
        )
    return tuple(label_map.names.get(i, f"class {i}") for i in range(num_classes))


def predicted_classes(scores: np.ndarray, names: Sequence[str], demo: DemoConfig) -> list[tuple[int, float]]:
    """The ``(class index, score)`` pairs the demo draws, best first (see the module docstring)."""
    order = np.argsort(-scores, kind="stable")
    if demo.vis_mode == "top-k":
        return [(int(i), float(scores[i])) for i in order[: demo.top_k]]
    # Common class names only take effect with a label file, as in PySlowFast.
    common = set(demo.common_class_names) if demo.label_file else set()
    return [
        (int(i), float(scores[i]))
        for i in order
        if scores[i] >= (demo.common_class_threshold if names[i] in common else demo.uncommon_class_threshold)
    ]


def _tasks(frames: Iterator[np.ndarray], length: int, buffer_size: int) -> Iterator[tuple[list[np.ndarray], int, int]]:
    """``(task frames, buffered frames at its start, real frames)`` until the video ends.

    A last task with fewer new frames than a full one is padded with its last frame.
    """
    buffer: list[np.ndarray] = []
    while True:
        new = list(itertools.islice(frames, length - len(buffer)))
        if not new:
            return
        task = buffer + new
        real = len(task)
        task += [task[-1]] * (length - real)
        yield task, len(buffer), real
        buffer = task[real - buffer_size : real] if buffer_size else []


def _drawn(frames: list[np.ndarray], keyframe: int, lines: list, clip_vis_size: int) -> list[np.ndarray]:
    """The frames with ``lines`` drawn on those within ``clip_vis_size`` of ``keyframe``.

    Drawn frames are copies: the originals may start the next task (its buffer).
    """
    from vidact.pipeline.render import draw_text_panel

    drawn = list(frames)
    for position in range(max(0, keyframe - clip_vis_size), min(len(frames), keyframe + clip_vis_size + 1)):
        drawn[position] = draw_text_panel(frames[position].copy(), lines)
    return drawn


def run_kinetics_demo(
    run: RunConfig, *, model: nn.Module | None = None, device: str | torch.device | None = None, progress: bool = True
) -> DemoSummary:
    """Run PySlowFast's Kinetics demo as ``run.demo`` describes it; see the module docstring.

    ``model`` replaces the one built from ``run.model`` and its checkpoint (tests, notebooks).
    Raises :class:`VidactError` for unusable input, output, labels or weights, before
    anything is written; the output file appears only when complete.
    """
    from tqdm import tqdm

    from vidact.api import create_inference_model, parse_device
    from vidact.pipeline.render import check_label_font, class_color

    demo = run.demo
    if run.model.detection.enable:
        raise VidactError(f"{run.source}: DETECTION.ENABLE is set; this is the AVA demo, not the Kinetics one")
    if demo.output_file is None:
        raise VidactError(f"{run.source}: DEMO.OUTPUT_FILE is empty; vidact writes the demo to a file, set it (--opts DEMO.OUTPUT_FILE out.mp4)")
    if demo.webcam < 0 and demo.input_video is None:
        raise VidactError(f"{run.source}: DEMO.INPUT_VIDEO is empty; set it to a video file (or DEMO.WEBCAM to a camera index)")
    if demo.vis_mode == "top-k" and demo.top_k < 1:
        raise VidactError(f"{run.source}: TENSORBOARD.MODEL_VIS.TOPK_PREDS {demo.top_k} must be at least 1 with DEMO.VIS_MODE top-k; raise it")
    if demo.clip_vis_size < 0:
        raise VidactError(f"{run.source}: DEMO.CLIP_VIS_SIZE {demo.clip_vis_size} must be 0 or more (frames drawn each side of the keyframe); fix it")
    checkpoint = demo_checkpoint(run) if model is None else None  # a model given brings its weights
    if model is None and checkpoint is None:
        raise VidactError(
            f"{run.source}: no weights; set TEST.CHECKPOINT_FILE_PATH or TRAIN.CHECKPOINT_FILE_PATH "
            "(--opts TRAIN.CHECKPOINT_FILE_PATH model.pyth)"
        )
    source = demo.webcam if demo.webcam >= 0 else demo.input_video
    with VideoReader(source) as reader:  # open first: a bad input fails before the model is built
        names = _class_names(demo, run.model.num_classes)
        check_label_font(names)
        if model is None:
            model = create_inference_model(run.model, weights=checkpoint)
        device = parse_device(device)
        model = model.eval().to(device)
        spec = model.config.input
        length = spec.clip_span
        if not 0 <= demo.buffer_size <= length // 2:
            raise VidactError(f"{run.source}: DEMO.BUFFER_SIZE {demo.buffer_size} must be in 0..{length // 2} (half a task)")
        fps = Fraction(demo.output_fps) if demo.output_fps > 0 else reader.fps or Fraction(_DEFAULT_FPS)
        sample = demo_clip_indices(length, spec.num_frames).tolist()
        total = -(-reader.num_frames // (length - demo.buffer_size)) if reader.num_frames else None
        written = tasks = 0
        with VideoWriter(demo.output_file, fps, reader.width, reader.height,
                         sample_aspect_ratio=reader.sample_aspect_ratio) as writer:
            frames = (frame.rgb for frame in reader)
            bar = tqdm(_tasks(frames, length, demo.buffer_size), total=total, unit="task", disable=None if progress else True)
            for task, buffered, real in bar:
                clip = ava_test_clip(np.stack([task[i] for i in sample]), spec)
                with torch.inference_mode():
                    scores = model([x.to(device) for x in pack_pathways(clip, spec)])[0].float().cpu().numpy()
                lines = [
                    (f"[{score:.2f}] {names[index]}", class_color(index, len(names)))
                    for index, score in predicted_classes(scores, names, demo)
                ]
                # Buffered frames were written with the previous task; draw and write the new ones.
                new = _drawn(task[buffered:real], length // 2 - buffered, lines, demo.clip_vis_size)
                for frame in new:
                    writer.write(frame)
                written += len(new)
                tasks += 1
    return DemoSummary(Path(demo.output_file), written, tasks, fps, checkpoint)
