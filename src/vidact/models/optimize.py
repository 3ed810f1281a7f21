"""Inference mode: a frozen, faster copy of a model for a given device and precision.

:func:`optimize_for_inference` returns an :class:`InferenceModel` wrapping a deep copy
of the network (the original stays trainable and untouched) in which

* every BatchNorm that directly follows a convolution (no op in between, as the
  ``forward`` methods listed in :data:`FOLDABLE` are written) is folded into that
  convolution's weight and bias, computed in float64;
* on CPU every Conv3d runs oneDNN's kernel, with the ReLU after it (:data:`FUSABLE_RELU`)
  fused in, and each residual block's add (+ ReLU) fused into its last convolution
  (:class:`FusedResBlock`, :class:`FusedNonLocal`) (eager mode only; ``torch.compile``
  does its own fusions);
* max-pools with non-overlapping temporal windows run as an elementwise max over frames
  and 2D pools over the frames, 1x1x1 pools (SlowFast's per-pathway pool) are dropped,
  and whole-clip temporal average pools become a mean: ATen's CPU 3D pools are
  unvectorised (and run in float32 under autocast);
* weights and inputs use the ``channels_last_3d`` layout, on which oneDNN's fp32 and
  bf16 kernels are fastest (measured: docs/performance.md);
* the forward runs under ``torch.autocast`` in bf16 or fp16 when chosen, with the
  weights cast once up front so nothing is re-cast per call;
* on CUDA, each input shape's forward is captured once as a CUDA graph and replayed
  (:class:`CUDAGraphRunner`): one launch instead of hundreds, which is what batch-1
  inference is bound by on a large GPU;
* optionally ``torch.compile`` (inductor, with freezing, its cache kept under
  ``vidact_home()/inductor``); on CUDA the compiled model uses CUDA graphs
  (``mode="reduce-overhead"``).

Outputs are always float32 on the model's device.
"""

from __future__ import annotations

import copy
import functools
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vidact.errors import VidactError
from vidact.models.heads import X3DHead
from vidact.models.nonlocal_block import NonLocal
from vidact.models.resnet3d import (
    BasicTransform,
    BottleneckTransform,
    FuseFastToSlow,
    ResBlock,
    ResNetStem,
)
from vidact.models.x3d import X3DStem, X3DTransform

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

# (conv, bn) child names per block class whose forward feeds the conv's output straight
# into the BN and uses it nowhere else. Read off each class's ``forward``; a BN missing
# here is simply left unfolded (correct, only slower). X3D's SE and Swish come after b_bn.
FOLDABLE: dict[type[nn.Module], tuple[tuple[str, str], ...]] = {
    ResNetStem: (("conv", "bn"),),
    FuseFastToSlow: (("conv_f2s", "bn"),),
    BottleneckTransform: (("a", "a_bn"), ("b", "b_bn"), ("c", "c_bn")),
    BasicTransform: (("a", "a_bn"), ("b", "b_bn")),
    ResBlock: (("branch1", "branch1_bn"),),
    NonLocal: (("conv_out", "bn"),),
    X3DStem: (("conv", "bn"),),
    X3DTransform: (("a", "a_bn"), ("b", "b_bn"), ("c", "c_bn")),
    X3DHead: (("conv_5", "conv_5_bn"), ("lin_5", "lin_5_bn")),
}


@dataclass(frozen=True)
class InferenceSettings:
    """What :func:`optimize_for_inference` chose."""

    device: str
    precision: str  # "fp32", "bf16" or "fp16"
    channels_last: bool
    compile: bool
    cuda_graphs: bool
    folded_bn: int  # BatchNorms folded into convolutions
    unfolded_bn: int  # BatchNorms left as they were


# ---------------------------------------------------------------- precision choice


def _cpu_flags() -> set[str]:
    from vidact.tools.doctor import parse_cpuinfo

    try:
        return parse_cpuinfo(Path("/proc/cpuinfo").read_text())[1]
    except OSError:
        return set()


