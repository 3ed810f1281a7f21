"""The data files of ``vidact detect``: AVA CSV, track CSV, JSON lines, timeline PNG, metrics.

Every file is written atomically (:mod:`vidact.fileutil`): it appears complete or not at all.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from vidact.data.ava_csv import AvaRows, write_ava_csv
from vidact.fileutil import atomic_open, atomic_path
from vidact.pipeline.detect import KeyframeResult

JSONL_SCHEMA_PATH = Path(__file__).with_name("detect_jsonl_schema.json")


def _normalized(box: Sequence[float], width: int, height: int) -> list[float]:
    x1, y1, x2, y2 = box
    return [min(max(v, 0.0), 1.0) for v in (x1 / width, y1 / height, x2 / width, y2 / height)]


def _timestamps_are_whole(results: Sequence[KeyframeResult]) -> bool:
    return all(abs(r.time - round(r.time)) < 1e-6 for r in results)


def write_actions_csv(path: str | os.PathLike, video_id: str, results: Sequence[KeyframeResult]) -> None:
    """AVA detections: one row per person, keyframe and class, ``video_id,timestamp,x1,y1,x2,y2,action_id,score``.

    Every class's score is written (as PySlowFast does; the evaluator keeps each keyframe's 50 best); ``action_id`` is the
    class index + 1, boxes are normalised. Keyframes at whole seconds (any integer rate of
    1 Hz or a divisor) are written as AVA's integer timestamps; other rates give times with 3
    decimals, which the AVA evaluator, keyed on whole seconds, does not read.
    """
    video_ids, stamps, boxes, action_ids, scores = [], [], [], [], []
    for result in results:
        for person in result.persons:
            box = _normalized(person.box, result.width, result.height)
            for index, score in enumerate(person.scores):
                video_ids.append(video_id)
                stamps.append(result.time)
                boxes.append(box)
                action_ids.append(index + 1)
                scores.append(float(score))
    if _timestamps_are_whole(results):
        rows = AvaRows(
            np.array(video_ids, dtype=str),
            np.rint(np.array(stamps, dtype=np.float64)).astype(np.int64),
            np.array(boxes, dtype=np.float64).reshape(-1, 4),
            np.array(action_ids, dtype=np.int64),
            np.array(scores, dtype=np.float64),
        )
        write_ava_csv(path, rows)
        return
    with atomic_open(path, "w", newline="") as f:
        for vid, stamp, (x1, y1, x2, y2), action, score in zip(video_ids, stamps, boxes, action_ids, scores):
            f.write(f"{vid},{stamp:08.3f},{x1:.3f},{y1:.3f},{x2:.3f},{y2:.3f},{action},{score:.6f}\n")


def write_tracks_csv(path: str | os.PathLike, video_id: str, results: Sequence[KeyframeResult]) -> None:
    """The persons of each keyframe with their ids: ``video_id,timestamp,x1,y1,x2,y2,track_id,detection_score``.

    Boxes are normalised and written as in the actions CSV, so a row there is matched here by
    ``(video_id, timestamp, box)``; ``track_id`` is -1 for a person not (yet) tracked.
    """
    whole = _timestamps_are_whole(results)
    with atomic_open(path, "w", newline="") as f:
        for result in results:
            stamp = f"{round(result.time):04d}" if whole else f"{result.time:08.3f}"
            for person in result.persons:
                x1, y1, x2, y2 = _normalized(person.box, result.width, result.height)
                f.write(
                    f"{video_id},{stamp},{x1:.3f},{y1:.3f},{x2:.3f},{y2:.3f},"
                    f"{person.track_id},{person.detection_score:.6f}\n"
                )


def keyframe_record(video_id: str, result: KeyframeResult) -> dict:
    """The JSON object of one keyframe (see ``detect_jsonl_schema.json``)."""
    return {
        "video_id": video_id,
        "time": round(result.time, 6),
        "frame_index": result.frame_index,
        "width": result.width,
        "height": result.height,
        "persons": [
            {
                "track_id": person.track_id,
                "box": [round(v, 3) for v in person.box],
                "box_normalized": [round(v, 6) for v in _normalized(person.box, result.width, result.height)],
                "detection_score": round(person.detection_score, 6),
                # Scores at full float32 precision: a reader gets exactly what the model gave.
                "actions": [{"id": a.index + 1, "name": a.name, "score": float(a.score)} for a in person.actions],
            }
            for person in result.persons
        ],
    }


def write_jsonl(path: str | os.PathLike, video_id: str, results: Sequence[KeyframeResult]) -> None:
    """One JSON object per keyframe, in time order, keyframes without persons included."""
    with atomic_open(path, "w") as f:
        for result in results:
            f.write(json.dumps(keyframe_record(video_id, result), ensure_ascii=False, allow_nan=False) + "\n")


def jsonl_schema() -> dict:
    """The JSON schema every line of the JSON-lines output validates against."""
    return json.loads(JSONL_SCHEMA_PATH.read_text(encoding="utf-8"))


def write_json(path: str | os.PathLike, data: dict) -> None:
    with atomic_open(path, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")


def write_timeline(
    path: str | os.PathLike,
    video_id: str,
    results: Sequence[KeyframeResult],
    class_names: Sequence[str],
    *,
    rate: float = 1.0,
    max_rows: int = 60,
) -> None:
    """Who did what, when: one row per (person, action), a bar over each keyframe where it was found.

    A bar spans the keyframe's interval (``1 / rate`` s) and its opacity is the score.
    Untracked detections share the row of track ``-1``. At most ``max_rows`` rows are drawn,
    the most frequent ones.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    # Names are text, not TeX: "$5-$10" must not be typeset as math, nor "$1_to_$2" fail to parse.
    settings = {"font.family": _timeline_fonts(), "text.parse_math": False}
    with matplotlib.rc_context(settings), warnings.catch_warnings():
        # A name the fonts cannot draw was told once, before the run (render.check_label_font).
        warnings.filterwarnings("ignore", message="Glyph .* missing from")
        _draw_timeline(path, video_id, results, class_names, rate=rate, max_rows=max_rows)


