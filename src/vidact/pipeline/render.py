"""Drawing on RGB frames: boxes with labels, text panels, class colours.

Every function takes an ``HxWx3`` RGB ``uint8`` numpy frame, draws on it in place
and returns it. Box outlines are array slices; a box label is drawn with PIL once
and its pixels copied onto every frame that shows it (labels change at keyframes,
frames come 30 a second); text panels convert only their own region to PIL.
Text uses the font file named by ``$VIDACT_FONT``; else DejaVu Sans from matplotlib's
data where matplotlib is installed (PySlowFast draws its labels with matplotlib, so in
that font; it has accented Latin, Greek and Cyrillic); else PIL's bundled default font,
which has ASCII only.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
from dataclasses import dataclass, field
from typing import NamedTuple, Sequence, Union

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vidact.errors import VidactError
from vidact.io.video import i420_planes

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
    return _default_font_size(*frame.shape[:2])


def _default_font_size(height: int, width: int) -> int:
    return max(10, round(min(height, width) / 40))


FONT_VARIABLE = "VIDACT_FONT"


def font_file() -> str | None:
    """The font file labels are drawn in (see the module's docstring); None: PIL's default font."""
    return os.environ.get(FONT_VARIABLE) or _matplotlib_dejavu_sans()


@functools.lru_cache(maxsize=1)
def _matplotlib_dejavu_sans() -> str | None:
    spec = importlib.util.find_spec("matplotlib")  # found, not imported: that takes half a second
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(spec.submodule_search_locations[0], "mpl-data", "fonts", "ttf", "DejaVuSans.ttf")
    return path if os.path.isfile(path) else None


def get_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """The label font at ``size`` pixels."""
    return _load_font(size, font_file())


@functools.lru_cache(maxsize=16)
def _load_font(size: int, path: str | None) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    if path is not None:
        try:
            return ImageFont.truetype(path, size)
        except ImportError:  # Pillow built without FreeType
            if path == os.environ.get(FONT_VARIABLE):
                raise VidactError(f"{FONT_VARIABLE}={path}: this Pillow cannot load fonts (built without FreeType); "
                                  f"reinstall Pillow from PyPI, or unset {FONT_VARIABLE}") from None
        except OSError as err:
            raise VidactError(f"{FONT_VARIABLE}={path}: cannot be loaded as a font ({err}); point it at a "
                              f"TrueType or OpenType file (.ttf, .otf, .ttc), or unset it") from None
    try:
        return ImageFont.load_default(size=size)
    except (ImportError, OSError, TypeError):
        return ImageFont.load_default()


def missing_glyphs(texts: Sequence[str]) -> str:
    """The characters of ``texts`` that the label font lacks: they would be drawn as boxes."""
    font = get_font(20)
    chars = sorted({char for text in texts for char in text if not char.isspace()})
    if not isinstance(font, ImageFont.FreeTypeFont):  # the bitmap fallback: ASCII only
        return "".join(char for char in chars if not char.isascii())
    missing = _glyph(font, "\U0010ffff")  # a code point no font draws: the "missing" box
    return "".join(char for char in chars if _glyph(font, char) == missing)


def _glyph(font: ImageFont.FreeTypeFont, char: str) -> tuple[tuple[int, int], bytes]:
    mask = font.getmask(char)
    return mask.size, bytes(mask)


def check_label_font(texts: Sequence[str]) -> None:
    """A notice when the label font lacks characters of ``texts`` (class names), saying what to do."""
    missing = missing_glyphs(texts)
    if missing:
        from vidact.pipeline.detect import notice

        font = font_file() or "PIL's default font"
        notice(f"the label font ({font}) lacks characters of the class names ({missing[:20]}), drawn as boxes; "
               f"set {FONT_VARIABLE} to a font file that has them (e.g. a Noto Sans .ttf or .otf)")


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
    _blend(region, np.asarray(image), alpha)


def _blend(target: np.ndarray, drawn: np.ndarray, alpha: float, under: np.ndarray | None = None) -> None:
    """Write ``drawn`` into ``target`` faded by ``alpha`` over ``under`` (``target`` itself by default)."""
    if alpha >= 1:
        target[...] = drawn
    else:
        base = target if under is None else under
        target[...] = (base * (1.0 - alpha) + drawn * alpha + 0.5).astype(np.uint8)


@functools.lru_cache(maxsize=64)
def _line_height(font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> int:
    """The height of one text line in ``font``: the ink of its tallest and deepest glyphs."""
    return max(text_size("Ag[]", font)[1], 1)


def _label_items(lines: Sequence[PanelLine], default_color: Color) -> tuple[tuple[str, Color], ...]:
    """Each line as ``(text, colour)``, colours as int tuples so the result can key a cache."""
    return tuple(
        (line, _as_color(default_color)) if isinstance(line, str) else (line[0], _as_color(line[1]))
        for line in lines
    )


def _as_color(color: Sequence[int]) -> Color:
    return tuple(int(c) for c in color)  # type: ignore[return-value]


def _label_block(
    items: Sequence[tuple[str, Color]], font, padding: int
) -> tuple[list[int], int, int, int]:
    """The width of each line's text, the block's width and height, and the line pitch."""
    text_widths = [text_size(text, font)[0] for text, _ in items]
    line_height = _line_height(font) + padding
    width = max(text_widths, default=0) + 2 * padding
    return text_widths, width, line_height * len(items) + padding, line_height


def _text_color(background: Color) -> Color:
    """Dark text on light backgrounds, white on dark ones."""
    luminance = 0.299 * background[0] + 0.587 * background[1] + 0.114 * background[2]
    return TEXT_DARK if luminance > 140 else TEXT_LIGHT


def _draw_label_rows(
    canvas: ImageDraw.ImageDraw,
    items: Sequence[tuple[str, Color]],
    text_widths: Sequence[int],
    font,
    left: int,
    top: int,
    padding: int,
    pitch: int,
) -> None:
    """Draw a box label with PIL: one filled rectangle per line, the line's text on it."""
    for row, ((text, background), text_w) in enumerate(zip(items, text_widths)):
        row_top = top + row * pitch
        canvas.rectangle((left, row_top, left + text_w + 2 * padding, row_top + pitch), fill=background)
        ink_top = row_top + padding // 2 - font.getbbox(text)[1]
        canvas.text((left + padding, ink_top), text, fill=_text_color(background), font=font)


@dataclass(frozen=True)
class _LabelBlock:
    """A box label drawn once, to be copied onto every frame that shows it.

    ``pixels`` holds the label as PIL draws it with its top-left corner at (0, 0);
    ``runs`` are the ``(first_row, end_row, width)`` rectangles of ``pixels`` the label
    covers (its lines have different widths). ``opaque`` is False when text ink spills
    past the line backgrounds, so the label's look depends on the frame under it and
    it has to be drawn with PIL on each frame instead.
    """

    items: tuple[tuple[str, Color], ...]
    text_widths: tuple[int, ...]
    width: int
    height: int
    pitch: int
    pixels: np.ndarray
    runs: tuple[tuple[int, int, int], ...]
    opaque: bool


# Labels recur frame after frame (they change at keyframes); 128 blocks of a 1080p
# label (~100 kB each) bound the cache at a few tens of MB even at 4K.
LABEL_CACHE_SIZE = 128


@functools.lru_cache(maxsize=LABEL_CACHE_SIZE)
def _rendered_label(items: tuple[tuple[str, Color], ...], font_size: int, padding: int, font_path: str | None) -> _LabelBlock:
    """The label block of ``items`` in the font at ``font_path``, drawn once on two backgrounds to find what it covers."""
    font = _load_font(font_size, font_path)
    text_widths, block_w, block_h, pitch = _label_block(items, font, padding)
    margin = 2 * font_size  # room for ink that spills past the line backgrounds
    size = (block_w + 1 + 2 * margin, block_h + 1 + 2 * margin)
    on_black, on_white = Image.new("RGB", size, (0, 0, 0)), Image.new("RGB", size, (255, 255, 255))
    for image in (on_black, on_white):
        _draw_label_rows(ImageDraw.Draw(image), items, text_widths, font, margin, margin, padding, pitch)
    black, white = np.asarray(on_black), np.asarray(on_white)
    fixed = _each_channel(black == white)  # covered by a line background: the same on any frame
    touched = fixed | ~_each_channel(black == 0) | ~_each_channel(white == 255)
    core = fixed[margin:-margin, margin:-margin]
    row_widths = core.sum(axis=1)
    prefix = np.arange(core.shape[1]) < row_widths[:, None]
    opaque = bool((touched == fixed).all() and core.sum() == fixed.sum() and (core == prefix).all())
    runs = []
    for row, row_width in enumerate(row_widths.tolist()):
        if runs and runs[-1][1] == row and runs[-1][2] == row_width:
            runs[-1] = (runs[-1][0], row + 1, row_width)
        elif row_width:
            runs.append((row, row + 1, row_width))
    pixels = np.ascontiguousarray(white[margin:-margin, margin:-margin])
    pixels.flags.writeable = False
    return _LabelBlock(items, tuple(text_widths), block_w, block_h, pitch, pixels, tuple(runs), opaque)


def _each_channel(mask: np.ndarray) -> np.ndarray:
    """``mask.all(axis=-1)`` of an ``H x W x 3`` mask, ten times faster (numpy reduces a short last
    axis slowly): 6 of the 10 ms a new 1080p label took, and each keyframe brings one per person."""
    return mask[..., 0] & mask[..., 1] & mask[..., 2]


class _BoxLayout(NamedTuple):
    """Where :func:`draw_box` draws: the clamped corners, the outline's thickness, the label and
    its top-left corner; ``pil``: drawn by PIL on the region around box and label."""

    x1: int
    y1: int
    x2: int
    y2: int
    thickness: int
    font_size: int
    label: _LabelBlock | None
    label_left: int
    label_top: int
    pil: bool


def _box_layout(
    height: int, width: int, box: Sequence[float], color: Color, label_lines: Sequence[PanelLine],
    thickness: int | None, font_size: int | None,
) -> _BoxLayout | None:
    """Where a box and its label go; None for a box with nothing to draw (not finite, or wholly
    outside the frame, where clamping would paint a stray dot and label in a corner)."""
    coords = [float(v) for v in box[:4]]
    if not all(math.isfinite(v) for v in coords):
        return None
    left, right = sorted(coords[0::2])
    top, bottom = sorted(coords[1::2])
    if right < 0 or bottom < 0 or left > width - 1 or top > height - 1:
        return None
    font_size = font_size or _default_font_size(height, width)
    thickness = thickness or max(1, round(font_size / 6))
    x1, y1, x2, y2 = (int(round(v)) for v in coords)
    x1, x2 = sorted((min(max(x1, 0), width - 1), min(max(x2, 0), width - 1)))
    y1, y2 = sorted((min(max(y1, 0), height - 1), min(max(y2, 0), height - 1)))
    padding = max(1, font_size // 5)
    label = _rendered_label(_label_items(label_lines, color), font_size, padding, font_file()) if label_lines else None
    label_top = label_left = 0
    if label is not None:
        label_top = y1 - label.height if y1 - label.height >= 0 else y1
        label_left = min(x1, max(0, width - label.width))
    # Thin boxes, whose outline sides overlap, and labels whose ink spills are drawn by PIL.
    thin = min(x2 - x1, y2 - y1) + 1 < 2 * thickness
    pil = thin or (label is not None and not label.opaque)
    return _BoxLayout(x1, y1, x2, y2, thickness, font_size, label, label_left, label_top, pil)


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
    Labels are drawn once and then copied (the last ``LABEL_CACHE_SIZE`` are kept), so
    a label that stays the same from frame to frame costs a few array copies.
    Returns ``frame``, drawn on in place; :func:`box_regions` lists the pixels it may change.
    """
    _check_frame(frame)
    height, width = frame.shape[:2]
    return _paint_box(frame, _box_layout(height, width, box, color, label_lines, thickness, font_size), color, alpha)


def _paint_box(frame: np.ndarray, layout: _BoxLayout | None, color: Color, alpha: float) -> np.ndarray:
    if layout is None or alpha <= 0:
        return frame
    height, width = frame.shape[:2]
    x1, y1, x2, y2, thickness, font_size, label, label_left, label_top, pil = layout
    if pil:
        _draw_box_with_pil(frame, layout, color, alpha)
        return frame
    under = None
    if label is not None and alpha < 1:  # the label fades over the frame, not over the outline
        under = frame[label_top : label_top + label.pixels.shape[0], label_left : label_left + label.pixels.shape[1]]
        under = under.copy()
    ink = np.asarray(_as_color(color), dtype=np.uint8)
    for rows, cols in _outline_strips(layout):
        _blend(frame[rows, cols], ink, alpha)
    if label is not None:
        for first, end, run_width in label.runs:
            rows = slice(label_top + first, min(height, label_top + end))
            cols = slice(label_left, min(width, label_left + run_width))
            target = frame[rows, cols]
            if target.size:
                local_rows, local_cols = slice(0, target.shape[0]), slice(0, target.shape[1])
                drawn = label.pixels[first:end][local_rows, local_cols]
                _blend(target, drawn, alpha, None if under is None else under[first:end][local_rows, local_cols])
    return frame


def _outline_strips(layout: _BoxLayout) -> tuple[tuple[slice, slice], ...]:
    """The outline as four strips (rows, columns) that do not overlap, so fading blends each pixel once."""
    x1, y1, x2, y2, thickness = layout[:5]
    inner = slice(y1 + thickness, y2 - thickness + 1)
    return (
        (slice(y1, y1 + thickness), slice(x1, x2 + 1)),
        (slice(y2 - thickness + 1, y2 + 1), slice(x1, x2 + 1)),
        (inner, slice(x1, x1 + thickness)),
        (inner, slice(x2 - thickness + 1, x2 + 1)),
    )


Region = tuple[int, int, int, int]  # x0, y0, x1, y1: columns [x0, x1), rows [y0, y1)


def box_regions(
    height: int,
    width: int,
    box: Sequence[float],
    color: Color = BOX_GREEN,
    label_lines: Sequence[PanelLine] = (),
    thickness: int | None = None,
    font_size: int | None = None,
) -> list[Region]:
    """The rectangles of a ``height x width`` frame that :func:`draw_box` with these arguments
    may change (they may overlap): the outline's strips and the label, or the box and its label
    together where PIL draws them."""
    return _layout_regions(_box_layout(height, width, box, color, label_lines, thickness, font_size))


def _layout_regions(layout: _BoxLayout | None) -> list[Region]:
    """:func:`box_regions` of a laid-out box; the first is where the PIL path draws."""
    if layout is None:
        return []
    label = layout.label
    if layout.pil:
        left, top, right, bottom = layout.x1, layout.y1, layout.x2 + 1, layout.y2 + 1
        if label is not None:
            left, top = min(left, layout.label_left), min(top, layout.label_top)
            right = max(right, layout.label_left + label.width + 1)
            bottom = max(bottom, layout.label_top + label.height + 1)
        return [(left, top, right, bottom)]
    regions = [(cols.start, rows.start, cols.stop, rows.stop) for rows, cols in _outline_strips(layout)]
    if label is not None:  # one region with the top strip, which the label sits on or in
        label_h, label_w = label.pixels.shape[:2]
        x0, y0, x1, y1 = regions[0]
        regions[0] = (
            min(x0, layout.label_left), min(y0, layout.label_top),
            max(x1, layout.label_left + label_w), max(y1, layout.label_top + label_h),
        )
    return regions


def _draw_box_with_pil(frame: np.ndarray, layout: _BoxLayout, color: Color, alpha: float) -> None:
    """Draw a box and its label with PIL on the frame region they cover (the slow, general path)."""
    x1, y1, x2, y2, thickness, font_size, label, label_left, label_top, _ = layout
    font = get_font(font_size)
    padding = max(1, font_size // 5)

    def draw(canvas: ImageDraw.ImageDraw, dx: int, dy: int) -> None:
        canvas.rectangle((x1 - dx, y1 - dy, x2 - dx, y2 - dy), outline=_as_color(color), width=thickness)
        if label is not None:
            _draw_label_rows(
                canvas, label.items, label.text_widths, font, label_left - dx, label_top - dy, padding, label.pitch
            )

    _draw_region(frame, *_layout_regions(layout)[0], alpha, draw)


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
    Returns ``frame``, drawn on in place; :func:`text_panel_region` is the rectangle it covers.
    """
    _check_frame(frame)
    if not lines:
        return frame
    height, width = frame.shape[:2]
    font_size = font_size or _default_font_size(height, width)
    font = get_font(font_size)
    items = _label_items(lines, text_color)
    (x0, y0, x1, y1), padding, pitch = _panel_layout(height, width, items, origin, font_size)
    if background_alpha > 0:
        patch = frame[y0:y1, x0:x1]
        shade = np.asarray(background, dtype=np.float32)
        patch[...] = (patch * (1.0 - background_alpha) + shade * background_alpha + 0.5).astype(np.uint8)

    def draw(canvas: ImageDraw.ImageDraw, dx: int, dy: int) -> None:
        for row, (text, color) in enumerate(items):
            top = y0 + padding + row * pitch - dy - font.getbbox(text)[1]
            canvas.text((x0 + padding - dx, top), text, fill=color, font=font)

    _draw_region(frame, x0, y0, x1, y1, 1.0, draw)
    return frame


def _panel_layout(
    height: int, width: int, items: Sequence[tuple[str, Color]], origin: tuple[int, int], font_size: int
) -> tuple[Region, int, int]:
    """A text panel's rectangle (shifted inside the frame), its padding and line pitch."""
    padding = max(2, font_size // 3)
    _, block_w, block_h, pitch = _label_block(items, get_font(font_size), padding)
    x0 = min(max(0, origin[0]), max(0, width - block_w))
    y0 = min(max(0, origin[1]), max(0, height - block_h))
    return (x0, y0, min(width, x0 + block_w), min(height, y0 + block_h)), padding, pitch


def text_panel_region(
    height: int, width: int, lines: Sequence[PanelLine], origin: tuple[int, int] = (0, 0),
    font_size: int | None = None,
) -> Region:
    """The rectangle of a ``height x width`` frame that :func:`draw_text_panel` covers."""
    if not lines:
        return (0, 0, 0, 0)
    items = _label_items(lines, TEXT_LIGHT)
    return _panel_layout(height, width, items, origin, font_size or _default_font_size(height, width))[0]


@dataclass
class BoxOverlay:
    """A box with its label, as :func:`draw_box` draws it (full opacity)."""

    box: tuple[float, float, float, float]
    color: Color = BOX_GREEN
    label_lines: tuple[PanelLine, ...] = ()
    _layout: tuple[tuple[int, int], _BoxLayout | None] | None = field(default=None, init=False, repr=False,
                                                                      compare=False)

    def _layout_for(self, height: int, width: int) -> _BoxLayout | None:
        # Kept from regions() for draw(): laying a box out costs about what drawing it does.
        if self._layout is None or self._layout[0] != (height, width):
            self._layout = ((height, width), _box_layout(height, width, self.box, self.color, self.label_lines, None, None))
        return self._layout[1]

    def draw(self, frame: np.ndarray) -> None:
        _check_frame(frame)
        _paint_box(frame, self._layout_for(*frame.shape[:2]), self.color, 1.0)

    def regions(self, height: int, width: int) -> list[Region]:
        return _layout_regions(self._layout_for(height, width))


@dataclass(frozen=True)
class PanelOverlay:
    """A text panel at the top left, as :func:`draw_text_panel` draws it."""

    lines: tuple[PanelLine, ...]

    def draw(self, frame: np.ndarray) -> None:
        draw_text_panel(frame, self.lines)

    def regions(self, height: int, width: int) -> list[Region]:
        return [text_panel_region(height, width, self.lines)]


Overlay = Union[BoxOverlay, PanelOverlay]


def draw_overlays(frame: np.ndarray, overlays: Sequence[Overlay]) -> np.ndarray:
    """Draw ``overlays`` in order on an RGB frame, in place; returns it."""
    for overlay in overlays:
        overlay.draw(frame)
    return frame


class I420Painter:
    """Draws with this module's RGB functions on I420 frames (:meth:`vidact.io.video.Frame.i420`),
    converting only the regions the drawing changes.

    :meth:`draw` (and :meth:`paint`, for any drawing) converts the regions to RGB in a scratch
    frame, lets the drawing run on it and converts the regions back: at 1080p tens of kB a
    frame, where drawing on RGB costs a conversion of all 6 MB each way. Uses OpenCV's BT.601 conversions (None from :meth:`create`
    without OpenCV): pixels next to the drawing are within a few levels of swscale's, and on a
    BT.709 video the drawn colours are a few levels off.
    """

    def __init__(self, cv2, height: int, width: int):
        if height % 2 or width % 2:
            raise ValueError(f"I420 frames have even sides, got {width}x{height}")
        self._cv2 = cv2
        self.height, self.width = height, width
        self._scratch = np.empty((height, width, 3), np.uint8)

    @classmethod
    def create(cls, height: int, width: int) -> "I420Painter | None":
        from vidact.optional import opencv

        cv2 = opencv()
        return cls(cv2, height, width) if cv2 is not None else None

    def draw(self, i420: np.ndarray, overlays: Sequence[Overlay]) -> np.ndarray:
        """Draw ``overlays`` in order on an I420 frame, in place; returns it."""
        regions = [region for overlay in overlays for region in overlay.regions(self.height, self.width)]
        return self.paint(i420, regions, lambda rgb: draw_overlays(rgb, overlays))

    def paint(self, i420: np.ndarray, regions: Sequence[Region], draw) -> np.ndarray:
        """Run ``draw(rgb)`` on ``i420`` (in place, returned), where ``regions`` cover all it changes."""
        if i420.shape != (self.height * 3 // 2, self.width):
            raise ValueError(f"an I420 frame of {self.width}x{self.height} is {(self.height * 3 // 2, self.width)}, "
                             f"got {i420.shape}")
        planes = i420_planes(i420)
        # Even corners: each 2x2 block shares its chroma, so a region holds whole blocks.
        boxes = []
        for x0, y0, x1, y1 in regions:
            x0, y0 = max(0, x0) & ~1, max(0, y0) & ~1
            x1, y1 = min(self.width, x1 + (x1 & 1)), min(self.height, y1 + (y1 & 1))
            if x1 > x0 and y1 > y0:
                boxes.append((x0, y0, x1, y1))
        for box in boxes:  # every region from the untouched frame, before any is written back
            self._scratch[box[1] : box[3], box[0] : box[2]] = self._cv2.cvtColor(
                _pack_i420(planes, box), self._cv2.COLOR_YUV2RGB_I420
            )
        draw(self._scratch)
        for x0, y0, x1, y1 in boxes:
            converted = self._cv2.cvtColor(np.ascontiguousarray(self._scratch[y0:y1, x0:x1]), self._cv2.COLOR_RGB2YUV_I420)
            for plane, part, scale in zip(planes, i420_planes(converted), (1, 2, 2)):
                plane[y0 // scale : y1 // scale, x0 // scale : x1 // scale] = part
        return i420


def _pack_i420(planes: Sequence[np.ndarray], box: Region) -> np.ndarray:
    """The even-cornered ``box`` of I420 ``planes`` as an I420 array of its own."""
    x0, y0, x1, y1 = box
    height, width = y1 - y0, x1 - x0
    packed = np.empty((height * 3 // 2, width), np.uint8)
    for plane, part, scale in zip(planes, i420_planes(packed), (1, 2, 2)):
        part[...] = plane[y0 // scale : y1 // scale, x0 // scale : x1 // scale]
    return packed


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
