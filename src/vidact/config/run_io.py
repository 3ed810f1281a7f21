"""vidact's own YAML format for a :class:`~vidact.config.run.RunConfig`, and the loader the CLI uses.

A YAML mapping with one top-level key, ``vidact_run``, holding RunConfig's fields:
sections (``model``, ``train``, ``solver``, ``data``, ``data_loader``, ``test``,
``checkpoint``, ``demo``, ``ava``) are mappings of their dataclass fields, ``model`` as
in :mod:`vidact.config.io`; scalars (``output_dir``, ``seed``, ``num_gpus``, ...) are
plain values. Left-out keys take their defaults; unknown keys are refused::

    vidact_run:
      model: {arch: slow, num_classes: 4, input: {num_frames: 8, train_crop_size: 64}}
      data: {data_dir: synthetic/}
      solver: {base_lr: 0.1, max_epoch: 10, lr_policy: cosine}
      output_dir: runs/synthetic

:func:`load_run_config` tells the two formats apart by content: a top-level
``vidact_run`` key is this format, anything else is a PySlowFast config. ``--opts``
overrides are ``KEY VALUE`` pairs in either case: PySlowFast keys (``SOLVER.BASE_LR``)
for PySlowFast files, dotted field names (``solver.base_lr``, ``model.input.num_frames``)
for vidact files, values parsed as YAML.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import typing
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from vidact.config.io import parse_number, parse_numbers, read_yaml_file
from vidact.config.model import ModelConfig, model_config_from_dict, to_dict
from vidact.config.pyslowfast import ConfigWarning
from vidact.config.run import RunConfig
from vidact.errors import VidactError
from vidact.fileutil import atomic_open

__all__ = [
    "VIDACT_RUN_KEY",
    "dump_run_config",
    "is_vidact_run_yaml",
    "load_run_config",
    "run_config_from_dict",
    "run_config_to_yaml",
]

VIDACT_RUN_KEY = "vidact_run"


def run_config_to_yaml(run: RunConfig) -> str:
    """YAML text of ``run`` in vidact's format (``source`` is not written)."""
    data = to_dict(run)
    data.pop("source")
    return yaml.safe_dump({VIDACT_RUN_KEY: data}, sort_keys=False)


def dump_run_config(run: RunConfig, path: str | os.PathLike) -> None:
    """Write ``run`` to ``path`` in vidact's run YAML format (atomically)."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(run_config_to_yaml(run))


def is_vidact_run_yaml(data: Any) -> bool:
    """Whether parsed YAML is in vidact's run format (told by content, not file name)."""
    return isinstance(data, Mapping) and VIDACT_RUN_KEY in data


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


# Settings that earlier vidact versions wrote but that had no effect: ignored with a warning,
# so that their run files still load.
_RETIRED_KEYS = {
    f"{VIDACT_RUN_KEY}.demo": {"display_width", "display_height", "colormap", "num_vis_instances", "thread_enable",
                               "num_clips_skip", "input_format", "gt_boxes", "slowmo"},
    VIDACT_RUN_KEY: {"shard_id"},
}


def _without_retired(values: Mapping, source: str, where: str) -> dict:
    retired = sorted(set(values) & _RETIRED_KEYS.get(where, set()))
    if retired:
        warnings.warn(f"{source}: {where}: ignored {', '.join(retired)} (no longer settings; they had no effect)",
                      ConfigWarning, stacklevel=3)
    return {key: value for key, value in values.items() if key not in retired}


def _section(cls: type, values: Any, source: str, where: str) -> Any:
    if not isinstance(values, Mapping):
        raise VidactError(f"{source}: {where} must be a mapping of settings, got {values!r}")
    values = _without_retired(values, source, where)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in names:
            raise VidactError(f"{source}: unknown key {where}.{key}; use one of {', '.join(sorted(names))}")
    hints = typing.get_type_hints(cls)
    return cls(**{key: parse_number(hints[key], _tuples(value), source, f"{where}.{key}") for key, value in values.items()})


def run_config_from_dict(data: Mapping, source: str) -> RunConfig:
    """The RunConfig of the mapping under ``vidact_run``; ``source`` names it in errors."""
    if not isinstance(data, Mapping):
        raise VidactError(f"{source}: {VIDACT_RUN_KEY} must be a mapping of run settings")
    hints = typing.get_type_hints(RunConfig)
    kwargs: dict[str, Any] = {}
    for key, value in _without_retired(data, source, VIDACT_RUN_KEY).items():
        if key not in hints or key == "source":
            names = sorted(set(hints) - {"source"})
            raise VidactError(f"{source}: unknown key {VIDACT_RUN_KEY}.{key}; use one of {', '.join(names)}")
        cls = hints[key]
        if cls is ModelConfig:
            from vidact.config.io import _check_keys

            if not isinstance(value, Mapping):
                raise VidactError(f"{source}: {VIDACT_RUN_KEY}.model must be a mapping of model settings")
            _check_keys(ModelConfig, value, source, f"{VIDACT_RUN_KEY}.model")
            kwargs[key] = model_config_from_dict(parse_numbers(ModelConfig, value, source, f"{VIDACT_RUN_KEY}.model"))
        elif dataclasses.is_dataclass(cls):
            kwargs[key] = _section(cls, value, source, f"{VIDACT_RUN_KEY}.{key}")
        else:
            kwargs[key] = _tuples(value)
    try:
        return RunConfig(**kwargs, source=source)
    except TypeError as err:
        raise VidactError(f"{source}: invalid run settings ({err})") from None


def _apply_opts(data: dict, opts: Sequence[str], source: str) -> None:
    if len(opts) % 2:
        raise VidactError(f"--opts expects KEY VALUE pairs, got {len(opts)} items; give a value for every key (e.g. solver.max_epoch 5)")
    for key, text in zip(opts[::2], opts[1::2]):
        *sections, name = str(key).split(".")
        node = data
        for section in sections:
            node = node.setdefault(section, {})
            if not isinstance(node, dict):
                raise VidactError(f"--opts: {key} goes inside a value, not a section; check the key")
        try:
            node[name] = yaml.safe_load(str(text)) if isinstance(text, str) else text
        except yaml.YAMLError:
            node[name] = text


def load_run_config(path: str | os.PathLike, opts: Sequence[str] | None = None) -> RunConfig:
    """The RunConfig of a vidact run YAML or a PySlowFast YAML file, with ``--opts`` overrides."""
    path = Path(path)
    data = read_yaml_file(path)
    if not is_vidact_run_yaml(data):
        from vidact.config.pyslowfast import load_run_config as load_pyslowfast_run_config

        return load_pyslowfast_run_config(path, opts)
    extra = set(data) - {VIDACT_RUN_KEY}
    if extra:
        raise VidactError(f"{path}: unexpected top-level keys {sorted(extra)} beside {VIDACT_RUN_KEY}; remove them")
    body = data[VIDACT_RUN_KEY] or {}
    if opts:
        body = copy.deepcopy(body)  # opts edit it in place
        _apply_opts(body, list(opts), str(path))
    return run_config_from_dict(body, str(path))

