"""Person boxes read from an AVA-format CSV instead of a detector.

Rows are ``video_id,timestamp,x1,y1,x2,y2[,action_id[,score_or_person_id]]`` with boxes
normalised to [0, 1]. This covers AVA ground truth (8th column an integer person id), AVA
detection and prediction files and PySlowFast's ``DEMO.PREDS_BOXES`` (8th column a score with
a decimal point, action column often empty). A box listed once per action is one person.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from vidact.detectors._common import finish_detections
from vidact.detectors.base import Detections
from vidact.errors import VidactError, first_few


AVA_FIRST_SECOND = 900  # AVA's clips start at this second of their movie, and its files count from it


def _is_score(text: str) -> bool:
    return any(c in text for c in ".eE")


def is_csv_spec(spec: str) -> bool:
    """Whether a detector spec names precomputed boxes: ``csv:PATH``, or a path ending in .csv in any case."""
    return spec.partition(":")[0] == "csv" or Path(spec).suffix.lower() == ".csv"


def check_starting_second(seconds: float | None) -> None:
    """Refuse a starting second (None: not given) that is not a finite number, 0 or more: with NaN no
    time comparison is true, and a video has no time before its start."""
    if seconds is not None and not (math.isfinite(seconds) and seconds >= 0):
        raise VidactError(f"--boxes-start must be a finite number of seconds, 0 or more, got {seconds}; "
                          f"pass e.g. --boxes-start {AVA_FIRST_SECOND} for an AVA file")


class PrecomputedDetector:
    """Per-timestamp person boxes from an AVA-format CSV, scaled to the frame size.

    Timestamps in the file are ``starting_second`` plus the time in the video (AVA movies
    start at 900 s; PySlowFast's ``DEMO.STARTING_SECOND``). A frame matches the file's nearest
    timestamp within ``tolerance_s``; frames with no row get no boxes.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        video_id: str | None = None,
        score_threshold: float = 0.0,
        min_box_size: float = 0.0,
        starting_second: float = 0.0,
        tolerance_s: float = 0.05,
    ) -> None:
        check_starting_second(starting_second)
        self.path = Path(path)
        self.score_threshold = score_threshold
        self.min_box_size = min_box_size
        self.starting_second = starting_second
        self.tolerance_s = tolerance_s
        self._rows = self._read(self.path)
        videos = sorted(self._rows)
        if video_id is None and len(videos) > 1:
            raise VidactError(
                f"{self.path} has boxes for {len(videos)} videos ({first_few(videos)}): name the video id"
            )
        if video_id is not None and videos and video_id not in self._rows:
            raise VidactError(f"{self.path} has no rows for video {video_id!r} (it has {first_few(videos)}): "
                              "rename the video after its id in the file, or pass a file with its boxes")
        self.video_id = video_id if video_id is not None else (videos[0] if videos else "")
        times = self._rows.get(self.video_id, {})
        if starting_second == 0 and times and min(times) >= AVA_FIRST_SECOND:
            # Else no keyframe matches a row and the run ends with "no person found".
            from vidact.pipeline.detect import notice

            notice(f"{self.path}: box times start at {min(times):g} s, as AVA's files count from the movie's second "
                   f"{AVA_FIRST_SECOND}; if the video starts there, pass --boxes-start {AVA_FIRST_SECOND}")

    @staticmethod
    def _read(path: Path) -> dict[str, dict[float, dict[tuple[float, ...], float]]]:
        """video id -> timestamp -> normalised box -> best score."""
        if not path.is_file():
            raise VidactError(f"box file not found: {path}: pass an AVA-format CSV")
        rows: dict[str, dict[float, dict[tuple[float, ...], float]]] = defaultdict(lambda: defaultdict(dict))
        with open(path, newline="", encoding="utf-8") as f:
            for line_number, row in enumerate(csv.reader(f), start=1):
                if not row or not "".join(row).strip():
                    continue
                try:
                    video, timestamp = row[0].strip(), float(row[1])
                    box = tuple(float(v) for v in row[2:6])
                    if len(box) != 4:
                        raise ValueError("fewer than 6 columns")
                    score = float(row[7]) if len(row) > 7 and _is_score(row[7]) else 1.0
                except (ValueError, IndexError) as err:
                    raise VidactError(
                        f"{path}:{line_number}: not an AVA box row ({err}): expected "
                        "video_id,timestamp,x1,y1,x2,y2[,action_id,score]"
                    ) from None
                boxes = rows[video][timestamp]
                boxes[box] = max(score, boxes.get(box, score))
        return rows

    @property
    def timestamps(self) -> list[float]:
        """Video times (seconds) that have rows, for this detector's video."""
        return sorted(t - self.starting_second for t in self._rows.get(self.video_id, {}))

    def detections_at(self, time: float, width: int, height: int) -> Detections:
        """Person boxes in pixels at ``time`` seconds into the video, for a ``width x height`` frame."""
        by_time = self._rows.get(self.video_id, {})
        if not by_time:
            return Detections.empty()
        file_time = time + self.starting_second
        nearest = min(by_time, key=lambda t: abs(t - file_time))
        if not abs(nearest - file_time) <= self.tolerance_s:  # NaN matches no row, not every row
            return Detections.empty()
        boxes = np.array(list(by_time[nearest].keys()), np.float32) * [width, height, width, height]
        scores = np.array(list(by_time[nearest].values()), np.float32)
        return finish_detections(
            boxes,
            scores,
            width=width,
            height=height,
            score_threshold=self.score_threshold,
            min_box_size=self.min_box_size,
        )

    def __call__(self, frames: list[np.ndarray], timestamps: list[float] | None = None) -> list[Detections]:
        """Boxes for frames taken at ``timestamps`` (seconds into the video); required here."""
        if timestamps is None or len(timestamps) != len(frames):
            # A caller bug, not a user error: the pipeline knows each keyframe's time.
            raise ValueError(f"precomputed boxes from {self.path} need one timestamp per frame")
        return [self.detections_at(t, f.shape[1], f.shape[0]) for f, t in zip(frames, timestamps)]
