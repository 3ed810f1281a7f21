"""Kinetics multi-view accuracy: per-video scores summed over views, then top-k.

The PySlowFast test protocol scores each video from several views (3 spatial
crops x 10 temporal clips); the softmax scores of the views are summed (or
max-pooled, ``DATA.ENSEMBLE_METHOD``) and the video is right at k if its label
is among the k best classes. Views may arrive in any order, spread over batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

from vidact.errors import VidactError, first_few, nonfinite_scores


@dataclass(frozen=True)
class KineticsResult:
    """Video-level accuracies in [0, 1]; ``topk`` maps k to top-k accuracy."""

    topk: dict[int, float]
    mean_class_accuracy: float
    num_videos: int
    views_per_video: tuple[int, int]  # (fewest, most)

    @property
    def top1(self) -> float:
        return self.topk[1]

    @property
    def top5(self) -> float:
        return self.topk[5]

    def to_dict(self) -> dict:
        return {
            **{f"top{k}": acc for k, acc in self.topk.items()},
            "mean_class_accuracy": self.mean_class_accuracy,
            "num_videos": self.num_videos,
            "views_per_video": list(self.views_per_video),
        }


class KineticsEvaluator:
    """Accumulates per-view class scores by video id and reports video-level accuracy.

    ``apply_softmax=True`` treats the scores as logits; pass False when the model
    already outputs probabilities (PySlowFast heads do in eval mode).
    ``expected_views``, when given, makes :meth:`evaluate` fail if a video has
    another number of views (e.g. 30 for 3 crops x 10 clips). :meth:`evaluate` also
    fails if a video's scores are NaN or infinite.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        topk: Sequence[int] = (1, 5),
        apply_softmax: bool = True,
        ensemble: Literal["sum", "max"] = "sum",
        expected_views: int | None = None,
    ) -> None:
        if ensemble not in ("sum", "max"):
            raise ValueError(f"ensemble must be 'sum' or 'max', not {ensemble!r}")
        if any(not 1 <= k <= num_classes for k in topk):
            raise ValueError(f"every k in topk must be in 1..num_classes={num_classes}, got {list(topk)}")
        self.num_classes = num_classes
        self.topk = tuple(topk)
        self.apply_softmax = apply_softmax
        self.ensemble = ensemble
        self.expected_views = expected_views
        self.reset()

    def reset(self) -> None:
        """Forget every view processed so far."""
        # Rows 0..len(_slot)-1 of the arrays are the videos seen; the rest is room to grow.
        self._slot: dict[str, int] = {}
        self._scores = np.zeros((0, self.num_classes))
        self._labels = np.zeros(0, dtype=np.int64)
        self._views = np.zeros(0, dtype=np.int64)

    def _make_room(self, num_videos: int) -> None:
        """Grow the per-video arrays to hold ``num_videos``, at least doubling them.

        Growing by each batch's new videos alone would copy every video seen so far on
        every batch: quadratic time over a test set (minutes for Kinetics-400's 20k videos).
        """
        if num_videos <= len(self._labels):
            return
        extra = max(num_videos, 2 * len(self._labels)) - len(self._labels)
        fill = -np.inf if self.ensemble == "max" else 0.0
        self._scores = np.concatenate([self._scores, np.full((extra, self.num_classes), fill)])
        self._labels = np.concatenate([self._labels, np.zeros(extra, dtype=np.int64)])
        self._views = np.concatenate([self._views, np.zeros(extra, dtype=np.int64)])

    def process(self, video_ids: Sequence[str], view_scores, labels) -> None:
        """Add a batch of views: ``view_scores`` (B, num_classes), one video id and label per view.

        Arrays may be numpy arrays or torch tensors (on any device).
        """
        scores = _to_numpy(view_scores).astype(np.float64)
        labels = _to_numpy(labels).astype(np.int64).reshape(-1)
        video_ids = [str(video_id) for video_id in video_ids]
        if scores.ndim != 2 or scores.shape[1] != self.num_classes:
            raise ValueError(f"view_scores must have shape (B, {self.num_classes}), got {scores.shape}")
        if not len(video_ids) == len(labels) == len(scores):
            raise ValueError(f"{len(video_ids)} video ids, {len(labels)} labels and {len(scores)} score rows")
        if len(labels) and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(f"labels must be in 0..{self.num_classes - 1}")
        if self.apply_softmax:
            # An infinite logit gives NaN here; evaluate() reports it, so numpy's warning is noise.
            with np.errstate(invalid="ignore"):
                shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
                scores = shifted / shifted.sum(axis=1, keepdims=True)

        known = {v: int(self._labels[self._slot[v]]) for v in set(video_ids) if v in self._slot}
        _check_labels(video_ids, labels, known)
        new_ids = [video_id for video_id in dict.fromkeys(video_ids) if video_id not in self._slot]
        first_new = len(self._slot)
        self._slot.update({video_id: first_new + i for i, video_id in enumerate(new_ids)})
        self._make_room(len(self._slot))

        slots = np.array([self._slot[video_id] for video_id in video_ids], dtype=np.int64)
        self._labels[slots] = labels
        if self.ensemble == "sum":
            np.add.at(self._scores, slots, scores)
        else:
            np.maximum.at(self._scores, slots, scores)
        np.add.at(self._views, slots, 1)

    def video_scores(self) -> dict[str, np.ndarray]:
        """The ensembled class scores of every video seen so far."""
        return {video_id: self._scores[slot] for video_id, slot in self._slot.items()}

    def evaluate(self) -> KineticsResult:
        """Top-k and mean class accuracy over the videos processed since :meth:`reset`."""
        if not self._slot:
            raise VidactError("no views were processed; nothing to evaluate")
        num_videos = len(self._slot)
        scores, labels, views = self._scores[:num_videos], self._labels[:num_videos], self._views[:num_videos]
        if self.expected_views is not None and (views != self.expected_views).any():
            bad = [video_id for video_id, slot in self._slot.items() if views[slot] != self.expected_views]
            raise VidactError(
                f"{len(bad)} videos do not have {self.expected_views} views (e.g. {bad[0]!r} has "
                f"{views[self._slot[bad[0]]]}); check the test loader's crops x clips"
            )
        # Every comparison with NaN is False, so a NaN video would rank its label first:
        # no accuracy over such scores means anything.
        finite = np.isfinite(scores).all(axis=1)
        if not finite.all():
            bad = [video_id for video_id, slot in self._slot.items() if not finite[slot]]
            shown = first_few((repr(video_id) for video_id in bad), 5)
            raise nonfinite_scores(f"{len(bad)} of {num_videos} videos (ids {shown})")
        # Rank of the true class among the classes; ties go to the lower class index,
        # as a stable descending sort would order them.
        true_score = scores[np.arange(num_videos), labels][:, None]
        lower_index = np.arange(self.num_classes) < labels[:, None]
        rank = ((scores > true_score) | ((scores == true_score) & lower_index)).sum(axis=1)
        topk = {k: float((rank < k).mean()) for k in self.topk}
        correct = rank == 0
        per_class = [correct[labels == c].mean() for c in np.unique(labels)]
        return KineticsResult(
            topk=topk,
            mean_class_accuracy=float(np.mean(per_class)),
            num_videos=num_videos,
            views_per_video=(int(views.min()), int(views.max())),
        )


def _check_labels(video_ids: list[str], labels: np.ndarray, known: dict[str, int]) -> None:
    """Raise ValueError when views of one video carry different labels (within or across batches)."""
    seen = dict(known)
    for video_id, label in zip(video_ids, labels.tolist()):
        if seen.setdefault(video_id, label) != label:
            raise ValueError(f"views of video {video_id!r} carry different labels ({seen[video_id]} and {label})")


def _to_numpy(array) -> np.ndarray:
    if hasattr(array, "detach"):  # torch tensor
        return array.detach().float().cpu().numpy() if array.is_floating_point() else array.detach().cpu().numpy()
    return np.asarray(array)
