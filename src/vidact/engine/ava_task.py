"""AVA action detection in the training engine: ``TRAIN.DATASET: ava`` / ``TEST.DATASET: ava``.

Importing this module registers the ``"ava"`` :class:`~vidact.engine.trainer.Task`:

* datasets: :func:`vidact.data.ava_dataset.build_ava_dataset` from the ``AVA.*`` keys
  (``AVA.FRAME_DIR`` may also be a folder of ``<video_id>.mp4`` files: then clips are
  decoded from the videos and no frame extraction is needed);
* forward: ``model(inputs, boxes)`` with the ``[batch_index, x1, y1, x2, y2]`` boxes;
* loss: ``MODEL.LOSS_FUNC`` (``bce`` on the sigmoid scores for AVA) against the
  multi-hot ``labels``;
* evaluator: :class:`AvaBatchEvaluator`, frame-mAP@0.5IOU with
  :class:`vidact.evaluation.ava.AvaEvaluator` against ``AVA.GROUNDTRUTH_FILE``, excluding
  ``AVA.EXCLUSION_FILE`` and scoring the classes of ``AVA.LABEL_MAP_FILE`` (all three
  relative to ``AVA.ANNOTATION_DIR``). As in PySlowFast, periodic validation reads every
  4th second (boxes and ground truth) unless ``AVA.FULL_TEST_ON_VAL``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from vidact.config.run import AvaConfig, RunConfig
from vidact.data.ava_csv import AvaRows, read_ava_csv
from vidact.data.ava_dataset import VIDEO_SUFFIXES, AvaDataset, box_sample_rate, build_ava_dataset
from vidact.engine import distributed as dist
from vidact.engine.trainer import TASKS, Task
from vidact.errors import VidactError, first_few, nonfinite_scores
from vidact.evaluation.ava import AvaEvaluator, AvaResult

__all__ = ["AVA_TASK", "AvaBatchEvaluator", "ava_forward", "build_dataset", "build_evaluator"]


def ava_forward(model: nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
    """Detection models take the pathway inputs and the boxes; (K, classes) scores come back."""
    return model(batch["inputs"], batch["boxes"])


def _select(rows: AvaRows, keep: np.ndarray) -> AvaRows:
    return AvaRows(
        rows.video_ids[keep], rows.timestamps[keep], rows.boxes[keep], rows.action_ids[keep],
        person_ids=None if rows.person_ids is None else rows.person_ids[keep],
    )


class AvaBatchEvaluator:
    """Frame-mAP over batches of :func:`~vidact.data.ava_dataset.ava_collate` (detectron2's evaluator protocol).

    Output column ``k`` is the score of action id ``k + 1``. ``sample_rate`` keeps only
    ground truth at seconds divisible by it (PySlowFast's "mini" validation set). The
    protocol is the official one (:mod:`vidact.evaluation.ava`), which keeps the 50 best
    detections of a keyframe; PySlowFast's evaluation during training keeps them all, so
    its validation mAP can be a little higher on keyframes with many boxes.
    Under DDP every rank processes a shard and :meth:`evaluate` gathers them.
    """

    def __init__(
        self,
        labelmap: str | os.PathLike,
        groundtruth: str | os.PathLike,
        exclusions: str | os.PathLike | None = None,
        *,
        sample_rate: int = 1,
    ) -> None:
        gt = read_ava_csv(groundtruth, eighth_column="person_id")
        if sample_rate > 1:
            gt = _select(gt, gt.timestamps % sample_rate == 0)
        self._inner = AvaEvaluator(labelmap, gt, exclusions, source=os.fspath(groundtruth))
        self.result: AvaResult | None = None
        self.reset()

    def reset(self) -> None:
        self._chunks: list[tuple[list[str], np.ndarray, np.ndarray, np.ndarray]] = []

    def process(self, batch: Mapping[str, Any], outputs: torch.Tensor) -> None:
        """Add the scores of a batch's boxes; ``outputs`` is (K, classes), one row per box."""
        self._chunks.append((
            list(batch["video_ids"]),
            batch["timestamps"].cpu().numpy(),
            batch["ori_boxes"].cpu().numpy(),
            outputs.detach().float().cpu().numpy(),
        ))

    def evaluate(self) -> dict[str, float]:
        """``{"mAP": frame-mAP in [0, 1], "AP/<class name>": ...}`` for classes with ground truth."""
        self._inner.reset()
        broken: list[str] = []
        for chunks in dist.all_gather_objects(self._chunks):
            for video_ids, timestamps, boxes, scores in chunks:
                finite = np.isfinite(scores).all(axis=1)
                broken += [f"{video_ids[k]},{int(timestamps[k])}" for k in np.flatnonzero(~finite)]
                self._inner.process_class_scores(video_ids, timestamps, boxes, scores)
        if broken:
            # NaN ranks nowhere and everywhere: the mAP of such scores is the boxes' input order.
            raise nonfinite_scores(f"{len(broken)} boxes (keyframes {first_few(dict.fromkeys(broken), 5)})")
        self.result = self._inner.evaluate()
        metrics = {"mAP": self.result.map}
        for name, ap in self.result.per_class.values():
            if not np.isnan(ap):
                metrics[f"AP/{name}"] = ap
        return metrics


def _annotation_file(ava: AvaConfig, name: str | None, key: str) -> Path:
    if not name:
        raise VidactError(f"{key} is not set; pass it with --opts {key} <file in AVA.ANNOTATION_DIR>")
    return Path(ava.annotation_dir or "") / name


def _video_dir(ava: AvaConfig) -> Path | None:
    """``AVA.FRAME_DIR`` when it holds video files rather than one folder of frames per video."""
    if ava.frame_dir is None or not Path(ava.frame_dir).is_dir():
        return None
    holds_videos = any(p.suffix.lower() in VIDEO_SUFFIXES and p.is_file() for p in Path(ava.frame_dir).iterdir())
    return Path(ava.frame_dir) if holds_videos else None


def build_dataset(run: RunConfig, split: str) -> AvaDataset:
    """The AVA ``split`` ("train", "val" or "test") of a run."""
    if not run.model.detection.enable:  # the model would take no boxes and score whole clips
        raise VidactError("the ava dataset needs an action detection model: set DETECTION.ENABLE True "
                          "(or TRAIN/TEST.DATASET kinetics for a classifier)")
    return build_ava_dataset(
        run.ava, run.model.input, split, num_classes=run.model.num_classes, video_dir=_video_dir(run.ava), seed=run.seed,
        random_flip=run.data.random_flip,
    )


def build_evaluator(run: RunConfig, dataset: AvaDataset) -> AvaBatchEvaluator:
    """Frame-mAP against ``AVA.GROUNDTRUTH_FILE`` for the split ``dataset`` holds."""
    ava = run.ava
    return AvaBatchEvaluator(
        _annotation_file(ava, ava.label_map_file, "AVA.LABEL_MAP_FILE"),
        _annotation_file(ava, ava.groundtruth_file, "AVA.GROUNDTRUTH_FILE"),
        _annotation_file(ava, ava.exclusion_file, "AVA.EXCLUSION_FILE") if ava.exclusion_file else None,
        sample_rate=box_sample_rate(dataset.split, ava),
    )


AVA_TASK = Task(build_dataset=build_dataset, build_evaluator=build_evaluator, forward=ava_forward, label_key="labels")
TASKS["ava"] = AVA_TASK  # not register_task, which keeps built-in names from plugins