def select_precision(
    device: str | torch.device, *, cpu_flags: set[str] | None = None, cuda_bf16: bool | None = None
) -> str:
    """The fastest precision that is native on ``device``: ``"bf16"`` or ``"fp32"``.

    CPU: bf16 when doctor's verdict says bf16 is native (AVX-512 BF16, AMX, Arm BF16) and
    torch has oneDNN; ``cpu_flags`` defaults to ``/proc/cpuinfo``'s. CUDA: bf16 when the
    GPU supports it natively (Ampere and newer; ``cuda_bf16`` overrides the query).
    fp16 is never chosen automatically (it can overflow); ask for it explicitly.
    """
    from vidact.tools.doctor import bf16_verdict

    device = torch.device(device)
    if device.type == "cuda":
        if cuda_bf16 is None:
            cuda_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
        return "bf16" if cuda_bf16 else "fp32"
    if device.type == "cpu":
        flags = _cpu_flags() if cpu_flags is None else cpu_flags
        native, _ = bf16_verdict(flags)
        return "bf16" if native and torch.backends.mkldnn.is_available() else "fp32"
    return "fp32"


# ---------------------------------------------------------------- graph rewrites


@torch.no_grad()
def fold_conv_bn(conv: nn.Conv3d, bn: nn.modules.batchnorm._BatchNorm) -> None:
    """Fold an eval-mode ``bn`` into the preceding ``conv`` in place: ``bn(conv(x)) == conv(x)`` after."""
    if bn.running_mean is None or bn.running_var is None:
        raise VidactError(f"{bn} has no running statistics to fold; build it with track_running_stats=True")
    inv_std = torch.rsqrt(bn.running_var.double() + bn.eps)
    scale = inv_std if bn.weight is None else bn.weight.double() * inv_std
    shift = -bn.running_mean.double() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.double()
    if conv.bias is not None:
        shift = shift + conv.bias.double() * scale
    dtype = conv.weight.dtype
    conv.weight.copy_((conv.weight.double() * scale.view(-1, *[1] * (conv.weight.dim() - 1))).to(dtype))
    conv.bias = nn.Parameter(shift.to(dtype), requires_grad=conv.weight.requires_grad)


def _fold_batchnorms(model: nn.Module) -> int:
    folded = 0
    for module in list(model.modules()):
        for conv_name, bn_name in FOLDABLE.get(type(module), ()):
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if isinstance(conv, nn.Conv3d) and isinstance(bn, nn.modules.batchnorm._BatchNorm):
                fold_conv_bn(conv, bn)
                setattr(module, bn_name, nn.Identity())
                folded += 1
    return folded


class FramewiseMaxPool(nn.Module):
    """A 3D max-pool whose temporal windows do not overlap, run as an elementwise max over
    frames followed by a 2D pool over every frame.

    Same result as the :class:`nn.MaxPool3d` it replaces (temporal stride equal to the
    temporal kernel, no temporal padding or dilation, floor mode); ATen's CPU 3D pool is
    unvectorised and, under autocast, runs in float32; these ops are neither.
    """

    def __init__(self, pool: nn.MaxPool3d) -> None:
        super().__init__()
        self.temporal_kernel = _triple(pool.kernel_size)[0]
        self.kernel_size, self.stride, self.padding = (tuple(_triple(v)[1:]) for v in (
            pool.kernel_size, pool.stride, pool.padding))
        self.dilation = tuple(_triple(pool.dilation)[1:])
        self.ceil_mode = pool.ceil_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.temporal_kernel > 1:
            frames = x.shape[2] // self.temporal_kernel * self.temporal_kernel
            x = functools.reduce(torch.maximum, (
                x[:, :, offset:frames:self.temporal_kernel] for offset in range(self.temporal_kernel)))
        n, c, t, h, w = x.shape

        def pool(y: torch.Tensor) -> torch.Tensor:
            return F.max_pool2d(y, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)

        if x.is_contiguous(memory_format=torch.channels_last_3d) and not x.is_contiguous():
            # (N, T, H, W, C) in memory: frames folded into the batch is a channels-last 4D view.
            y = pool(x.transpose(1, 2).reshape(n * t, c, h, w))
            return y.reshape(n, t, c, *y.shape[2:]).transpose(1, 2)
        y = pool(x.reshape(n, c * t, h, w))
        return y.reshape(n, c, t, *y.shape[2:])


