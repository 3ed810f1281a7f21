"""AVA frame-mAP@0.5IOU, following the official ActivityNet evaluation.

The protocol (ActivityNet ``Evaluation/get_ava_performance.py`` with the
``PascalDetectionEvaluator`` of the TF object-detection API), reimplemented with
vectorised numpy:

* Only rows whose action id is in the label map are read, from both files. A label
  map numbered from 0 (PySlowFast's JSON label files, one name per line) names action
  ids from 1: its class ``i`` is action id ``i + 1``, as PySlowFast indexes labels.
* At most ``capacity`` (50) detections per keyframe are kept: the highest scores, and
  among rows tied at the cut those the official reader's heap keeps.
* Keyframes listed in the exclusions file are dropped from both files.
* Detections with an empty box (``x2 <= x1`` or ``y2 <= y1``) are dropped.
* Per keyframe and class, detections are visited by descending score; each one
  is compared with the ground-truth box it overlaps most (IoU, first box on
  ties). IoU >= 0.5 and that box not yet taken: true positive; otherwise false
  positive (no fall-back to the second-best box).
* Detections on keyframes without ground truth are false positives (the official
  behaviour); ``ignore_unlabeled_keyframes=True`` drops them instead, which suits
  evaluating on a subset of the annotations. A keyframe annotated only with classes
  outside the label map counts as annotated there.
* AP per class: precision/recall over all detections of the class by descending
  score, precision made monotone (envelope), summed over the recall steps
  (VOC 2010+ style). A class with ground truth but no detection has AP 0; a
  class without ground truth has no AP (NaN) and is left out of the mean.
* AVA has no difficult or group-of boxes.

Ties: which tied detections the capacity keeps follows the official heap exactly. After
that, the official code orders tied scores, and the ground-truth boxes of a keyframe, by
its heap's internal layout and numpy's unstable argsort, which varies with the numpy
version. Here those ties are broken by input order: within a keyframe by row order (also
for which of two ground-truth boxes a detection overlapping both equally is compared
with), across keyframes by the keyframe's first appearance. Results agree exactly
whenever scores within a class do not tie and no detection overlaps two ground-truth
boxes of its class exactly equally.
"""

from __future__ import annotations

import heapq
import math
import os
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from vidact.data.ava_csv import AvaRows, read_ava_csv, read_excluded_timestamps
from vidact.data.labels import LabelMap, read_label_map
from vidact.errors import VidactError

CAPACITY = 50
IOU_THRESHOLD = 0.5


@dataclass(frozen=True)
class AvaResult:
    """The outcome of an AVA evaluation.

    ``per_class`` maps every label-map id to ``(name, AP)``; AP is NaN for a class
    without ground truth. ``map`` is the mean over the classes that have ground truth.
    """

    map: float
    per_class: dict[int, tuple[str, float]]
    num_groundtruth: dict[int, int]
    num_detections: dict[int, int]
    iou_threshold: float = IOU_THRESHOLD

    def metrics(self) -> dict[str, float]:
        """The metrics under the official evaluator's names (``PascalBoxes_...``)."""
        iou = format(self.iou_threshold)
        out = {f"PascalBoxes_Precision/mAP@{iou}IOU": self.map}
        for name, ap in self.per_class.values():
            out[f"PascalBoxes_PerformanceByCategory/AP@{iou}IOU/{name}"] = ap
        return out

    def to_dict(self) -> dict:
        """A JSON-ready summary; NaN APs become ``None``."""
        return {
            "metric": f"AVA frame-mAP@{format(self.iou_threshold)}IOU",
            "mAP": _none_if_nan(self.map),
            "iou_threshold": self.iou_threshold,
            "num_classes_evaluated": sum(not math.isnan(ap) for _, ap in self.per_class.values()),
            "classes": [
                {
                    "id": class_id,
                    "name": name,
                    "ap": _none_if_nan(ap),
                    "num_groundtruth": self.num_groundtruth[class_id],
                    "num_detections": self.num_detections[class_id],
                }
                for class_id, (name, ap) in self.per_class.items()
            ],
            "official_metrics": {key: _none_if_nan(value) for key, value in self.metrics().items()},
        }

    def format_table(self) -> str:
        """A per-class table followed by the mAP line, for printing."""
        width = max(len(name) for name, _ in self.per_class.values())
        lines = [f"{'id':>4}  {'class':<{width}}  {'gt':>6}  {'det':>7}  AP@{format(self.iou_threshold)}"]
        for class_id, (name, ap) in self.per_class.items():
            ap_text = "   -  " if math.isnan(ap) else f"{ap:.4f}"
            lines.append(
                f"{class_id:>4}  {name:<{width}}  {self.num_groundtruth[class_id]:>6}  "
                f"{self.num_detections[class_id]:>7}  {ap_text}"
            )
        evaluated = sum(not math.isnan(ap) for _, ap in self.per_class.values())
        lines.append(f"mAP@{format(self.iou_threshold)}IOU = {self.map:.4f} over {evaluated} classes with ground truth")
        return "\n".join(lines)


