"""vidact's own YAML format for a :class:`ModelConfig`.

A YAML mapping with one top-level key, ``vidact_model``, holding
:func:`vidact.config.model.to_dict` of the config (sections ``resnet``, ``slowfast``,
``nonlocal_``, ``x3d``, ``detection``, ``input``). Keys left out take their defaults;
unknown keys are refused so that a typo cannot pass silently.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any, Mapping

import yaml

from vidact.config.model import ModelConfig, model_config_from_dict, to_dict
from vidact.errors import VidactError
from vidact.fileutil import atomic_open

VIDACT_MODEL_KEY = "vidact_model"


def model_config_to_yaml(config: ModelConfig) -> str:
    """YAML text of ``config`` in vidact's format."""
    return yaml.safe_dump({VIDACT_MODEL_KEY: to_dict(config)}, sort_keys=False)


def dump_model_config(config: ModelConfig, path: str | os.PathLike) -> None:
    """Write ``config`` to ``path`` in vidact's YAML format (atomically)."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(model_config_to_yaml(config))


def is_vidact_model_yaml(data: Any) -> bool:
    """Whether parsed YAML is in vidact's model format (told by content, not file name)."""
    return isinstance(data, Mapping) and VIDACT_MODEL_KEY in data


def model_config_from_yaml_data(data: Mapping, source: str) -> ModelConfig:
    """The :class:`ModelConfig` in parsed vidact YAML; ``source`` names it in errors."""
    extra = set(data) - {VIDACT_MODEL_KEY}
    if extra:
        raise VidactError(f"{source}: unexpected top-level keys {sorted(extra)} beside {VIDACT_MODEL_KEY}; remove them")
    body = data[VIDACT_MODEL_KEY]
    if body is None:
        body = {}
    if not isinstance(body, Mapping):
        raise VidactError(f"{source}: {VIDACT_MODEL_KEY} must be a mapping of model settings")
    _check_keys(ModelConfig, body, source, VIDACT_MODEL_KEY)
    return model_config_from_dict(parse_numbers(ModelConfig, body, source, VIDACT_MODEL_KEY))


def read_yaml_file(path: str | os.PathLike) -> Any:
    """A YAML config file's contents; one-line errors for a missing, unreadable or malformed file."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise VidactError(f"{path}: config file not found; check the path") from None
    except yaml.YAMLError as err:
        raise VidactError(f"{path}: not valid YAML ({' '.join(str(err).split())}); fix the syntax") from None
    except (OSError, UnicodeDecodeError) as err:
        raise VidactError(f"{path}: cannot read config file ({err})") from None


def load_vidact_model_config(path: str | os.PathLike) -> ModelConfig:
    """Read a model config written by :func:`dump_model_config`."""
    data = read_yaml_file(path)
    if not is_vidact_model_yaml(data):
        raise VidactError(f"{path}: not a vidact model config (no top-level {VIDACT_MODEL_KEY} key)")
    return model_config_from_yaml_data(data, str(path))


def _check_keys(cls: type, values: Mapping, source: str, where: str) -> None:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in values.items():
        if key not in fields:
            raise VidactError(
                f"{source}: unknown key {where}.{key}; use one of {', '.join(fields)}"
            )
        default = fields[key].default_factory if fields[key].default_factory is not dataclasses.MISSING else None
        if default is not None and dataclasses.is_dataclass(default):
            if not isinstance(value, Mapping):
                raise VidactError(f"{source}: {where}.{key} must be a mapping of settings")
            _check_keys(default, value, source, f"{where}.{key}")


def parse_number(hint: Any, value: Any, source: str, where: str) -> Any:
    """``value`` as floats where the setting holds them: YAML reads ``5e-5`` (no dot) as a string."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple and args[:1] == (float,) and isinstance(value, (list, tuple)):
        return tuple(parse_number(float, item, source, where) for item in value)
    is_float = hint is float or (origin in (typing.Union, types.UnionType) and float in args)
    if not is_float or isinstance(value, bool) or value is None:
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        raise VidactError(f"{source}: {where} must be a number, got {value!r}") from None


_KINDS = {int: "a whole number", float: "a number", bool: "true or false", str: "a string"}


def check_value(hint: Any, value: Any, source: str, where: str) -> Any:
    """``value`` checked against its setting's type hint (a scalar, or a tuple of them with a
    fixed or any length), float settings parsed; a wrong value would fail deep in the model."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is tuple or origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise VidactError(f"{source}: {where} must be a list, got {value!r}")
        if args[-1:] == (Ellipsis,):
            args = args[:1] * len(value)
        elif args and len(args) != len(value):
            raise VidactError(f"{source}: {where} must list {len(args)} values, got {value!r}")
        return tuple(check_value(arg, item, source, where) for arg, item in zip(args, value)) if args else value
    if hint is float and type(value) is not bool:
        value = parse_number(float, value, source, where)
    if type(value) is not hint:
        raise VidactError(f"{source}: {where} must be {_KINDS[hint]}, got {value!r}")
    return value


def parse_numbers(cls: type, values: Mapping, source: str, where: str) -> dict:
    """``values`` (settings of dataclass ``cls``, nested sections included) checked against
    their types (:func:`check_value`) and lower bounds (field metadata ``min``)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    parsed = {}
    for key, value in values.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            parsed[key] = parse_numbers(hint, value, source, f"{where}.{key}")
            continue
        parsed[key] = check_value(hint, value, source, f"{where}.{key}")
        minimum = fields[key].metadata.get("min")
        if minimum is not None and parsed[key] < minimum:
            raise VidactError(f"{source}: {where}.{key} must be at least {minimum}, got {parsed[key]!r}")
    return parsed