class TemporalMeanPool(nn.AvgPool3d):
    """An :class:`nn.AvgPool3d` over whole clips (kernel T x 1 x 1) computed as a mean over time.

    Keeps ``kernel_size`` (heads check it). ATen's CPU 3D average pool is slow on a
    channels_last map (and under autocast needs a float32 copy of it first); the mean
    reads the (N, T, HWC) memory once, accumulating in float32 as autocast's pool did.
    Other shapes go to the 3D pool.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[2] != _triple(self.kernel_size)[0]:
            return super().forward(x)
        if _is_channels_last(x):
            return x.permute(0, 2, 3, 4, 1).mean(1, keepdim=True, dtype=torch.float32).permute(0, 4, 1, 2, 3)
        return x.mean(2, keepdim=True, dtype=torch.float32)


def _triple(value: int | Sequence[int]) -> tuple[int, int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * 3  # type: ignore[return-value]


def _rewrite_pools(model: nn.Module) -> None:
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if not isinstance(child, nn.MaxPool3d) or child.return_indices:
                continue
            kernel, stride, padding = _triple(child.kernel_size), _triple(child.stride), _triple(child.padding)
            if kernel == (1, 1, 1) and stride == (1, 1, 1) and padding == (0, 0, 0):
                setattr(module, name, nn.Identity())
            elif kernel[0] == stride[0] and padding[0] == 0 and _triple(child.dilation)[0] == 1 and not (
                    child.ceil_mode and kernel[0] > 1):
                setattr(module, name, FramewiseMaxPool(child))
        for name, child in list(module.named_children()):
            if (type(child) is nn.AvgPool3d and _triple(child.kernel_size)[1:] == (1, 1)
                    and _triple(child.stride) == (1, 1, 1) and _triple(child.padding) == (0, 0, 0)
                    and child.divisor_override is None):
                pool = copy.copy(child)
                pool.__class__ = TemporalMeanPool
                setattr(module, name, pool)


# (conv, bn, activation) child names where the activation directly follows the BN (or
# conv): after folding, oneDNN applies it as a post-op of the convolution.
FUSABLE_RELU: dict[type[nn.Module], tuple[tuple[str, str], ...]] = {
    ResNetStem: (("conv", "relu"),),
    FuseFastToSlow: (("conv_f2s", "relu"),),
    BottleneckTransform: (("a", "a_relu"), ("b", "b_relu")),
    BasicTransform: (("a", "a_relu"),),
    X3DStem: (("conv", "relu"),),
    X3DTransform: (("a", "a_relu"),),
    X3DHead: (("conv_5", "conv_5_relu"),),
}


class OneDNNConv3d(nn.Conv3d):
    """A Conv3d that always runs oneDNN's kernel, with an optional fused ReLU.

    ATen sends small batch-1 3D convolutions to its unvectorised fallback
    (``slow_conv3d``) and runs ReLU as a separate pass over memory; oneDNN does both
    in one kernel.
    """

    @classmethod
    def from_conv(cls, conv: nn.Conv3d, relu: bool) -> OneDNNConv3d:
        fused = copy.copy(conv)
        fused.__class__ = cls
        fused.post_op = "relu" if relu else "none"
        return fused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding_mode != "zeros" or isinstance(self.padding, str):
            return super().forward(x)
        # Not covered by autocast: cast inputs that an fp32-only op (3D max-pool) upcast.
        return torch.ops.mkldnn._convolution_pointwise(
            x.to(self.weight.dtype), self.weight, self.bias, self.padding, self.stride, self.dilation, self.groups,
            self.post_op, [], "",
        )


class FusedResBlock(ResBlock):
    """A :class:`ResBlock` whose residual add and ReLU run as post-ops of the branch's last convolution.

    Needs the BNs folded and every convolution a :class:`OneDNNConv3d`; saves two full
    passes over the block's output (the add and the ReLU).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch2 = self.branch2
        last = branch2.c if isinstance(branch2, BottleneckTransform) else branch2.b
        y = branch2.a(x)
        if isinstance(branch2, BottleneckTransform):
            y = branch2.b(y)
        y = y.to(last.weight.dtype)
        shortcut = x if self.branch1 is None else self.branch1(x)
        if not _is_channels_last(y) and not _is_channels_last(last.weight):
            # oneDNN fuses the add only in channels_last; its own fallback has no bf16 add_relu.
            return torch.relu(last(y) + shortcut)
        shortcut = shortcut.to(y.dtype).contiguous(memory_format=torch.channels_last_3d)
        if self.branch1 is None:
            # The input may still be referenced elsewhere: write the sum to a new tensor.
            return torch.ops.mkldnn._convolution_pointwise.binary(
                y, shortcut, last.weight, last.bias, last.padding, last.stride, last.dilation, last.groups,
                "add", None, "relu", [], "",
            )
        # A fresh projection: accumulate into it in place (oneDNN's sum post-op).
        return torch.ops.mkldnn._convolution_pointwise_.binary(
            shortcut, y, last.weight, last.bias, last.padding, last.stride, last.dilation, last.groups,
            "add", None, "relu", [], "",
        )


