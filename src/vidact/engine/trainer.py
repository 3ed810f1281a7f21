"""The training loop: a small epoch-based trainer with hooks, and ``train``/``test`` for a run config.

:class:`TrainerBase` is the bare loop (epochs of steps, hooks around them, in the manner
of detectron2's ``TrainerBase``); :class:`Trainer` adds one optimisation step with
PySlowFast's per-iteration learning-rate schedule, ``torch.amp`` mixed precision
(GradScaler for float16 only), gradient clipping and exact resume.

A dataset plugs in through a :class:`Task` registered under its ``TRAIN.DATASET`` name:
it builds the datasets, the evaluator, the forward pass and the loss. ``"kinetics"``
(any list-file classification set) is built in; evaluators follow detectron2's
``reset() / process(batch, outputs) / evaluate() -> {name: value}`` protocol.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import random
import sys
import time
import warnings
from collections.abc import Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from vidact.config.model import to_dict
from vidact.config.run import RunConfig, SolverConfig
from vidact.engine import distributed as dist
from vidact.engine.checkpoint import (
    FORMAT,
    checkpoint_dir,
    checkpoint_number,
    checkpoint_path,
    demo_checkpoint,
    is_training_checkpoint,
    latest_checkpoint,
    load_optimizer_state,
    load_training_checkpoint,
    optimizer_mismatch,
    restore_optimizer_state,
    restore_rng_state,
    save_training_checkpoint,
)
from vidact.engine.hooks import (
    EvalHook,
    GpuMonitorHook,
    HookBase,
    MetricsHook,
    PeriodicCheckpointer,
    ProgressBar,
    TensorBoardWriter,
)
from vidact.engine.optim import build_optimizer, lr_at_epoch, set_lr
from vidact.errors import VidactError
from vidact.fileutil import check_writable_folder

__all__ = [
    "BatchEvaluator",
    "ClassificationEvaluator",
    "EventLog",
    "TASKS",
    "Task",
    "Trainer",
    "TrainerBase",
    "TrainResult",
    "build_loader",
    "default_hooks",
    "evaluate",
    "register_task",
    "seed_everything",
    "test",
    "train",
]

logger = logging.getLogger("vidact.train")


class EventLog:
    """Scalars logged during training, each entry tagged with the global step it was logged at."""

    def __init__(self, trainer: "TrainerBase") -> None:
        self._trainer = trainer
        self.history: list[tuple[int, dict[str, float]]] = []

    def put(self, scalars: Mapping[str, float]) -> None:
        self.history.append((self._trainer.global_step, dict(scalars)))

    def latest(self, name: str) -> float | None:
        """The last value logged under ``name``."""
        for _, scalars in reversed(self.history):
            if name in scalars:
                return scalars[name]
        return None


class TrainerBase:
    """Epochs of steps with hooks around them; subclasses define :meth:`epoch_batches` and :meth:`run_step`."""

    def __init__(self) -> None:
        self.hooks: list[HookBase] = []
        self.epoch = 0
        self.start_epoch = 0
        self.max_epoch = 0
        self.inner_iter = 0
        self.global_step = 0
        self.iters_per_epoch = 0
        self.events = EventLog(self)

    def register_hooks(self, hooks: Iterable[HookBase]) -> None:
        for hook in hooks:
            hook.trainer = self
            self.hooks.append(hook)

    def train(self, start_epoch: int, max_epoch: int) -> None:
        """Run epochs ``start_epoch .. max_epoch - 1``; ``after_train`` runs even when a step raises."""
        self.start_epoch, self.max_epoch = start_epoch, max_epoch
        self.global_step = start_epoch * self.iters_per_epoch
        try:
            self._call("before_train")
            for self.epoch in range(start_epoch, max_epoch):
                self._call("before_epoch")
                for self.inner_iter, batch in enumerate(self.epoch_batches()):
                    self._call("before_step")
                    self.run_step(batch)
                    self.global_step += 1
                    self._call("after_step")
                self._call("after_epoch")
        finally:
            self._call("after_train")

    def _call(self, stage: str) -> None:
        for hook in self.hooks:
            getattr(hook, stage)()

    def epoch_batches(self) -> Iterable[Any]:
        raise NotImplementedError

    def run_step(self, batch: Any) -> None:
        raise NotImplementedError


# ---------------------------------------------------------------------------------------
# Forward passes, losses, evaluators
# ---------------------------------------------------------------------------------------


def move_to(batch: Any, device: torch.device) -> Any:
    """Tensors of a (nested) batch moved to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {key: move_to(value, device) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to(value, device) for value in batch)
    return batch


