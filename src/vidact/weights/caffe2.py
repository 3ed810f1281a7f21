"""Caffe2 ``.pkl`` checkpoints: blob names <-> PySlowFast names, blobs -> state_dict.

The forward mapping is PySlowFast's: a fixed list of regex substitutions applied
*sequentially* to the running string (each rule sees the previous rule's output).
The inverse is written per name pattern, because one PySlowFast name can have
several Caffe2 spellings (``conv1_w`` and ``res_conv1_w``) and the lateral
connections need the index of the last fast-pathway block of their stage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np
import torch

from vidact.weights.safe_pickle import array_to_tensor

# (pattern, replacement), applied in this order with re.sub.
_C2_TO_PT_RULES: tuple[tuple[str, str], ...] = (
    (r"^nonlocal_conv([0-9]+)_([0-9]+)_(.*)", r"s\1.pathway0_nonlocal\2_\3"),
    (r"^(.*)_nonlocal([0-9]+)_(theta)(.*)", r"\1_nonlocal\2.conv_\3\4"),
    (r"^(.*)_nonlocal([0-9]+)_(g)(.*)", r"\1_nonlocal\2.conv_\3\4"),
    (r"^(.*)_nonlocal([0-9]+)_(phi)(.*)", r"\1_nonlocal\2.conv_\3\4"),
    (r"^(.*)_nonlocal([0-9]+)_(out)(.*)", r"\1_nonlocal\2.conv_\3\4"),
    (r"^(.*)_nonlocal([0-9]+)_bn_(.*)", r"\1_nonlocal\2.bn.\3"),
    (r"^t_pool1_subsample_bn_(.*)", r"s1_fuse.bn.\1"),
    (r"^t_pool1_subsample_(.*)", r"s1_fuse.conv_f2s.\1"),
    (r"^t_res([0-9]+)_([0-9]+)_branch2c_bn_subsample_bn_(.*)", r"s\1_fuse.bn.\3"),
    (r"^t_res([0-9]+)_([0-9]+)_branch2c_bn_subsample_(.*)", r"s\1_fuse.conv_f2s.\3"),
    (r"^res([0-9]+)_([0-9]+)_branch([0-9]+)([a-z])_(.*)", r"s\1.pathway0_res\2.branch\3.\4_\5"),
    (r"^res_conv1_bn_(.*)", r"s1.pathway0_stem.bn.\1"),
    (r"^conv1_xy(.*)", r"s1.pathway0_stem.conv_xy\1"),
    (r"^conv1_(.*)", r"s1.pathway0_stem.conv.\1"),
    (r"^res([0-9]+)_([0-9]+)_branch([0-9]+)_(.*)", r"s\1.pathway0_res\2.branch\3_\4"),
    (r"^res_conv1_(.*)", r"s1.pathway0_stem.conv.\1"),
    (r"^t_res([0-9]+)_([0-9]+)_branch([0-9]+)([a-z])_(.*)", r"s\1.pathway1_res\2.branch\3.\4_\5"),
    (r"^t_res_conv1_bn_(.*)", r"s1.pathway1_stem.bn.\1"),
    (r"^t_conv1_(.*)", r"s1.pathway1_stem.conv.\1"),
    (r"^t_res([0-9]+)_([0-9]+)_branch([0-9]+)_(.*)", r"s\1.pathway1_res\2.branch\3_\4"),
    (r"^t_res_conv1_(.*)", r"s1.pathway1_stem.conv.\1"),
    (r"pred_(.*)", r"head.projection.\1"),
    (r"(.*)b_bn_fc(.*)", r"\1se.fc\2"),
    (r"conv_5(.*)", r"head.conv_5\1"),
    (r"lin_5(.*)", r"head.lin_5\1"),
    (r"(.*)bn.b\Z", r"\1bn.bias"),
    (r"(.*)bn.s\Z", r"\1bn.weight"),
    (r"(.*)bn.rm\Z", r"\1bn.running_mean"),
    (r"(.*)bn.riv\Z", r"\1bn.running_var"),
    (r"(.*)[\._]b\Z", r"\1.bias"),
    (r"(.*)[\._]w\Z", r"\1.weight"),
)
_COMPILED_RULES = tuple((re.compile(p), r) for p, r in _C2_TO_PT_RULES)

# Training bookkeeping FAIR's Caffe2 saver puts among the blobs.
_BOOKKEEPING_SUBSTRINGS = ("momentum", "lr", "model_iter")

_BN_SUFFIX = {"weight": "s", "bias": "b", "running_mean": "rm", "running_var": "riv"}
_PARAM_SUFFIX = {"weight": "w", "bias": "b"}


def c2_to_pytorch_name(c2_name: str) -> str:
    """The PySlowFast state_dict name of a Caffe2 blob name (PySlowFast's rules)."""
    name = c2_name
    for pattern, replacement in _COMPILED_RULES:
        name = pattern.sub(replacement, name)
    return name


def is_bookkeeping_blob(c2_name: str) -> bool:
    """Whether a blob is optimizer/iteration state rather than a model weight."""
    return any(s in c2_name for s in _BOOKKEEPING_SUBSTRINGS)


_STEM = re.compile(r"^s1\.pathway([01])_stem\.(conv_xy|conv|bn)\.(\w+)$")
_BLOCK = re.compile(r"^s(\d+)\.pathway([01])_res(\d+)\.(branch1|branch1_bn|branch2\.[abc]|branch2\.[abc]_bn|branch2\.se\.fc\d+)\.(\w+)$")
_NONLOCAL = re.compile(r"^s(\d+)\.pathway0_nonlocal(\d+)\.(conv_theta|conv_phi|conv_g|conv_out|bn)\.(\w+)$")
_FUSE = re.compile(r"^s(\d+)_fuse\.(conv_f2s|bn)\.(\w+)$")
_HEAD = re.compile(r"^head\.(projection|conv_5|conv_5_bn|lin_5|lin_5_bn)\.(\w+)$")
_FAST_BLOCK = re.compile(r"^s(\d+)\.pathway1_res(\d+)\.")


def _leaf(leaf: str, is_bn: bool, name: str) -> str:
    table = _BN_SUFFIX if is_bn else _PARAM_SUFFIX
    if leaf not in table:
        raise ValueError(f"no Caffe2 name for {name!r}")
    return table[leaf]


def pytorch_to_c2_name(name: str, last_fast_block: Mapping[int, int] | None = None) -> str:
    """The Caffe2 blob name of a PySlowFast state_dict name (inverse of :func:`c2_to_pytorch_name`).

    ``last_fast_block`` maps a stage (2..4) to the index of its last fast-pathway
    block; Caffe2 names the lateral connection ``sS_fuse`` after that block. Raises
    ``ValueError`` for names without a Caffe2 counterpart (``num_batches_tracked``).
    """
    if m := _STEM.match(name):
        pathway, module, leaf = m.groups()
        prefix = "t_" if pathway == "1" else ""
        if module == "conv_xy":
            if pathway == "1":  # PySlowFast has no rule for a fast-pathway conv_xy
                raise ValueError(f"no Caffe2 name for {name!r}")
            return f"conv1_xy_{_leaf(leaf, False, name)}"
        if module == "conv":
            return f"{prefix}conv1_{_leaf(leaf, False, name)}"
        return f"{prefix}res_conv1_bn_{_leaf(leaf, True, name)}"
    if m := _BLOCK.match(name):
        stage, pathway, index, module, leaf = m.groups()
        prefix = "t_" if pathway == "1" else ""
        is_bn = module.endswith("_bn")
        if module.startswith("branch2.se.fc"):
            module = "branch2b_bn_" + module[len("branch2.se.") :]
        else:
            module = module.replace(".", "")  # branch2.a_bn -> branch2a_bn
        return f"{prefix}res{stage}_{index}_{module}_{_leaf(leaf, is_bn, name)}"
    if m := _NONLOCAL.match(name):
        stage, index, module, leaf = m.groups()
        part = "bn" if module == "bn" else module[len("conv_") :]
        return f"nonlocal_conv{stage}_{index}_{part}_{_leaf(leaf, module == 'bn', name)}"
    if m := _FUSE.match(name):
        stage, module, leaf = m.groups()
        is_bn = module == "bn"
        if stage == "1":
            base = "t_pool1_subsample"
        else:
            if not last_fast_block or int(stage) not in last_fast_block:
                raise ValueError(f"the Caffe2 name of {name!r} needs the last fast block index of stage {stage}")
            base = f"t_res{stage}_{last_fast_block[int(stage)]}_branch2c_bn_subsample"
        return f"{base}_bn_{_leaf(leaf, True, name)}" if is_bn else f"{base}_{_leaf(leaf, False, name)}"
    if m := _HEAD.match(name):
        module, leaf = m.groups()
        base = "pred" if module == "projection" else module
        return f"{base}_{_leaf(leaf, module.endswith('_bn'), name)}"
    raise ValueError(f"no Caffe2 name for {name!r}")


def last_fast_blocks(names: Iterable[str]) -> dict[int, int]:
    """Stage -> index of its last fast-pathway block, read off a model's state_dict names."""
    last: dict[int, int] = {}
    for name in names:
        if m := _FAST_BLOCK.match(name):
            stage, index = int(m.group(1)), int(m.group(2))
            last[stage] = max(index, last.get(stage, index))
    return last


def pytorch_to_c2_names(names: Iterable[str]) -> dict[str, str]:
    """Caffe2 names for all of a model's state_dict names (``num_batches_tracked`` skipped)."""
    names = [n for n in names if not n.endswith("num_batches_tracked")]
    last = last_fast_blocks(names)
    return {n: pytorch_to_c2_name(n, last) for n in names}


def convert_blobs(blobs: Mapping[str, object]) -> dict[str, torch.Tensor]:
    """Rename Caffe2 blobs to PySlowFast names as tensors, dropping training bookkeeping."""
    state: dict[str, torch.Tensor] = {}
    for c2_name, value in blobs.items():
        if is_bookkeeping_blob(c2_name):
            continue
        array = np.asarray(value)
        if array.dtype.kind not in "fiub":
            continue  # not a weight (e.g. a string blob)
        state[c2_to_pytorch_name(c2_name)] = array_to_tensor(array)
    return state


@dataclass
class FitResult:
    """A state_dict reshaped to a target model, and what could not be fitted."""

    state_dict: dict[str, torch.Tensor]
    unexpected: list[str] = field(default_factory=list)
    shape_mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)