class FusedNonLocal(NonLocal):
    """A :class:`NonLocal` block that works in any layout, with the residual add fused into ``conv_out``.

    The stock block flattens with ``.view``, which needs the default layout: in
    channels_last it would cost two copies of the feature map per block. Here the
    positions are taken as ``(N, THW, C)`` token matrices, which are views in
    channels_last, and the result comes back in channels_last.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, t, h, w = x.shape
        pooled = self.pool(x) if self.pool is not None else x
        theta, phi, g = (_tokens(conv(y)) for conv, y in (
            (self.conv_theta, x), (self.conv_phi, pooled), (self.conv_g, pooled)))
        affinity = theta @ phi.transpose(1, 2)
        if self.instantiation == "softmax":
            affinity = torch.softmax(affinity * self.dim_inner**-0.5, dim=2)
        else:
            affinity = affinity / affinity.shape[2]
        out = (affinity @ g).view(n, t, h, w, self.dim_inner).permute(0, 4, 1, 2, 3)
        conv = self.conv_out
        out = out.to(conv.weight.dtype)
        if not _is_channels_last(x) or not _is_channels_last(out):
            return x + conv(out)
        return torch.ops.mkldnn._convolution_pointwise.binary(
            out, x.to(out.dtype), conv.weight, conv.bias, conv.padding, conv.stride, conv.dilation, conv.groups,
            "add", None, None, [], None,
        )


def _tokens(x: torch.Tensor) -> torch.Tensor:
    # (N, C, T, H, W) -> (N, THW, C): a view for channels_last_3d, a copy otherwise.
    return x.permute(0, 2, 3, 4, 1).reshape(x.shape[0], -1, x.shape[1])


def _is_channels_last(x: torch.Tensor) -> bool:
    return x.is_contiguous(memory_format=torch.channels_last_3d) and not x.is_contiguous()


def _fusable_residual(block: ResBlock) -> bool:
    """Whether ``block``'s branch is now oneDNN convolutions with nothing between them but fused ReLUs."""
    branch2 = block.branch2
    if isinstance(branch2, BottleneckTransform):
        convs, relus, last, last_bn = (branch2.a, branch2.b, branch2.c), (branch2.a_relu, branch2.b_relu), "c", "c_bn"
    elif isinstance(branch2, BasicTransform):
        convs, relus, last, last_bn = (branch2.a, branch2.b), (branch2.a_relu,), "b", "b_bn"
    else:
        return False
    shortcut_ok = block.branch1 is None or (
        isinstance(block.branch1, OneDNNConv3d) and isinstance(block.branch1_bn, nn.Identity))
    return (
        isinstance(block.relu, nn.ReLU)
        and shortcut_ok
        and all(isinstance(c, OneDNNConv3d) and c.padding_mode == "zeros" and not isinstance(c.padding, str)
                for c in convs)
        and getattr(branch2, last).post_op == "none"
        and all(isinstance(r, nn.Identity) for r in relus)
        and isinstance(getattr(branch2, last_bn), nn.Identity)
    )