def classification_forward(model: nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
    """Clip classifiers take the list of pathway tensors."""
    return model(batch["inputs"])


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "cross_entropy": lambda outputs, labels: F.cross_entropy(outputs, labels),
    # PySlowFast's "bce" expects probabilities (heads that apply the sigmoid in training).
    "bce": lambda outputs, labels: F.binary_cross_entropy(outputs.float(), labels.float()),
    "bce_logit": lambda outputs, labels: F.binary_cross_entropy_with_logits(outputs, labels.float()),
}


class BatchEvaluator(Protocol):
    """What the engine's evaluation loop needs (detectron2's ``DatasetEvaluator``)."""

    def reset(self) -> None: ...

    def process(self, batch: Mapping[str, Any], outputs: torch.Tensor) -> None: ...

    def evaluate(self) -> dict[str, float]: ...


class ClassificationEvaluator:
    """Kinetics multi-view accuracy over batches from :class:`~vidact.data.video_dataset.VideoClipDataset`.

    Wraps :class:`vidact.evaluation.kinetics.KineticsEvaluator`; under DDP every rank
    evaluates a shard and :meth:`evaluate` gathers the views before scoring.
    """

    def __init__(
        self, num_classes: int, views_per_video: int, *, apply_softmax: bool = False, ensemble: str = "sum",
    ) -> None:
        from vidact.evaluation.kinetics import KineticsEvaluator

        topk = (1, 5) if num_classes >= 5 else (1,)
        self._inner = KineticsEvaluator(num_classes, topk=topk, apply_softmax=apply_softmax,
                                        expected_views=views_per_video, ensemble=ensemble)
        self.result = None
        self.reset()

    def reset(self) -> None:
        self._views: list[tuple[list[int], np.ndarray, np.ndarray]] = []

    def process(self, batch: Mapping[str, Any], outputs: torch.Tensor) -> None:
        self._views.append((
            batch["video_index"].tolist(), outputs.detach().float().cpu().numpy(), batch["label"].cpu().numpy(),
        ))

    def evaluate(self) -> dict[str, float]:
        self._inner.reset()
        for views in dist.all_gather_objects(self._views):
            for video_ids, scores, labels in views:
                self._inner.process(video_ids, scores, labels)
        self.result = self._inner.evaluate()
        metrics = {f"top{k}_acc": 100.0 * v for k, v in self.result.topk.items()}
        metrics["mean_class_acc"] = 100.0 * self.result.mean_class_accuracy
        return metrics


class _EvalProgress:
    """How far an evaluation pass has got, shown as training shows its steps, on rank 0 only: a
    tqdm bar of the batches on a terminal (with ``bar``) and a log line with the time left every
    ``log_period`` batches (0: none), all that a log written to a file gets of a pass that may
    take hours (Kinetics-400's 600k test views)."""

    def __init__(self, name: str, total: int | None, *, bar: bool, log_period: int) -> None:
        main = dist.is_main_process()
        self.name, self.total = name, total
        self.log_period = log_period if main else 0
        self._start = time.perf_counter()
        self._bar = None
        if bar and main:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=name, unit="batch", leave=False, dynamic_ncols=True, disable=None)

    def update(self, done: int) -> None:
        if self._bar is not None:
            self._bar.update(1)
        if self.log_period > 0 and done % self.log_period == 0:
            self._log(done)

    def _log(self, done: int) -> None:
        from tqdm import tqdm

        if self.total is None:  # a loader of unknown length: no end to count down to
            where = f"{done}"
        else:
            left = (time.perf_counter() - self._start) / done * (self.total - done)
            where = f"{done}/{self.total}, eta {datetime.timedelta(seconds=round(left))}"
        # On a terminal the bar is cleared around the line and redrawn below, as training's.
        with tqdm.external_write_mode(file=sys.stderr):
            logger.info("%s batch %s", self.name, where)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable[Mapping[str, Any]],
    evaluator: BatchEvaluator,
    *,
    device: torch.device,
    forward: Callable[[nn.Module, Mapping[str, Any]], torch.Tensor] = classification_forward,
    amp_dtype: torch.dtype | None = None,
    progress: bool = False,
    log_period: int = 0,
    name: str = "eval",
) -> dict[str, float]:
    """Run ``model`` (in eval mode) over ``loader`` and return ``evaluator``'s results.

    On rank 0 (its shard under DDP) ``progress`` shows a bar of the batches on a terminal, and
    every ``log_period`` batches a log line gives the count and the time left; ``name`` heads both.
    """
    was_training = model.training
    model.eval()
    evaluator.reset()
    shown = _EvalProgress(name, len(loader) if isinstance(loader, Sized) else None, bar=progress, log_period=log_period)
    try:
        for done, batch in enumerate(loader, 1):
            batch = move_to(batch, device)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                outputs = forward(model, batch)
            evaluator.process(batch, outputs)
            shown.update(done)
    finally:
        shown.close()  # before the evaluator's own log lines, which would be glued onto the bar
        model.train(was_training)
    return evaluator.evaluate()


