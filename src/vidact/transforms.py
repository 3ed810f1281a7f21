"""Clip preprocessing identical to PySlowFast's, driven by :class:`~vidact.config.model.InputSpec`.

Two resizing paths exist because PySlowFast has two:

* Kinetics (``kinetics_test_clip``, ``train_clip``): frames are normalised to
  float first, then the short side is scaled with ``F.interpolate(bilinear,
  align_corners=False)``, then cropped.
* AVA and the demo (``ava_test_clip``): uint8 frames are resized with OpenCV's
  ``INTER_LINEAR`` (re-implemented here bit for bit, OpenCV is not a
  dependency), then divided by 255 and normalised; no crop.

Frames enter as ``T x H x W x 3`` uint8 RGB (what :class:`vidact.io.video.VideoReader`
yields, stacked) and leave as float ``C x T x H x W``; :func:`pack_pathways`
makes the model's list of ``N x C x T x H x W`` inputs.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from vidact.config.model import InputSpec
from vidact.io.sampling import slow_pathway_indices
from vidact.optional import opencv

# OpenCV's fixed-point resize: weights are scaled by 2**11 and rounded to int16.
_CV_COEF_BITS = 11
_CV_COEF_SCALE = 1 << _CV_COEF_BITS


def short_side_size(height: int, width: int, size: int) -> tuple[int, int]:
    """``(new_height, new_width)`` with the short side ``size`` and the long side ``floor(long * size / short)``.

    PySlowFast's formula in both ``scale`` (cv2) and ``random_short_side_scale_jitter``;
    a square becomes ``size x size``.
    """
    if width < height:
        return int(math.floor(float(height) / width * size)), size
    return size, int(math.floor(float(width) / height * size))


def _needs_scaling(height: int, width: int, size: int) -> bool:
    # PySlowFast returns the input untouched when the short side already equals size.
    return not ((width <= height and width == size) or (height <= width and height == size))


def _cv2_linear_taps(src: int, dst: int, horizontal: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First/second source index and int16 weights of OpenCV's INTER_LINEAR along one axis."""
    scale = 1.0 / (dst / src)  # OpenCV inverts its inverse scale, in double
    pos = ((np.arange(dst, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    first = np.floor(pos).astype(np.int64)
    frac = (pos - first.astype(np.float32)).astype(np.float32)
    if horizontal:
        # Outside the source OpenCV moves a column to the edge pixel with weight 1; rows
        # keep their weights and both taps read the clamped edge row (which rounds differently).
        frac[(first < 0) | (first >= src - 1)] = 0
    second = np.clip(first + 1, 0, src - 1)
    first = np.clip(first, 0, src - 1)
    one = np.float32(1)
    weights = np.stack([(one - frac) * np.float32(_CV_COEF_SCALE), frac * np.float32(_CV_COEF_SCALE)], axis=-1)
    return first, second, np.rint(weights).astype(np.int32)  # cvRound: half to even


def resize_linear_cv2(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)`` for uint8.

    ``image`` is ``... x H x W x C`` uint8 (leading axes, e.g. time, are batched). Runs
    OpenCV itself when it is installed (the ``detect`` extra brings it; about 30x faster on
    1080p frames), else :func:`resize_linear_numpy`, which gives the same bytes.
    """
    if image.dtype != np.uint8:
        raise TypeError(f"resize_linear_cv2 takes uint8 images, got {image.dtype}")
    cv2 = opencv()
    if cv2 is None or image.shape[-1] > 4:
        return resize_linear_numpy(image, height, width)
    frames = image.reshape(-1, *image.shape[-3:])
    out = np.empty((len(frames), height, width, image.shape[-1]), np.uint8)
    for frame, target in zip(frames, out):
        target[...] = cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR).reshape(target.shape)
    return out.reshape(*image.shape[:-3], height, width, image.shape[-1])


def resize_linear_numpy(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """OpenCV's uint8 INTER_LINEAR resize in numpy, byte for byte.

    Follows OpenCV's arithmetic: half-pixel centres, 11-bit integer weights, a
    horizontal pass in int32, then the vertical pass of its SIMD kernel
    (``((a >> 4) * wa >> 16) + ((b >> 4) * wb >> 16) + 2 >> 2``). An exact 2x
    downscale is an average of 2x2 blocks, as OpenCV switches to INTER_AREA there.
    """
    src_h, src_w = image.shape[-3], image.shape[-2]
    if (src_h, src_w) == (height, width):
        return image.copy()
    if src_h == 2 * height and src_w == 2 * width:
        pixels = image.astype(np.int32)
        total = pixels[..., 0::2, 0::2, :] + pixels[..., 0::2, 1::2, :]
        total += pixels[..., 1::2, 0::2, :] + pixels[..., 1::2, 1::2, :]
        return ((total + 2) >> 2).astype(np.uint8)
    x0, x1, wx = _cv2_linear_taps(src_w, width, horizontal=True)
    y0, y1, wy = _cv2_linear_taps(src_h, height, horizontal=False)

    def horizontal(rows: np.ndarray) -> np.ndarray:  # only the source rows the output reads
        return rows[..., x0, :].astype(np.int32) * wx[:, 0, None] + rows[..., x1, :].astype(np.int32) * wx[:, 1, None]

    top = (horizontal(image[..., y0, :, :]) >> 4) * wy[:, 0, None, None] >> 16
    bottom = (horizontal(image[..., y1, :, :]) >> 4) * wy[:, 1, None, None] >> 16
    return np.clip((top + bottom + 2) >> 2, 0, 255).astype(np.uint8)


def scale_short_side_cv2(frames: np.ndarray, size: int) -> np.ndarray:
    """PySlowFast's ``cv2_transform.scale``: short side to ``size`` with OpenCV INTER_LINEAR (uint8 ``...HWC``)."""
    height, width = frames.shape[-3], frames.shape[-2]
    if not _needs_scaling(height, width, size):
        return frames
    return resize_linear_cv2(frames, *short_side_size(height, width, size))


def scale_boxes(boxes: np.ndarray, height: int, width: int, size: int) -> np.ndarray:
    """PySlowFast's ``cv2_transform.scale_boxes``: pixel boxes of a ``height x width`` frame, rescaled
    to match :func:`scale_short_side_cv2`.

    Note PySlowFast scales by the long side's ratio ``new_long / long``, which is
    what the network was trained with.
    """
    if not _needs_scaling(height, width, size):
        return boxes
    new_height, new_width = short_side_size(height, width, size)
    factor = new_height / height if width < height else new_width / width
    return boxes * factor


def short_side_scale(frames: torch.Tensor, size: int) -> torch.Tensor:
    """PySlowFast's deterministic ``random_short_side_scale_jitter``: bilinear, ``align_corners=False``.

    ``frames`` is float ``B x C x H x W`` (any two leading axes, e.g. ``C x T``).
    """
    height, width = frames.shape[-2:]
    if not _needs_scaling(height, width, size):
        return frames
    return F.interpolate(frames, size=short_side_size(height, width, size), mode="bilinear", align_corners=False)


def uniform_crop(frames: torch.Tensor, size: int, spatial_index: int) -> torch.Tensor:
    """PySlowFast's ``uniform_crop``: a ``size`` square at the start (0), centre (1) or end (2) of the long side.

    The centre offset is ``ceil((side - size) / 2)``; along the short side the crop is always centred.
    """
    y, x = crop_offsets(*frames.shape[-2:], size, spatial_index)
    return frames[..., y : y + size, x : x + size]


def crop_offsets(height: int, width: int, size: int, spatial_index: int = 1) -> tuple[int, int]:
    """Top and left of :func:`uniform_crop`'s square (PySlowFast's ``spatial_shift_crop_list`` too)."""
    if spatial_index not in (0, 1, 2):
        raise ValueError(f"spatial_index must be 0, 1 or 2, got {spatial_index}")
    y = int(math.ceil((height - size) / 2))
    x = int(math.ceil((width - size) / 2))
    if height > width:
        y = {0: 0, 1: y, 2: height - size}[spatial_index]
    else:
        x = {0: 0, 1: x, 2: width - size}[spatial_index]
    return y, x


def normalize(frames: np.ndarray | torch.Tensor, spec: InputSpec) -> torch.Tensor:
    """``(x / 255 - mean) / std`` per channel on ``... x 3`` frames (RGB, uint8 or float in 0-255).

    ``spec.mean``/``std`` are in the network's channel order; for a BGR network they are
    reversed here because the frames are still RGB (:func:`pack_pathways` flips them later).
    """
    tensor = torch.as_tensor(frames).float() / 255.0
    mean = torch.tensor(spec.mean, dtype=torch.float32, device=tensor.device)
    std = torch.tensor(spec.std, dtype=torch.float32, device=tensor.device)
    if spec.channel_order.upper() == "BGR":
        mean, std = mean.flip(0), std.flip(0)
    return (tensor - mean) / std


def kinetics_test_clip(
    frames: np.ndarray | torch.Tensor, spec: InputSpec, spatial_index: int = 1, num_spatial_crops: int = 1
) -> torch.Tensor:
    """A Kinetics test view: ``T x H x W x 3`` uint8 RGB to float ``3 x T x S x S``.

    With one spatial crop the short side goes to ``train_jitter_scales[0]`` and the
    centre ``test_crop_size`` square is kept; with three (``num_spatial_crops=3``)
    the short side goes to ``test_crop_size`` and ``spatial_index`` picks
    left/top (0), centre (1) or right/bottom (2).
    """
    if num_spatial_crops > 1:
        scale = spec.test_crop_size
    else:
        scale, spatial_index = spec.train_jitter_scales[0], 1
    clip = normalize(frames, spec).permute(3, 0, 1, 2)  # C T H W
    clip = short_side_scale(clip, scale)
    return uniform_crop(clip, spec.test_crop_size, spatial_index).contiguous()


def ava_test_clip(frames: np.ndarray, spec: InputSpec) -> torch.Tensor:
    """An AVA test/demo clip: ``T x H x W x 3`` uint8 RGB to float ``3 x T x H' x W'``, short side ``test_crop_size``.

    Resized as uint8 with OpenCV's INTER_LINEAR semantics, then normalised; no crop.
    Scale the person boxes with :func:`scale_boxes`.
    """
    scaled = scale_short_side_cv2(np.asarray(frames), spec.test_crop_size)
    return normalize(scaled, spec).permute(3, 0, 1, 2).contiguous()


def random_short_side_scale(
    frames: torch.Tensor, min_size: int, max_size: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Training scale jitter: short side to ``round(uniform(min_size, max_size))``."""
    u = torch.rand((), generator=generator).item()
    return short_side_scale(frames, int(round(min_size + (max_size - min_size) * u)))


def random_crop(frames: torch.Tensor, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A ``size`` square at a random offset in ``[0, side - size)``, as PySlowFast's ``random_crop``."""
    height, width = frames.shape[-2:]
    if (height, width) == (size, size):
        return frames
    y = int(torch.randint(0, height - size, (), generator=generator)) if height > size else 0
    x = int(torch.randint(0, width - size, (), generator=generator)) if width > size else 0
    return frames[..., y : y + size, x : x + size]


def horizontal_flip(frames: torch.Tensor, prob: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror left-right with probability ``prob``."""
    if torch.rand((), generator=generator).item() < prob:
        return frames.flip(-1)
    return frames


def train_clip(
    frames: np.ndarray | torch.Tensor, spec: InputSpec, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Kinetics training augmentation: scale jitter in ``train_jitter_scales``, random crop, flip.

    Returns float ``3 x T x train_crop_size x train_crop_size``.
    """
    clip = normalize(frames, spec).permute(3, 0, 1, 2)
    clip = random_short_side_scale(clip, *spec.train_jitter_scales, generator=generator)
    clip = random_crop(clip, spec.train_crop_size, generator=generator)
    return horizontal_flip(clip, 0.5, generator=generator).contiguous()


def pack_pathways(frames: torch.Tensor, spec: InputSpec) -> list[torch.Tensor]:
    """The model's inputs from a ``C x T x H x W`` (or ``N x C x T x H x W``) clip of ``spec.num_frames``.

    Channels are reversed first when the network expects BGR. Two-pathway
    models get ``[slow, fast]`` with the slow pathway taking
    ``linspace(0, T-1, T // alpha).long()`` of the frames.
    """
    if frames.dim() == 4:
        frames = frames.unsqueeze(0)
    if spec.channel_order.upper() == "BGR":
        frames = frames.flip(1)
    if spec.num_pathways == 1:
        return [frames]
    slow = frames.index_select(2, slow_pathway_indices(frames.shape[2], spec.alpha).to(frames.device))
    return [slow, frames]
