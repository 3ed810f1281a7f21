"""GFLOP counting that matches fvcore (and so the GFLOPs quoted by PySlowFast's model zoo).

Convention: one multiply-add is one flop. Counted: convolutions, matrix products
(linear, einsum, bmm) and eval-mode BatchNorm (two flops per element: scale and shift).
Element-wise ops, pooling, softmax/sigmoid and RoIAlign are not counted, as fvcore
has no handler for them. Works on meta tensors, so full-size models can be measured
without allocating memory or computing anything.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten


def _conv(args: tuple, out: torch.Tensor) -> int:
    x, weight = args[0], args[1]
    transposed = bool(args[6]) if len(args) > 6 else False
    # fvcore: batch x prod(weight shape) x spatial size (output's, or input's when transposed).
    spatial = x.shape[2:] if transposed else out.shape[2:]
    return x.shape[0] * math.prod(weight.shape) * math.prod(spatial)


def _mm(args: tuple, out: torch.Tensor) -> int:
    a, b = args[-2], args[-1]
    return a.shape[0] * a.shape[1] * b.shape[1]


def _bmm(args: tuple, out: torch.Tensor) -> int:
    a, b = args[-2], args[-1]
    return a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]


def _batch_norm(args: tuple, out: Any) -> int:
    x, weight = args[0], args[1]
    return x.numel() * (2 if weight is not None else 1)


_COUNTERS: dict[Any, Callable[[tuple, Any], int]] = {
    aten.convolution.default: _conv,
    aten._convolution.default: _conv,
    aten.mm.default: _mm,
    aten.addmm.default: _mm,
    aten.bmm.default: _bmm,
    aten.baddbmm.default: _bmm,
    aten._native_batch_norm_legit_no_training.default: _batch_norm,
    aten._native_batch_norm_legit.default: _batch_norm,
    aten._native_batch_norm_legit.no_stats: _batch_norm,
    aten.native_batch_norm.default: _batch_norm,
    aten._batch_norm_no_update.default: _batch_norm,
    aten._batch_norm_with_update.default: _batch_norm,
}


class _FlopCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        counter = _COUNTERS.get(func)
        if counter is not None:
            self.flops += counter(args, out)
        return out


def count_gflops(
    model: nn.Module, inputs: Sequence[torch.Tensor], boxes: torch.Tensor | None = None
) -> float:
    """GFLOPs (1e9 multiply-adds) of one eval-mode forward of ``model(inputs[, boxes])``.

    ``inputs`` is the list of pathway tensors. Pass meta tensors (and a model built on
    the meta device) to count without computing. The model's train/eval mode is restored.
    """
    was_training = model.training
    model.eval()
    args: tuple = (list(inputs),) if boxes is None else (list(inputs), boxes)
    counter = _FlopCounter()
    try:
        with torch.no_grad(), counter:
            model(*args)
    finally:
        model.train(was_training)
    return counter.flops / 1e9


def model_gflops(model: nn.Module, config) -> float:
    """GFLOPs of one test view as PySlowFast's model zoo quotes them.

    One clip at the test crop size, square (also for AVA models), with the single
    box ``[0, 0, 1, 0, 1]`` for detection models. ``model`` may live on the meta device.
    """
    device = next(model.parameters()).device
    size = config.input.test_crop_size
    inputs = [torch.empty(shape, device=device) for shape in config.input.pathway_shapes(size, size)]
    boxes = torch.tensor([[0.0, 0.0, 1.0, 0.0, 1.0]], device=device) if config.detection.enable else None
    return count_gflops(model, inputs, boxes)
