"""Optimizers and learning-rate schedules with PySlowFast's semantics.

The schedule is a pure function of the (fractional) epoch: the trainer sets the rate
before every step to ``lr_at_epoch(solver, epoch + iteration / iterations_per_epoch)``,
as PySlowFast's ``get_lr_at_epoch`` is used. Nothing is stored, so resuming needs no
scheduler state beyond the epoch.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vidact.config.run import SolverConfig
from vidact.errors import VidactError

__all__ = ["LR_POLICIES", "build_optimizer", "lr_at_epoch", "set_lr"]


def _cosine(solver: SolverConfig, epoch: float) -> float:
    offset = solver.warmup_epochs if solver.cosine_after_warmup else 0.0
    span = solver.max_epoch - offset
    return solver.cosine_end_lr + (solver.base_lr - solver.cosine_end_lr) * (
        math.cos(math.pi * (epoch - offset) / span) + 1.0
    ) * 0.5


def _step_index(solver: SolverConfig, epoch: float) -> int:
    """Index of the last ``steps`` entry at or before ``epoch`` (PySlowFast's ``get_step_index``)."""
    boundaries = (*solver.steps, solver.max_epoch)
    for index, step in enumerate(boundaries):
        if epoch < step:
            return index - 1
    return len(boundaries) - 2  # at or past MAX_EPOCH: the last step


def _steps_with_relative_lrs(solver: SolverConfig, epoch: float) -> float:
    return solver.lrs[_step_index(solver, epoch)] * solver.base_lr


def _constant(solver: SolverConfig, epoch: float) -> float:
    return solver.base_lr


LR_POLICIES = {
    "cosine": _cosine,
    "steps_with_relative_lrs": _steps_with_relative_lrs,
    "constant": _constant,
}


def _check_solver(solver: SolverConfig) -> None:
    if solver.lr_policy not in LR_POLICIES:
        raise VidactError(f"SOLVER.LR_POLICY {solver.lr_policy!r} is not supported; use one of {', '.join(LR_POLICIES)}")
    if solver.lr_policy == "cosine" and solver.cosine_end_lr >= solver.base_lr:
        raise VidactError(
            f"SOLVER.COSINE_END_LR {solver.cosine_end_lr} must be below SOLVER.BASE_LR {solver.base_lr}; lower it"
        )
    if solver.lr_policy == "steps_with_relative_lrs":
        if not solver.steps or len(solver.lrs) != len(solver.steps) or solver.steps[0] != 0:
            raise VidactError(
                f"SOLVER.STEPS {list(solver.steps)} and SOLVER.LRS {list(solver.lrs)} must have the same length "
                "and STEPS must start at 0 (e.g. STEPS [0, 40, 60], LRS [1, 0.1, 0.01])"
            )


def lr_at_epoch(solver: SolverConfig, epoch: float) -> float:
    """The learning rate at a fractional epoch: the policy, with a linear warm-up first.

    During ``warmup_epochs`` the rate goes linearly from ``warmup_start_lr`` (epoch 0) to
    the policy's value at the end of warm-up, as PySlowFast's ``get_lr_at_epoch``.
    """
    _check_solver(solver)
    policy = LR_POLICIES[solver.lr_policy]
    if epoch < solver.warmup_epochs:
        end = policy(solver, solver.warmup_epochs)
        slope = (end - solver.warmup_start_lr) / solver.warmup_epochs
        return solver.warmup_start_lr + epoch * slope
    return policy(solver, epoch)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Give every parameter group the rate ``lr``."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def _param_groups(model: nn.Module, solver: SolverConfig) -> list[dict]:
    """PySlowFast's grouping: BatchNorm parameters, 1-D parameters (optionally), the rest."""
    bn, zero_wd, other = [], [], []
    for module in model.modules():
        is_norm = isinstance(module, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm))
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            if is_norm:
                bn.append(param)
            elif solver.zero_wd_1d_param and (param.dim() == 1 or name.endswith("bias")):
                zero_wd.append(param)
            else:
                other.append(param)
    groups = [
        {"params": bn, "weight_decay": solver.bn_weight_decay},
        {"params": other, "weight_decay": solver.weight_decay},
        {"params": zero_wd, "weight_decay": 0.0},
    ]
    return [group for group in groups if group["params"]]


def build_optimizer(model: nn.Module, solver: SolverConfig) -> torch.optim.Optimizer:
    """SGD (momentum, dampening, nesterov), Adam or AdamW over PySlowFast's parameter groups.

    The rate starts at ``base_lr``; the trainer overwrites it before each step.
    """
    groups = _param_groups(model, solver)
    method = solver.optimizer.lower()
    if method == "sgd":
        return torch.optim.SGD(
            groups, lr=solver.base_lr, momentum=solver.momentum, dampening=solver.dampening,
            nesterov=solver.nesterov and solver.momentum > 0,
        )
    if method in ("adam", "adamw"):
        cls = torch.optim.AdamW if method == "adamw" else torch.optim.Adam
        return cls(groups, lr=solver.base_lr, betas=tuple(solver.betas), eps=1e-8)
    raise VidactError(f"SOLVER.OPTIMIZING_METHOD {solver.optimizer!r} is not supported; use sgd, adam or adamw")