@dataclass(frozen=True)
class Task:
    """How a dataset plugs into the engine (one per ``TRAIN.DATASET`` / ``TEST.DATASET`` name).

    ``build_dataset(run, split)`` gets ``"train"``, ``"val"`` or ``"test"``;
    ``build_evaluator(run, dataset)`` returns a :class:`BatchEvaluator`.
    """

    build_dataset: Callable[[RunConfig, str], Dataset]
    build_evaluator: Callable[[RunConfig, Dataset], BatchEvaluator]
    forward: Callable[[nn.Module, Mapping[str, Any]], torch.Tensor] = classification_forward
    label_key: str = "label"


def _classification_dataset(run: RunConfig, split: str) -> Dataset:
    from vidact.data.video_dataset import VideoClipDataset, split_list_file

    # Periodic validation uses one centred view; `vidact test` the full multi-view protocol.
    views, crops = (run.test.num_ensemble_views, run.test.num_spatial_crops) if split == "test" else (1, 1)
    dataset = VideoClipDataset(
        split_list_file(run.data.data_dir, split), run.model.input, "train" if split == "train" else "test",
        separator=run.data.label_separator, path_prefix=run.data.path_prefix,
        num_ensemble_views=views, num_spatial_crops=crops, random_flip=run.data.random_flip, seed=run.seed,
    )
    # Checked now: the loss would fail with a bare IndexError mid-epoch, the evaluator only after a whole test pass.
    num_classes = run.model.num_classes
    beyond = next((entry for entry in dataset.entries if entry.label >= num_classes), None)
    if beyond is not None:
        raise VidactError(f"{dataset.list_file}: label {beyond.label} (of {beyond.path}) is not below MODEL.NUM_CLASSES "
                          f"{num_classes}; labels are 0-based: fix the list file or raise MODEL.NUM_CLASSES")
    return dataset


def _classification_evaluator(run: RunConfig, dataset: Dataset) -> BatchEvaluator:
    return ClassificationEvaluator(run.model.num_classes, dataset.views_per_video, ensemble=run.test.ensemble_method)


TASKS: dict[str, Task] = {"kinetics": Task(_classification_dataset, _classification_evaluator)}
_BUILT_IN_TASKS = ("kinetics", "ava")


def register_task(name: str, task: Task, *, replace: bool = False) -> None:
    """Make ``TRAIN.DATASET: name`` train (and ``TEST.DATASET: name`` test) with ``task``;
    taking the name of a built-in task (kinetics, ava) needs ``replace=True``."""
    if name in _BUILT_IN_TASKS:
        if not replace:
            raise VidactError(f"{name!r} is a task built into vidact; register yours under another name, "
                              "or pass replace=True to replace it")
        get_task(name)  # loads the built-in now, so that loading it later cannot undo the replacement
    TASKS[name] = task


def get_task(name: str) -> Task:
    if name == "ava" and name not in TASKS:  # W2-D: AVA detection lives in its own module, registered on import
        import vidact.engine.ava_task  # noqa: F401
    if name not in TASKS:
        raise VidactError(f"dataset {name!r} has no training support in vidact; use one of {', '.join(sorted(TASKS))} "
                          "(kinetics reads any 'path label' list file)")
    return TASKS[name]


# ---------------------------------------------------------------------------------------
# The trainer
# ---------------------------------------------------------------------------------------


