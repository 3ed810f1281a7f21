"""Person tracking across keyframes (ByteTrack from the trackers package) and in-between boxes."""

from __future__ import annotations

import sys

import av
import numpy as np
import pytest
import torch
from conftest import shared_path
from torchvision.ops import box_iou

from vidact.detectors.base import Detections
from vidact.detectors.onnx import OnnxPersonDetector
from vidact.errors import VidactError
from vidact.track import UNTRACKED, PersonTracker, TrackedDetections, interpolate_tracks

INTEL = "intel_one-by-one-person-detection.mp4"  # 10 fps


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(box_iou(torch.as_tensor(a[None]), torch.as_tensor(b[None]))[0, 0])


def _detections(*boxes, score=0.9) -> Detections:
    return Detections(np.array(boxes, np.float32).reshape(-1, 4), np.full(len(boxes), score, np.float32))


@pytest.fixture(scope="module")
def intel_tracks() -> dict[float, tuple[TrackedDetections, Detections]]:
    """FastestDet + tracker on the intel clip's keyframes (every second) and half-seconds, 7-43 s."""
    detector = OnnxPersonDetector(shared_path("data", "weights", "fastestdet", "FastestDet.onnx"))
    tracker = PersonTracker(frame_rate=10)
    results = {}
    with av.open(str(shared_path("data", "videos", INTEL))) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index < 70 or index % 5:
                continue
            time = round(frame.time, 3)
            found = detector([frame.to_ndarray(format="rgb24")])[0]
            tracked = tracker.update(found, time) if index % 10 == 0 else None
            results[time] = (tracked, found)
            if index == 430:
                break
    return results


def test_a_person_walking_in_keeps_one_id(intel_tracks):
    # 7-19 s: one woman walks in, stands at the table and walks out (checked by eye);
    # 23-43 s: a second person does the same.
    first = [intel_tracks[float(t)][0] for t in range(7, 20)]
    second = [intel_tracks[float(t)][0] for t in range(24, 44)]
    assert all(len(tracked) == 1 for tracked in first + second)
    assert first[0].track_ids[0] == UNTRACKED  # a track gets its id when confirmed, one keyframe later
    first_ids = {int(tracked.track_ids[0]) for tracked in first[1:]}
    second_ids = {int(tracked.track_ids[0]) for tracked in second[1:]}
    assert len(first_ids) == 1 and len(second_ids) == 1
    assert first_ids != second_ids and UNTRACKED not in first_ids | second_ids


def test_interpolated_boxes_follow_the_walking_person(intel_tracks):
    # Half-way between keyframes, the interpolated box must overlap the person detected on that
    # frame well, and on average better than holding the earlier keyframe's box.
    interpolated, held = [], []
    for second in list(range(8, 19)) + list(range(24, 43)):
        before, after = intel_tracks[float(second)][0], intel_tracks[float(second + 1)][0]
        middle = interpolate_tracks(before, second, after, second + 1, second + 0.5)
        truth = intel_tracks[second + 0.5][1]
        assert len(middle) == 1 and len(truth) >= 1
        interpolated.append(_iou(middle.boxes[0], truth.boxes[0]))
        held.append(_iou(before.boxes[0], truth.boxes[0]))
    assert min(interpolated) > 0.6
    assert np.mean(interpolated) > np.mean(held)
    # where a person walks (in at 24 s, out at 18 s), holding lags far behind
    assert sum(i > h + 0.2 for i, h in zip(interpolated, held)) >= 1


