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


def test_the_timeline_draws_names_as_text_not_tex_and_cuts_long_ones(tmp_path):
    """"$1_to_$2" in a class name or video id stopped the run with matplotlib's TeX parse error."""
    from PIL import Image

    from vidact.pipeline import outputs
    from vidact.pipeline.detect import Action, KeyframeResult, PersonActions

    names = ("price $1_to_$2", "very long action name " * 9)
    person = PersonActions(3, (1.0, 2.0, 30.0, 40.0), 0.9,
                           (Action(0, names[0], 0.8), Action(1, names[1], 0.6)), np.zeros(2, np.float32))
    outputs.write_timeline(tmp_path / "t.png", "clip_$x_1$", [KeyframeResult(0.0, 0, 64, 48, (person,))], names)
    assert Image.open(tmp_path / "t.png").size[0] == 1000
    assert outputs._row_label(3, names[0]) == "#3  price $1_to_$2"
    assert outputs._row_label(-1, names[1]) == "untracked  " + names[1][:47].rstrip() + "\u2026"
