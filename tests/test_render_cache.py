"""Box labels are drawn once and copied: the copies must look exactly as drawing each frame with PIL did."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image, ImageDraw

from vidact.pipeline import render
from vidact.pipeline.render import default_font_size, draw_box, get_font, text_size

LINES = ["#7", ("0.91 stand", (179, 226, 205)), ("0.40 watch (a person)", (30, 30, 120)), "+2 more"]


def _frame(height: int = 240, width: int = 320, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _pil_draw_box(frame, box, color, label_lines=(), alpha=1.0, thickness=None, font_size=None):
    """The per-frame PIL drawing that the cached labels replace: the oracle for their pixels."""
    height, width = frame.shape[:2]
    font_size = font_size or default_font_size(frame)
    thickness = thickness or max(1, round(font_size / 6))
    font = get_font(font_size)
    x1, y1, x2, y2 = (int(round(float(v))) for v in box[:4])
    x1, x2 = sorted((min(max(x1, 0), width - 1), min(max(x2, 0), width - 1)))
    y1, y2 = sorted((min(max(y1, 0), height - 1), min(max(y2, 0), height - 1)))
    padding = max(1, font_size // 5)
    items = [(line, color) if isinstance(line, str) else line for line in label_lines]
    pitch = max(text_size("Ag[]", font)[1], 1) + padding
    block_w = max((text_size(text, font)[0] for text, _ in items), default=0) + 2 * padding
    block_h = pitch * len(items) + padding
    label_top = y1 - block_h if y1 - block_h >= 0 else y1
    label_left = min(x1, max(0, width - block_w))
    left, top, right, bottom = x1, y1, x2 + 1, y2 + 1
    if items:
        left, top = min(x1, label_left), min(y1, label_top)
        right, bottom = max(right, label_left + block_w + 1), max(bottom, label_top + block_h + 1)
    left, top, right, bottom = max(0, left), max(0, top), min(width, right), min(height, bottom)
    if alpha <= 0 or right <= left or bottom <= top:
        return frame
    region = frame[top:bottom, left:right]
    image = Image.fromarray(region)
    canvas = ImageDraw.Draw(image)
    canvas.rectangle((x1 - left, y1 - top, x2 - left, y2 - top), outline=color, width=thickness)
    for row, (text, background) in enumerate(items):
        row_top = label_top + row * pitch - top
        text_w = text_size(text, font)[0] + 2 * padding
        canvas.rectangle((label_left - left, row_top, label_left - left + text_w, row_top + pitch), fill=background)
        ink = (20, 20, 20) if 0.299 * background[0] + 0.587 * background[1] + 0.114 * background[2] > 140 else (255,) * 3
        canvas.text((label_left - left + padding, row_top + padding // 2 - font.getbbox(text)[1]), text, fill=ink, font=font)
    drawn = np.asarray(image)
    region[...] = drawn if alpha >= 1 else (region * (1.0 - alpha) + drawn * alpha + 0.5).astype(np.uint8)
    return frame


CASES = {
    "label above": dict(box=(60, 120, 200, 230)),
    "label inside top": dict(box=(60, 5, 200, 230)),
    "clipped right and bottom": dict(box=(250, 150, 400, 300)),
    "label cut at the bottom": dict(box=(100, 200, 300, 239)),
    "outside top left": dict(box=(-50, -40, 90, 70)),
    "faded": dict(box=(60, 120, 200, 230), alpha=0.45),
    "faded label inside top": dict(box=(60, 5, 200, 230), alpha=0.7),
    "no label": dict(box=(10, 20, 300, 200), label_lines=()),
    "thin box": dict(box=(40, 100, 42, 220), alpha=0.5),
    "big font and thick": dict(box=(20, 150, 200, 230), font_size=23, thickness=5),
    "invisible": dict(box=(60, 120, 200, 230), alpha=0.0),
}


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_cached_labels_draw_the_pixels_pil_draws(case):
    kwargs = {"label_lines": LINES, **case}
    box = kwargs.pop("box")
    expected = _pil_draw_box(_frame(), box, (255, 64, 0), **kwargs)
    drawn = _frame()
    for _ in range(2):  # the first draw fills the cache, the second copies from it
        drawn = draw_box(_frame(), box, (255, 64, 0), **kwargs)
        np.testing.assert_array_equal(drawn, expected)


def test_pil_fallback_for_spilling_labels_draws_the_same(monkeypatch):
    """Labels whose ink leaves their backgrounds are drawn with PIL each time; that path must agree."""
    box = (60, 120, 200, 230)
    fast = [draw_box(_frame(), box, (0, 0, 255), label_lines=LINES, alpha=alpha) for alpha in (1.0, 0.5)]
    cached = render._rendered_label
    monkeypatch.setattr(render, "_rendered_label", lambda *key: dataclasses.replace(cached(*key), opaque=False))
    slow = [draw_box(_frame(), box, (0, 0, 255), label_lines=LINES, alpha=alpha) for alpha in (1.0, 0.5)]
    for fast_frame, slow_frame in zip(fast, slow):
        np.testing.assert_array_equal(fast_frame, slow_frame)


def test_same_label_same_pixels_other_label_or_colour_other_pixels():
    box = (60, 120, 200, 230)
    first = draw_box(_frame(), box, (255, 0, 0), label_lines=["#1", "0.91 stand"])
    again = draw_box(_frame(), box, (255, 0, 0), label_lines=["#1", "0.91 stand"])
    np.testing.assert_array_equal(first, again)
    other_text = draw_box(_frame(), box, (255, 0, 0), label_lines=["#1", "0.92 stand"])
    other_colour = draw_box(_frame(), box, (0, 0, 255), label_lines=["#1", "0.91 stand"])
    other_line_colour = draw_box(_frame(), box, (255, 0, 0), label_lines=["#1", ("0.91 stand", (0, 200, 0))])
    for other in (other_text, other_colour, other_line_colour):
        assert (other != first).any()
    plain = _frame()
    label = (first != plain).any(axis=-1)
    assert label[:120, 60:].any() and not label[:120, :60].any()  # drawn above the box, from its left edge


def test_boxes_outside_the_frame_are_clipped():
    for box in [(-100, 100, 1000, 180), (310, -30, 330, 10)]:
        frame = _frame()
        assert draw_box(frame, box, (0, 255, 0), label_lines=LINES) is frame
        np.testing.assert_array_equal(frame, _pil_draw_box(_frame(), box, (0, 255, 0), label_lines=LINES))
    # Wholly outside, or not finite: nothing drawn (clamped, a stray dot and label appeared in a corner).
    for box in [(-500, -500, -10, -10), (900, 900, 1200, 1000), (float("nan"), 0, 10, 10), (0, 0, float("inf"), 10)]:
        frame = _frame()
        np.testing.assert_array_equal(draw_box(frame, box, (0, 255, 0), label_lines=LINES), _frame())
        assert render.box_regions(*frame.shape[:2], box, label_lines=LINES) == []
    tiny = _frame(12, 16)
    draw_box(tiny, (2, 2, 14, 10), (0, 255, 0), label_lines=LINES)  # a label bigger than the frame
    assert (tiny != _frame(12, 16)).any()


def test_label_cache_is_bounded():
    render._rendered_label.cache_clear()
    frame = _frame(60, 80)
    for number in range(render.LABEL_CACHE_SIZE + 20):
        draw_box(frame, (10, 30, 70, 55), (255, 0, 0), label_lines=[f"#{number}"], font_size=10)
    info = render._rendered_label.cache_info()
    assert info.maxsize == render.LABEL_CACHE_SIZE and info.currsize == render.LABEL_CACHE_SIZE
    assert info.misses == render.LABEL_CACHE_SIZE + 20
    draw_box(frame, (10, 30, 70, 55), (255, 0, 0), label_lines=[f"#{render.LABEL_CACHE_SIZE + 19}"], font_size=10)
    assert render._rendered_label.cache_info().hits == info.hits + 1
