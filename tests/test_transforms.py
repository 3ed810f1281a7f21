"""Preprocessing and clip sampling against hand-computed values and PySlowFast's formulas."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from vidact.config.model import InputSpec
from vidact.io.sampling import (
    centered_clip_indices,
    centered_clip_indices_at_time,
    clip_start_end,
    demo_clip_indices,
    kinetics_clip_indices,
    slow_pathway_indices,
)
from vidact.transforms import (
    ava_test_clip,
    kinetics_test_clip,
    normalize,
    pack_pathways,
    resize_linear_cv2,
    resize_linear_numpy,
    scale_boxes,
    scale_short_side_cv2,
    short_side_scale,
    short_side_size,
    train_clip,
    uniform_crop,
)

SLOWFAST_8X8 = InputSpec(num_frames=32, sampling_rate=2, alpha=4, num_pathways=2)  # the AVA c3 / 8x8 fast pathway


def norm(value: float) -> float:
    return (value / 255 - 0.45) / 0.225


def test_short_side_size_floors_the_long_side():
    assert short_side_size(240, 426, 256) == (256, 454)  # 426 * 256 / 240 = 454.4
    assert short_side_size(432, 768, 256) == (256, 455)  # 455.1
    assert short_side_size(426, 240, 256) == (454, 256)  # portrait
    assert short_side_size(300, 300, 256) == (256, 256)
    assert short_side_size(4, 6, 2) == (2, 3)


def test_hand_checked_4x6_through_both_resize_paths_crop_and_normalise():
    # pixel (y, x) = 10 y + x; short side 4 -> 2 gives 2 x 3, an exact 2x downscale.
    image = (10 * np.arange(4)[:, None] + np.arange(6)[None, :]).astype(np.uint8)
    frames = np.repeat(image[None, :, :, None], 3, axis=3)  # T=1, grey RGB
    spec = InputSpec(test_crop_size=2, train_jitter_scales=(2, 2))

    # Kinetics: bilinear, align_corners=False at scale 2 averages each 2x2 block:
    # block (i, j) -> 10 (2i + 0.5) + (2j + 0.5) = 20 i + 2 j + 5.5, i.e. [[5.5, 7.5, 9.5], [25.5, 27.5, 29.5]].
    # Centre crop 2 of width 3: x offset ceil((3 - 2) / 2) = 1 -> columns 1, 2.
    clip = kinetics_test_clip(frames, spec)
    assert clip.shape == (3, 1, 2, 2)
    expected = torch.tensor([[norm(7.5), norm(9.5)], [norm(27.5), norm(29.5)]])
    torch.testing.assert_close(clip[0, 0], expected, rtol=0, atol=1e-6)

    # AVA/OpenCV: an exact 2x downscale is INTER_AREA, (sum + 2) >> 2 on uint8: 5.5 -> 6, 7.5 -> 8, ...
    assert scale_short_side_cv2(frames, 2)[0, :, :, 0].tolist() == [[6, 8, 10], [26, 28, 30]]
    ava = ava_test_clip(frames, spec)
    assert ava.shape == (3, 1, 2, 3)  # no crop
    torch.testing.assert_close(ava[1, 0, 1], torch.tensor([norm(26), norm(28), norm(30)]), rtol=0, atol=1e-6)


def test_cv2_linear_fixed_point_hand_example():
    # Width 3 -> 2: scale 1.5, source x = (dx + 0.5) * 1.5 - 0.5 = 0.25 and 1.75.
    # Weights in 1/2048: (1536, 512) on pixels (0, 1) and (512, 1536) on pixels (1, 2).
    # Horizontal sums: 90 * 512 = 46080 and 90 * 512 + 180 * 1536 = 322560.
    # Vertical (one row, weight 2048): ((46080 >> 4) * 2048 >> 16) = 90, (90 + 2) >> 2 = 23;
    # ((322560 >> 4) * 2048 >> 16) = 630, (630 + 2) >> 2 = 158. Float bilinear would give 22.5 and 157.5.
    row = np.array([[[0], [90], [180]]], np.uint8)
    assert resize_linear_numpy(row, 1, 2)[0, :, 0].tolist() == [23, 158]
    assert resize_linear_cv2(row, 1, 2)[0, :, 0].tolist() == [23, 158]


def test_resize_linear_numpy_matches_opencv():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    sizes = [((240, 426), (256, 454)), ((255, 341), (256, 342)), ((1080, 1920), (256, 455)), ((512, 512), (256, 256))]
    sizes += [(tuple(rng.integers(1, 50, 2)), tuple(rng.integers(1, 50, 2))) for _ in range(60)]
    for (h, w), (new_h, new_w) in sizes:
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        expected = cv2.resize(image, (int(new_w), int(new_h)), interpolation=cv2.INTER_LINEAR)
        assert np.array_equal(resize_linear_numpy(image, new_h, new_w), expected), (h, w, new_h, new_w)
        assert np.array_equal(resize_linear_cv2(image, new_h, new_w), expected), (h, w, new_h, new_w)
    clip = rng.integers(0, 256, (2, 3, 30, 40, 3), dtype=np.uint8)  # leading axes are batched
    assert np.array_equal(resize_linear_cv2(clip, 17, 23), resize_linear_numpy(clip, 17, 23))


def test_short_side_scale_is_torch_bilinear_without_antialias():
    frames = torch.rand(3, 2, 24, 40)
    scaled = short_side_scale(frames, 12)  # 40 * 12 / 24 = 20
    assert scaled.shape == (3, 2, 12, 20)
    torch.testing.assert_close(scaled, torch.nn.functional.avg_pool2d(frames, 2))  # exact 2x: mean of 2x2
    assert short_side_scale(frames, 24) is frames  # already at size: untouched, as PySlowFast


@pytest.mark.parametrize(
    "height, width, offsets",
    [(4, 7, [(0, 0), (0, 2), (0, 3)]), (7, 4, [(0, 0), (2, 0), (3, 0)]), (5, 5, [(1, 0), (1, 1), (1, 2)])],
)
def test_uniform_crop_three_positions(height, width, offsets):
    # ceil((7 - 4) / 2) = 2 for the centre; short side 4 fits exactly. A square moves along x, y centred at 1.
    size = min(height, width) if height != width else 3
    positions = torch.arange(height * width).reshape(1, height, width)
    for index, (y, x) in enumerate(offsets):
        crop = uniform_crop(positions, size, index)
        assert crop.shape[-2:] == (size, size)
        assert int(crop[0, 0, 0]) == y * width + x, index


def test_kinetics_three_crops_cover_left_centre_right():
    frames = np.zeros((2, 240, 426, 3), np.uint8)
    frames[..., :10, :] = 255  # a bright left edge
    spec = InputSpec(test_crop_size=256)
    left, centre, right = (kinetics_test_clip(frames, spec, i, num_spatial_crops=3) for i in range(3))
    assert left.shape == centre.shape == right.shape == (3, 2, 256, 256)  # short side -> 256, long 454
    assert left[0, 0, 0, 0] > 2 and centre[0, 0, 0, 0] < 0 and right[0, 0, 0, 0] < 0
    single = kinetics_test_clip(frames, InputSpec(test_crop_size=224, train_jitter_scales=(256, 320)))
    assert single.shape == (3, 2, 224, 224)


def test_normalize_uses_spec_mean_and_std():
    spec = InputSpec(mean=(0.5, 0.4, 0.3), std=(0.25, 0.2, 0.1))
    out = normalize(np.array([[[255, 0, 51]]], np.uint8), spec)
    torch.testing.assert_close(out[0, 0], torch.tensor([2.0, -2.0, -1.0]))


def test_scale_boxes_uses_long_side_ratio():
    boxes = np.array([[10.0, 20.0, 100.0, 200.0]])
    # 240x426 -> 256x454: factor 454 / 426, not 256 / 240.
    np.testing.assert_allclose(scale_boxes(boxes, 240, 426, 256), boxes * 454 / 426)
    assert scale_boxes(boxes, 256, 340, 256) is boxes


def test_pack_pathways_matches_pyslowfast():
    assert slow_pathway_indices(32, 4).tolist() == [0, 4, 8, 13, 17, 22, 26, 31]
    clip = torch.arange(32, dtype=torch.float32).reshape(1, 32, 1, 1).expand(3, 32, 2, 2).clone()
    clip[1] += 100  # tell the channels apart
    clip[2] += 200
    slow, fast = pack_pathways(clip, SLOWFAST_8X8)
    assert slow.shape == (1, 3, 8, 2, 2) and fast.shape == (1, 3, 32, 2, 2)
    assert slow[0, 0, :, 0, 0].tolist() == [0, 4, 8, 13, 17, 22, 26, 31]
    assert torch.equal(fast[0], clip)
    (single,) = pack_pathways(clip[:, :8], InputSpec())
    assert single.shape == (1, 3, 8, 2, 2)
    bgr = InputSpec(channel_order="BGR", num_frames=32, alpha=4, num_pathways=2)
    assert pack_pathways(clip, bgr)[1][0, :, 5, 0, 0].tolist() == [205, 105, 5]


def test_centered_clip_clamps_at_both_ends():
    # AVA c3: 32 frames every 2 around the keyframe, range(c - 32, c + 32, 2).
    assert centered_clip_indices(100, 32, 2, 1000).tolist() == list(range(68, 132, 2))
    start = centered_clip_indices(5, 32, 2, 1000).tolist()
    assert start == [0] * 14 + list(range(1, 37, 2))  # -27, -25, ..., -1 clamp to 0
    end = centered_clip_indices(995, 32, 2, 1000).tolist()
    assert end[0] == 963 and end[-3:] == [999, 999, 999]  # 995, 997, 999, 1001, ... -> 999


def test_centered_clip_at_time_resamples_other_frame_rates():
    spec = InputSpec(num_frames=4, sampling_rate=2, target_fps=30)
    # At 30 fps it is the plain centred clip around frame round(2.0 * 30) = 60.
    assert centered_clip_indices_at_time(2.0, spec, 30, 300).tolist() == centered_clip_indices(60, 4, 2, 300).tolist()
    # At 15 fps the same instants (2.0 + [-4, -2, 0, 2] / 30 s) fall on frames floor(15 t): 28, 29, 30, 31.
    assert centered_clip_indices_at_time(2.0, spec, 15, 300).tolist() == [28, 29, 30, 31]


def test_demo_clip_and_kinetics_temporal_sampling():
    assert demo_clip_indices(64, 32).tolist() == list(range(0, 62, 2)) + [63]
    # Test clips spread uniformly: start = delta * i / K with delta = 300 - 64.
    assert clip_start_end(300, 64, 0, 10) == (0.0, 63.0)
    assert clip_start_end(300, 64, 9, 10) == pytest.approx((212.4, 275.4))
    assert clip_start_end(300, 64, 9, 10, use_offset=True) == (9 * 26, 9 * 26 + 63)
    start, end = clip_start_end(300, 64, -1, 10, rng=random.Random(0))
    assert 0 <= start <= 236 and end == start + 63
    # Slow 8x8 at 30 fps: 64-frame window, 8 samples linspace(0, 63, 8) truncated.
    spec = InputSpec(num_frames=8, sampling_rate=8)
    assert kinetics_clip_indices(300, 30, spec, 0, 10).tolist() == [0, 9, 18, 27, 36, 45, 54, 63]
    # A 28 fps source covers the same 64 / 30 s: 59.73 source frames; the last clip is clamped to the video.
    assert kinetics_clip_indices(280, 28, spec, 0, 1).tolist() == [0, 8, 16, 25, 33, 41, 50, 58]
    assert kinetics_clip_indices(40, 28, spec, 0, 1).tolist()[-2:] == [39, 39]


def test_train_clip_shape_and_determinism():
    frames = np.random.default_rng(0).integers(0, 256, (4, 60, 80, 3), dtype=np.uint8)
    spec = InputSpec(train_crop_size=32, train_jitter_scales=(40, 48))
    a = train_clip(frames, spec, torch.Generator().manual_seed(3))
    b = train_clip(frames, spec, torch.Generator().manual_seed(3))
    assert a.shape == (3, 4, 32, 32) and torch.equal(a, b)


def test_bgr_network_gets_its_mean_on_the_right_channel():
    import dataclasses

    from vidact.config.model import InputSpec
    from vidact.transforms import normalize, pack_pathways

    spec = dataclasses.replace(InputSpec(num_frames=1), mean=(0.1, 0.2, 0.3), std=(1.0, 1.0, 1.0), channel_order="BGR")
    red = np.zeros((1, 1, 1, 3), np.uint8)
    red[..., 0] = 255  # one pure red RGB pixel
    clip = normalize(red, spec).permute(3, 0, 1, 2)[None]  # N C T H W, still RGB
    (packed,) = pack_pathways(clip, spec)
    # Network channel 2 is red: 1.0 - mean[2]; channels 0 (blue) and 1 (green) are 0 - their means.
    assert packed.flatten().tolist() == pytest.approx([-0.1, -0.2, 0.7])
