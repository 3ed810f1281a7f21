"""Drawing on I420 frames converts only the regions the drawing changes: the same pixels as drawing on RGB."""

from __future__ import annotations

import numpy as np
import pytest

from vidact.io.video import i420_planes
from vidact.pipeline.render import (
    BoxOverlay,
    I420Painter,
    PanelOverlay,
    box_regions,
    draw_overlays,
    text_panel_region,
)

cv2 = pytest.importorskip("cv2")  # the detect extra brings it; without it detect draws on RGB

HEIGHT, WIDTH = 240, 320
LABEL = ("#3", ("0.91 stand", (179, 226, 205)), ("0.40 watch (a person)", (30, 30, 120)))
OVERLAYS = [
    BoxOverlay((60.4, 121.2, 201.7, 230.0), (255, 60, 60), LABEL),  # label above, odd corners
    BoxOverlay((-20, 3, 90, 80), (60, 255, 60), LABEL),  # cut by the frame, label inside its top
    BoxOverlay((250, 100, 252, 180), (60, 60, 255), ("#9",)),  # thin: drawn by PIL
    BoxOverlay((300, 200, 400, 300), (0, 255, 0), ()),  # past the corner, no label
    BoxOverlay((150, 40, 230, 90), (200, 200, 0), ("ünïcödé ✓ label", "+2 more")),
    PanelOverlay(("  12.34 s",)),
]


def _i420(seed: int = 0) -> np.ndarray:
    """A noisy frame as I420 (noise makes every misplaced pixel show)."""
    rgb = np.random.default_rng(seed).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)


def _mask(regions, even: bool = False) -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), bool)
    for x0, y0, x1, y1 in regions:
        if even:
            x0, y0, x1, y1 = x0 & ~1, y0 & ~1, x1 + (x1 & 1), y1 + (y1 & 1)
        mask[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)] = True
    return mask


def test_regions_cover_every_pixel_the_drawing_changes():
    rgb = cv2.cvtColor(_i420(), cv2.COLOR_YUV2RGB_I420)
    for overlay in OVERLAYS:
        drawn = draw_overlays(rgb.copy(), [overlay])
        changed = (drawn != rgb).any(axis=-1)
        assert changed.any()
        inside = _mask(overlay.regions(HEIGHT, WIDTH))
        assert not (changed & ~inside).any(), overlay
        assert inside.sum() < 0.5 * changed.size  # strips and label, not the frame
    assert text_panel_region(HEIGHT, WIDTH, ()) == (0, 0, 0, 0)
    # a plain box: its four outline strips, not its inside
    strips = box_regions(HEIGHT, WIDTH, (100, 100, 200, 200), thickness=2)
    assert sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in strips) == 2 * 101 * 2 + 2 * 97 * 2


def test_painting_i420_matches_drawing_on_rgb_and_leaves_the_rest():
    i420 = _i420(1)
    painter = I420Painter(cv2, HEIGHT, WIDTH)
    painted = painter.draw(i420.copy(), OVERLAYS)
    # The RGB path: the whole frame to RGB, drawn, back to I420.
    expected = cv2.cvtColor(draw_overlays(cv2.cvtColor(i420, cv2.COLOR_YUV2RGB_I420), OVERLAYS), cv2.COLOR_RGB2YUV_I420)
    regions = [region for overlay in OVERLAYS for region in overlay.regions(HEIGHT, WIDTH)]
    inside = _mask(regions, even=True)
    for got, want, before, scale in zip(i420_planes(painted), i420_planes(expected), i420_planes(i420), (1, 2, 2)):
        plane_inside = inside[::scale, ::scale]
        assert np.array_equal(got[plane_inside], want[plane_inside])  # what the drawing changed, exactly
        assert np.array_equal(got[~plane_inside], before[~plane_inside])  # nothing else touched
    assert not np.array_equal(painted, i420)


def test_painter_wants_even_sides_and_its_frame_size():
    with pytest.raises(ValueError, match="even sides"):
        I420Painter(cv2, 241, 320)
    painter = I420Painter(cv2, HEIGHT, WIDTH)
    with pytest.raises(ValueError, match="I420 frame of 320x240"):
        painter.draw(np.zeros((100, 320), np.uint8), OVERLAYS)
