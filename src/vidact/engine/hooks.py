"""Hooks: what happens around the training loop, in the manner of detectron2's ``HookBase``.

A hook sees the trainer (``self.trainer``) and runs at ``before_train``, ``before_epoch``,
``before_step``, ``after_step``, ``after_epoch`` and ``after_train`` (the last one also
when training stops with an exception). Hooks run in the order they were registered;
:func:`vidact.engine.trainer.default_hooks` puts the progress bar first (closed before the
epoch-end log lines) and the checkpointer before evaluation, as PySlowFast saves before it evaluates.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping

from vidact.engine import distributed as dist
from vidact.engine.checkpoint import checkpoint_path

if TYPE_CHECKING:
    from vidact.engine.trainer import Trainer, TrainerBase

__all__ = [
    "EvalHook",
    "GpuMonitorHook",
    "HookBase",
    "MetricsHook",
    "PeriodicCheckpointer",
    "ProgressBar",
    "TensorBoardWriter",
]

logger = logging.getLogger("vidact.train")


class HookBase:
    """Override any of the six methods; ``self.trainer`` is set when the hook is registered."""

    trainer: "TrainerBase"

    def before_train(self) -> None:
        pass

    def after_train(self) -> None:
        pass

    def before_epoch(self) -> None:
        pass

    def after_epoch(self) -> None:
        pass

    def before_step(self) -> None:
        pass

    def after_step(self) -> None:
        pass


def _is_last_epoch(trainer: "TrainerBase") -> bool:
    return trainer.epoch + 1 == trainer.max_epoch


def _format(scalars: Mapping[str, float]) -> str:
    return ", ".join(f"{name} {value:.4g}" for name, value in scalars.items())


class MetricsHook(HookBase):
    """Averages the step metrics over ranks every ``period`` steps and at the end of each epoch.

    Step metrics are sums the trainer reports (``loss_sum``, ``correct``, ``samples``);
    this hook turns them into ``train/loss``, ``train/top1_err`` and ``train/clips_per_s``
    and puts them into the trainer's event log with ``lr``; rank 0 also logs them.
    """

    def __init__(self, period: int = 10) -> None:
        self.period = max(1, period)

    def before_epoch(self) -> None:
        self._window = self._zero()
        self._epoch = self._zero()
        self._window_start = self._epoch_start = time.perf_counter()

    @staticmethod
    def _zero() -> dict[str, float]:
        return {"loss_sum": 0.0, "correct": 0.0, "samples": 0.0}

    def after_step(self) -> None:
        step = self.trainer.step_metrics
        for totals in (self._window, self._epoch):
            for key in totals:
                totals[key] += step.get(key, 0.0)
        if (self.trainer.inner_iter + 1) % self.period == 0:
            scalars = self._emit("train", self._window, self._window_start)
            if dist.is_main_process():
                self._log_window(scalars)
            self._window, self._window_start = self._zero(), time.perf_counter()

    def _log_window(self, scalars: Mapping[str, float]) -> None:
        from tqdm import tqdm

        trainer = self.trainer
        # Logged to a file this is the only sign of progress within an epoch; on a terminal the
        # progress bar is cleared around it and redrawn below, instead of the line being glued onto it.
        with tqdm.external_write_mode(file=sys.stderr):
            logger.info("epoch %d/%d step %d/%d: %s", trainer.epoch + 1, trainer.max_epoch, trainer.inner_iter + 1,
                        trainer.iters_per_epoch, _format(scalars))

    def after_epoch(self) -> None:
        scalars = self._emit("train_epoch", self._epoch, self._epoch_start)
        if dist.is_main_process():
            logger.info("epoch %d/%d: %s", self.trainer.epoch + 1, self.trainer.max_epoch, _format(scalars))

    def _emit(self, prefix: str, totals: Mapping[str, float], start: float) -> dict[str, float]:
        totals = dist.all_reduce_sum(totals, self.trainer.reduce_device)
        samples = max(totals["samples"], 1.0)
        scalars = {f"{prefix}/loss": totals["loss_sum"] / samples}
        if self.trainer.counts_correct:
            scalars[f"{prefix}/top1_err"] = 100.0 * (1.0 - totals["correct"] / samples)
        scalars[f"{prefix}/clips_per_s"] = totals["samples"] / max(time.perf_counter() - start, 1e-9)
        scalars["lr"] = self.trainer.lr
        self.trainer.events.put(scalars)
        return scalars


class EvalHook(HookBase):
    """Runs ``evaluate()`` (returning scalars) every ``period`` epochs and after the last one."""

    def __init__(self, period: int, evaluate: Callable[[], Mapping[str, float]], prefix: str = "val") -> None:
        self.period = max(1, period)
        self.evaluate = evaluate
        self.prefix = prefix

    def after_epoch(self) -> None:
        if (self.trainer.epoch + 1) % self.period and not _is_last_epoch(self.trainer):
            return
        results = self.evaluate()
        scalars = {f"{self.prefix}/{name}": float(value) for name, value in results.items()}
        self.trainer.events.put(scalars)
        logger.info("epoch %d evaluation: %s", self.trainer.epoch + 1, _format(scalars))


class PeriodicCheckpointer(HookBase):
    """Saves a training checkpoint every ``period`` epochs and after the last one (rank 0 writes)."""

    def __init__(self, output_dir: str | os.PathLike, period: int) -> None:
        self.output_dir = Path(output_dir)
        self.period = max(1, period)
        self.saved: list[Path] = []

    def saves_after(self, epoch: int, max_epoch: int) -> bool:
        """Whether a checkpoint is written after 0-based ``epoch`` of a run of ``max_epoch``."""
        return (epoch + 1) % self.period == 0 or epoch + 1 == max_epoch

    def after_epoch(self) -> None:
        trainer: Trainer = self.trainer  # type: ignore[assignment]
        if not self.saves_after(trainer.epoch, trainer.max_epoch):
            return
        if dist.is_main_process():
            path = trainer.save_checkpoint(checkpoint_path(self.output_dir, trainer.epoch))
            self.saved.append(path)
            logger.info("saved %s", path)
        dist.barrier()


class TensorBoardWriter(HookBase):
    """Writes the event log's scalars as TensorBoard scalars (rank 0; needs ``vidact[train]``)."""

    def __init__(self, log_dir: str | os.PathLike) -> None:
        self.log_dir = Path(log_dir)
        self._writer = None
        self._written = 0

    def before_train(self) -> None:
        if not dist.is_main_process():
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            from vidact.errors import VidactError

            raise VidactError("TensorBoard logging needs the tensorboard package; pip install 'vidact[train]' or set TENSORBOARD.ENABLE False") from None
        self._writer = SummaryWriter(log_dir=str(self.log_dir))

    def _flush(self) -> None:
        if self._writer is None:
            return
        for step, scalars in self.trainer.events.history[self._written:]:
            for name, value in scalars.items():
                self._writer.add_scalar(name, value, step)
        self._written = len(self.trainer.events.history)
        self._writer.flush()

    def after_step(self) -> None:
        if (self.trainer.inner_iter + 1) % 20 == 0:
            self._flush()

    def after_epoch(self) -> None:
        self._flush()

    def after_train(self) -> None:
        self._flush()
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class GpuMonitorHook(HookBase):
    """Adds GPU utilisation and memory (``gpu0/util_pct``, ...) to the event log every ``period`` steps.

    Uses :class:`vidact.tools.gpu_monitor.GpuSampler`; does nothing without an NVIDIA driver.
    """

    def __init__(self, period: int = 10) -> None:
        self.period = max(1, period)
        self._sampler = None

    def before_train(self) -> None:
        from vidact.tools.gpu_monitor import GpuSampler

        sampler = GpuSampler()
        self._sampler = sampler if sampler.available else None

    def after_step(self) -> None:
        if self._sampler is not None and (self.trainer.inner_iter + 1) % self.period == 0:
            metrics = self._sampler.metrics()
            if metrics:
                self.trainer.events.put(metrics)

    def after_train(self) -> None:
        if self._sampler is not None:
            self._sampler.close()
            self._sampler = None


class ProgressBar(HookBase):
    """A tqdm bar per epoch on rank 0, showing the loss and learning rate; only on a terminal
    (tqdm's ``disable=None``), as elsewhere in vidact, so logs written to a file stay clean."""

    def __init__(self, disable: bool = False) -> None:
        self.disable = disable
        self._bar = None

    def before_epoch(self) -> None:
        if self.disable or not dist.is_main_process():
            return
        from tqdm.auto import tqdm

        trainer = self.trainer
        self._bar = tqdm(total=trainer.iters_per_epoch, desc=f"epoch {trainer.epoch + 1}/{trainer.max_epoch}",
                         unit="step", leave=False, dynamic_ncols=True, disable=None)

    def after_step(self) -> None:
        if self._bar is not None:
            step = self.trainer.step_metrics
            self._bar.set_postfix(loss=f"{step['loss_sum'] / max(step['samples'], 1):.3f}", lr=f"{self.trainer.lr:.3g}")
            self._bar.update(1)

    def after_epoch(self) -> None:
        self.after_train()

    def after_train(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
