"""The font labels are drawn in: accented Latin, Greek and Cyrillic by default; $VIDACT_FONT for the rest."""

from __future__ import annotations

import importlib.util
import os
import warnings

import numpy as np
import pytest
from conftest import shared_path

from vidact.cli.main import main
from vidact.pipeline import render
from vidact.pipeline.detect import DetectNotice

TINY = ("fixtures", "parity", "tiny_k400_slowfast")


@pytest.fixture(autouse=True)
def _fresh_font_lookup(monkeypatch):
    monkeypatch.delenv(render.FONT_VARIABLE, raising=False)
    render._matplotlib_dejavu_sans.cache_clear()
    yield
    render._matplotlib_dejavu_sans.cache_clear()


def _matplotlib_font(name: str) -> str:
    return os.path.join(importlib.util.find_spec("matplotlib").submodule_search_locations[0],
                        "mpl-data", "fonts", "ttf", name)


def test_the_default_font_draws_accented_latin_greek_and_cyrillic():
    """PIL's own font has ASCII only: 'café' was drawn 'caf' and a box."""
    assert render.missing_glyphs(["café", "señal", "Ωμέγα", "бег", "stand (e.g., up)"]) == ""
    assert render.missing_glyphs(["跑步"]) == "步跑"


def test_without_matplotlib_the_pil_font_is_used_and_its_gaps_are_known(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert render.font_file() is None
    assert render.missing_glyphs(["café", "stand"]) == "é"


def test_vidact_font_is_the_font_labels_are_drawn_in(monkeypatch):
    frame = np.zeros((120, 200, 3), np.uint8)
    regular = render.draw_text_panel(frame.copy(), ["[0.91] stand"])
    monkeypatch.setenv(render.FONT_VARIABLE, _matplotlib_font("DejaVuSans-Bold.ttf"))
    assert render.get_font(12).path == _matplotlib_font("DejaVuSans-Bold.ttf")
    bold = render.draw_text_panel(frame.copy(), ["[0.91] stand"])
    assert (bold > 128).sum() > (regular > 128).sum()  # thicker strokes


def test_class_names_the_font_lacks_are_told_with_what_to_do():
    with pytest.warns(DetectNotice, match=r"lacks characters of the class names \(步跑\).*set VIDACT_FONT"):
        render.check_label_font(["stand", "跑步"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        render.check_label_font(["stand", "café"])


def test_a_file_that_is_no_font_is_one_line_before_the_work(tmp_path, capsys, monkeypatch):
    bad = tmp_path / "font.ttf"
    bad.write_bytes(b"not a font")
    monkeypatch.setenv(render.FONT_VARIABLE, str(bad))
    out = tmp_path / "out"
    argv = ["classify", str(shared_path("data", "videos", "mmaction2_demo.mp4")), "--cfg",
            str(shared_path(*TINY, "config.yaml")), "--weights", str(shared_path(*TINY, "model.pyth")),
            "--views", "1x1", "--no-progress", "--render", str(out / "timeline.mp4")]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no classification printed: refused before it
    lines = captured.err.strip().splitlines()
    assert lines == [f"vidact classify: error: VIDACT_FONT={bad}: cannot be loaded as a font (unknown file format); "
                     "point it at a TrueType or OpenType file (.ttf, .otf, .ttc), or unset it"]
    assert not out.exists()


def test_box_labels_follow_a_changed_vidact_font(monkeypatch):
    """Box labels are cached per keyframe: the cache must not hand back the previous font's pixels."""
    frame = np.zeros((160, 240, 3), np.uint8)
    regular = render.draw_box(frame.copy(), (40, 60, 200, 150), label_lines=["0.91 stand"])
    monkeypatch.setenv(render.FONT_VARIABLE, _matplotlib_font("DejaVuSans-Bold.ttf"))
    bold = render.draw_box(frame.copy(), (40, 60, 200, 150), label_lines=["0.91 stand"])
    assert not np.array_equal(regular, bold)
