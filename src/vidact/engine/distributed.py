"""Data-parallel training over processes started by ``torchrun`` (or any launcher).

The process group is set up from the usual environment variables (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``), so one node and
many nodes work alike: ``torchrun --nnodes 2 --node-rank 0 --master-addr HOST ...``.
NCCL is used on GPUs, gloo on CPU. Without those variables everything here is a
single-process no-op.
"""

from __future__ import annotations

import importlib
import os
from datetime import timedelta
from typing import Mapping

import torch
import torch.distributed as dist

from vidact.errors import VidactError

__all__ = [
    "all_gather_objects",
    "all_reduce_mean",
    "all_reduce_sum",
    "barrier",
    "cleanup",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_main_process",
    "launched_distributed",
]


def launched_distributed() -> bool:
    """Whether a launcher set ``WORLD_SIZE`` > 1 for this process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device_type: str) -> torch.device:
    """Join the process group when launched by torchrun; the device this process trains on.

    ``device_type`` is ``"cuda"`` or ``"cpu"``; on CUDA each process takes GPU ``LOCAL_RANK``.
    """
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if device_type == "cuda" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if launched_distributed() and not dist.is_initialized():
        missing = [name for name in ("RANK", "MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
        if missing:
            raise VidactError(
                f"WORLD_SIZE is set but {', '.join(missing)} is not; start the run with torchrun "
                "(python -m torch.distributed.run --nproc-per-node N -m vidact.cli.main train ...)"
            )
        backend = "nccl" if device.type == "cuda" else "gloo"
        # Imported first: its functions take the default group as a default argument, and when DDP
        # imports them after the group exists (PyTorch 2.14) they keep it, and its gloo threads, to
        # the interpreter's end, where they can abort the process as it exits.
        importlib.import_module("torch.distributed.nn.functional")

        dist.init_process_group(backend=backend, timeout=timedelta(minutes=30))
    return device


def cleanup() -> None:
    """Leave the process group; its threads end here, not while the interpreter shuts down."""
    if dist.is_initialized():
        dist.destroy_process_group()


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def get_rank() -> int:
    # After cleanup() a torchrun worker is still its rank: only rank 0 prints the results.
    return dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", 0))


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_reduce_mean(values: Mapping[str, float], device: torch.device | None = None) -> dict[str, float]:
    """The mean over ranks of each scalar (every rank gets the same result)."""
    if not dist.is_initialized() or not values:
        return dict(values)
    names = sorted(values)
    tensor = torch.tensor([float(values[name]) for name in names], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    tensor /= dist.get_world_size()
    return {name: float(value) for name, value in zip(names, tensor.tolist())}


def all_reduce_sum(values: Mapping[str, float], device: torch.device | None = None) -> dict[str, float]:
    """The sum over ranks of each scalar (every rank gets the same result)."""
    if not dist.is_initialized() or not values:
        return dict(values)
    names = sorted(values)
    tensor = torch.tensor([float(values[name]) for name in names], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return {name: float(value) for name, value in zip(names, tensor.tolist())}


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Give every rank rank 0's buffers (BatchNorm statistics): each rank's last training batch
    left its own, and rank 0's are the ones its checkpoint stores and that DDP's next forward
    would use."""
    if dist.is_initialized():
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def all_gather_objects(obj: object) -> list[object]:
    """Every rank's ``obj``, in rank order (evaluation results gathered before reducing)."""
    if not dist.is_initialized():
        return [obj]
    gathered: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered
