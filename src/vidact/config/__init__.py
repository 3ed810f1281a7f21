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
from vidact.config.pyslowfast import (
    ConfigWarning,
    PySlowFastCfg,
    load_model_config,
    load_pyslowfast,
    load_pyslowfast_text,
    load_run_config,
    to_model_config,
    to_run_config,
)
from vidact.config.run import RunConfig

__all__ = [
    "ConfigWarning",
    "DetectionConfig",
    "InputSpec",
    "ModelConfig",
    "NonLocalConfig",
    "PySlowFastCfg",
    "ResNetConfig",
    "RunConfig",
    "SlowFastConfig",
    "X3DConfig",
    "load_model_config",
    "load_pyslowfast",
    "load_pyslowfast_text",
    "load_run_config",
    "to_model_config",
    "to_run_config",
]
