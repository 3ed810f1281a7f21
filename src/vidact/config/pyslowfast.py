"""Reading PySlowFast YAML configs as they are, at the edge of vidact.

PySlowFast keeps its configuration in a yacs/fvcore ``CfgNode``: a fixed tree of keys with
defaults (``vidact.config.pyslowfast_defaults``, generated from the reference dump), that a
YAML file (with optional ``_BASE_`` files) and a ``--opts KEY VALUE ...`` list override. This
module reproduces those rules, then maps the keys onto vidact's typed dataclasses
(:class:`~vidact.config.model.ModelConfig`, :class:`~vidact.config.run.RunConfig`). Nothing
past this module sees a PySlowFast key name.

Where vidact is more lenient than the reference it says so with a :class:`ConfigWarning`:
an int where a float is expected is converted, and a few misspelled keys that upstream's own
demo files use are read under their real name (:data:`KEY_ALIASES`).
"""

from __future__ import annotations

import ast
import copy
import difflib
import functools
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from vidact.config.io import is_vidact_model_yaml, model_config_from_yaml_data
from vidact.config.model import (
    DetectionConfig,
    InputSpec,
    ModelConfig,
    NonLocalConfig,
    ResNetConfig,
    SlowFastConfig,
    X3DConfig,
)
from vidact.config.pyslowfast_defaults import DEFAULTS
from vidact.config.run import (
    AvaConfig,
    CheckpointConfig,
    DataConfig,
    DataLoaderConfig,
    DemoConfig,
    RunConfig,
    SolverConfig,
    TestConfig,
    TrainConfig,
)
from vidact.errors import VidactError

__all__ = [
    "ConfigWarning",
    "KEY_ALIASES",
    "PySlowFastCfg",
    "load_model_config",
    "load_pyslowfast",
    "load_pyslowfast_text",
    "load_run_config",
    "to_model_config",
    "to_run_config",
    "used_keys",
]


class ConfigWarning(UserWarning):
    """vidact accepted a config the reference would treat differently, or ignores a setting."""


# Keys the reference rejects but upstream's own files use -> the key they mean.
# upstream demo/AVA/SLOWFAST_32x2_R101_50_50.yaml sets TENSORBOARD.MODEL_VIS.TOPK.
KEY_ALIASES = {"TENSORBOARD.MODEL_VIS.TOPK": "TENSORBOARD.MODEL_VIS.TOPK_PREDS"}

# Model families PySlowFast selects with MODEL.MODEL_NAME -> the MODEL.ARCH values vidact
# builds for each.
MODEL_FAMILIES = {
    "SlowFast": ("slowfast",),
    "ResNet": ("c2d", "i3d", "slow"),
    "X3D": ("x3d",),
    # The zoo's C2D checkpoint has no temporal pool after res2. The reference
    # registers no such model (its config fails to build); vidact builds it.
    "ResNet_nopool": ("c2d", "i3d"),
}

_BASE_KEY = "_BASE_"
_OPTS_SOURCE = "--opts"


@dataclass(frozen=True)
class PySlowFastCfg:
    """A complete, validated PySlowFast configuration: every key of the defaults, merged.

    ``values`` is the nested mapping (section -> key -> value, lists as YAML gives them);
    ``source`` names where it came from (a file path, or e.g. a checkpoint), for messages.
    Treat it as read-only; :meth:`to_dict` gives a copy to modify.
    """

    values: Mapping[str, Any]
    source: str

    def get(self, key: str) -> Any:
        """The value of a dotted key such as ``"MODEL.ARCH"``."""
        node: Any = self.values
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                raise KeyError(key)
            node = node[part]
        return node

    def to_dict(self) -> dict:
        return copy.deepcopy(dict(self.values))

    def dump(self) -> str:
        """YAML text of the full configuration, like PySlowFast's ``cfg.dump()``."""
        return yaml.safe_dump(self.to_dict(), sort_keys=True)


# ---------------------------------------------------------------------------------------
# Loading and merging (the yacs/fvcore rules)
# ---------------------------------------------------------------------------------------


def load_pyslowfast(path: str | os.PathLike, opts: Sequence[str] | None = None) -> PySlowFastCfg:
    """Load a PySlowFast YAML file (following ``_BASE_``) and apply ``--opts`` overrides.

    Raises :class:`VidactError` for a missing or malformed file, an unknown key or a value of
    the wrong type; warns (:class:`ConfigWarning`) about lenient conversions and about keys
    vidact ignores that the file sets away from their defaults.
    """
    path = Path(path)
    values = copy.deepcopy(DEFAULTS)
    data: dict = {}
    sources: dict[str, str] = {}
    _load_with_bases(path, data, sources, chain=())
    _merge_into(values, data, str(path), prefix="", sources=sources)
    return _finish(values, str(path), opts)


