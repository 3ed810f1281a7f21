"""Typed configuration; ``pyslowfast`` is the adapter for PySlowFast YAML files."""

from vidact.config.model import (
    DetectionConfig,
    InputSpec,
    ModelConfig,
    NonLocalConfig,
    ResNetConfig,
    SlowFastConfig,
    X3DConfig,
)

__all__ = [
    "DetectionConfig",
    "InputSpec",
    "ModelConfig",
    "NonLocalConfig",
    "ResNetConfig",
    "SlowFastConfig",
    "X3DConfig",
]