class AvaEvaluator:
    """Accumulates detections (e.g. batch by batch during training) and scores them.

    Boxes are ``[x1, y1, x2, y2]`` normalised to [0, 1], like the annotation CSV.
    ``groundtruth`` and ``exclusions`` may be given as file paths or already read.
    """

    def __init__(
        self,
        labelmap: LabelMap | str | os.PathLike,
        groundtruth: AvaRows | str | os.PathLike,
        exclusions: Iterable[tuple[str, int]] | str | os.PathLike | None = None,
        *,
        capacity: int = CAPACITY,
        iou_threshold: float = IOU_THRESHOLD,
        ignore_unlabeled_keyframes: bool = False,
        source: str | None = None,
    ) -> None:
        self.labelmap = _with_action_ids(labelmap if isinstance(labelmap, LabelMap) else read_label_map(labelmap))
        if isinstance(groundtruth, AvaRows):  # ``source``: where the rows came from, for messages
            self._gt_source, self._gt = source or "ground truth", groundtruth
        else:
            self._gt_source, self._gt = str(groundtruth), read_ava_csv(groundtruth, eighth_column="person_id")
        if exclusions is None:
            self._excluded: set[tuple[str, int]] = set()
        elif isinstance(exclusions, (str, os.PathLike)):
            self._excluded = read_excluded_timestamps(exclusions)
        else:
            self._excluded = {(str(video_id), int(timestamp)) for video_id, timestamp in exclusions}
        self.capacity = capacity
        self.iou_threshold = iou_threshold
        self.ignore_unlabeled_keyframes = ignore_unlabeled_keyframes
        self._check_groundtruth()
        self.reset()

    def _check_groundtruth(self) -> None:
        """Refuse ground truth with nothing to score before the detections are made (training's
        validation would find it after TRAIN.EVAL_PERIOD epochs)."""
        class_ids = sorted(self.labelmap.ids)
        scored = np.isin(self._gt.action_ids, class_ids) & np.array(
            [(v, int(t)) not in self._excluded for v, t in zip(self._gt.video_ids, self._gt.timestamps)], dtype=bool)
        if not scored.any():
            raise VidactError(
                f"{self._gt_source}: no ground-truth box (outside excluded keyframes) has a class of the label map "
                f"({len(class_ids)} ids from {class_ids[0]} to {class_ids[-1]}); "
                "check that the label map matches the annotations"
            )

    def reset(self) -> None:
        """Forget the detections processed so far."""
        self._chunks: list[AvaRows] = []

    def process(
        self,
        video_ids: Sequence[str] | np.ndarray,
        timestamps: Sequence[int] | np.ndarray,
        boxes: np.ndarray,
        action_ids: Sequence[int] | np.ndarray,
        scores: Sequence[float] | np.ndarray,
    ) -> None:
        """Add detections given one row per (box, action)."""
        rows = AvaRows(
            video_ids=np.asarray(video_ids, dtype=str).reshape(-1),
            timestamps=np.asarray(timestamps, dtype=np.int64).reshape(-1),
            boxes=np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
            action_ids=np.asarray(action_ids, dtype=np.int64).reshape(-1),
            scores=np.asarray(scores, dtype=np.float64).reshape(-1),
        )
        lengths = {len(rows.video_ids), len(rows.timestamps), len(rows.boxes), len(rows.action_ids), len(rows.scores)}
        if len(lengths) != 1:
            raise ValueError(f"video_ids, timestamps, boxes, action_ids and scores differ in length: {sorted(lengths)}")
        self._chunks.append(rows)

    def process_class_scores(
        self,
        video_ids: Sequence[str] | np.ndarray,
        timestamps: Sequence[int] | np.ndarray,
        boxes: np.ndarray,
        class_scores: np.ndarray,
        class_ids: Sequence[int] | None = None,
    ) -> None:
        """Add detections given one row per box and a score per class.

        Column ``k`` of ``class_scores`` (N, K) is the score of action id
        ``class_ids[k]``; by default ids 1..K, as the AVA models predict them.
        """
        class_scores = np.asarray(class_scores, dtype=np.float64)
        num_boxes, num_classes = class_scores.shape
        ids = np.arange(1, num_classes + 1) if class_ids is None else np.asarray(class_ids, dtype=np.int64)
        if len(ids) != num_classes:
            raise ValueError(f"class_scores has {num_classes} columns but {len(ids)} class_ids were given")
        self.process(
            np.repeat(np.asarray(video_ids, dtype=str), num_classes),
            np.repeat(np.asarray(timestamps, dtype=np.int64), num_classes),
            np.repeat(np.asarray(boxes, dtype=np.float64).reshape(-1, 4), num_classes, axis=0),
            np.tile(ids, num_boxes),
            class_scores.reshape(-1),
        )

    def evaluate(self) -> AvaResult:
        """Score the detections processed since the last :meth:`reset`."""
        if self._chunks:
            detections = AvaRows(
                video_ids=np.concatenate([c.video_ids for c in self._chunks]),
                timestamps=np.concatenate([c.timestamps for c in self._chunks]),
                boxes=np.concatenate([c.boxes for c in self._chunks]),
                action_ids=np.concatenate([c.action_ids for c in self._chunks]),
                scores=np.concatenate([c.scores for c in self._chunks]),
            )
        else:
            detections = AvaRows(
                np.empty(0, dtype=str), np.empty(0, np.int64), np.empty((0, 4)), np.empty(0, np.int64), np.empty(0)
            )
        return _evaluate(self, detections)


