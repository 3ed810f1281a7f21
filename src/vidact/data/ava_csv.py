"""AVA-format CSV files: annotations, detections and excluded timestamps.

One row per (person box, action): ``video_id,timestamp,x1,y1,x2,y2,action_id``
followed, optionally, by an eighth column, which is the ``person_id`` in the
annotation files and the ``score`` in detection files. Boxes are normalised to
[0, 1]; timestamps are whole seconds (written zero-padded to 4 digits, as in the
official files). Excluded-timestamp files hold ``video_id,timestamp`` rows.

The same reader serves the evaluator, the AVA dataset and the detect pipeline's
output, so every consumer agrees on the format.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from vidact.errors import VidactError
from vidact.fileutil import atomic_open

EighthColumn = Literal["person_id", "score"]


@dataclass(frozen=True)
class AvaRows:
    """The rows of an AVA CSV file as parallel arrays (row order kept).

    ``boxes`` are ``[x1, y1, x2, y2]`` as in the file. ``scores`` is set when the
    eighth column was read as a score, ``person_ids`` when it was read as a
    person id; each is ``None`` otherwise (or when the file has 7 columns).
    """

    video_ids: np.ndarray  # (N,) str
    timestamps: np.ndarray  # (N,) int64
    boxes: np.ndarray  # (N, 4) float64, x1 y1 x2 y2
    action_ids: np.ndarray  # (N,) int64
    scores: np.ndarray | None = None  # (N,) float64
    person_ids: np.ndarray | None = None  # (N,) int64

    def __len__(self) -> int:
        return len(self.video_ids)


def read_ava_csv(path: str | os.PathLike, eighth_column: EighthColumn) -> AvaRows:
    """Read an AVA CSV file; ``eighth_column`` says what its optional 8th column is.

    Raises :class:`VidactError` naming the file and line for a malformed row.
    """
    path = Path(path)
    video_ids: list[str] = []
    numbers: list[tuple[float, ...]] = []
    has_eighth = False
    # As the official reader, row by row: a 7-column row in a file of 8 has score 1.0 (no person id).
    missing_eighth = 1.0 if eighth_column == "score" else -1.0
    for line_no, row in _rows(path):
        if len(row) not in (7, 8):
            raise VidactError(
                f"{path}:{line_no}: expected 7 or 8 comma-separated columns "
                f"(video_id,timestamp,x1,y1,x2,y2,action_id[,{eighth_column}]), got {len(row)}"
            )
        has_eighth |= len(row) == 8
        try:
            eighth = float(row[7]) if len(row) == 8 else missing_eighth
            numbers.append((float(int(row[1])), *map(float, row[2:6]), float(int(row[6])), eighth))
        except ValueError:
            if _is_decimal(row[1]):  # vidact detect at a rate other than 1 Hz writes such times
                raise VidactError(
                    f"{path}:{line_no}: timestamp {row[1]} is not an integer second, as AVA evaluation needs; "
                    "make the file with vidact detect --rate 1 (or 1/N Hz)"
                ) from None
            raise VidactError(
                f"{path}:{line_no}: timestamp and action_id must be integers and the box "
                f"coordinates{' and ' + eighth_column if len(row) == 8 else ''} numbers: {','.join(row)}"
            ) from None
        video_ids.append(row[0])
    table = np.array(numbers, dtype=np.float64).reshape(len(numbers), 7)
    eighth = table[:, 6] if has_eighth else None
    return AvaRows(
        video_ids=np.array(video_ids, dtype=str),
        timestamps=table[:, 0].astype(np.int64),
        boxes=table[:, 1:5].copy(),
        action_ids=table[:, 5].astype(np.int64),
        scores=eighth if eighth_column == "score" and has_eighth else None,
        person_ids=eighth.astype(np.int64) if eighth_column == "person_id" and has_eighth else None,
    )


def read_excluded_timestamps(path: str | os.PathLike) -> set[tuple[str, int]]:
    """Read a ``video_id,timestamp`` file into a set of ``(video_id, timestamp)`` keyframes."""
    path = Path(path)
    excluded: set[tuple[str, int]] = set()
    for line_no, row in _rows(path):
        if len(row) != 2:
            raise VidactError(f"{path}:{line_no}: expected 2 columns (video_id,timestamp), got {len(row)}")
        try:
            excluded.add((row[0], int(row[1])))
        except ValueError:
            raise VidactError(f"{path}:{line_no}: timestamp must be an integer: {row[1]!r}") from None
    return excluded


def _is_decimal(text: str) -> bool:
    """Whether ``text`` is a number but not an integer (``0000.500``, ``0001.000``)."""
    try:
        float(text)
    except ValueError:
        return False
    return "." in text


def write_ava_csv(path: str | os.PathLike, rows: AvaRows) -> None:
    """Write ``rows`` atomically; the eighth column is the score, else the person id, else absent.

    Boxes are written with 3 decimals (the official files' precision), scores with 6.
    """
    if rows.scores is not None and rows.person_ids is not None:
        raise ValueError("AvaRows has both scores and person_ids; an AVA CSV holds only one of them")
    with atomic_open(path, "w", newline="") as f:
        for i in range(len(rows)):
            x1, y1, x2, y2 = rows.boxes[i]
            line = (
                f"{rows.video_ids[i]},{int(rows.timestamps[i]):04d},"
                f"{x1:.3f},{y1:.3f},{x2:.3f},{y2:.3f},{int(rows.action_ids[i])}"
            )
            if rows.scores is not None:
                line += f",{rows.scores[i]:.6f}"
            elif rows.person_ids is not None:
                line += f",{int(rows.person_ids[i])}"
            f.write(line + "\n")


def _rows(path: Path):
    """Yield ``(line_number, cells)`` for the non-blank lines of a CSV file."""
    try:
        # utf-8-sig: a BOM (Windows editors) would stick to the first video id and move its row.
        with open(path, newline="", encoding="utf-8-sig") as f:
            for line_no, row in enumerate(csv.reader(f), start=1):
                if row and any(cell.strip() for cell in row):
                    yield line_no, [cell.strip() for cell in row]
    except OSError as err:
        raise VidactError(f"{path}: cannot read the file ({err.strerror or err}); check the path") from None
    except (UnicodeDecodeError, csv.Error) as err:
        raise VidactError(f"{path}: not a readable CSV text file ({err})") from None
