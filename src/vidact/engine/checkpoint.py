"""Training checkpoints: everything needed to continue a run exactly where it stopped.

A training checkpoint is a ``torch.save`` dict in PySlowFast's ``.pyth`` layout
(``model_state``, ``optimizer_state``, ``epoch``), so :func:`vidact.weights.checkpoint.read_checkpoint`
and ``create_model(weights=...)`` read its weights like any PySlowFast file, plus what
an exact resume needs: the AMP grad scaler, the learning-rate schedule position, the
random states (python, numpy, torch, CUDA) and the data sampler's epoch and seed.
Files are ``OUTPUT_DIR/checkpoints/checkpoint_epoch_NNNNN.pyth`` (1-based, as PySlowFast
names them) and are written atomically; reading uses ``torch.load(weights_only=True)``.
PySlowFast's own ``.pyth`` files (no ``format`` marker) can be resumed from too, as
PySlowFast does: weights, optimizer state and epoch, without the rest.
"""

from __future__ import annotations

import os
import random
import re
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from vidact.config.run import RunConfig
from vidact.errors import VidactError
from vidact.fileutil import atomic_path

__all__ = [
    "capture_rng_state",
    "checkpoint_dir",
    "checkpoint_number",
    "checkpoint_path",
    "demo_checkpoint",
    "is_training_checkpoint",
    "latest_checkpoint",
    "load_optimizer_state",
    "load_training_checkpoint",
    "optimizer_mismatch",
    "restore_optimizer_state",
    "restore_rng_state",
    "save_training_checkpoint",
]

FORMAT = "vidact-train-1"
_NAME = re.compile(r"^checkpoint_epoch_(\d{5,})\.pyth$")
# Keys PySlowFast's construct_optimizer adds to every parameter group; vidact has no use for them.
_PYSLOWFAST_GROUP_KEYS = {"layer_decay", "apply_LARS"}


def checkpoint_dir(output_dir: str | os.PathLike) -> Path:
    return Path(output_dir) / "checkpoints"


def checkpoint_path(output_dir: str | os.PathLike, epoch: int) -> Path:
    """The file for the state after 0-based ``epoch`` (named with ``epoch + 1``)."""
    return checkpoint_dir(output_dir) / f"checkpoint_epoch_{epoch + 1:05d}.pyth"


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The checkpoint of the last finished epoch in ``OUTPUT_DIR/checkpoints``, if any."""
    folder = checkpoint_dir(output_dir)
    if not folder.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return max(found)[1] if found else None


def checkpoint_number(path: str | os.PathLike) -> int:
    """The 1-based epoch a checkpoint's file name holds (``checkpoint_epoch_00010.pyth``: 10)."""
    match = _NAME.match(Path(path).name)
    if match is None:
        raise ValueError(f"{path} is not named checkpoint_epoch_NNNNN.pyth")
    return int(match.group(1))