def _use_onednn_convs(model: nn.Module) -> None:
    for module in list(model.modules()):
        for conv_name, relu_name in FUSABLE_RELU.get(type(module), ()):
            conv, relu = getattr(module, conv_name, None), getattr(module, relu_name, None)
            if isinstance(conv, nn.Conv3d) and isinstance(relu, nn.ReLU):
                setattr(module, conv_name, OneDNNConv3d.from_conv(conv, relu=True))
                setattr(module, relu_name, nn.Identity())
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) is nn.Conv3d:
                setattr(module, name, OneDNNConv3d.from_conv(child, relu=False))
    for module in model.modules():
        if type(module) is ResBlock and _fusable_residual(module):
            module.__class__ = FusedResBlock
        elif (type(module) is NonLocal and isinstance(module.conv_out, OneDNNConv3d)
              and module.conv_out.post_op == "none" and isinstance(module.bn, nn.Identity)):
            module.__class__ = FusedNonLocal


def _contiguous_input(module: nn.Module, args: tuple) -> tuple:
    # NonLocal flattens conv outputs with .view(), which needs the default layout...
    return (args[0].contiguous(),) + args[1:]


def _channels_last_output(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
    # ... and the blocks after it must get channels_last back: a layout mismatch makes
    # every later residual add and convolution copy its inputs.
    return output.contiguous(memory_format=torch.channels_last_3d)


# ---------------------------------------------------------------- the wrapper


class InferenceModel(nn.Module):
    """A frozen, optimised network: ``model(inputs[, boxes])`` -> float32 outputs, no autograd.

    Carries the original's ``config`` and ``zoo_entry``; ``settings`` says what was applied.
    """

    def __init__(self, network: nn.Module, settings: InferenceSettings, source: nn.Module) -> None:
        super().__init__()
        self.network = network
        self.settings = settings
        self.config = getattr(source, "config", None)
        self.zoo_entry = getattr(source, "zoo_entry", None)
        self.device = torch.device(settings.device)
        self._dtype = DTYPES[settings.precision]
        self._network_call: Callable = _compile(network, self.device) if settings.compile else network
        # Compiled for CUDA ("reduce-overhead"), the network returns its CUDA graph's output
        # buffer, which the next call overwrites.
        self._copy_output = settings.compile and self.device.type == "cuda"
        self._run: Callable = self._autocast_forward
        if settings.cuda_graphs:
            self._run = CUDAGraphRunner(self._run, self.device)
        # Frozen in eval mode, like the network: helpers that put back the previous mode
        # (count_gflops, evaluate) call train(self.training).
        self.eval()

    def _autocast_forward(self, *args) -> torch.Tensor:
        # No autocast weight cache: the weights already have the right dtype, and a cache
        # filled during a CUDA graph capture would be freed under the graph.
        with torch.autocast(self.device.type, self._dtype, enabled=self._dtype != torch.float32, cache_enabled=False):
            return self._network_call(*args)

    def forward(self, inputs: Sequence[torch.Tensor], boxes: torch.Tensor | None = None) -> torch.Tensor:
        memory_format = torch.channels_last_3d if self.settings.channels_last else torch.preserve_format
        xs = [x.to(self.device, self._dtype, non_blocking=True).contiguous(memory_format=memory_format)
              for x in inputs]
        args: tuple = (xs,) if boxes is None else (xs, boxes.to(self.device, torch.float32))
        with torch.inference_mode():
            out = self._run(*args)
        return out.to(torch.float32, copy=self._copy_output)

    def train(self, mode: bool = True) -> InferenceModel:
        if mode:
            raise VidactError("an InferenceModel cannot be trained; train the original model instead")
        return super().train(False)


class CUDAGraphRunner:
    """Calls ``fn(inputs, [boxes])`` through CUDA graphs, one captured per input signature.

    The first call with a new set of shapes runs ``fn`` a few times on a side stream (cuDNN's
    autotuner and the allocator settle there), then captures one call into a graph with its
    own static input and output tensors; later calls copy their inputs into those and replay
    it. At most ``max_graphs`` signatures are kept (least recently used dropped): AVA models
    see one per number of persons. If a capture fails but a plain call of ``fn`` works (an op
    that synchronises with the CPU, say), a warning says so and ``fn`` runs as it is from then
    on; if the plain call fails too, its error is raised and graphs stay on.
    """

    def __init__(self, fn: Callable, device: torch.device, max_graphs: int = 8, warmup: int = 3) -> None:
        self.fn = fn
        self.device = device
        self.max_graphs = max_graphs
        self.warmup = warmup
        self.graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, list[torch.Tensor], torch.Tensor]] = {}
        self.failed = False

    def __call__(self, inputs: Sequence[torch.Tensor], boxes: torch.Tensor | None = None) -> torch.Tensor:
        tensors = [*inputs, *([] if boxes is None else [boxes])]
        has_boxes = boxes is not None
        if self.failed:
            return self.fn(*self._args(tensors, has_boxes))
        key = (has_boxes, *((t.shape, t.dtype, t.stride()) for t in tensors))
        entry = self.graphs.pop(key, None)
        if entry is None:
            failure: RuntimeError | None = None
            try:
                entry = self._capture(tensors, has_boxes)
            except RuntimeError as error:  # torch.OutOfMemoryError included
                failure = error
            if failure is not None:
                # An input the network rejects (a wrong shape, say) fails the capture too:
                # running it plainly raises that error to the caller, and the graphs stay on.
                output = self.fn(*self._args(tensors, has_boxes))
                warnings.warn(f"CUDA graph capture failed ({str(failure).splitlines()[0]}); running without graphs",
                              RuntimeWarning, stacklevel=2)
                self.failed = True
                self.graphs.clear()
                return output
            while len(self.graphs) >= self.max_graphs:
                self.graphs.pop(next(iter(self.graphs)))
        self.graphs[key] = entry  # (re)inserted last: most recently used
        graph, static_inputs, static_output = entry
        for static, tensor in zip(static_inputs, tensors):
            static.copy_(tensor, non_blocking=True)
        graph.replay()
        return static_output.clone()  # the next replay overwrites the static output

    @staticmethod
    def _args(tensors: list[torch.Tensor], has_boxes: bool) -> tuple:
        return (tensors[:-1], tensors[-1]) if has_boxes else (tensors,)

    def _capture(self, tensors: list[torch.Tensor], has_boxes: bool):
        static_inputs = [t.clone() for t in tensors]  # clone keeps each input's strides
        args = self._args(static_inputs, has_boxes)
        # On the runner's device whichever is current (detect_many runs cuda:LOCAL_RANK without
        # set_device), and on a stream of it: torch.cuda.graph's default capture stream is one
        # per process, made on whichever device was current at the first capture.
        with torch.cuda.device(self.device):
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(self.warmup):
                    self.fn(*args)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            # "thread_local": the detector and the video decoder keep using the GPU from their
            # own threads meanwhile, which the default "global" mode makes the capture fail on.
            with torch.cuda.graph(graph, stream=side, capture_error_mode="thread_local"):
                static_output = self.fn(*args)
        return graph, static_inputs, static_output


