"""Drawing on RGB frames: boxes with labels, text panels, class colours.

Every function takes an ``HxWx3`` RGB ``uint8`` numpy frame, draws on it in place
and returns it. Only the region being drawn is converted to a PIL image and
back, so drawing a few boxes on a 1080p frame does not copy the whole frame.
Text uses PIL's bundled default font (a scalable FreeType font when Pillow has
FreeType, its bitmap font otherwise), so nothing has to be installed.
"""

from __future__ import annotations

import functools
from typing import Sequence, Union

import numpy as np
from PIL import Image, ImageDraw, ImageFont

Color = tuple[int, int, int]
# A panel line is its text, or its text and a colour for it.
PanelLine = Union[str, tuple[str, Color]]

# matplotlib's "Pastel2" qualitative colormap (8 colours), the colormap PySlowFast's
# visualizer labels classes with; kept here so rendering does not import matplotlib.
PASTEL2: tuple[Color, ...] = (
    (179, 226, 205),
    (253, 205, 172),
    (203, 213, 232),
    (244, 202, 228),
    (230, 245, 201),
    (255, 242, 174),
    (241, 226, 204),
    (204, 204, 204),
)

BOX_GREEN: Color = (0, 255, 0)  # PySlowFast draws person boxes green
TEXT_DARK: Color = (20, 20, 20)
TEXT_LIGHT: Color = (255, 255, 255)


def class_color(index: int, num_classes: int) -> Color:
    """The Pastel2 colour of class ``index`` of ``num_classes``, as PySlowFast picks it.

    PySlowFast evaluates the colormap at ``index / num_classes``; a listed colormap
    maps ``x`` in [0, 1) to entry ``floor(x * N)``.
    """
    if num_classes <= 0:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    slot = int(len(PASTEL2) * (index % num_classes) / num_classes)
    return PASTEL2[min(slot, len(PASTEL2) - 1)]


def track_color(track_id: int) -> Color:
    """A saturated colour per track id, stable across frames and runs (golden-ratio hue walk)."""
    hue = (track_id * 0.618033988749895) % 1.0
    sector, fraction = divmod(hue * 6.0, 1.0)
    value, low = 255, 60
    rise = int(low + (value - low) * fraction)
    fall = int(value - (value - low) * fraction)
    return [
        (value, rise, low),
        (fall, value, low),
        (low, value, rise),
        (low, fall, value),
        (rise, low, value),
        (value, low, fall),
    ][int(sector) % 6]


def default_font_size(frame: np.ndarray) -> int:
    """A label size that reads well at the frame's resolution (12 px at 480p)."""
    return max(10, round(min(frame.shape[:2]) / 40))


@functools.lru_cache(maxsize=16)
def get_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """PIL's default font at ``size`` pixels (the fixed bitmap font where FreeType is missing)."""
    try:
        return ImageFont.load_default(size=size)
    except (ImportError, OSError, TypeError):
        return ImageFont.load_default()