def test_ids_of_two_people_and_a_lost_track():
    tracker = PersonTracker(frame_rate=25, lost_track_seconds=2.0)
    ids = []
    for step in range(5):
        shift = 10 * step
        tracked = tracker.update(_detections([100 + shift, 100, 200 + shift, 300], [400 - shift, 100, 500 - shift, 300]), step)
        ids.append(dict(zip((tracked.boxes[:, 0] < 300).tolist(), tracked.track_ids.tolist())))
    assert ids[0] == {True: UNTRACKED, False: UNTRACKED}
    left, right = ids[1][True], ids[1][False]
    assert left != right and all(step == {True: left, False: right} for step in ids[1:])
    # the right person is missed for 1 s: same id after; the left one for 3 s: a new id
    tracker.update(_detections([150, 100, 250, 300]), 5)
    tracked = tracker.update(_detections([150, 100, 250, 300], [360, 100, 460, 300]), 6)
    assert sorted(tracked.track_ids.tolist()) == sorted([left, right])
    for time in (7, 8, 9):
        tracker.update(_detections([360, 100, 460, 300]), time)
    tracker.update(_detections([150, 100, 250, 300], [360, 100, 460, 300]), 10)
    tracked = tracker.update(_detections([150, 100, 250, 300], [360, 100, 460, 300]), 11)
    assert right in tracked.track_ids.tolist() and left not in tracked.track_ids.tolist()
    tracker.reset()
    assert (tracker.update(_detections([0, 0, 10, 10]), 0).track_ids == UNTRACKED).all()
    assert len(tracker.update(Detections.empty(), 1)) == 0


@pytest.mark.parametrize("rate", [1.0, 0.4, 0.25])
def test_slow_keyframe_rates_keep_ids_and_survive_one_missed_keyframe(rate):
    tracker = PersonTracker(frame_rate=rate)
    ids = [tracker.update(_detections([100 + 5 * k, 100, 200 + 5 * k, 300]), k / rate).track_ids.tolist()
           for k in range(4)]
    assert ids[0] == [UNTRACKED] and ids[1] == ids[2] == ids[3] != [UNTRACKED]
    tracker.update(Detections.empty(), 4 / rate)
    assert tracker.update(_detections([120, 100, 220, 300]), 5 / rate).track_ids.tolist() == ids[3]
    tracker.update(Detections.empty(), 6 / rate)
    tracker.update(Detections.empty(), 7 / rate)
    assert tracker.update(_detections([120, 100, 220, 300]), 8 / rate).track_ids.tolist() == [UNTRACKED]


@pytest.mark.parametrize("score", [0.5, 0.55, 0.9])
def test_any_detection_at_the_default_detector_threshold_gets_an_id(score):
    tracker = PersonTracker(frame_rate=1)
    ids = [tracker.update(_detections([100, 100, 200, 300], score=score), k).track_ids.tolist() for k in range(3)]
    assert ids[0] == [UNTRACKED] and ids[1] == ids[2] != [UNTRACKED]


def test_interpolate_tracks_rules():
    before = TrackedDetections(
        np.array([[0, 0, 10, 10], [50, 50, 60, 60], [80, 0, 90, 10]], np.float32),
        np.array([0.6, 0.9, 0.7], np.float32),
        np.array([1, 2, UNTRACKED]),
    )
    after = TrackedDetections(
        np.array([[20, 0, 30, 20], [100, 100, 110, 110]], np.float32), np.array([0.8, 0.5], np.float32), np.array([1, 3])
    )
    early = interpolate_tracks(before, 10.0, after, 12.0, 10.5)
    assert early.track_ids.tolist() == [1, 2, UNTRACKED]
    np.testing.assert_allclose(early.boxes[0], [5, 0, 15, 12.5])
    assert early.scores[0] == pytest.approx(0.65)
    np.testing.assert_allclose(early.boxes[1:], before.boxes[1:])
    late = interpolate_tracks(before, 10.0, after, 12.0, 11.5)
    assert late.track_ids.tolist() == [1, 3]
    np.testing.assert_allclose(late.boxes, [[15, 0, 25, 17.5], [100, 100, 110, 110]])
    assert interpolate_tracks(before, 10.0, None, None, 11.0) is before
    assert interpolate_tracks(before, 10.0, after, 12.0, 10.0) is before
    assert len(interpolate_tracks(TrackedDetections.empty(), 0.0, TrackedDetections.empty(), 1.0, 0.5)) == 0


def test_missing_tracker_package_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "trackers", None)
    with pytest.raises(VidactError, match=r"pip install 'vidact\[detect\]'") as err:
        PersonTracker(frame_rate=30)
    assert "\n" not in str(err.value)