class Trainer(TrainerBase):
    """Supervised training of ``model`` on ``data_loader`` (see the module docstring).

    ``model`` may be wrapped in DistributedDataParallel; checkpoints hold the inner
    module's weights. ``amp_dtype`` None trains in float32; ``torch.float16`` adds a
    GradScaler; ``torch.bfloat16`` autocasts without one.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        data_loader: DataLoader,
        solver: SolverConfig,
        *,
        device: torch.device,
        loss: str = "cross_entropy",
        forward: Callable[[nn.Module, Mapping[str, Any]], torch.Tensor] = classification_forward,
        label_key: str = "label",
        amp_dtype: torch.dtype | None = None,
        model_config: Any = None,
    ) -> None:
        super().__init__()
        if loss not in LOSSES:
            raise VidactError(f"MODEL.LOSS_FUNC {loss!r} is not supported; use one of {', '.join(LOSSES)}")
        self.model = model
        self.module = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
        self.optimizer = optimizer
        self.data_loader = data_loader
        self.solver = solver
        self.device = device
        self.reduce_device = device if device.type == "cuda" else None
        self.loss_name = loss
        self.loss_fn = LOSSES[loss]
        self.forward = forward
        self.label_key = label_key
        self.counts_correct = loss == "cross_entropy"
        self.amp_dtype = amp_dtype
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
        self.model_config = model_config
        self.iters_per_epoch = len(data_loader)
        if self.iters_per_epoch == 0:
            raise VidactError("the training set yields no batch; add videos or lower TRAIN.BATCH_SIZE")
        self.lr = lr_at_epoch(solver, 0.0)
        self.step_metrics: dict[str, float] = {}

    def epoch_batches(self) -> Iterable[Any]:
        for holder in (self.data_loader.sampler, self.data_loader.dataset):
            if hasattr(holder, "set_epoch"):
                holder.set_epoch(self.epoch)
        self.model.train()
        return self.data_loader

    def run_step(self, batch: Mapping[str, Any]) -> None:
        self.lr = lr_at_epoch(self.solver, self.epoch + self.inner_iter / self.iters_per_epoch)
        set_lr(self.optimizer, self.lr)
        batch = move_to(batch, self.device)
        labels = batch[self.label_key]
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            outputs = self.forward(self.model, batch)
        outputs = outputs.float()
        # Checked before the loss: binary_cross_entropy (AVA's bce) rejects a NaN input with a bare
        # RuntimeError instead of returning a NaN loss.
        if not torch.isfinite(outputs).all():
            self._diverged(float("nan") if torch.isnan(outputs).any() else float("inf"))
        loss = self.loss_fn(outputs, labels)
        if not torch.isfinite(loss):
            self._diverged(loss.item())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        # As PySlowFast: by value if CLIP_GRAD_VAL is set, else by norm if CLIP_GRAD_L2NORM is; 0 is off.
        if self.solver.clip_grad_value or self.solver.clip_grad_norm:
            self.scaler.unscale_(self.optimizer)
            params = [p for group in self.optimizer.param_groups for p in group["params"]]
            if self.solver.clip_grad_value:
                nn.utils.clip_grad_value_(params, self.solver.clip_grad_value)
            else:
                nn.utils.clip_grad_norm_(params, self.solver.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        samples = float(labels.shape[0])
        self.step_metrics = {"loss_sum": loss.item() * samples, "samples": samples}
        if self.counts_correct:
            self.step_metrics["correct"] = float((outputs.argmax(1) == labels).sum())

    def _diverged(self, loss: float) -> None:
        raise VidactError(f"training loss became {loss} at epoch {self.epoch + 1}, step {self.inner_iter + 1}; "
                          "lower SOLVER.BASE_LR or enable SOLVER.CLIP_GRAD_L2NORM")

    # -- checkpoints ----------------------------------------------------------------------

    def save_checkpoint(self, path: str | os.PathLike) -> Path:
        """Everything an exact resume needs, after the current epoch."""
        sampler = self.data_loader.sampler
        return save_training_checkpoint(
            path,
            epoch=self.epoch,
            model_state=self.module.state_dict(),
            optimizer_state=self.optimizer.state_dict(),
            scaler_state=self.scaler.state_dict() if self.scaler.is_enabled() else None,
            scheduler_state={"policy": self.solver.lr_policy, "lr": self.lr, "next_epoch": self.epoch + 1},
            sampler_state={"epoch": self.epoch, "seed": getattr(sampler, "seed", None)},
            model_config=to_dict(self.model_config) if self.model_config is not None else None,
        )

    def resume(self, path: str | os.PathLike) -> int:
        """Load a checkpoint of ``OUTPUT_DIR/checkpoints``; the 0-based epoch to continue with.

        vidact's own checkpoints resume exactly. A PySlowFast one resumes as PySlowFast does:
        its weights, its optimizer (and grad scaler) state when that fits, at its epoch + 1;
        a warning says that this is not exact (it holds no random states).
        """
        payload = load_training_checkpoint(path)
        exact = payload.get("format") == FORMAT
        # Auto-resume keeps finding another program's file by its name until it is moved out.
        advice = "use another OUTPUT_DIR or TRAIN.AUTO_RESUME False" if exact else \
            f"move it out of {Path(path).parent} to train without it"
        self._load_model_state(path, payload["model_state"], advice)
        start_epoch = int(payload["epoch"]) + 1
        scaler_state = payload.get("scaler_state")
        if scaler_state is not None and self.scaler.is_enabled():
            self.scaler.load_state_dict(scaler_state)
        if not exact:
            with_optimizer = load_optimizer_state(self.optimizer, payload.get("optimizer_state"), str(path))
            lacking = "random-number" + (" or grad-scaler" if scaler_state is None and self.scaler.is_enabled() else "")
            warnings.warn(f"{path}: PySlowFast checkpoint, resumed at epoch {start_epoch + 1} from its weights"
                          f"{' and optimizer state' if with_optimizer else ''}; not an exact resume "
                          f"(it holds no {lacking} state)", stacklevel=2)
            return start_epoch
        # An exact resume needs the optimizer state; another setup would fail in load_state_dict or the first step.
        reason = optimizer_mismatch(self.optimizer, payload["optimizer_state"])
        if reason is not None:
            raise VidactError(f"{path}: optimizer state is for another SOLVER setup ({reason}); {advice}")
        restore_optimizer_state(self.optimizer, payload["optimizer_state"], str(path))
        stored_seed = payload["sampler_state"].get("seed")
        if stored_seed is not None and stored_seed != getattr(self.data_loader.sampler, "seed", stored_seed):
            warnings.warn(f"{path}: saved with RNG_SEED {stored_seed}; the data order now differs", stacklevel=2)
        restore_rng_state(payload["rng_state"])
        return start_epoch

    def _load_model_state(self, path: str | os.PathLike, state: Mapping[str, torch.Tensor], advice: str) -> None:
        # Shapes first: load_state_dict reports another size (a changed MODEL.NUM_CLASSES) as a bare RuntimeError.
        current = self.module.state_dict()
        for name, stored in state.items():
            if name in current and stored.shape != current[name].shape:
                raise VidactError(f"{path}: checkpoint is for another model ({name} has shape {tuple(stored.shape)}, "
                                  f"the model's is {tuple(current[name].shape)}); {advice}")
        missing, unexpected = self.module.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise VidactError(f"{path}: checkpoint is for another model ({len(missing)} tensors missing, "
                              f"{len(unexpected)} unexpected); {advice}")


def default_hooks(
    run: RunConfig,
    evaluate_fn: Callable[[], Mapping[str, float]] | None,
    *,
    progress: bool = True,
) -> list[HookBase]:
    """A progress bar, metrics, GPU monitor, checkpointing, evaluation and TensorBoard, in that order.

    The bar comes first so that it is closed before the epoch-end log lines (else they are
    glued onto it); the checkpoint is written before evaluation, as PySlowFast does, so an
    interrupted evaluation keeps the finished epoch (evaluation leaves the global RNG alone,
    so the checkpoint's random state is still the one a continuing run has).
    """
    hooks: list[HookBase] = [ProgressBar(disable=not progress), MetricsHook(run.log_period), GpuMonitorHook(run.log_period)]
    hooks.append(PeriodicCheckpointer(run.output_dir, run.checkpoint.period))
    if evaluate_fn is not None:
        hooks.append(EvalHook(run.train.eval_period, evaluate_fn))
    if run.tensorboard:
        # TENSORBOARD.LOG_DIR is relative to OUTPUT_DIR, as in PySlowFast (an absolute one stays as it is).
        log_dir = os.path.join(run.output_dir, run.tensorboard_dir or f"runs-{run.train.dataset}")
        hooks.append(TensorBoardWriter(log_dir))
    return hooks


# ---------------------------------------------------------------------------------------
# Building a run
# ---------------------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def set_deterministic() -> None:
    """Deterministic kernels: a resumed run then ends with the same weights as an uninterrupted one."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # required by deterministic cuBLAS
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False


class _ShardSampler(Sampler[int]):
    """Items ``rank, rank + world, ...`` in order: every item evaluated once over all ranks, no padding."""

    def __init__(self, length: int, rank: int, world_size: int) -> None:
        self.indices = list(range(rank, length, world_size))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def build_loader(
    dataset: Dataset, batch_size: int, *, train: bool, seed: int, num_workers: int, pin_memory: bool
) -> DataLoader:
    """A loader for this rank. Training shuffles with ``seed + epoch`` (DistributedSampler) and
    drops the last partial batch only when at least one full batch remains."""
    world, rank = dist.get_world_size(), dist.get_rank()
    if train:
        sampler: Sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed)
        drop_last = len(sampler) >= batch_size
        generator = None  # worker seeds come from the global RNG, which checkpoints restore
    else:
        sampler = _ShardSampler(len(dataset), rank, world)
        drop_last = False
        generator = torch.Generator().manual_seed(seed)  # keeps evaluation off the global RNG
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last, num_workers=num_workers,
        pin_memory=pin_memory and torch.cuda.is_available(), generator=generator,
        collate_fn=getattr(dataset, "collate_fn", None),  # W2-D: AVA batches a varying number of boxes per clip
    )