def fit_to_target(state: Mapping[str, torch.Tensor], target_shapes: Mapping[str, tuple[int, ...]]) -> FitResult:
    """Apply PySlowFast's Caffe2 loader rules against a model's names and shapes.

    Per tensor: remap ``bn.running_*`` to ``bn.split_bn.running_*`` when the model
    uses Sub-BN; append trailing 1s when the tensor has fewer dims than the model's
    (linear -> 1x1x1 conv); tile Sub-BN statistics whose length divides the model's;
    keep it only if the shapes now agree. (PySlowFast tiles any 1-D tensor that way,
    which lets a narrower network's BN vectors into a wider model: not done here.)
    """
    result = FitResult(state_dict={})
    for name, tensor in state.items():
        sub_bn = False
        if name not in target_shapes:
            split = name.replace("bn.running_", "bn.split_bn.running_")
            if split not in target_shapes:
                result.unexpected.append(name)
                continue
            name, sub_bn = split, True
        want = tuple(target_shapes[name])
        if tensor.dim() < len(want):
            tensor = tensor.reshape(tuple(tensor.shape) + (1,) * (len(want) - tensor.dim()))
        if sub_bn and tensor.dim() == 1 and len(want) == 1 and tensor.shape[0] and want[0] % tensor.shape[0] == 0:
            tensor = tensor.repeat(want[0] // tensor.shape[0])
        if tuple(tensor.shape) != want:
            result.shape_mismatched.append((name, tuple(tensor.shape), want))
            continue
        result.state_dict[name] = tensor
    return result