def evaluate_ava(
    gt_csv: str | os.PathLike,
    pred_csv: str | os.PathLike,
    labelmap: LabelMap | str | os.PathLike,
    exclusions: str | os.PathLike | None = None,
    *,
    capacity: int = CAPACITY,
    iou_threshold: float = IOU_THRESHOLD,
    ignore_unlabeled_keyframes: bool = False,
) -> AvaResult:
    """Frame-mAP of the detections in ``pred_csv`` against the annotations in ``gt_csv``.

    ``pred_csv``'s eighth column is the score (1.0 when absent, as in the official
    code); ``gt_csv``'s is the person id. Raises :class:`VidactError` naming the
    file for unreadable input.
    """
    evaluator = AvaEvaluator(
        labelmap,
        gt_csv,
        exclusions,
        capacity=capacity,
        iou_threshold=iou_threshold,
        ignore_unlabeled_keyframes=ignore_unlabeled_keyframes,
    )
    detections = read_ava_csv(pred_csv, eighth_column="score")
    scores = np.ones(len(detections)) if detections.scores is None else detections.scores
    evaluator.process(detections.video_ids, detections.timestamps, detections.boxes, detections.action_ids, scores)
    return evaluator.evaluate()


def _evaluate(ev: AvaEvaluator, det: AvaRows) -> AvaResult:
    gt = ev._gt
    class_ids = np.array(sorted(ev.labelmap.ids), dtype=np.int64)

    # Keyframes as integers shared by both sides: (video index, timestamp).
    videos, video_index = np.unique(np.concatenate([gt.video_ids, det.video_ids]), return_inverse=True)
    frame_key = video_index.astype(np.int64) << 32 | (np.concatenate([gt.timestamps, det.timestamps]) & 0xFFFFFFFF)
    gt_frame, det_frame = frame_key[: len(gt)], frame_key[len(gt) :]
    excluded_key = _excluded_keys(ev._excluded, videos)

    gt_included = ~np.isin(gt_frame, excluded_key)
    # Annotated whatever the classes: a keyframe annotated only outside the label map is not unlabeled.
    annotated_frames = gt_frame[gt_included]
    gt_keep = np.isin(gt.action_ids, class_ids) & gt_included
    gt_frame, gt_class, gt_boxes = gt_frame[gt_keep], gt.action_ids[gt_keep], gt.boxes[gt_keep]

    det_keep = np.isin(det.action_ids, class_ids)
    det_frame, det_class = det_frame[det_keep], det.action_ids[det_keep]
    det_boxes, det_scores = det.boxes[det_keep], det.scores[det_keep]
    # Order: keyframes by first appearance, within a keyframe by descending score, ties by row order.
    frames_seen, first_row = np.unique(det_frame, return_index=True)
    frame_rank = np.argsort(np.argsort(first_row, kind="stable"), kind="stable")
    frame_rank = frame_rank[np.searchsorted(frames_seen, det_frame)]
    order = np.lexsort((np.arange(len(det_frame)), -det_scores, frame_rank))
    det_frame, det_class, det_boxes, det_scores = det_frame[order], det_class[order], det_boxes[order], det_scores[order]
    keep = ~np.isin(det_frame, excluded_key)
    if ev.capacity > 0:
        keep &= _within_capacity(det_frame, det_scores, det_class, det_boxes, order, ev.capacity)
    keep &= (det_boxes[:, 0] < det_boxes[:, 2]) & (det_boxes[:, 1] < det_boxes[:, 3])
    if ev.ignore_unlabeled_keyframes:
        keep &= np.isin(det_frame, annotated_frames)
    det_frame, det_class, det_boxes, det_scores = det_frame[keep], det_class[keep], det_boxes[keep], det_scores[keep]

    num_gt = np.bincount(np.searchsorted(class_ids, gt_class), minlength=len(class_ids))
    is_tp = _match(gt_frame, gt_class, gt_boxes, det_frame, det_class, det_boxes, ev.iou_threshold)

    per_class: dict[int, tuple[str, float]] = {}
    num_detections: dict[int, int] = {}
    det_class_index = np.searchsorted(class_ids, det_class)
    for index, class_id in enumerate(class_ids):
        in_class = det_class_index == index
        num_detections[int(class_id)] = int(in_class.sum())
        has_gt = num_gt[index] > 0
        ap = _average_precision(det_scores[in_class], is_tp[in_class], int(num_gt[index])) if has_gt else math.nan
        per_class[int(class_id)] = (ev.labelmap[int(class_id)], ap)
    per_class = {class_id: per_class[class_id] for class_id in ev.labelmap.ids}  # label-map order
    aps = np.array([ap for class_id, (_, ap) in sorted(per_class.items())])
    return AvaResult(
        map=float(np.nanmean(aps)),
        per_class=per_class,
        num_groundtruth={int(c): int(n) for c, n in zip(class_ids, num_gt)},
        num_detections=num_detections,
        iou_threshold=ev.iou_threshold,
    )