def text_size(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> tuple[int, int]:
    """Width and height in pixels that ``text`` covers in ``font``."""
    left, top, right, bottom = font.getbbox(text)
    return int(right - left), int(bottom - top)


def _check_frame(frame: np.ndarray) -> None:
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 RGB frame, got {frame.dtype} {frame.shape}")


def _draw_region(frame: np.ndarray, x0: int, y0: int, x1: int, y1: int, alpha: float, draw_fn) -> None:
    """Run ``draw_fn(ImageDraw, dx, dy)`` on the frame region [x0, x1) x [y0, y1), blended by ``alpha``.

    ``dx``/``dy`` is the region's origin: ``draw_fn`` subtracts it from frame coordinates.
    """
    height, width = frame.shape[:2]
    x0, y0 = max(0, x0), max(0, y0)
    x1, y1 = min(width, x1), min(height, y1)
    if x1 <= x0 or y1 <= y0 or alpha <= 0:
        return
    region = frame[y0:y1, x0:x1]
    image = Image.fromarray(region)
    draw_fn(ImageDraw.Draw(image), x0, y0)
    drawn = np.asarray(image)
    if alpha >= 1:
        region[...] = drawn
    else:
        region[...] = (region * (1.0 - alpha) + drawn * alpha + 0.5).astype(np.uint8)


def _label_block(
    lines: Sequence[PanelLine], font, default_color: Color, padding: int
) -> tuple[list[tuple[str, Color]], int, int, int]:
    """Lines with colours, the block's width and height, and the line pitch."""
    items = [(line, default_color) if isinstance(line, str) else (line[0], tuple(line[1])) for line in lines]
    line_height = max(text_size("Ag[]", font)[1], 1) + padding
    width = max((text_size(text, font)[0] for text, _ in items), default=0) + 2 * padding
    return items, width, line_height * len(items) + padding, line_height


def _text_color(background: Color) -> Color:
    """Dark text on light backgrounds, white on dark ones."""
    luminance = 0.299 * background[0] + 0.587 * background[1] + 0.114 * background[2]
    return TEXT_DARK if luminance > 140 else TEXT_LIGHT


def draw_box(
    frame: np.ndarray,
    box: Sequence[float],
    color: Color = BOX_GREEN,
    label_lines: Sequence[PanelLine] = (),
    alpha: float = 1.0,
    thickness: int | None = None,
    font_size: int | None = None,
) -> np.ndarray:
    """Draw the rectangle ``box`` (pixels ``x1, y1, x2, y2``) with ``label_lines`` above it.

    Each label line is a string (drawn on ``color``) or ``(text, background colour)``;
    the text is dark or white, whichever reads on its background. The label sits
    above the box, or inside its top when there is no room above. ``alpha`` in
    [0, 1] fades box and label into the frame (PySlowFast ramps it around keyframes).
    Returns ``frame``, drawn on in place.
    """
    _check_frame(frame)
    height, width = frame.shape[:2]
    font_size = font_size or default_font_size(frame)
    thickness = thickness or max(1, round(font_size / 6))
    font = get_font(font_size)
    x1, y1, x2, y2 = (int(round(float(v))) for v in box[:4])
    x1, x2 = sorted((min(max(x1, 0), width - 1), min(max(x2, 0), width - 1)))
    y1, y2 = sorted((min(max(y1, 0), height - 1), min(max(y2, 0), height - 1)))
    padding = max(1, font_size // 5)
    items, block_w, block_h, pitch = _label_block(label_lines, font, color, padding)
    label_top = y1 - block_h if y1 - block_h >= 0 else y1
    label_left = min(x1, max(0, width - block_w))

    def draw(canvas: ImageDraw.ImageDraw, dx: int, dy: int) -> None:
        canvas.rectangle((x1 - dx, y1 - dy, x2 - dx, y2 - dy), outline=tuple(color), width=thickness)
        for row, (text, background) in enumerate(items):
            top = label_top + row * pitch - dy
            text_w = text_size(text, font)[0] + 2 * padding
            canvas.rectangle((label_left - dx, top, label_left - dx + text_w, top + pitch), fill=background)
            ink_top = top + padding // 2 - font.getbbox(text)[1]
            canvas.text((label_left - dx + padding, ink_top), text, fill=_text_color(background), font=font)

    left = min(x1, label_left)
    top = min(y1, label_top) if items else y1
    right = max(x2 + 1, label_left + block_w + 1) if items else x2 + 1
    bottom = max(y2 + 1, label_top + block_h + 1) if items else y2 + 1
    _draw_region(frame, left, top, right, bottom, alpha, draw)
    return frame


def draw_text_panel(
    frame: np.ndarray,
    lines: Sequence[PanelLine],
    origin: tuple[int, int] = (0, 0),
    background: Color = (0, 0, 0),
    background_alpha: float = 0.6,
    text_color: Color = TEXT_LIGHT,
    font_size: int | None = None,
) -> np.ndarray:
    """Write ``lines`` on a translucent panel whose top-left corner is ``origin``.

    A line is a string (in ``text_color``) or ``(text, colour)``. The panel is shifted
    to stay inside the frame. Used for video-level captions (top-k classes, time).
    Returns ``frame``, drawn on in place.
    """
    _check_frame(frame)
    if not lines:
        return frame
    height, width = frame.shape[:2]
    font_size = font_size or default_font_size(frame)
    font = get_font(font_size)
    padding = max(2, font_size // 3)
    items, block_w, block_h, pitch = _label_block(lines, font, text_color, padding)
    x0 = min(max(0, origin[0]), max(0, width - block_w))
    y0 = min(max(0, origin[1]), max(0, height - block_h))
    x1, y1 = min(width, x0 + block_w), min(height, y0 + block_h)
    if background_alpha > 0:
        patch = frame[y0:y1, x0:x1]
        shade = np.asarray(background, dtype=np.float32)
        patch[...] = (patch * (1.0 - background_alpha) + shade * background_alpha + 0.5).astype(np.uint8)

    def draw(canvas: ImageDraw.ImageDraw, dx: int, dy: int) -> None:
        for row, (text, color) in enumerate(items):
            top = y0 + padding + row * pitch - dy - font.getbbox(text)[1]
            canvas.text((x0 + padding - dx, top), text, fill=tuple(color), font=font)

    _draw_region(frame, x0, y0, x1, y1, 1.0, draw)
    return frame


def action_label_lines(
    actions: Sequence[tuple[str, float]], num_classes: int, class_index: dict[str, int] | None = None
) -> list[tuple[str, Color]]:
    """Label lines ``"0.87 stand"`` coloured by class, as PySlowFast's ``[score] name`` text.

    ``actions`` are ``(name, score)`` pairs; ``class_index`` maps a name to its index for
    the colour (the pair's position when absent).
    """
    lines = []
    for position, (name, score) in enumerate(actions):
        index = class_index.get(name, position) if class_index else position
        lines.append((f"{score:.2f} {name}", class_color(index, num_classes)))
    return lines