def _timeline_fonts() -> list[str]:
    """$VIDACT_FONT (the drawn labels' font) first, matplotlib's DejaVu Sans for what it lacks."""
    from matplotlib import font_manager

    from vidact.pipeline.render import FONT_VARIABLE, get_font

    chosen = os.environ.get(FONT_VARIABLE)
    if not chosen:
        return ["DejaVu Sans"]
    get_font(10)  # a file that is no font: one-line error
    font_manager.fontManager.addfont(chosen)
    return [font_manager.FontProperties(fname=chosen).get_name(), "DejaVu Sans"]


_ROW_NAME_CHARS = 48  # longer names are cut: the figure's width stays the timeline's


def _row_label(track_id: int, name: str) -> str:
    """A timeline row's label, its start kept: the track, and the class name cut to fit."""
    if len(name) > _ROW_NAME_CHARS:
        name = name[: _ROW_NAME_CHARS - 1].rstrip() + "…"
    return f"{'untracked' if track_id == -1 else f'#{track_id}'}  {name}"


def _draw_timeline(path, video_id, results, class_names, *, rate, max_rows) -> None:
    from matplotlib.figure import Figure

    from vidact.pipeline.render import class_color

    spans: dict[tuple[int, int], list[tuple[float, float]]] = {}
    for result in results:
        for person in result.persons:
            for action in person.actions:
                spans.setdefault((person.track_id, action.index), []).append((result.time, action.score))
    rows = sorted(spans, key=lambda key: -len(spans[key]))[:max_rows]
    rows.sort(key=lambda key: (key[0] == -1, key[0], key[1]))
    end = max((r.time for r in results), default=0.0) + 1.0 / rate
    figure = Figure(figsize=(10, 1.5 + 0.28 * max(len(rows), 1)), dpi=100)
    axes = figure.add_subplot()
    width = 1.0 / rate
    for row, key in enumerate(rows):
        color = np.array(class_color(key[1], len(class_names))) / 255.0
        # One collection a row: a bar each (barh) took a millisecond apiece, minutes for an hour of video.
        axes.broken_barh([(start - width / 2, width) for start, _ in spans[key]], (row - 0.4, 0.8),
                         facecolors=[(*color, 0.25 + 0.75 * score) for _, score in spans[key]], edgecolor="none")
    axes.set_yticks(range(len(rows)))
    axes.set_yticklabels([_row_label(track, class_names[index]) for track, index in rows], fontsize=8)
    axes.invert_yaxis()
    axes.set_xlim(-width / 2, max(end, width))
    axes.set_xlabel("video time (s)")
    axes.set_title(f"{video_id}: actions per person", fontsize=10)
    if not rows:
        axes.text(0.5, 0.5, "no person with an action above threshold", ha="center", va="center",
                  transform=axes.transAxes)
    axes.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")