def _match(
    gt_frame: np.ndarray,
    gt_class: np.ndarray,
    gt_boxes: np.ndarray,
    det_frame: np.ndarray,
    det_class: np.ndarray,
    det_boxes: np.ndarray,
    iou_threshold: float,
) -> np.ndarray:
    """True-positive flags of detections already in visiting order (see the module docstring)."""
    # A (keyframe, class) group id per row; ground truth sorted by group, stable.
    frames = np.unique(np.concatenate([gt_frame, det_frame]))
    classes = np.unique(np.concatenate([gt_class, det_class]))
    gt_group = np.searchsorted(frames, gt_frame) * len(classes) + np.searchsorted(classes, gt_class)
    det_group = np.searchsorted(frames, det_frame) * len(classes) + np.searchsorted(classes, det_class)
    gt_order = np.argsort(gt_group, kind="stable")
    gt_group, gt_boxes = gt_group[gt_order], gt_boxes[gt_order]

    # Every (detection, ground truth of the same group) pair, detection-major.
    start = np.searchsorted(gt_group, det_group, side="left")
    count = np.searchsorted(gt_group, det_group, side="right") - start
    pair_det = np.repeat(np.arange(len(det_group)), count)
    pair_gt = np.repeat(start - (np.cumsum(count) - count), count) + np.arange(count.sum())
    iou = _pairwise_iou(det_boxes[pair_det], gt_boxes[pair_gt])

    is_tp = np.zeros(len(det_group), dtype=bool)
    has_gt = count > 0
    if not has_gt.any():
        return is_tp
    best_iou = np.full(len(det_group), np.nan)
    best_iou[has_gt] = np.maximum.reduceat(iou, (np.cumsum(count) - count)[has_gt])
    # The first ground truth reaching the best IoU of each detection (NaN never does).
    at_best = iou == best_iou[pair_det]
    dets_at_best, first_pair = np.unique(pair_det[at_best], return_index=True)
    best_gt = np.full(len(det_group), -1)
    best_gt[dets_at_best] = pair_gt[at_best][first_pair]
    candidate = np.flatnonzero((best_gt >= 0) & (best_iou >= iou_threshold))
    # Each ground-truth box goes to the first candidate (in visiting order) that claims it.
    _, first_claim = np.unique(best_gt[candidate], return_index=True)
    is_tp[candidate[first_claim]] = True
    return is_tp


