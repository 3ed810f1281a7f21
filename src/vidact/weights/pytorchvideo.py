"""PyTorchVideo hub checkpoints (``{"model_state": ...}``) <-> PySlowFast names.

Covered hub models: ``slowfast_r50``, ``slowfast_r50_detection``, ``slow_r50`` and
``x3d_xs/s/m/l``. The naming follows the model family, so the variant is one of
``slowfast``, ``slowfast_detection``, ``slow`` and ``x3d``.

PyTorchVideo's X3D has no BatchNorm after the stride-2 shortcut of stage 2, which
PySlowFast's has (``s2.pathway0_res0.branch1_bn``). Converting to PySlowFast names
fills that BatchNorm with an exact identity (weight 1, bias 0, mean 0, var 1 - eps),
so the PySlowFast-layout model computes what the hub model computes.

X3D's ``norm_b`` is always ``Sequential(BN, SE or Identity)``, so ``b_bn`` maps to
``norm_b.0`` in every block (the hub listing shows no bare ``norm_b``).
"""

from __future__ import annotations

import re
from typing import Iterable, Mapping

import torch

from vidact.errors import VidactError

VARIANTS = ("slowfast", "slowfast_detection", "slow", "x3d")

_LEAVES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")

# Residual-block sub-modules, PySlowFast -> PyTorchVideo.
_BLOCK_PARTS = {
    "branch1": "branch1_conv",
    "branch1_bn": "branch1_norm",
    **{f"branch2.{x}": f"branch2.conv_{x}" for x in "abc"},
    **{f"branch2.{x}_bn": f"branch2.norm_{x}" for x in "abc"},
    "branch2.se.fc1": "branch2.norm_b.1.block.0",
    "branch2.se.fc2": "branch2.norm_b.1.block.2",
}
_BLOCK_PARTS_BACK = {v: k for k, v in _BLOCK_PARTS.items()} | {"branch2.norm_b.0": "branch2.b_bn"}

_X3D_HEAD = {"head.conv_5": "blocks.5.pool.pre_conv", "head.conv_5_bn": "blocks.5.pool.pre_norm", "head.lin_5": "blocks.5.pool.post_conv"}
_X3D_STEM = {"conv_xy": "conv.conv_t", "conv": "conv.conv_xy", "bn": "norm"}  # ptv's names are swapped vs. meaning


def _split_leaf(name: str) -> tuple[str, str]:
    module, _, leaf = name.rpartition(".")
    if leaf not in _LEAVES or not module:
        raise ValueError(name)
    return module, leaf


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"unknown PyTorchVideo variant {variant!r}; expected one of {VARIANTS}")


def pyslowfast_to_ptv_name(name: str, variant: str) -> str:
    """The PyTorchVideo hub name of a PySlowFast state_dict name.

    Raises ``ValueError`` for names the hub models do not have.
    """
    _check_variant(variant)
    module, leaf = _split_leaf(name)
    multipathway = variant.startswith("slowfast")
    backbone = "model." if variant == "slowfast_detection" else ""
    if m := re.fullmatch(r"s1\.pathway(\d)_stem\.(conv_xy|conv|bn)", module):
        pathway, part = m.groups()
        if variant == "x3d":
            mapped = f"blocks.0.{_X3D_STEM[part]}"
        elif part == "conv_xy":
            raise ValueError(name)
        else:
            part = "norm" if part == "bn" else "conv"
            mapped = f"blocks.0.multipathway_blocks.{pathway}.{part}" if multipathway else f"blocks.0.{part}"
        return f"{backbone}{mapped}.{leaf}"
    if m := re.fullmatch(r"s(\d)_fuse\.(conv_f2s|bn)", module):
        if not multipathway:
            raise ValueError(name)
        stage, part = m.groups()
        part = "conv_fast_to_slow" if part == "conv_f2s" else "norm"
        return f"{backbone}blocks.{int(stage) - 1}.multipathway_fusion.{part}.{leaf}"
    if m := re.fullmatch(r"s(\d)\.pathway(\d)_res(\d+)\.(.+)", module):
        stage, pathway, index, part = m.groups()
        if part == "branch2.b_bn" and variant == "x3d":  # X3D's norm_b is Sequential(BN, SE or Identity)
            ptv_part = "branch2.norm_b.0"
        elif part in _BLOCK_PARTS:
            ptv_part = _BLOCK_PARTS[part]
        else:
            raise ValueError(name)
        path = f"multipathway_blocks.{pathway}.res_blocks" if multipathway else "res_blocks"
        return f"{backbone}blocks.{int(stage) - 1}.{path}.{index}.{ptv_part}.{leaf}"
    if module == "head.projection":
        head = {"slowfast": "blocks.6.proj", "slowfast_detection": "detection_head.proj"}.get(variant, "blocks.5.proj")
        return f"{head}.{leaf}"
    if variant == "x3d" and module in _X3D_HEAD:
        return f"{_X3D_HEAD[module]}.{leaf}"
    raise ValueError(name)


