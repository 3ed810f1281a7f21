"""Persistent person ids across keyframes, and person boxes for the frames in between.

:class:`PersonTracker` adapts ByteTrack from Roboflow's ``trackers`` package (the successor
of the ``supervision.ByteTrack`` that supervision 0.27+ no longer ships), fed with the
detections of keyframes and their timestamps, so its motion model and lost-track budget
work in seconds whatever the keyframe spacing.

Boxes for frames between two keyframes come from :func:`interpolate_tracks`: a person with
the same id on both keyframes moves linearly from one box to the other; anyone else (seen
on only one side, or untracked) is shown with the box of the nearer keyframe. After the
last keyframe, its boxes are held. Interpolating (rather than holding the last boxes) keeps
rendered boxes on people who walk, at the price of knowing the next keyframe first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vidact.detectors._common import import_optional
from vidact.detectors.base import Detections

UNTRACKED = -1
# The trackers package measures its lost-track buffer in frames at this reference rate.
_TRACKERS_REFERENCE_FPS = 30.0


@dataclass(frozen=True)
class TrackedDetections:
    """Person boxes on one frame with their track ids (``-1``: not, or not yet, tracked).

    ``boxes`` float32 (N, 4) x1, y1, x2, y2 in frame pixels; ``scores`` float32 (N,);
    ``track_ids`` int64 (N,).
    """

    boxes: np.ndarray
    scores: np.ndarray
    track_ids: np.ndarray

    @classmethod
    def empty(cls) -> "TrackedDetections":
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0,), np.int64))

    def __len__(self) -> int:
        return len(self.scores)


class PersonTracker:
    """ByteTrack over the person detections of successive keyframes.

    A person gets an id from the second keyframe they are matched on (ByteTrack confirms a
    track before naming it); until then the id is ``-1``. Detections scoring at least
    ``high_confidence_threshold`` are matched first and start tracks (when they also reach
    ``track_activation_threshold``); weaker ones (a detector threshold set lower) only continue
    tracks. A track not matched for ``lost_track_seconds``, or for 2.5 keyframe intervals when
    keyframes are further apart, is dropped: it survives one missed keyframe at any rate.
    """

    def __init__(
        self,
        frame_rate: float,
        *,
        lost_track_seconds: float = 2.0,
        track_activation_threshold: float = 0.5,
        high_confidence_threshold: float = 0.5,
        min_iou: float = 0.1,
    ) -> None:
        trackers = import_optional("trackers", "person tracking")
        states = import_optional("trackers.utils.state_representations", "person tracking")
        # The tracker drops a track whose time unmatched exceeds the budget before matching, so
        # a budget under the keyframe interval would drop every track (--rate 0.25: 4 s apart);
        # a track survives one missed keyframe at any rate (2.5 intervals: clear of rounding).
        lost_track_seconds = max(lost_track_seconds, 2.5 / frame_rate)
        self._tracker = trackers.ByteTrackTracker(
            lost_track_buffer=math.ceil(lost_track_seconds * _TRACKERS_REFERENCE_FPS),
            frame_rate=frame_rate,
            track_activation_threshold=track_activation_threshold,
            minimum_consecutive_frames=1,
            minimum_iou_threshold=min_iou,
            high_conf_det_threshold=high_confidence_threshold,
            # Keyframes are far apart (~1 s): a centre/scale/aspect motion model extrapolates a
            # person walking into view far better than per-corner velocities, which overshoot.
            state_estimator_class=states.XCYCSRStateEstimator,
        )
        self._supervision = import_optional("supervision", "person tracking")

    def update(self, detections: Detections, timestamp: float) -> TrackedDetections:
        """Match one keyframe's detections (taken at ``timestamp`` seconds) to the tracks."""
        sv_detections = self._supervision.Detections(
            xyxy=np.asarray(detections.boxes, np.float32).reshape(-1, 4),
            confidence=np.asarray(detections.scores, np.float32),
            class_id=np.zeros(len(detections), int),
        )
        tracked = self._tracker.update(sv_detections, timestamp=float(timestamp))
        if len(tracked) == 0:
            return TrackedDetections.empty()
        return TrackedDetections(
            tracked.xyxy.astype(np.float32),
            tracked.confidence.astype(np.float32),
            tracked.tracker_id.astype(np.int64),
        )

    def reset(self) -> None:
        """Forget every track, e.g. before the next video."""
        self._tracker.reset()


def interpolate_tracks(
    before: TrackedDetections,
    before_time: float,
    after: TrackedDetections | None,
    after_time: float | None,
    time: float,
) -> TrackedDetections:
    """Person boxes at ``time`` between the keyframes at ``before_time`` and ``after_time``.

    Ids on both keyframes are interpolated linearly (boxes and scores); other persons take
    the nearer keyframe's box. With no later keyframe (``after`` None), ``before`` is held.
    """
    if after is None or after_time is None or time <= before_time:
        return before
    alpha = interpolation_weight(before_time, after_time, time)
    later_index = {int(i): k for k, i in enumerate(after.track_ids) if i != UNTRACKED}
    shared = [(k, later_index[int(i)]) for k, i in enumerate(before.track_ids) if int(i) in later_index]
    boxes, scores, ids = [], [], []
    for k, j in shared:
        boxes.append((1 - alpha) * before.boxes[k] + alpha * after.boxes[j])
        scores.append((1 - alpha) * before.scores[k] + alpha * after.scores[j])
        ids.append(before.track_ids[k])
    nearer, shared_rows = (after, {j for _, j in shared}) if alpha >= 0.5 else (before, {k for k, _ in shared})
    for k in range(len(nearer)):
        if k not in shared_rows:
            boxes.append(nearer.boxes[k])
            scores.append(nearer.scores[k])
            ids.append(nearer.track_ids[k])
    if not ids:
        return TrackedDetections.empty()
    return TrackedDetections(
        np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32), np.asarray(ids, np.int64)
    )


def interpolation_weight(before_time: float, after_time: float, time: float) -> float:
    """How far ``time`` is from the keyframe at ``before_time`` to the one at ``after_time``
    (0 to 1); from 0.5 on, the later keyframe is the nearer one."""
    if after_time <= before_time:
        raise ValueError(f"keyframe times must increase: {before_time} then {after_time}")
    return min(max((time - before_time) / (after_time - before_time), 0.0), 1.0)
