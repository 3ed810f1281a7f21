"""Which source frames make up a clip, exactly as PySlowFast picks them.

Indices are computed with ``torch.linspace`` (float32) followed by ``.long()``
(truncation) where PySlowFast does so, because float64 rounding can land on the
other side of an integer.

Frame rates: PySlowFast's AVA frames are extracted at 30 fps, and its demo
reads the source's own frames without resampling, so :func:`centered_clip_indices`
works in source frames. Its Kinetics loader instead samples in *time*: a clip
lasts ``num_frames * sampling_rate / target_fps`` seconds, i.e.
``clip_span * source_fps / target_fps`` source frames, over which
``num_frames`` indices are spread (:func:`kinetics_clip_indices`). For a
centred clip at a time on a source whose rate differs from the model's,
:func:`centered_clip_indices_at_time` samples the same instants a 30 fps source
would have and takes, for each, the nearest source frame.
"""

from __future__ import annotations

import math
import random

import torch

from vidact.config.model import InputSpec


def _clamped(indices: torch.Tensor, num_source_frames: int) -> torch.Tensor:
    return indices.clamp(0, num_source_frames - 1)


def centered_clip_indices(center: int, num_frames: int, sampling_rate: int, num_source_frames: int) -> torch.Tensor:
    """PySlowFast's AVA ``get_sequence``: ``range(center - span/2, center + span/2, rate)`` clamped to ``[0, n-1]``.

    ``span = num_frames * sampling_rate``; frames past either end repeat the end frame.
    """
    half = num_frames * sampling_rate // 2
    indices = torch.arange(center - half, center + half, sampling_rate, dtype=torch.long)
    return _clamped(indices, num_source_frames)


def centered_clip_indices_at_time(
    center_seconds: float, spec: InputSpec, source_fps: float, num_source_frames: int
) -> torch.Tensor:
    """The centred clip of ``spec`` around a time, for a source of any frame rate.

    Samples the instants ``center + k / target_fps`` for the offsets ``k`` of
    :func:`centered_clip_indices` and maps each to the nearest source frame (the
    earlier one of two as near), as ``ffmpeg -r 30`` picks the frames PySlowFast's AVA
    models are trained on. With ``source_fps == spec.target_fps`` this equals
    ``centered_clip_indices(round(center * fps), ...)``.
    """
    half = spec.clip_span // 2
    offsets = torch.arange(-half, half, spec.sampling_rate, dtype=torch.float64)
    times = center_seconds + offsets / spec.target_fps
    indices = torch.ceil(times * source_fps - 0.5).long()
    return _clamped(indices, num_source_frames)


def demo_clip_indices(task_length: int, num_frames: int) -> torch.Tensor:
    """The frames PySlowFast's demo keeps of a task: ``linspace(0, task_length-1, num_frames).long()``.

    For a 64-frame task and 32 frames: ``[0, 2, ..., 60, 63]``.
    """
    return torch.linspace(0, task_length - 1, num_frames).long()


def clip_start_end(
    video_size: float,
    clip_size: float,
    clip_index: int,
    num_clips: int,
    use_offset: bool = False,
    rng: random.Random | None = None,
) -> tuple[float, float]:
    """PySlowFast's ``get_start_end_idx``: the (fractional) first and last frame of a clip.

    ``clip_index`` in ``[0, num_clips)`` places test clips uniformly (start =
    ``delta * i / K`` with ``delta = max(video_size - clip_size, 0)``; with
    ``use_offset`` the first clip starts at 0 and the last ends at the end).
    ``clip_index = -1`` draws a random start for training.
    """
    delta = max(video_size - clip_size, 0)
    if clip_index == -1:
        start = (rng or random).uniform(0, delta)
    elif use_offset:
        start = math.floor(delta / 2) if num_clips == 1 else clip_index * math.floor(delta / (num_clips - 1))
    else:
        start = delta * clip_index / num_clips
    return start, start + clip_size - 1


def temporal_sample_indices(start: float, end: float, num_samples: int, num_source_frames: int) -> torch.Tensor:
    """PySlowFast's ``temporal_sampling``: ``linspace(start, end, n)`` clamped to the frames, truncated."""
    return _clamped(torch.linspace(start, end, num_samples), num_source_frames).long()


def kinetics_clip_indices(
    num_source_frames: int,
    source_fps: float,
    spec: InputSpec,
    clip_index: int,
    num_clips: int,
    use_offset: bool = False,
    rng: random.Random | None = None,
) -> torch.Tensor:
    """The ``spec.num_frames`` source frames of Kinetics clip ``clip_index`` of ``num_clips``.

    The clip spans ``clip_span / target_fps`` seconds whatever the source rate
    (PySlowFast's ``clip_size = sampling_rate * num_frames / target_fps * fps``).
    This is PySlowFast's decode-the-whole-video path; its seek path selects the
    same window through timestamps and can differ by one source frame.
    """
    clip_size = spec.clip_span / spec.target_fps * source_fps
    start, end = clip_start_end(num_source_frames, clip_size, clip_index, num_clips, use_offset, rng)
    return temporal_sample_indices(start, end, spec.num_frames, num_source_frames)


def slow_pathway_indices(num_frames: int, alpha: int) -> torch.Tensor:
    """Frames of the fast pathway the slow one keeps: ``linspace(0, T-1, T // alpha).long()``."""
    return torch.linspace(0, num_frames - 1, num_frames // alpha).long()