def load_pyslowfast_text(
    text: str, source_name: str, opts: Sequence[str] | None = None, *, strict: bool = True
) -> PySlowFastCfg:
    """Load PySlowFast YAML text, e.g. the ``cfg`` string stored in a ``.pyth`` checkpoint.

    ``source_name`` names the text in messages (``"model.pyth (stored cfg)"``). Same rules
    as :func:`load_pyslowfast`; a ``_BASE_`` key is refused since there is no file to be
    relative to. ``strict=False`` skips unknown keys with one warning listing them instead
    of refusing the text: a checkpoint saved by another PySlowFast version may hold keys
    these defaults lack, which cannot matter to the model vidact builds from the known ones.
    """
    values = copy.deepcopy(DEFAULTS)
    data = _parse_yaml(text, source_name)
    if _BASE_KEY in data:
        raise VidactError(f"{source_name}: _BASE_ is only allowed in a config file; inline the base config")
    unknown: list[str] | None = None if strict else []
    _merge_into(values, data, source_name, prefix="", unknown=unknown)
    if unknown:
        warnings.warn(
            f"{source_name}: skipped keys this PySlowFast version does not know: {', '.join(unknown)}",
            ConfigWarning, stacklevel=2,
        )
    return _finish(values, source_name, opts)


def _finish(values: dict, source: str, opts: Sequence[str] | None) -> PySlowFastCfg:
    if opts:
        _merge_opts(values, list(opts))
    cfg = PySlowFastCfg(values, source)
    _warn_unused(cfg)
    return cfg


def _parse_yaml(text: str, source: str) -> dict:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        detail = " ".join(str(e).split())
        raise VidactError(f"{source}: not valid YAML ({detail}); fix the syntax") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise VidactError(f"{source}: a PySlowFast config must be a YAML mapping of sections, got {type(data).__name__}")
    return data