def ptv_to_pyslowfast_name(name: str, variant: str) -> str:
    """The PySlowFast state_dict name of a PyTorchVideo hub name (inverse of :func:`pyslowfast_to_ptv_name`)."""
    _check_variant(variant)
    module, leaf = _split_leaf(name)
    if variant == "slowfast_detection":
        if module == "detection_head.proj":
            return f"head.projection.{leaf}"
        if not module.startswith("model."):
            raise ValueError(name)
        module = module[len("model.") :]
    if variant.startswith("slowfast"):
        if m := re.fullmatch(r"blocks\.0\.multipathway_blocks\.(\d)\.(conv|norm)", module):
            pathway, part = m.groups()
            return f"s1.pathway{pathway}_stem.{'bn' if part == 'norm' else 'conv'}.{leaf}"
        if m := re.fullmatch(r"blocks\.(\d)\.multipathway_fusion\.(conv_fast_to_slow|norm)", module):
            stage, part = m.groups()
            return f"s{int(stage) + 1}_fuse.{'bn' if part == 'norm' else 'conv_f2s'}.{leaf}"
        if module == "blocks.6.proj":
            return f"head.projection.{leaf}"
        block = re.fullmatch(r"blocks\.(?P<stage>\d)\.multipathway_blocks\.(?P<pathway>\d)\.res_blocks\.(?P<index>\d+)\.(?P<part>.+)", module)
    else:
        if variant == "x3d":
            stem = {f"blocks.0.{v}": k for k, v in _X3D_STEM.items()}
            head = {v: k for k, v in _X3D_HEAD.items()}
            if module in stem:
                return f"s1.pathway0_stem.{stem[module]}.{leaf}"
            if module in head:
                return f"{head[module]}.{leaf}"
        elif module in ("blocks.0.conv", "blocks.0.norm"):
            return f"s1.pathway0_stem.{'bn' if module.endswith('norm') else 'conv'}.{leaf}"
        if module == "blocks.5.proj":
            return f"head.projection.{leaf}"
        block = re.fullmatch(r"blocks\.(?P<stage>\d)\.res_blocks\.(?P<index>\d+)\.(?P<part>.+)", module)
    if block:
        stage, index, part = int(block["stage"]) + 1, block["index"], block["part"]
        pathway = block.groupdict().get("pathway") or "0"
        if part in _BLOCK_PARTS_BACK:
            return f"s{stage}.pathway{pathway}_res{index}.{_BLOCK_PARTS_BACK[part]}.{leaf}"
    raise ValueError(name)


def detect_variant(names: Iterable[str]) -> str | None:
    """Which PyTorchVideo hub family a state_dict's names belong to; None if not PyTorchVideo."""
    names = set(names)
    if any(n.startswith("detection_head.") for n in names):
        return "slowfast_detection"
    if any(n.startswith("blocks.0.multipathway_blocks.") for n in names):
        return "slowfast"
    if any(n.startswith("blocks.0.conv.conv_t.") for n in names):
        return "x3d"
    if any(n.startswith("blocks.0.conv.") for n in names) and any(".res_blocks." in n for n in names):
        return "slow"
    return None


def _identity_bn(channels: int, eps: float) -> dict[str, torch.Tensor]:
    # running_var = 1 - eps in float32 makes var + eps exactly 1, so BN(x) == x bit for bit.
    return {
        "weight": torch.ones(channels),
        "bias": torch.zeros(channels),
        "running_mean": torch.zeros(channels),
        "running_var": torch.full((channels,), 1.0 - eps),
        "num_batches_tracked": torch.tensor(0),
    }


def from_pytorchvideo(state: Mapping[str, torch.Tensor], variant: str | None = None, *, bn_eps: float = 1e-5) -> dict[str, torch.Tensor]:
    """A hub ``model_state`` renamed to PySlowFast names.

    Shortcuts without a BatchNorm (X3D stage 2) get an identity ``branch1_bn`` with
    ``bn_eps`` matching the target model's BatchNorm eps.
    """
    variant = variant or detect_variant(state)
    if variant is None:
        raise ValueError("not a PyTorchVideo hub state_dict")
    converted = {ptv_to_pyslowfast_name(n, variant): t for n, t in state.items()}
    for name, tensor in list(converted.items()):
        if name.endswith(".branch1.weight"):
            bn = name[: -len(".branch1.weight")] + ".branch1_bn"
            if f"{bn}.weight" not in converted:
                converted.update({f"{bn}.{leaf}": v for leaf, v in _identity_bn(tensor.shape[0], bn_eps).items()})
    return converted


def _is_identity_bn(state: Mapping[str, torch.Tensor], bn: str, eps: float) -> bool:
    expected = _identity_bn(state[f"{bn}.weight"].shape[0], eps)
    return all(torch.allclose(state[f"{bn}.{leaf}"].float(), expected[leaf].float(), atol=1e-6) for leaf in ("weight", "bias", "running_mean", "running_var"))


def to_pytorchvideo(state: Mapping[str, torch.Tensor], variant: str, *, bn_eps: float = 1e-5) -> dict[str, torch.Tensor]:
    """A PySlowFast state_dict renamed for a PyTorchVideo hub model.

    For X3D, ``s2.pathway0_res0.branch1_bn`` has no place in the hub model; it is
    dropped if it is an identity and refused otherwise (dropping it would change
    the outputs).
    """
    _check_variant(variant)
    state = dict(state)
    if variant == "x3d":
        bn = "s2.pathway0_res0.branch1_bn"
        if f"{bn}.weight" in state:
            if not _is_identity_bn(state, bn, bn_eps):
                raise VidactError(f"{bn} is not an identity, and PyTorchVideo's X3D has no BatchNorm there; these weights cannot be expressed as a hub X3D checkpoint")
            for leaf in _LEAVES:
                state.pop(f"{bn}.{leaf}", None)
    return {pyslowfast_to_ptv_name(n, variant): t for n, t in state.items()}