def _pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of ``a[i]`` with ``b[i]`` (x1 y1 x2 y2), in the official code's order of float operations."""
    inter_h = np.maximum(0.0, np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]))
    inter_w = np.maximum(0.0, np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]))
    intersection = inter_h * inter_w
    area_a = (a[:, 3] - a[:, 1]) * (a[:, 2] - a[:, 0])
    area_b = (b[:, 3] - b[:, 1]) * (b[:, 2] - b[:, 0])
    with np.errstate(divide="ignore", invalid="ignore"):
        return intersection / (area_a + area_b - intersection)


def _average_precision(scores: np.ndarray, is_tp: np.ndarray, num_gt: int) -> float:
    """VOC-style AP: area under the monotone precision envelope, summed over recall steps."""
    if len(scores) == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    true_positives = np.cumsum(is_tp[order])
    precision = true_positives / np.arange(1, len(scores) + 1)
    recall = np.concatenate([[0.0], true_positives / num_gt])
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    step = np.flatnonzero(recall[1:] != recall[:-1])
    return float(np.sum((recall[step + 1] - recall[step]) * envelope[step]))


def _with_action_ids(labelmap: LabelMap) -> LabelMap:
    """The label map keyed by AVA action id (1, 2, ...).

    A map numbered from 0 (PySlowFast's JSON label files, one name per line) lists the
    classes by score index, and PySlowFast's index is the action id - 1.
    """
    if labelmap.first_id != 0:
        return labelmap
    return LabelMap(
        {class_id + 1: name for class_id, name in labelmap.names.items()},
        {class_id + 1: label_type for class_id, label_type in labelmap.label_types.items()},
    )


def _within_capacity(
    frame: np.ndarray, scores: np.ndarray, action_ids: np.ndarray, boxes: np.ndarray, row: np.ndarray, capacity: int
) -> np.ndarray:
    """Which detections the official reader keeps, ``capacity`` at most per keyframe.

    The arrays are in visiting order (keyframe, descending score, row order); ``row`` is each
    detection's input row. The official reader fills a min-heap of (score, action id, y1, x1,
    y2, x2) tuples per keyframe in row order; once it is full, a row replaces the smallest
    tuple only when it scores strictly higher than that tuple. The heap's lowest score never
    falls, so it keeps every row above the keyframe's ``capacity``-th highest score (the cut)
    and none below it, and rows below the cut never decide between rows tied at it (they
    leave the heap first). The heap is replayed only where tied rows straddle the cut.
    """
    rank = _rank_within_runs(frame)
    keep = rank < capacity
    start = np.flatnonzero(rank == 0)
    end = np.r_[start[1:], len(frame)]
    crowded = end - start > capacity
    start, end = start[crowded], end[crowded]
    cut = start + capacity - 1
    straddles = scores[cut] == scores[cut + 1]
    for first, last, cut_index in zip(start[straddles], end[straddles], cut[straddles]):
        in_frame = np.arange(first, last)
        candidates = in_frame[scores[in_frame] >= scores[cut_index]]
        keep[candidates] = False
        heap: list[tuple] = []
        for index in candidates[np.argsort(row[candidates])]:
            x1, y1, x2, y2 = boxes[index]
            # The trailing index only orders identical tuples, which are interchangeable.
            entry = (scores[index], action_ids[index], y1, x1, y2, x2, index)
            if len(heap) < capacity:
                heapq.heappush(heap, entry)
            elif entry[0] > heap[0][0]:
                heapq.heapreplace(heap, entry)
        keep[[entry[-1] for entry in heap]] = True
    return keep


def _rank_within_runs(sorted_keys: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within each run of equal consecutive keys."""
    if len(sorted_keys) == 0:
        return np.zeros(0, dtype=np.int64)
    run_start = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    run_length = np.diff(np.r_[run_start, len(sorted_keys)])
    return np.arange(len(sorted_keys)) - np.repeat(run_start, run_length)


def _excluded_keys(excluded: set[tuple[str, int]], videos: np.ndarray) -> np.ndarray:
    """The keyframe keys of the excluded (video, timestamp) pairs whose video occurs."""
    if not excluded or len(videos) == 0:
        return np.zeros(0, dtype=np.int64)
    video_ids = np.array([video_id for video_id, _ in excluded], dtype=str)
    timestamps = np.array([timestamp for _, timestamp in excluded], dtype=np.int64)
    position = np.searchsorted(videos, video_ids)
    known = (position < len(videos)) & (videos[np.minimum(position, len(videos) - 1)] == video_ids)
    return position[known].astype(np.int64) << 32 | (timestamps[known] & 0xFFFFFFFF)


def _none_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else value