def _read_yaml_file(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise VidactError(f"{path}: config file not found; check the path") from None
    except UnicodeDecodeError as e:
        if b"\0" in path.read_bytes()[:4096]:
            raise VidactError(f"{path}: not a YAML config (binary, a checkpoint?); pass the .yaml config file "
                              "(a file from vidact convert stores its config: give it as the model, without a config)") from None
        raise VidactError(f"{path}: a config must be UTF-8 text (byte {e.start} is not); save it as UTF-8") from None
    except OSError as e:
        raise VidactError(f"{path}: cannot read config file ({e})") from None
    return _parse_yaml(text, str(path))


def _load_with_bases(path: Path, data: dict, sources: dict[str, str], chain: tuple[Path, ...]) -> None:
    """fvcore's ``load_yaml_with_base``: merge ``path`` into the raw mapping ``data``, after
    its ``_BASE_`` file (or list of files, in order, each with its own bases).

    Files merge as plain YAML and types are checked once, on the result, as in fvcore: a base
    may hold a value its child replaces. ``sources`` records the file that set each key.
    """
    resolved = path.resolve()
    if resolved in chain:
        loop = " -> ".join(str(p) for p in (*chain, resolved))
        raise VidactError(f"{path}: _BASE_ files include each other ({loop}); break the loop")
    file_data = _read_yaml_file(path)
    bases = file_data.pop(_BASE_KEY, None)
    if bases is None:
        bases = []
    elif isinstance(bases, str):
        bases = [bases]
    elif not isinstance(bases, list) or not all(isinstance(base, str) for base in bases):
        raise VidactError(f"{path}: _BASE_ must be a file path or a list of them, got {bases!r}; fix it")
    for base in bases:
        base_path = Path(os.path.expanduser(base))
        relative = not base_path.is_absolute()
        if relative:
            base_path = path.parent / base_path
        if not base_path.exists():
            hint = "_BASE_ paths are relative to the including file" if relative else "check the path"
            raise VidactError(f"{base_path} (the _BASE_ of {path}) not found; {hint}")
        _load_with_bases(base_path, data, sources, (*chain, resolved))
    _merge_raw(file_data, data, str(path), sources, prefix="")


def _merge_raw(new: Mapping, data: dict, source: str, sources: dict[str, str], prefix: str) -> None:
    """Merge one file's YAML mapping over ``data``: sections key by key, values replaced."""
    for key, value in new.items():
        full_key = f"{prefix}{key}"
        sources[full_key] = source
        if isinstance(value, dict):
            section = data.setdefault(key, {})
            if not isinstance(section, dict):
                raise VidactError(
                    f"{source}: {full_key} is a section here but a value in a _BASE_ file; fix the base file"
                )
            _merge_raw(value, section, source, sources, prefix=f"{full_key}.")
        else:
            data[key] = value


def _merge_into(
    values: dict, data: Mapping, source: str, prefix: str, root: dict | None = None,
    unknown: list[str] | None = None, sources: Mapping[str, str] | None = None,
) -> None:
    """Merge a YAML mapping into the (sub)tree ``values`` of ``root``, checking keys and types.

    Unknown keys are an error, or collected into ``unknown`` when a list is given. Messages
    name ``source``, or the file ``sources`` gives for a key.
    """
    root = values if root is None else root
    sources = sources or {}
    for key, value in data.items():
        full_key = f"{prefix}{key}"
        where = sources.get(full_key, source)
        if full_key in KEY_ALIASES:
            target = KEY_ALIASES[full_key]
            warnings.warn(
                f"{where}: PySlowFast has no key {full_key}; read it as {target} "
                f"(the reference rejects this file; rename the key)",
                ConfigWarning, stacklevel=2,
            )
            _set_leaf(root, target, value, where)
            continue
        if not isinstance(key, str) or key not in values:
            if unknown is not None:
                unknown.append(full_key)
                continue
            raise VidactError(f"{where}: unknown key {full_key}; {_unknown_key_hint(full_key)}")
        if isinstance(values[key], dict):
            if not isinstance(value, dict):
                raise VidactError(f"{where}: {full_key} is a section of keys, not a value; indent its keys under it")
            _merge_into(values[key], value, where, f"{full_key}.", root, unknown, sources)
        else:
            values[key] = _coerce(value, _default(full_key), full_key, where)


def _merge_opts(values: dict, opts: list) -> None:
    """PySlowFast's ``merge_from_list``: KEY VALUE pairs with dotted keys."""
    if len(opts) % 2:
        raise VidactError(
            f"{_OPTS_SOURCE}: expects KEY VALUE pairs, got {len(opts)} items; "
            f"give a value for every key (e.g. MODEL.NUM_CLASSES 80)"
        )
    for key, value in zip(opts[::2], opts[1::2]):
        key = str(key)
        if key in KEY_ALIASES:
            warnings.warn(
                f"{_OPTS_SOURCE}: PySlowFast has no key {key}; read it as {KEY_ALIASES[key]}",
                ConfigWarning, stacklevel=3,
            )
            key = KEY_ALIASES[key]
        # yacs literal-evals every --opts value, for str keys too: OUTPUT_DIR None is None,
        # MODEL.ARCH '"slow"' is slow, and OUTPUT_DIR 123 is an int (refused below).
        _set_leaf(values, key, _literal(value), _OPTS_SOURCE, evaluated=True)


def _literal(value: Any) -> Any:
    """yacs's decoding of a string: the Python literal it spells, else the text itself."""
    if not isinstance(value, str):
        return value
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return value


def _set_leaf(values: dict, key: str, value: Any, source: str, evaluated: bool = False) -> None:
    *sections, name = key.split(".")
    node = values
    for section in sections:
        node = node.get(section) if isinstance(node, dict) else None
    if not isinstance(node, dict) or name not in node:
        raise VidactError(f"{source}: unknown key {key}; {_unknown_key_hint(key)}")
    if isinstance(node[name], dict):
        raise VidactError(f"{source}: {key} is a section of keys, not a value; set one of its keys")
    node[name] = _coerce(value, _default(key), key, source, evaluated)


def _coerce(value: Any, default: Any, key: str, source: str, evaluated: bool = False) -> Any:
    """yacs's type rule: the value must have the default's type, with a few conversions.

    ``evaluated``: the value already went through :func:`_literal` (``--opts``).
    """
    # YAML leaves some numbers as strings (1e-4 has no dot); yacs literal-evals them. A
    # file's text for a str key is kept as YAML gave it.
    if not evaluated and not isinstance(default, str):
        value = _literal(value)
    if isinstance(value, dict):
        raise VidactError(f"{source}: {key} is a value, not a section of keys; give it a single value")
    if default is None or value is None:
        return value
    if type(value) is type(default):
        return value
    if isinstance(value, (list, tuple)) and isinstance(default, (list, tuple)):
        return list(value)
    if type(value) is int and type(default) is float:
        warnings.warn(
            f"{source}: {key} expects a float, converted int {value} to {float(value)} "
            f"(the reference rejects an int here; write {float(value)})",
            ConfigWarning, stacklevel=4,
        )
        return float(value)
    raise VidactError(
        f"{source}: {key} must be {_type_name(default)} like its default {default!r}, "
        f"got {_type_name(value)} {value!r}; fix the value"
    )


def _type_name(value: Any) -> str:
    return {bool: "a bool", int: "an int", float: "a float", str: "a string",
            list: "a list", tuple: "a list", dict: "a section"}.get(type(value), type(value).__name__)


def _default(key: str) -> Any:
    node: Any = DEFAULTS
    for part in key.split("."):
        node = node[part]
    return node


def _leaf_keys(tree: Mapping, prefix: str = "") -> list[str]:
    keys = []
    for key, value in tree.items():
        if isinstance(value, dict):
            keys.extend(_leaf_keys(value, f"{prefix}{key}."))
        else:
            keys.append(f"{prefix}{key}")
    return keys


def _unknown_key_hint(key: str) -> str:
    close = difflib.get_close_matches(key, _leaf_keys(DEFAULTS), n=1, cutoff=0.8)
    if close:
        return f"did you mean {close[0]}? (PySlowFast would reject the file too)"
    return "remove it or check its spelling (PySlowFast would reject the file too)"


# ---------------------------------------------------------------------------------------
# Which keys vidact uses
# ---------------------------------------------------------------------------------------


def _freeze(value: Any) -> Any:
    """Lists (at any depth) -> tuples, for the frozen dataclasses."""
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


class _Reader:
    """Reads config values for the mapping and records which keys were read.

    The mapping functions below read every key they may need up front, unconditionally, so
    running them once on the defaults lists every key vidact uses (:func:`used_keys`).
    """

    def __init__(self, cfg: PySlowFastCfg) -> None:
        self.cfg = cfg
        self.read: set[str] = set()

    def __call__(self, key: str, *, none_ok: bool = False) -> Any:
        self.read.add(key)
        value, default = self.cfg.get(key), _default(key)
        # yacs lets None replace any value, but nothing vidact builds can take it.
        if value is None and default is not None and not none_ok:
            raise self.error(f"{key} is None; vidact needs {_type_name(default)} here; set one")
        return _freeze(value)

    def numbers(self, key: str, *, whole: bool = False) -> tuple:
        """A list key vidact computes with. PyYAML reads 1e-1 (no dot) as a string in a list
        too, where yacs keeps it and PySlowFast fails on it mid-training: it is read as the
        number it spells, as :func:`_coerce` reads a single value."""
        values = tuple(_literal(value) if isinstance(value, str) else value for value in self(key))
        if not all(type(value) is int or (type(value) is float and not whole) for value in values):
            raise self.error(f"{key} {list(self.cfg.get(key))} must hold {'whole ' if whole else ''}numbers; fix it")
        return values

    def optional_number(self, key: str) -> int | float | None:
        """A key whose default None leaves a feature off, and that vidact uses as a number when set."""
        value = self(key)
        if value is not None and type(value) not in (int, float):
            raise self.error(f"{key} {self.cfg.get(key)!r} must be a number, or None to leave it off; fix it")
        return value

    def path(self, key: str) -> str | None:
        """A path key; PySlowFast's empty string (or a bare YAML key) means none."""
        value = self(key, none_ok=True)
        return value if value else None

    def dataset(self, key: str) -> str:
        """A dataset name; PySlowFast's registry capitalises it, so any case names the same one."""
        return self(key).lower()

    def error(self, message: str) -> VidactError:
        return VidactError(f"{self.cfg.source}: {message}")


# Keys that tune only how PySlowFast's demo runs (its worker processes and threads), with no
# effect on its results; vidact has no such knobs, and a warning would leave nothing to do.
_RUNTIME_ONLY_KEYS = frozenset({"DEMO.NUM_VIS_INSTANCES", "DEMO.THREAD_ENABLE"})


@functools.lru_cache(maxsize=1)
def used_keys() -> frozenset[str]:
    """Dotted keys vidact reads (found by mapping the defaults with a recording reader), and
    the runtime-only keys that need no counterpart."""
    reader = _Reader(PySlowFastCfg(DEFAULTS, "PySlowFast defaults"))
    _run_config(reader)
    return frozenset(reader.read) | _RUNTIME_ONLY_KEYS


def _warn_unused(cfg: PySlowFastCfg) -> None:
    used = used_keys()
    for key in _leaf_keys(cfg.values):
        if key in used:
            continue
        if _freeze(cfg.get(key)) != _freeze(_default(key)):
            warnings.warn(
                f"{cfg.source}: vidact ignores {key} (set to {cfg.get(key)!r}, "
                f"default {_default(key)!r}); it has no effect",
                ConfigWarning, stacklevel=4,
            )


# ---------------------------------------------------------------------------------------
# Mapping to typed configs
# ---------------------------------------------------------------------------------------


def to_model_config(cfg: PySlowFastCfg) -> ModelConfig:
    """The model (and its input) a PySlowFast config describes."""
    return _model_config(_Reader(cfg))


def to_run_config(cfg: PySlowFastCfg) -> RunConfig:
    """Everything a run needs, model included, from a PySlowFast config."""
    return _run_config(_Reader(cfg))


def _model_config(r: _Reader) -> ModelConfig:
    arch = r("MODEL.ARCH")
    model_name = r("MODEL.MODEL_NAME")
    if model_name not in MODEL_FAMILIES:
        raise r.error(
            f"MODEL.MODEL_NAME {model_name} is not a model vidact builds; "
            f"use one of {', '.join(MODEL_FAMILIES)}"
        )
    if arch not in MODEL_FAMILIES[model_name]:
        raise r.error(
            f"MODEL.ARCH {arch} does not fit MODEL.MODEL_NAME {model_name}; "
            f"use one of {', '.join(MODEL_FAMILIES[model_name])}"
        )
    trans_func = r("RESNET.TRANS_FUNC")
    if arch == "x3d" and trans_func != "x3d_transform":
        raise r.error(
            f"RESNET.TRANS_FUNC {trans_func} is not built for X3D (vidact's X3D has x3d_transform blocks "
            f"only); set RESNET.TRANS_FUNC x3d_transform"
        )
    # PySlowFast's assert_and_infer_cfg checks these for every model.
    num_groups, width_per_group = r("RESNET.NUM_GROUPS"), r("RESNET.WIDTH_PER_GROUP")
    for key, value in (("RESNET.NUM_GROUPS", num_groups), ("RESNET.WIDTH_PER_GROUP", width_per_group)):
        if value <= 0:
            raise r.error(f"{key} {value} must be positive; set it to 1 or more")
    if width_per_group % num_groups:
        raise r.error(
            f"RESNET.WIDTH_PER_GROUP {width_per_group} must be divisible by RESNET.NUM_GROUPS {num_groups}; "
            f"change one of them"
        )
    if model_name == "ResNet_nopool":
        arch = f"{arch}_nopool"
    num_pathways = 2 if model_name == "SlowFast" else 1
    alpha = r("SLOWFAST.ALPHA")
    head_act = r("MODEL.HEAD_ACT")
    if head_act not in ("softmax", "sigmoid"):
        raise r.error(f"MODEL.HEAD_ACT {head_act} is not supported; use softmax or sigmoid")
    input_channels = r("DATA.INPUT_CHANNEL_NUM")
    if len(input_channels) != num_pathways:
        raise r.error(
            f"DATA.INPUT_CHANNEL_NUM {list(input_channels)} has {len(input_channels)} entries "
            f"but a {model_name} model has {num_pathways} pathway(s); give one per pathway"
        )
    if not _whole_numbers(input_channels):
        raise r.error(f"DATA.INPUT_CHANNEL_NUM {r.cfg.get('DATA.INPUT_CHANNEL_NUM')} must hold whole numbers; fix it")
    resnet = ResNetConfig(
        depth=r("RESNET.DEPTH"),
        num_groups=num_groups,
        width_per_group=width_per_group,
        stride_1x1=r("RESNET.STRIDE_1X1"),
        trans_func=trans_func,
        inplace_relu=r("RESNET.INPLACE_RELU"),
        zero_init_final_bn=r("RESNET.ZERO_INIT_FINAL_BN"),
        zero_init_final_conv=r("RESNET.ZERO_INIT_FINAL_CONV"),
        num_block_temp_kernel=_per_stage(r, "RESNET.NUM_BLOCK_TEMP_KERNEL"),
        spatial_strides=_per_stage(r, "RESNET.SPATIAL_STRIDES"),
        spatial_dilations=_per_stage(r, "RESNET.SPATIAL_DILATIONS"),
    )
    nonlocal_ = NonLocalConfig(
        location=_per_stage(r, "NONLOCAL.LOCATION", lists=True),
        group=_per_stage(r, "NONLOCAL.GROUP"),
        instantiation=r("NONLOCAL.INSTANTIATION"),
        pool=_per_stage(r, "NONLOCAL.POOL", lists=True),
    )
    return ModelConfig(
        arch=arch,
        num_classes=r("MODEL.NUM_CLASSES"),
        dropout_rate=r("MODEL.DROPOUT_RATE"),
        head_act=head_act,
        fc_init_std=r("MODEL.FC_INIT_STD"),
        input_channels=input_channels,
        # PySlowFast has no BN.EPS / BN.MOMENTUM keys; its layers use eps 1e-5, momentum 0.1,
        # the ModelConfig defaults.
        resnet=resnet,
        slowfast=SlowFastConfig(
            alpha=alpha,
            beta_inv=r("SLOWFAST.BETA_INV"),
            fusion_conv_channel_ratio=r("SLOWFAST.FUSION_CONV_CHANNEL_RATIO"),
            fusion_kernel_size=r("SLOWFAST.FUSION_KERNEL_SZ"),
        ),
        nonlocal_=nonlocal_,
        x3d=X3DConfig(
            width_factor=r("X3D.WIDTH_FACTOR"),
            depth_factor=r("X3D.DEPTH_FACTOR"),
            bottleneck_factor=r("X3D.BOTTLENECK_FACTOR"),
            dim_c1=r("X3D.DIM_C1"),
            dim_c5=r("X3D.DIM_C5"),
            scale_res2=r("X3D.SCALE_RES2"),
            bn_lin5=r("X3D.BN_LIN5"),
            channelwise_3x3x3=r("X3D.CHANNELWISE_3x3x3"),
        ),
        detection=DetectionConfig(
            enable=r("DETECTION.ENABLE"),
            aligned=r("DETECTION.ALIGNED"),
            roi_resolution=r("DETECTION.ROI_XFORM_RESOLUTION"),
            spatial_scale_factor=r("DETECTION.SPATIAL_SCALE_FACTOR"),
        ),
        input=_input_spec(r, num_pathways=num_pathways, alpha=alpha if num_pathways > 1 else 1),
    )


def _per_stage(r: _Reader, key: str, lists: bool = False) -> tuple:
    """A per-stage key; each pathway's entry is a whole number, or with ``lists`` a list of them."""
    value = r(key)
    if len(value) != 4 or not all(isinstance(stage, tuple) for stage in value):
        raise r.error(f"{key} must list 4 stages (res2..res5), each a list with one entry per pathway")
    entries = [entry for stage in value for entry in stage]
    if not all(isinstance(entry, tuple) == lists and _whole_numbers(entry) for entry in entries):
        kind = "a list of whole numbers" if lists else "a whole number"
        raise r.error(f"{key} {r.cfg.get(key)}: each pathway's entry must be {kind}; fix it")
    return value


def _whole_numbers(value: Any) -> bool:
    """Every entry of a (nested) tuple is an int; bool is no number here."""
    if isinstance(value, tuple):
        return all(_whole_numbers(item) for item in value)
    return type(value) is int


def _input_spec(r: _Reader, num_pathways: int, alpha: int) -> InputSpec:
    # channel_order is the order of the channels in the tensor the network receives, and
    # InputSpec.mean/std are indexed in that order. PySlowFast decodes Kinetics videos to
    # RGB, but its AVA dataset reads frames with cv2 (BGR) and normalises them there, then
    # flips them to RGB unless AVA.BGR; DATA.REVERSE_INPUT_CHANNEL flips the normalised
    # tensor once more for every dataset. The weights learnt whatever order their training
    # data pipeline produced, so that pipeline (AVA for detection models) decides.
    mean, std = r.numbers("DATA.MEAN"), r.numbers("DATA.STD")
    reverse = r("DATA.REVERSE_INPUT_CHANNEL")
    ava_bgr = r("AVA.BGR")
    ava = r.dataset("TRAIN.DATASET") == "ava" or r("DETECTION.ENABLE")
    decoded = "BGR" if ava else "RGB"  # channel order when mean/std are applied
    flips = int(ava and not ava_bgr) + int(reverse)
    order = decoded if flips % 2 == 0 else decoded[::-1]
    if order != decoded:
        mean, std = mean[::-1], std[::-1]
    scales = r("DATA.TRAIN_JITTER_SCALES")
    if len(scales) != 2:
        raise r.error(f"DATA.TRAIN_JITTER_SCALES must be [min, max] short sides, got {list(scales)}")
    if len(mean) != 3 or len(std) != 3:
        raise r.error("DATA.MEAN and DATA.STD must have 3 entries (one per colour channel)")
    if not _whole_numbers(scales):
        raise r.error(f"DATA.TRAIN_JITTER_SCALES {list(scales)} must hold whole numbers (short sides); fix it")
    for key in ("DATA.NUM_FRAMES", "DATA.SAMPLING_RATE", "DATA.TEST_CROP_SIZE", "DATA.TRAIN_CROP_SIZE"):
        _require_positive(r, key)
    return InputSpec(
        num_frames=r("DATA.NUM_FRAMES"),
        sampling_rate=r("DATA.SAMPLING_RATE"),
        target_fps=r("DATA.TARGET_FPS"),
        test_crop_size=r("DATA.TEST_CROP_SIZE"),
        train_crop_size=r("DATA.TRAIN_CROP_SIZE"),
        train_jitter_scales=scales,
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        channel_order=order,
        alpha=alpha,
        num_pathways=num_pathways,
    )


def _run_config(r: _Reader) -> RunConfig:
    path = r.path
    _check_distribution(r)
    return RunConfig(
        model=_model_config(r),
        demo=DemoConfig(
            enable=r("DEMO.ENABLE"),
            input_video=path("DEMO.INPUT_VIDEO"),
            webcam=r("DEMO.WEBCAM"),
            output_file=path("DEMO.OUTPUT_FILE"),
            output_fps=r("DEMO.OUTPUT_FPS"),
            label_file=path("DEMO.LABEL_FILE_PATH"),
            vis_mode=_choice(r, "DEMO.VIS_MODE", ("thres", "top-k")),
            common_class_threshold=r("DEMO.COMMON_CLASS_THRES"),
            uncommon_class_threshold=r("DEMO.UNCOMMON_CLASS_THRES"),
            common_class_names=r("DEMO.COMMON_CLASS_NAMES"),
            top_k=r("TENSORBOARD.MODEL_VIS.TOPK_PREDS"),
            buffer_size=r("DEMO.BUFFER_SIZE"),
            clip_vis_size=r("DEMO.CLIP_VIS_SIZE"),
            detector_config=r("DEMO.DETECTRON2_CFG"),
            detector_weights=r("DEMO.DETECTRON2_WEIGHTS"),
            detector_threshold=r("DEMO.DETECTRON2_THRESH"),
            preds_boxes=path("DEMO.PREDS_BOXES"),
            starting_second=r("DEMO.STARTING_SECOND"),
            fps=r("DEMO.FPS"),
        ),
        checkpoint=CheckpointConfig(
            train_path=path("TRAIN.CHECKPOINT_FILE_PATH"),
            train_type=_choice(r, "TRAIN.CHECKPOINT_TYPE", ("pytorch", "caffe2")),
            test_path=path("TEST.CHECKPOINT_FILE_PATH"),
            test_type=_choice(r, "TEST.CHECKPOINT_TYPE", ("pytorch", "caffe2")),
            auto_resume=r("TRAIN.AUTO_RESUME"),
            period=r("TRAIN.CHECKPOINT_PERIOD"),
            inflate=r("TRAIN.CHECKPOINT_INFLATE"),
            epoch_reset=r("TRAIN.CHECKPOINT_EPOCH_RESET"),
            clear_name_patterns=r("TRAIN.CHECKPOINT_CLEAR_NAME_PATTERN"),
        ),
        train=TrainConfig(
            enable=r("TRAIN.ENABLE"),
            dataset=r.dataset("TRAIN.DATASET"),
            batch_size=r("TRAIN.BATCH_SIZE"),
            eval_period=r("TRAIN.EVAL_PERIOD"),
            mixed_precision=r("TRAIN.MIXED_PRECISION"),
            loss=r("MODEL.LOSS_FUNC"),
            precise_bn=r("BN.USE_PRECISE_STATS"),
            precise_bn_batches=r("BN.NUM_BATCHES_PRECISE"),
        ),
        solver=SolverConfig(
            base_lr=r("SOLVER.BASE_LR"),
            scale_lr_by_shards=r("SOLVER.BASE_LR_SCALE_NUM_SHARDS"),
            lr_policy=r("SOLVER.LR_POLICY"),
            max_epoch=r("SOLVER.MAX_EPOCH"),
            cosine_end_lr=r("SOLVER.COSINE_END_LR"),
            cosine_after_warmup=r("SOLVER.COSINE_AFTER_WARMUP"),
            steps=r.numbers("SOLVER.STEPS", whole=True),
            lrs=r.numbers("SOLVER.LRS"),
            warmup_epochs=r("SOLVER.WARMUP_EPOCHS"),
            warmup_start_lr=r("SOLVER.WARMUP_START_LR"),
            optimizer=r("SOLVER.OPTIMIZING_METHOD"),
            momentum=r("SOLVER.MOMENTUM"),
            nesterov=r("SOLVER.NESTEROV"),
            dampening=r("SOLVER.DAMPENING"),
            betas=r.numbers("SOLVER.BETAS"),
            weight_decay=r("SOLVER.WEIGHT_DECAY"),
            bn_weight_decay=r("BN.WEIGHT_DECAY"),
            zero_wd_1d_param=r("SOLVER.ZERO_WD_1D_PARAM"),
            clip_grad_norm=r.optional_number("SOLVER.CLIP_GRAD_L2NORM"),
            clip_grad_value=r.optional_number("SOLVER.CLIP_GRAD_VAL"),
        ),
        test=TestConfig(
            enable=r("TEST.ENABLE"),
            dataset=r.dataset("TEST.DATASET"),
            batch_size=r("TEST.BATCH_SIZE"),
            num_ensemble_views=r("TEST.NUM_ENSEMBLE_VIEWS"),
            num_spatial_crops=r("TEST.NUM_SPATIAL_CROPS"),
            ensemble_method=_choice(r, "DATA.ENSEMBLE_METHOD", ("sum", "max")),
        ),
        data=DataConfig(
            data_dir=path("DATA.PATH_TO_DATA_DIR"),
            path_prefix=path("DATA.PATH_PREFIX"),
            label_separator=r("DATA.PATH_LABEL_SEPARATOR"),
            random_flip=r("DATA.RANDOM_FLIP"),
        ),
        data_loader=DataLoaderConfig(
            num_workers=r("DATA_LOADER.NUM_WORKERS"),
            pin_memory=r("DATA_LOADER.PIN_MEMORY"),
        ),
        ava=AvaConfig(
            frame_dir=path("AVA.FRAME_DIR"),
            frame_list_dir=path("AVA.FRAME_LIST_DIR"),
            annotation_dir=path("AVA.ANNOTATION_DIR"),
            train_lists=r("AVA.TRAIN_LISTS"),
            test_lists=r("AVA.TEST_LISTS"),
            train_gt_box_lists=r("AVA.TRAIN_GT_BOX_LISTS"),
            train_predict_box_lists=r("AVA.TRAIN_PREDICT_BOX_LISTS"),
            test_predict_box_lists=r("AVA.TEST_PREDICT_BOX_LISTS"),
            detection_score_threshold=r("AVA.DETECTION_SCORE_THRESH"),
            exclusion_file=path("AVA.EXCLUSION_FILE"),
            label_map_file=path("AVA.LABEL_MAP_FILE"),
            groundtruth_file=path("AVA.GROUNDTRUTH_FILE"),
            bgr=r("AVA.BGR"),
            full_test_on_val=r("AVA.FULL_TEST_ON_VAL"),
        ),
        num_gpus=r("NUM_GPUS"),
        num_shards=r("NUM_SHARDS"),
        output_dir=r("OUTPUT_DIR"),
        seed=r("RNG_SEED"),
        log_period=r("LOG_PERIOD"),
        tensorboard=r("TENSORBOARD.ENABLE"),
        tensorboard_dir=path("TENSORBOARD.LOG_DIR"),
        source=r.cfg.source,
    )


def _check_distribution(r: _Reader) -> None:
    """The run-level checks of PySlowFast's ``assert_and_infer_cfg`` (the model's are in _model_config)."""
    num_gpus, num_shards = r("NUM_GPUS"), r("NUM_SHARDS")
    _require_positive(r, "SOLVER.MAX_EPOCH")
    base_lr = r("SOLVER.BASE_LR")
    if base_lr < 0:
        raise r.error(f"SOLVER.BASE_LR {base_lr} must be 0 or more (a learning rate); fix it")
    for key in ("TEST.NUM_ENSEMBLE_VIEWS", "TEST.NUM_SPATIAL_CROPS"):
        _require_positive(r, key)  # zero views ends a test run with "no views were processed"
    for key in ("TRAIN.BATCH_SIZE", "TEST.BATCH_SIZE"):
        batch_size = _require_positive(r, key)
        # NUM_GPUS 0 (CPU) has no per-GPU share to check.
        if num_gpus > 0 and batch_size % num_gpus:
            raise r.error(
                f"{key} {batch_size} must be divisible by NUM_GPUS {num_gpus} (each GPU takes an equal share); "
                f"change one of them"
            )
    # Checked but not used (vidact takes ranks from torchrun), so it is not read through r and
    # setting it still warns that vidact ignores it.
    shard_id = r.cfg.get("SHARD_ID")
    if shard_id is not None and shard_id >= num_shards:
        raise r.error(f"SHARD_ID {shard_id} must be below NUM_SHARDS {num_shards}; fix one of them")
    precise_bn, precise_batches = r("BN.USE_PRECISE_STATS"), r("BN.NUM_BATCHES_PRECISE")
    if precise_bn and precise_batches < 0:
        raise r.error(f"BN.NUM_BATCHES_PRECISE {precise_batches} must be 0 or more; fix it")


def _require_positive(r: _Reader, key: str) -> int:
    """A count or size key that must be 1 or more (0 or a negative fails later with a traceback)."""
    value = r(key)
    if value < 1:
        raise r.error(f"{key} {value} must be at least 1; fix it")
    return value


def _choice(r: _Reader, key: str, choices: tuple[str, ...]) -> str:
    value = r(key)
    if value not in choices:
        raise r.error(f"{key} {value!r} is not one of {', '.join(choices)}; use one of them")
    return value


# ---------------------------------------------------------------------------------------
# Convenience loaders
# ---------------------------------------------------------------------------------------


def load_model_config(path: str | os.PathLike, opts: Sequence[str] | None = None) -> ModelConfig:
    """The :class:`ModelConfig` of a PySlowFast YAML file or of a vidact model YAML file.

    The format is told by content: a top-level ``vidact_model`` mapping is vidact's own
    format (:mod:`vidact.config.io`), anything else is read as PySlowFast. ``opts`` are
    PySlowFast ``--opts`` overrides and only apply to PySlowFast files.
    """
    path = Path(path)
    data = _read_yaml_file(path)
    if is_vidact_model_yaml(data):
        if opts:
            raise VidactError(f"{path}: --opts only apply to PySlowFast configs; edit the vidact model file instead")
        return model_config_from_yaml_data(data, str(path))
    return to_model_config(load_pyslowfast(path, opts))


def load_run_config(path: str | os.PathLike, opts: Sequence[str] | None = None) -> RunConfig:
    """The :class:`RunConfig` of a PySlowFast YAML file with ``--opts`` overrides."""
    return to_run_config(load_pyslowfast(path, opts))
