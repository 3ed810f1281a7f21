"""Build a network from a :class:`~vidact.config.model.ModelConfig` and initialise it."""

from __future__ import annotations

import torch
from torch import nn

from vidact.config.model import ModelConfig
from vidact.errors import VidactError
from vidact.models.nonlocal_block import NonLocal
from vidact.models.resnet3d import TEMPORAL_KERNELS, ResNet3D
from vidact.models.x3d import X3D

ARCHS = (*TEMPORAL_KERNELS, "x3d")


def build_model(config: ModelConfig) -> nn.Module:
    """The network described by ``config``, initialised for training from scratch.

    Build under ``with torch.device("meta"):`` when only names and shapes matter.
    """
    if config.arch not in ARCHS:
        raise VidactError(f"model arch {config.arch!r} is not supported; use one of {', '.join(ARCHS)}")
    if config.head_act not in ("softmax", "sigmoid"):
        raise VidactError(f"model head_act {config.head_act!r} is not supported; use softmax or sigmoid")
    if config.nonlocal_.instantiation not in ("softmax", "dot_product"):
        raise VidactError(
            f"non-local instantiation {config.nonlocal_.instantiation!r} is not supported; "
            "use softmax or dot_product"
        )
    model = X3D(config) if config.arch == "x3d" else ResNet3D(config)
    init_weights(
        model,
        fc_init_std=config.fc_init_std,
        zero_init_final_bn=config.resnet.zero_init_final_bn,
        zero_init_final_conv=config.resnet.zero_init_final_conv,
    )
    return model


@torch.no_grad()
def init_weights(
    model: nn.Module, fc_init_std: float = 0.01, zero_init_final_bn: bool = False,
    zero_init_final_conv: bool = False,
) -> None:
    """PySlowFast's initialisation.

    Convs: Kaiming normal (fan_out, ReLU gain), bias 0. BatchNorm: weight 1, bias 0,
    except that ``zero_init_final_bn`` zeroes the weight of the last BN of every residual
    branch and non-local block, so each starts as an identity mapping. Linear layers:
    normal with std ``fc_init_std``, bias 0.
    """
    final_bns: set[int] = set()
    final_convs: set[int] = set()
    for module in model.modules():
        if hasattr(module, "final_layers"):
            conv_name, bn_name = module.final_layers
            final_convs.add(id(getattr(module, conv_name)))
            final_bns.add(id(getattr(module, bn_name)))
        elif isinstance(module, NonLocal):
            final_bns.add(id(module.bn))
    for module in model.modules():
        if isinstance(module, nn.Conv3d):
            if zero_init_final_conv and id(module) in final_convs:
                module.weight.zero_()
            else:
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.weight.fill_(0.0 if zero_init_final_bn and id(module) in final_bns else 1.0)
            module.bias.zero_()
        elif isinstance(module, nn.Linear):
            module.weight.normal_(0.0, fc_init_std)
            if module.bias is not None:
                module.bias.zero_()