def _compile(network: nn.Module, device: torch.device) -> Callable:
    # Keep inductor's compiled kernels between runs (the first compile takes minutes).
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(_inductor_cache_dir()))
    import torch._inductor.config as inductor_config

    # Freezing constant-folds the (already folded) weights and lets oneDNN prepack them.
    inductor_config.freezing = True
    mode = "reduce-overhead" if device.type == "cuda" else None  # CUDA graphs on GPU
    return torch.compile(network, mode=mode, dynamic=False)


def _inductor_cache_dir() -> Path:
    from vidact.paths import vidact_home

    return vidact_home() / "inductor"


def check_precision(precision: str, device: torch.device) -> str:
    """``precision`` as :func:`optimize_for_inference` runs it on ``device`` ("auto" resolved),
    or a :class:`VidactError` if it cannot: for refusing before long work."""
    if precision not in PRECISIONS:
        raise VidactError(f"precision {precision!r} is not supported; use one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        precision = select_precision(device)
    if precision == "fp16" and device.type == "cpu" and not torch.ops.mkldnn._is_mkldnn_fp16_supported():
        raise VidactError("fp16 on this CPU needs AVX512-FP16 or AVX-NE-CONVERT, which it lacks; use --precision bf16 or fp32")
    return precision


def optimize_for_inference(
    model: nn.Module,
    *,
    device: str | torch.device = "cpu",
    precision: str = "auto",
    compile: bool = False,
    channels_last: bool | None = None,
    cuda_graphs: bool | None = None,
    cudnn_benchmark: bool = True,
) -> InferenceModel:
    """A frozen, faster copy of ``model`` for inference on ``device``; ``model`` is left as it was.

    Args:
        model: a vidact network (``create_model`` / ``build_model``), any train/eval state.
        device: where to run.
        precision: ``"auto"`` (:func:`select_precision`), ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        compile: also ``torch.compile`` it (slow first call; cached on disk; CUDA graphs on GPU).
        channels_last: use the channels_last_3d layout; ``None`` picks it where it pays
            (always, see docs/performance.md).
        cuda_graphs: replay CUDA graphs (:class:`CUDAGraphRunner`); ``None``: on CUDA unless
            compiled (the compiled model makes its own graphs).
        cudnn_benchmark: on CUDA, set cuDNN's autotuner (``torch.backends.cudnn.benchmark``,
            process-wide) on or off. On, the first call with each input shape times cuDNN's
            kernels for every convolution (seconds) and later calls run the fastest: for work
            the model bounds. Off, cuDNN picks by heuristics at once: for work where the model
            is not the slowest stage (``vidact detect``, docs/performance.md).
    """
    from vidact.api import parse_device

    device = parse_device(device)
    precision = check_precision(precision, device)
    if channels_last is None:
        channels_last = True
    if cuda_graphs is None:
        cuda_graphs = device.type == "cuda" and not compile
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = cudnn_benchmark
    if cuda_graphs and device.type != "cuda":
        raise VidactError(f"CUDA graphs need a CUDA device, not {device}; leave cuda_graphs unset")

    network = copy.deepcopy(model).eval()
    folded = _fold_batchnorms(network)
    unfolded = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in network.modules())
    _rewrite_pools(network)
    if device.type == "cpu" and torch.backends.mkldnn.is_available() and not compile:
        # (torch.compile does the same fusions itself, from the plain convolutions.)
        _use_onednn_convs(network)
    if channels_last:
        for module in network.modules():
            if type(module) is NonLocal:  # (FusedNonLocal handles any layout)
                module.register_forward_pre_hook(_contiguous_input)
                module.register_forward_hook(_channels_last_output)
        network = network.to(memory_format=torch.channels_last_3d)
    network = network.to(device=device, dtype=DTYPES[precision])
    network.requires_grad_(False)
    settings = InferenceSettings(
        device=str(device), precision=precision, channels_last=channels_last, compile=compile,
        cuda_graphs=cuda_graphs, folded_bn=folded, unfolded_bn=unfolded,
    )
    return InferenceModel(network, settings, model)


# What the jobs accept: the optimised precisions plus "eager", the unoptimised reference path.
INFERENCE_MODES = ("eager", *PRECISIONS)


def inference_model(
    model: nn.Module,
    *,
    device: str | torch.device = "cpu",
    precision: str = "auto",
    compile: bool = False,
    cudnn_benchmark: bool = True,
) -> nn.Module:
    """What the jobs run: ``model`` as it is for ``precision="eager"`` (the reference path),
    else :func:`optimize_for_inference` with that precision ("auto" picks from the hardware)."""
    if precision not in INFERENCE_MODES:
        raise VidactError(f"precision {precision!r} is not one of {', '.join(INFERENCE_MODES)}")
    if precision == "eager":
        if compile:
            raise VidactError("--compile needs an optimised precision (auto, fp32, bf16 or fp16), not eager")
        return model.eval().to(device)
    return optimize_for_inference(model, device=device, precision=precision, compile=compile,
                                  cudnn_benchmark=cudnn_benchmark)
