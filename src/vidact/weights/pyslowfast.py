"""PySlowFast ``.pyth`` checkpoints: ``torch.save`` dicts with ``model_state``, ``cfg`` and ``epoch``."""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np
import torch

from vidact.errors import VidactError
from vidact.weights.safe_pickle import array_to_tensor


@dataclass
class PySlowFastCheckpoint:
    model_state: dict[str, torch.Tensor]
    cfg_text: str | None  # the YAML dump of the training config, when saved
    epoch: int | None  # 0-based index of the last finished epoch


def clean_names(state: Mapping[str, Any], patterns: Iterable[str] = ()) -> dict[str, Any]:
    """Remove the first occurrence of each pattern from every key (``TRAIN.CHECKPOINT_CLEAR_NAME_PATTERN``)."""
    patterns = [p for p in patterns if p]
    cleaned = {}
    for name, value in state.items():
        for pattern in patterns:
            name = name.replace(pattern, "", 1)
        cleaned[name] = value
    return cleaned


def _as_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray) and value.dtype.kind in "fiub":
        return array_to_tensor(value)
    return None


def parse_checkpoint(obj: Any, source: str | os.PathLike, clear_name_patterns: Iterable[str] = ()) -> PySlowFastCheckpoint:
    """Read the parts of a loaded PySlowFast checkpoint dict vidact uses (optimizer state is ignored)."""
    if not isinstance(obj, Mapping) or not isinstance(obj.get("model_state"), Mapping):
        raise VidactError(f"{os.fspath(source)}: not a PySlowFast checkpoint (no 'model_state' dict); pass a .pyth saved by PySlowFast or vidact")
    state = {}
    for name, value in obj["model_state"].items():
        tensor = _as_tensor(value)
        if tensor is not None:
            state[str(name)] = tensor
    cfg = obj.get("cfg")
    epoch = obj.get("epoch")
    return PySlowFastCheckpoint(
        model_state=clean_names(state, clear_name_patterns),
        cfg_text=cfg if isinstance(cfg, str) else None,
        epoch=int(epoch) if isinstance(epoch, (int, np.integer)) else None,
    )


def torch_load(path: str | os.PathLike) -> Any:
    """``torch.load(weights_only=True)`` on CPU: no code from the file runs.

    Raises a one-line :class:`VidactError` naming the file for damaged files and
    for files that reference code.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # weights_only met something other than tensors and containers
        detail = next((line.strip() for line in str(err).splitlines() if "unsupported" in line.lower()), "unsupported content")
        raise VidactError(f"{os.fspath(path)}: refused by torch.load(weights_only=True), the file references code ({detail}); only use checkpoints from sources you trust") from None
    except Exception as err:  # damaged or truncated file: torch raises many types
        first = (str(err).strip().splitlines() or [type(err).__name__])[0].split(". ")[0]
        raise VidactError(f"{os.fspath(path)}: damaged or truncated torch file ({first}); re-download it") from None