def _per_rank_batch(global_batch: int, what: str) -> int:
    world = dist.get_world_size()
    if global_batch % world:
        raise VidactError(f"{what} {global_batch} must be divisible by the number of processes ({world}); change it")
    return global_batch // world


def _device_type(run: RunConfig) -> str:
    if run.num_gpus > 0 and not torch.cuda.is_available():
        warnings.warn(f"NUM_GPUS is {run.num_gpus} but no CUDA device is available; training on the CPU", stacklevel=3)
    return "cuda" if run.num_gpus > 0 and torch.cuda.is_available() else "cpu"


def _amp_dtype(run: RunConfig, device: torch.device) -> torch.dtype | None:
    if not run.train.mixed_precision:
        return None
    name = run.train.mixed_precision_dtype or ("float16" if device.type == "cuda" else "bfloat16")
    dtypes = {"float16": torch.float16, "bfloat16": torch.bfloat16}
    if name not in dtypes:
        raise VidactError(f"mixed_precision_dtype {name!r} is not supported; use float16 or bfloat16")
    return dtypes[name]


def _build_model(run: RunConfig, device: torch.device) -> nn.Module:
    from vidact.api import create_model

    return create_model(run.model).to(device)


def _load_initial_weights(run: RunConfig, model: nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Fine-tuning start: weights from TRAIN.CHECKPOINT_FILE_PATH; the epoch to start at.

    Tensors that do not fit the model are skipped with a warning, as PySlowFast skips them: a
    config may change a layer of the pretrained network (c3_train.yaml's fusion kernel). The
    stored epoch and optimizer state carry over (PySlowFast) only when the whole model loaded
    and ``CHECKPOINT_EPOCH_RESET`` is off; a new head means a new run from epoch 0.
    """
    from vidact.weights.checkpoint import load_into, read_checkpoint

    path = run.checkpoint.train_path
    checkpoint = read_checkpoint(path, clear_name_patterns=run.checkpoint.clear_name_patterns)
    report = load_into(model, checkpoint, inflate=run.checkpoint.inflate, strict_architecture=False)
    logger.info("fine-tuning from %s: %s", path, report.summary())
    stored_epoch = checkpoint.metadata.get("epoch")
    if run.checkpoint.epoch_reset or stored_epoch is None or report.head_reinitialised or report.missing:
        return 0
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # not a torch file (Caffe2 .pkl): weights only
        return 0
    if load_optimizer_state(optimizer, payload.get("optimizer_state"), str(path)):
        return int(stored_epoch) + 1
    return 0


@dataclass
class TrainResult:
    """What :func:`train` did. ``checkpoints`` are those it wrote (rank 0 writes them; every
    rank gets the list); ``resumed_from`` the checkpoint it continued, if any."""

    trainer: Trainer
    start_epoch: int
    checkpoints: list[Path]
    final_metrics: dict[str, float]
    resumed_from: Path | None = None

    @property
    def final_checkpoint(self) -> Path | None:
        """The checkpoint of the weights training ended with: the last one written, else the one
        resumed from (a run already at SOLVER.MAX_EPOCH trains nothing)."""
        return self.checkpoints[-1] if self.checkpoints else self.resumed_from


def train(
    run: RunConfig,
    *,
    deterministic: bool = False,
    extra_hooks: Sequence[HookBase] = (),
    progress: bool = True,
) -> TrainResult:
    """Train (or continue training) the run's model on its dataset.

    Starts from the latest checkpoint in ``OUTPUT_DIR/checkpoints`` when
    ``TRAIN.AUTO_RESUME`` (an exact resume), else from ``TRAIN.CHECKPOINT_FILE_PATH``
    (fine-tuning) or from scratch. Under torchrun each process trains a shard with DDP.
    ``extra_hooks`` run after the default ones.
    """
    previous = torch.are_deterministic_algorithms_enabled()
    if deterministic:
        set_deterministic()
    try:
        return _train(run, extra_hooks, progress)
    finally:
        torch.use_deterministic_algorithms(previous)


def _train(run: RunConfig, extra_hooks: Sequence[HookBase], progress: bool) -> TrainResult:
    if run.train.precise_bn:
        warnings.warn("BN.USE_PRECISE_STATS is not implemented in vidact; BatchNorm keeps its running statistics",
                      stacklevel=2)
    device = dist.init_distributed(_device_type(run))
    if dist.is_main_process():  # before any work, not at the first save an epoch later
        check_writable_folder(checkpoint_dir(run.output_dir))
    seed_everything(run.seed)
    task = get_task(run.train.dataset)
    train_set = task.build_dataset(run, "train")
    batch_size = _per_rank_batch(run.train.batch_size, "TRAIN.BATCH_SIZE")
    loader_args = dict(seed=run.seed, num_workers=run.data_loader.num_workers, pin_memory=run.data_loader.pin_memory)
    train_loader = build_loader(train_set, batch_size, train=True, **loader_args)

    model = _build_model(run, device)
    optimizer = build_optimizer(model, _scaled_solver(run))
    start_epoch = 0
    resume_from = latest_checkpoint(run.output_dir) if run.checkpoint.auto_resume else None
    if resume_from is None and dist.is_main_process():
        _warn_about_later_checkpoints(run)
    if resume_from is None and run.checkpoint.train_path:
        start_epoch = _load_initial_weights(run, model, optimizer)
        if start_epoch >= run.solver.max_epoch:
            # An error, not a finished run: fine-tuning was asked for, and `vidact run` would go on
            # to test the unchanged weights as if fine-tuned.
            raise VidactError(f"{run.checkpoint.train_path}: {_nothing_to_train(run, start_epoch)} "
                              "or set TRAIN.CHECKPOINT_EPOCH_RESET True")
    ddp_model: nn.Module = model
    if dist.get_world_size() > 1:
        ddp_model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    amp_dtype = _amp_dtype(run, device)
    trainer = Trainer(
        ddp_model, optimizer, train_loader, _scaled_solver(run), device=device, loss=run.train.loss,
        forward=task.forward, label_key=task.label_key, amp_dtype=amp_dtype, model_config=run.model,
    )
    if resume_from is not None:
        start_epoch = trainer.resume(resume_from)
        logger.info("resumed from %s at epoch %d", resume_from, start_epoch + 1)
        if start_epoch >= run.solver.max_epoch:  # a finished run started again: not an error
            warnings.warn(f"{resume_from}: {_nothing_to_train(run, start_epoch)} to train on, "
                          "or use another OUTPUT_DIR for a new run", stacklevel=2)
    if dist.is_main_process():
        _warn_before_overwriting(run, start_epoch)

    evaluate_fn = None
    val_set = _maybe_dataset(task, run, "val")
    if val_set is not None:
        val_loader = build_loader(val_set, _per_rank_batch(run.test.batch_size, "TEST.BATCH_SIZE"), train=False, **loader_args)
        evaluator = task.build_evaluator(run, val_set)

        def evaluate_fn() -> dict[str, float]:
            dist.broadcast_buffers(model)  # every rank scores its shard with the same model
            return evaluate(model, val_loader, evaluator, device=device, forward=task.forward, amp_dtype=amp_dtype,
                            progress=progress, log_period=run.log_period, name="val")

    hooks = default_hooks(run, evaluate_fn, progress=progress)
    trainer.register_hooks([*hooks, *extra_hooks])
    checkpointer = next(h for h in hooks if isinstance(h, PeriodicCheckpointer))
    try:
        trainer.train(start_epoch, run.solver.max_epoch)
    finally:
        # The DDP wrapper holds the process group: the result keeps the plain module, so that
        # dist.cleanup() can end the group's threads.
        trainer.model = trainer.module
        del ddp_model
    final = {}
    for _, scalars in trainer.events.history:
        final.update(scalars)
    saved = dist.all_gather_objects(checkpointer.saved)[0]  # rank 0's: the others write none
    return TrainResult(trainer, start_epoch, saved, final, resume_from)


def _nothing_to_train(run: RunConfig, start_epoch: int) -> str:
    return (f"checkpoint is at epoch {start_epoch} >= SOLVER.MAX_EPOCH {run.solver.max_epoch}; "
            "nothing to train: raise SOLVER.MAX_EPOCH")


def _warn_about_later_checkpoints(run: RunConfig) -> None:
    """Without auto-resume, checkpoints of an earlier, longer run outlive this one: a later
    auto-resume (and PySlowFast's choice of the checkpoint to test) would take theirs."""
    latest = latest_checkpoint(run.output_dir)
    if latest is not None and checkpoint_number(latest) > run.solver.max_epoch:
        warnings.warn(f"{latest.parent}: holds checkpoints of epochs up to {checkpoint_number(latest)}, later than this "
                      f"run's SOLVER.MAX_EPOCH {run.solver.max_epoch}; they are left there and a later TRAIN.AUTO_RESUME "
                      "would continue from them, not from this run: use another OUTPUT_DIR to keep runs apart", stacklevel=3)


def _warn_before_overwriting(run: RunConfig, start_epoch: int) -> None:
    """The checkpointer writes over any file named as a checkpoint it saves; one that is not
    vidact's own (PySlowFast's) is lost then, so this says so first."""
    schedule, last = PeriodicCheckpointer(run.output_dir, run.checkpoint.period), run.solver.max_epoch
    saved = [checkpoint_path(run.output_dir, epoch) for epoch in range(start_epoch, last)
             if schedule.saves_after(epoch, last)]
    foreign = [path.name for path in saved if path.exists() and not is_training_checkpoint(path)]
    if foreign:
        them = "it" if len(foreign) == 1 else "them"
        warnings.warn(f"{checkpoint_dir(run.output_dir)}: this run overwrites {', '.join(foreign)}, not written by vidact; "
                      f"move {them} out of the folder first to keep {them}", stacklevel=3)


def _maybe_dataset(task: Task, run: RunConfig, split: str) -> Dataset | None:
    from vidact.data.video_dataset import split_list_file

    if task is TASKS.get("kinetics") and not split_list_file(run.data.data_dir, split).is_file():
        logger.warning("no %s.csv in %s; training without evaluation", split, run.data.data_dir)
        return None
    return task.build_dataset(run, split)


def _scaled_solver(run: RunConfig) -> SolverConfig:
    """SOLVER.BASE_LR_SCALE_NUM_SHARDS multiplies the base, warm-up start and cosine end rates by
    the number of machines, as PySlowFast's ``assert_and_infer_cfg`` does."""
    solver = run.solver
    if solver.scale_lr_by_shards and run.num_shards > 1:
        shards = run.num_shards
        solver = dataclasses.replace(
            solver, base_lr=solver.base_lr * shards, warmup_start_lr=solver.warmup_start_lr * shards,
            cosine_end_lr=solver.cosine_end_lr * shards,
        )
    return solver


def test(run: RunConfig, checkpoint: str | os.PathLike | None = None, *, progress: bool = True) -> dict[str, float]:
    """Evaluate a checkpoint on ``test.csv`` with the multi-view protocol (TEST.NUM_ENSEMBLE_VIEWS x NUM_SPATIAL_CROPS).

    The checkpoint is ``checkpoint``, else PySlowFast's choice (:func:`demo_checkpoint`):
    ``TEST.CHECKPOINT_FILE_PATH``, else the latest one in ``OUTPUT_DIR/checkpoints``, else
    ``TRAIN.CHECKPOINT_FILE_PATH``. Progress shows as in :func:`train`: a bar on a terminal
    (``progress``) and a log line every ``LOG_PERIOD`` batches.
    """
    from vidact.api import create_inference_model

    if checkpoint is not None and not Path(checkpoint).is_file():
        raise VidactError(f"{checkpoint}: no such checkpoint file; check the path (--checkpoint)")
    path = checkpoint or demo_checkpoint(run)
    if path is None:
        raise VidactError(
            f"no checkpoint to test: set TEST.CHECKPOINT_FILE_PATH (or TRAIN.CHECKPOINT_FILE_PATH) "
            f"or train into {run.output_dir} first"
        )
    logger.info("testing %s", path)
    device = dist.init_distributed(_device_type(run))
    task = get_task(run.test.dataset)
    model = create_inference_model(run.model, weights=path).to(device)
    test_set = task.build_dataset(run, "test")
    loader = build_loader(test_set, _per_rank_batch(run.test.batch_size, "TEST.BATCH_SIZE"), train=False,
                          seed=run.seed, num_workers=run.data_loader.num_workers, pin_memory=run.data_loader.pin_memory)
    evaluator = task.build_evaluator(run, test_set)
    return evaluate(model, loader, evaluator, device=device, forward=task.forward, amp_dtype=_amp_dtype(run, device),
                    progress=progress, log_period=run.log_period, name="test")
