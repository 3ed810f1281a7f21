"""Kinetics multi-view accuracy on hand-made scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vidact.errors import VidactError
from vidact.evaluation.kinetics import KineticsEvaluator

# Probabilities of 3 views for each of 2 videos over 3 classes. Video "a" (label 0):
# two views vote class 1 weakly, one votes class 0 strongly -> sum picks 0, majority would
# pick 1. Video "b" (label 2): the sum picks 1 (wrong), class 2 is second.
VIEWS = {
    "a": (0, [[0.3, 0.4, 0.3], [0.3, 0.4, 0.3], [0.9, 0.05, 0.05]]),  # sums 1.5, 0.85, 0.65
    "b": (2, [[0.1, 0.6, 0.3], [0.2, 0.5, 0.3], [0.5, 0.1, 0.4]]),  # sums 0.8, 1.2, 1.0
}


def all_views():
    return [(video, label, view) for video, (label, views) in VIEWS.items() for view in views]


def feed(evaluator, views, batch_size):
    for start in range(0, len(views), batch_size):
        batch = views[start : start + batch_size]
        evaluator.process([v for v, _, _ in batch], np.array([s for _, _, s in batch]), [l for _, l, _ in batch])


def test_sum_of_views_any_order_any_batching():
    views = all_views()
    results = []
    for seed, batch_size in [(0, 1), (1, 2), (2, 4), (3, 6)]:
        shuffled = [views[i] for i in np.random.default_rng(seed).permutation(len(views))]
        evaluator = KineticsEvaluator(3, topk=(1, 2), apply_softmax=False, expected_views=3)
        feed(evaluator, shuffled, batch_size)
        results.append(evaluator.evaluate())
        np.testing.assert_allclose(evaluator.video_scores()["a"], [1.5, 0.85, 0.65])
    for result in results:
        assert result.topk == {1: 0.5, 2: 1.0}
        assert result.mean_class_accuracy == 0.5 and result.num_videos == 2 and result.views_per_video == (3, 3)


def test_max_ensemble():
    evaluator = KineticsEvaluator(3, topk=(1,), apply_softmax=False, ensemble="max")
    feed(evaluator, all_views(), 3)
    np.testing.assert_allclose(evaluator.video_scores()["b"], [0.5, 0.6, 0.4])
    assert evaluator.evaluate().top1 == 0.5  # "a": 0.9 for class 0, right; "b": 0.6 for class 1, wrong


def test_softmax_is_applied_to_logits_before_summing():
    evaluator = KineticsEvaluator(2, topk=(1,))
    # softmax([0, ln 3]) = [1/4, 3/4] and softmax([ln 2, 0]) = [2/3, 1/3].
    evaluator.process(["v", "v"], torch.tensor([[0.0, math.log(3)], [math.log(2), 0.0]]), torch.tensor([1, 1]))
    np.testing.assert_allclose(evaluator.video_scores()["v"], [1 / 4 + 2 / 3, 3 / 4 + 1 / 3])
    # One confident view against two moderate ones: summed logits pick class 1, summed
    # probabilities (about 1.9 against 1.1) pick class 0.
    evaluator.reset()
    evaluator.process(["w"] * 3, np.array([[0.0, 10.0], [3.0, 0.0], [3.0, 0.0]]), [0, 0, 0])
    assert evaluator.evaluate().top1 == 1.0


def test_top5_and_mean_class_accuracy():
    num_classes = 8
    evaluator = KineticsEvaluator(num_classes, apply_softmax=False)
    ranking = np.arange(num_classes, 0, -1, dtype=float)  # class 0 best, then 1, ...
    # Class 0: three videos, two right (rank 0) and one at rank 4 (top-5 hit).
    # Class 5: one video at rank 5 (top-5 miss).
    cases = {"v0": (0, ranking), "v1": (0, ranking), "v2": (0, np.roll(ranking, 4)), "v3": (5, ranking)}
    for video, (label, scores) in cases.items():
        evaluator.process([video], scores[None], [label])
    result = evaluator.evaluate()
    assert result.top1 == 0.5 and result.top5 == 0.75
    assert result.mean_class_accuracy == pytest.approx((2 / 3 + 0) / 2)


def test_ties_go_to_the_lower_class_index():
    evaluator = KineticsEvaluator(3, topk=(1,), apply_softmax=False)
    evaluator.process(["x", "y"], np.full((2, 3), 1 / 3), [0, 2])
    assert evaluator.evaluate().top1 == 0.5


def test_inconsistent_input_is_rejected():
    evaluator = KineticsEvaluator(3, topk=(1,), apply_softmax=False, expected_views=2)
    evaluator.process(["a"], np.ones((1, 3)), [0])
    with pytest.raises(ValueError, match="different labels"):
        evaluator.process(["a"], np.ones((1, 3)), [1])
    with pytest.raises(ValueError, match="different labels"):
        evaluator.process(["c", "c"], np.ones((2, 3)), [0, 1])
    with pytest.raises(VidactError, match="do not have 2 views"):
        evaluator.evaluate()
    with pytest.raises(ValueError, match="shape"):
        evaluator.process(["a"], np.ones((1, 4)), [0])
    evaluator.reset()
    with pytest.raises(VidactError, match="no views"):
        evaluator.evaluate()


@pytest.mark.parametrize("ensemble", ["sum", "max"])
def test_nan_scores_fail_evaluation_instead_of_counting_correct(ensemble):
    # Every comparison with NaN is False, so a NaN video would rank its label first.
    evaluator = KineticsEvaluator(3, topk=(1,), apply_softmax=False, ensemble=ensemble)
    evaluator.process(["good", "bad", "bad"], np.array([[1.0, 0, 0], [np.nan] * 3, [0, 1.0, 0]]), [0, 2, 2])
    with pytest.raises(VidactError, match=r"NaN/inf scores for 1 of 2 videos \(ids 'bad'\).*float32"):
        evaluator.evaluate()


def test_infinite_logit_fails_evaluation():
    evaluator = KineticsEvaluator(10, topk=(1,))
    logits = np.zeros((1, 10))
    logits[0, 2] = np.inf  # softmax gives NaN: inf - inf
    evaluator.process(["a"], logits, [7])
    with pytest.raises(VidactError, match="NaN/inf scores for 1 of 1 videos"):
        evaluator.evaluate()


def test_nan_during_training_validation_fails():
    from vidact.engine.trainer import ClassificationEvaluator

    evaluator = ClassificationEvaluator(3, views_per_video=1)
    outputs = torch.tensor([[0.2, 0.5, 0.3], [float("nan")] * 3])
    evaluator.process({"video_index": torch.tensor([0, 1]), "label": torch.tensor([1, 0])}, outputs)
    with pytest.raises(VidactError, match="NaN/inf scores for 1 of 2 videos"):
        evaluator.evaluate()


@pytest.mark.parametrize("ensemble", ["sum", "max"])
def test_many_videos_match_a_direct_computation(ensemble):
    num_videos, views, num_classes = 500, 4, 7
    rng = np.random.default_rng(0)
    labels = rng.integers(0, num_classes, num_videos)
    scores = rng.integers(0, 8, (num_videos, views, num_classes)) / 8  # exact sums in any order, and ties
    order = rng.permutation(num_videos * views)
    video_of_view, view_of_view = np.divmod(order, views)
    evaluator = KineticsEvaluator(num_classes, topk=(1, 3), apply_softmax=False, ensemble=ensemble)
    for start in range(0, len(order), 3):
        video, view = video_of_view[start : start + 3], view_of_view[start : start + 3]
        evaluator.process([f"v{i}" for i in video], scores[video, view], labels[video])

    combined = scores.sum(axis=1) if ensemble == "sum" else scores.max(axis=1)
    ranking = np.argsort(-combined, axis=1, kind="stable")
    rank = (ranking == labels[:, None]).argmax(axis=1)
    result = evaluator.evaluate()
    assert result.topk == {1: np.mean(rank < 1), 3: np.mean(rank < 3)}
    assert result.mean_class_accuracy == pytest.approx(np.mean([np.mean(rank[labels == c] == 0) for c in range(7)]))
    assert result.num_videos == num_videos and result.views_per_video == (views, views)
    video_scores = evaluator.video_scores()
    assert len(video_scores) == num_videos
    for i in range(num_videos):
        np.testing.assert_allclose(video_scores[f"v{i}"], combined[i])