def is_training_checkpoint(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a checkpoint written by :func:`save_training_checkpoint`.

    Memory-mapped, so the tensors are not read: cheap even for a large model.
    """
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # another format, a legacy torch file, damaged: not vidact's
        return False
    return isinstance(payload, dict) and payload.get("format") == FORMAT


def capture_rng_state() -> dict[str, Any]:
    """The python, numpy, torch and (when present) CUDA random states, as torch-loadable data."""
    numpy_state = np.random.get_state(legacy=False)
    return {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": numpy_state["bit_generator"],
            "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
            "pos": int(numpy_state["state"]["pos"]),
            "has_gauss": int(numpy_state["has_gauss"]),
            "gauss": float(numpy_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`; the CUDA state is skipped on a machine without CUDA."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state["numpy"]
    np.random.set_state({
        "bit_generator": numpy_state["bit_generator"],
        "state": {"key": numpy_state["key"].numpy().astype(np.uint32), "pos": numpy_state["pos"]},
        "has_gauss": numpy_state["has_gauss"],
        "gauss": numpy_state["gauss"],
    })
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
        else:
            warnings.warn("checkpoint saved CUDA random states for another number of GPUs; not restored", stacklevel=2)


def save_training_checkpoint(
    path: str | os.PathLike,
    *,
    epoch: int,
    model_state: dict[str, torch.Tensor],
    optimizer_state: dict[str, Any],
    scaler_state: dict[str, Any] | None,
    scheduler_state: dict[str, Any],
    sampler_state: dict[str, Any],
    model_config: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a training checkpoint atomically; ``epoch`` is the 0-based epoch just finished."""
    payload = {
        "format": FORMAT,
        "epoch": epoch,
        "model_state": model_state,
        "optimizer_state": optimizer_state,
        "scaler_state": scaler_state,
        "scheduler_state": scheduler_state,
        "sampler_state": sampler_state,
        "rng_state": capture_rng_state(),
        "model_config": model_config,
        "extra": extra or {},
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_training_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint to resume from (no code is run): one written by
    :func:`save_training_checkpoint`, or PySlowFast's (``model_state``, ``epoch``, no ``format``).

    Auto-resume finds it by name in ``OUTPUT_DIR/checkpoints``, so for a file that cannot be
    resumed from, the advice is to move it out of there: passing it anywhere would not stop that.
    """
    path = Path(path)
    move_out = f"move it out of {path.parent} to train without it"
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise VidactError(f"{path}: checkpoint not found; check the path") from None
    except Exception as err:  # truncated zip, foreign pickle, ...
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise VidactError(f"{path}: not a readable training checkpoint ({first_line}); {move_out}") from None
    if isinstance(payload, dict) and payload.get("format") == FORMAT:
        return payload
    state = payload.get("model_state") if isinstance(payload, dict) else None
    epoch = payload.get("epoch") if isinstance(payload, dict) else None
    if (not isinstance(state, Mapping) or not all(isinstance(t, torch.Tensor) for t in state.values())
            or not isinstance(epoch, int) or isinstance(epoch, bool)):
        raise VidactError(f"{path}: neither a vidact nor a PySlowFast training checkpoint (no model_state and epoch); "
                          f"{move_out} (to fine-tune from it, pass its new path as TRAIN.CHECKPOINT_FILE_PATH)")
    return payload


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any] | None, source: str) -> bool:
    """Load ``state`` into ``optimizer`` when its parameter groups fit; else warn and keep the fresh state.

    Groups fit when they have the same number of parameters and hyperparameter names each
    (another SOLVER.OPTIMIZING_METHOD does not fit), and every stored per-parameter state has
    the optimizer's keys and its parameter's shape (a changed head does not fit).
    """
    reason = optimizer_mismatch(optimizer, state)
    if reason is not None:
        warnings.warn(f"{source}: optimizer state not loaded ({reason}); the optimizer starts afresh", stacklevel=2)
        return False
    restore_optimizer_state(optimizer, state, source)
    return True


def restore_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any], source: str) -> None:
    """Load a fitting ``state`` (see :func:`optimizer_mismatch`) but keep ``optimizer``'s settings.

    ``load_state_dict`` would replace the parameter groups' hyperparameters with the stored
    ones, so a changed SOLVER.MOMENTUM, WEIGHT_DECAY, NESTEROV, ... would silently not apply:
    the optimizer's own (the config's) are put back and a warning names those that differ.
    The learning rate is left alone: the schedule sets it before every step.
    """
    own = [{k: v for k, v in group.items() if k not in ("params", "param_names", "lr")} for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    changed: dict[str, str] = {}
    for group, settings in zip(optimizer.param_groups, own):
        for key in set(group) & _PYSLOWFAST_GROUP_KEYS:
            del group[key]
        for key, value in settings.items():
            if group.get(key) != value:
                changed.setdefault(key, f"{key} {group.get(key)} -> {value}")
            group[key] = value
    if changed:
        warnings.warn(f"{source}: the config's optimizer settings differ from the checkpoint's and are used: "
                      f"{', '.join(changed[key] for key in sorted(changed))}", stacklevel=2)


def optimizer_mismatch(optimizer: torch.optim.Optimizer, state: dict[str, Any] | None) -> str | None:
    if not isinstance(state, dict) or "param_groups" not in state or "state" not in state:
        return "the checkpoint holds none"
    stored_groups = state["param_groups"]
    if len(stored_groups) != len(optimizer.param_groups):
        return f"{len(stored_groups)} parameter groups stored, {len(optimizer.param_groups)} now"
    params = []
    for stored, group in zip(stored_groups, optimizer.param_groups):
        if len(stored["params"]) != len(group["params"]):
            return "parameter groups hold other parameters"
        # Only keys stored but unknown now: a newer torch may add group keys, which it fills in on loading.
        lost = sorted(set(stored) - set(group) - {"params", "param_names"} - _PYSLOWFAST_GROUP_KEYS)
        if lost:
            return f"stored parameter groups have {', '.join(lost)}, which this optimizer lacks"
        expected = _state_keys(optimizer, group)
        params.extend((stored_id, param, expected) for stored_id, param in zip(stored["params"], group["params"]))
    for stored_id, param, expected in params:
        stored_state = state["state"].get(stored_id, {})
        if stored_state and expected is not None and set(stored_state) != expected:
            return f"stored state has {', '.join(sorted(stored_state))}, this optimizer keeps {', '.join(sorted(expected))}"
        for name, buffer in stored_state.items():
            if isinstance(buffer, torch.Tensor) and buffer.dim() > 0 and buffer.shape != param.shape:
                return f"buffer {name} has shape {tuple(buffer.shape)} for a parameter of shape {tuple(param.shape)}"
    return None


def _state_keys(optimizer: torch.optim.Optimizer, group: dict[str, Any]) -> set[str] | None:
    """The per-parameter state keys ``optimizer``'s class keeps with ``group``'s settings, found by
    one step on a one-element stand-in (an optimizer's step fails on state of another method);
    None when that cannot be found out."""
    probe = torch.zeros(1, requires_grad=True)
    probe.grad = torch.zeros(1)
    settings = {k: v for k, v in group.items() if k not in ("params", "param_names")}
    try:
        stand_in = type(optimizer)([{**settings, "params": [probe]}])
        stand_in.step()
    except Exception:  # a custom optimizer that needs more than this
        return None
    return set(stand_in.state[probe])


def demo_checkpoint(run: RunConfig) -> Path | None:
    """The weights PySlowFast's test and demo load: ``TEST.CHECKPOINT_FILE_PATH``, else the
    last checkpoint in ``OUTPUT_DIR/checkpoints``, else ``TRAIN.CHECKPOINT_FILE_PATH``.

    The checkpoint's format is read from its bytes, so ``CHECKPOINT_TYPE`` needs no check here.
    A path the config names that is no file is an error naming its key.
    """
    if run.checkpoint.test_path:
        return _named_checkpoint("TEST", run.checkpoint.test_path)
    latest = latest_checkpoint(run.output_dir)
    if latest is not None:
        return latest
    return _named_checkpoint("TRAIN", run.checkpoint.train_path) if run.checkpoint.train_path else None


def _named_checkpoint(section: str, path: str) -> Path:
    if not Path(path).is_file():
        raise VidactError(f"{section}.CHECKPOINT_FILE_PATH={path}: no such file; pass the checkpoint's path")
    return Path(path)
