"""Read any supported checkpoint and load it into a model, with a report.

The format is sniffed from the file's bytes, never from a config flag or the
file name: a zip (``PK``) or legacy torch file goes to ``torch.load`` with
``weights_only=True``, a safetensors header to :mod:`vidact.weights.native`, and
anything else to the restricted latin-1 unpickler (Caffe2 ``blobs`` or a pickled
``model_state``). Whatever the source, :class:`Checkpoint` holds PySlowFast names.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import torch
from torch import nn

from vidact.config.model import ModelConfig
from vidact.config.pyslowfast import load_model_config, load_pyslowfast_text, to_model_config
from vidact.errors import VidactError, first_few
from vidact.fileutil import check_writable_file, same_file
from vidact.weights import caffe2, native, pyslowfast, pytorchvideo
from vidact.weights.safe_pickle import load_pickle

if TYPE_CHECKING:
    from vidact.data.labels import Labels

logger = logging.getLogger(__name__)

FORMATS = ("vidact", "safetensors", "pyslowfast", "pytorchvideo", "caffe2", "state_dict")

_ZIP_MAGIC = b"PK\x03\x04"
# torch.save's legacy (non-zip) format starts with the pickled magic number 0x1950a86a20f9469cfc6c.
_LEGACY_TORCH_MAGIC = b"\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
_HEAD_PREFIX = "head.projection."
# Fewer of the model's tensors than this fraction loaded means the weights are for another network.
_MIN_LOADED_FRACTION = 0.5


class HeadReinitialisedWarning(UserWarning):
    """A checkpoint's classifier head had another size and was re-initialised (see :func:`load_into`)."""


class SkippedWeightsWarning(UserWarning):
    """Fine-tuning skipped checkpoint tensors that do not fit the model (see :func:`load_into`)."""


@dataclass
class Checkpoint:
    """A checkpoint's weights under PySlowFast names, plus whatever config it carried."""

    path: Path
    format: str  # one of FORMATS
    state_dict: dict[str, torch.Tensor]
    cfg_text: str | None = None  # PySlowFast YAML stored in a .pyth
    model_config: ModelConfig | None = None  # stored in vidact's own files
    metadata: dict[str, Any] = field(default_factory=dict)  # epoch, labels, source, ...

    @property
    def caffe2_layout(self) -> bool:
        """Whether tensors still have Caffe2 shapes (need trailing-1 expansion, Sub-BN tiling)."""
        return self.format == "caffe2" or self.metadata.get("source_format") == "caffe2"


@dataclass
class LoadReport:
    """What :func:`load_into` did, by model state_dict name."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # model tensors left as they were
    unexpected: list[str] = field(default_factory=list)  # checkpoint tensors the model has no place for
    shape_mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)  # (name, checkpoint, model)
    head_reinitialised: bool = False
    inflated: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for logs."""
        text = f"loaded {len(self.loaded)} tensors, {len(self.missing)} missing, {len(self.unexpected)} unexpected, {len(self.shape_mismatched)} shape-mismatched"
        if self.inflated:
            text += f", {len(self.inflated)} inflated 2D->3D"
        if self.head_reinitialised:
            text += ", classifier head re-initialised"
        return text


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def sniff_format(path: str | os.PathLike) -> str:
    """The container of a checkpoint file: ``torch``, ``safetensors`` or ``pickle``."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as err:
        raise VidactError(f"{path}: cannot read checkpoint ({err.strerror or err}); check the path") from None
    if size == 0:
        raise VidactError(f"{path}: checkpoint file is empty; re-download it")
    if head.startswith(_ZIP_MAGIC) or _LEGACY_TORCH_MAGIC in head:
        return "torch"
    if native.looks_like_safetensors(head):
        return "safetensors"
    return "pickle"


def read_checkpoint(path: str | os.PathLike, *, clear_name_patterns: tuple[str, ...] = ()) -> Checkpoint:
    """Read a checkpoint of any supported format, without running code from it.

    ``clear_name_patterns`` removes the first occurrence of each substring from the
    names of PySlowFast checkpoints (``TRAIN.CHECKPOINT_CLEAR_NAME_PATTERN``).
    """
    path = Path(path)
    container = sniff_format(path)
    if container == "safetensors":
        weights = native.load_native(path)
        fmt = "vidact" if weights.metadata.get("format") == native.FORMAT_NAME else "safetensors"
        metadata: dict[str, Any] = dict(weights.metadata)
        metadata.update(labels=weights.labels, source=weights.source)
        return Checkpoint(path, fmt, weights.state_dict, model_config=weights.model_config, metadata=metadata)
    if container == "torch":
        obj = pyslowfast.torch_load(path)
    else:
        try:
            obj = load_pickle(path)
        except VidactError:
            raise
        except Exception as err:  # random bytes reach the unpickler with arbitrary opcodes
            raise VidactError(f"{path}: not a readable checkpoint ({type(err).__name__}: {_first_line(err)}); re-download it") from None
    return _from_loaded_object(path, obj, clear_name_patterns)


def _from_loaded_object(path: Path, obj: Any, clear_name_patterns: tuple[str, ...]) -> Checkpoint:
    if isinstance(obj, Mapping) and isinstance(obj.get("blobs"), Mapping):
        state = caffe2.convert_blobs(obj["blobs"])
        if not state:
            raise VidactError(f"{path}: Caffe2 checkpoint holds no weight blobs; re-download it")
        return Checkpoint(path, "caffe2", state)
    if isinstance(obj, Mapping) and isinstance(obj.get("model_state"), Mapping):
        parsed = pyslowfast.parse_checkpoint(obj, path, clear_name_patterns)
        variant = pytorchvideo.detect_variant(parsed.model_state)
        if variant is not None:
            try:
                state = pytorchvideo.from_pytorchvideo(parsed.model_state, variant)
            except ValueError as err:
                raise VidactError(f"{path}: PyTorchVideo checkpoint with an unsupported name {err}; only slowfast_r50, slowfast_r50_detection, slow_r50 and x3d_* hub weights are supported") from None
            return Checkpoint(path, "pytorchvideo", state, metadata={"pytorchvideo_variant": variant})
        return Checkpoint(path, "pyslowfast", parsed.model_state, cfg_text=parsed.cfg_text, metadata={"epoch": parsed.epoch})
    if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return Checkpoint(path, "state_dict", pyslowfast.clean_names(dict(obj), clear_name_patterns))
    keys = sorted(map(str, obj))[:5] if isinstance(obj, Mapping) else type(obj).__name__
    raise VidactError(f"{path}: not a video model checkpoint (found {keys}); expected a PySlowFast .pyth/.pkl, a PyTorchVideo hub file or a vidact .safetensors")


def _inflate(tensor: torch.Tensor, want: tuple[int, ...]) -> torch.Tensor | None:
    """A 2D kernel (O, I, kh, kw) repeated over a 3D kernel's time axis and divided by T."""
    if tensor.dim() != 4 or len(want) != 5 or (want[0], want[1], want[3], want[4]) != tuple(tensor.shape):
        return None
    time = want[2]
    return tensor.unsqueeze(2).repeat(1, 1, time, 1, 1) / time


def _reinitialise_head(model: nn.Module) -> None:
    # PySlowFast's init for the projection: N(0, FC_INIT_STD) weights, zero bias.
    config = getattr(model, "config", None)
    std = getattr(config, "fc_init_std", 0.01)
    with torch.no_grad():
        for name, tensor in model.state_dict(keep_vars=True).items():
            if name == _HEAD_PREFIX + "weight":
                tensor.normal_(0.0, std)
            elif name == _HEAD_PREFIX + "bias":
                tensor.zero_()


def load_into(
    model: nn.Module,
    checkpoint_or_path: Checkpoint | str | os.PathLike,
    *,
    inflate: bool = False,
    strict_architecture: bool = True,
) -> LoadReport:
    """Copy a checkpoint's weights into ``model`` wherever names and shapes agree.

    - Caffe2 tensors are fitted to the model first (trailing 1s, Sub-BN tiling).
    - ``inflate=True`` turns 2D kernels (O, I, kh, kw) into the model's 3D kernels by
      repeating them over time and dividing by T (I3D inflation); equal shapes copy.
    - A classifier head of another size (``head.projection``) is not loaded; the
      model's head is re-initialised and the report and a warning say so.
    - Less than half of the model matching raises :class:`VidactError`: weights of another network.
    - With ``strict_architecture`` (running a model), any other tensor that has another shape or
      no place in the model raises too, instead of silently leaving parts of the model random.
      Without it (fine-tuning) they are skipped as PySlowFast skips them, with one
      :class:`SkippedWeightsWarning`.
    Mismatches are listed in the report. ``num_batches_tracked`` is never reported as missing.
    """
    checkpoint = checkpoint_or_path if isinstance(checkpoint_or_path, Checkpoint) else read_checkpoint(checkpoint_or_path)
    target = model.state_dict()
    target_shapes = {name: tuple(t.shape) for name, t in target.items()}
    report = LoadReport()

    state = dict(checkpoint.state_dict)
    if checkpoint.caffe2_layout:
        fitted = caffe2.fit_to_target(state, target_shapes)
        state = fitted.state_dict
        report.unexpected.extend(fitted.unexpected)
        report.shape_mismatched.extend(fitted.shape_mismatched)

    to_load: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if name not in target_shapes:
            report.unexpected.append(name)
            continue
        want = target_shapes[name]
        if tuple(tensor.shape) != want and inflate:
            inflated = _inflate(tensor, want)
            if inflated is not None:
                tensor = inflated
                report.inflated.append(name)
        if tuple(tensor.shape) != want:
            report.shape_mismatched.append((name, tuple(tensor.shape), want))
            continue
        to_load[name] = tensor

    counted = [n for n in target if not n.endswith("num_batches_tracked")]
    loaded_count = sum(1 for n in counted if n in to_load)
    if loaded_count < _MIN_LOADED_FRACTION * len(counted):
        reason = f"only {loaded_count} of {len(counted)} tensors match by name and shape"
        raise VidactError(f"{checkpoint.path}: weights do not fit this model ({reason}); {_prefix_hint(state, target_shapes)}")
    # Only the classifier head may differ silently (fine-tuning to other classes).
    misfit = [n for n, _, _ in report.shape_mismatched if not n.startswith(_HEAD_PREFIX)]
    foreign = [n for n in report.unexpected if not n.startswith(_HEAD_PREFIX)]
    skipped = misfit + foreign
    if skipped and strict_architecture:
        reason = f"{len(misfit)} tensors have other shapes, e.g. {misfit[0]}" if misfit else f"{len(foreign)} tensors have no place in it, e.g. {foreign[0]}"
        raise VidactError(f"{checkpoint.path}: weights do not fit this model ({reason}); use the config the checkpoint was trained with")
    if skipped:
        names = first_few(skipped)
        count = f"{len(skipped)} tensors" if len(skipped) > 1 else "1 tensor"
        warnings.warn(f"{checkpoint.path}: skipped {count} this model cannot take, as PySlowFast does ({names}); "
                      "those layers keep their initialisation", SkippedWeightsWarning, stacklevel=2)

    model.load_state_dict(to_load, strict=False)
    report.loaded = [n for n in target if n in to_load]
    report.missing = [n for n in counted if n not in to_load]

    head_mismatch = [n for n, _, _ in report.shape_mismatched if n.startswith(_HEAD_PREFIX)]
    if head_mismatch:
        _reinitialise_head(model)
        report.head_reinitialised = True
        message = f"{checkpoint.path}: classifier head has another number of classes than the model; head.projection was re-initialised and needs training"
        warnings.warn(message, HeadReinitialisedWarning, stacklevel=2)
    logger.info("%s: %s", checkpoint.path, report.summary())
    return report


def _prefix_hint(state: Mapping[str, torch.Tensor], target_shapes: Mapping[str, tuple[int, ...]]) -> str:
    """What to do about weights that do not fit: strip a prefix all their names carry, when that makes them fit."""
    prefix = os.path.commonprefix(list(state))
    prefix = prefix[: prefix.rfind(".") + 1]
    if prefix and sum(name[len(prefix):] in target_shapes for name in state) >= _MIN_LOADED_FRACTION * len(target_shapes):
        origin = " (saved from DataParallel)" if prefix == "module." else ""
        return (f"its names carry the prefix {prefix!r}{origin}: strip it (vidact convert IN OUT.safetensors "
                f"--strip-prefix {prefix}), or for training set TRAIN.CHECKPOINT_CLEAR_NAME_PATTERN [{prefix!r}]")
    return "use the config the checkpoint was trained with"


def checkpoint_model_config(checkpoint: Checkpoint, cfg_path: str | os.PathLike | None = None) -> ModelConfig:
    """The model config of a checkpoint: ``cfg_path`` when given, else the one stored in it (vidact file, PySlowFast ``cfg``).

    A config the user names wins: a stored ``cfg`` is often a training config whose test-time
    keys (crop size, frames) differ from how the weights are meant to be run.
    """
    if cfg_path is not None:
        return load_model_config(cfg_path)
    if checkpoint.model_config is not None:
        return checkpoint.model_config
    if checkpoint.cfg_text:  # keys of another PySlowFast version are skipped with a warning
        return to_model_config(load_pyslowfast_text(checkpoint.cfg_text, f"{checkpoint.path} (stored cfg)", strict=False))
    raise VidactError(f"{checkpoint.path}: {checkpoint.format} checkpoint stores no model config; pass the PySlowFast config it was trained with (--cfg CONFIG.yaml)")


def convert_to_native(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    cfg_path: str | os.PathLike | None = None,
    labels: Labels | None = None,
    strip_prefixes: tuple[str, ...] = (),
) -> Path:
    """Convert any supported checkpoint to vidact's safetensors file with its model config.

    ``labels`` (class names to store) take ids from 0, or from 1 for an AVA model (as its label
    files number them); without them the checkpoint's own names are kept. ``strip_prefixes``
    are removed from the start of the weights' names (``module.`` of a DataParallel save).
    """
    _check_destination(src, dst)
    check_writable_file(dst)  # before the checkpoint is read and the model built, not after
    checkpoint = read_checkpoint(src)
    if strip_prefixes:
        checkpoint = dataclasses.replace(checkpoint, state_dict={
            _without_prefixes(name, strip_prefixes): tensor for name, tensor in checkpoint.state_dict.items()})
    config = checkpoint_model_config(checkpoint, cfg_path)
    if checkpoint.format == "vidact":  # converted before: keep where it first came from
        source = checkpoint.metadata.get("source") or Path(src).name
        extra = {key: checkpoint.metadata[key] for key in ("source_format", "pyslowfast_cfg") if key in checkpoint.metadata}
    else:
        source = Path(src).name
        extra = {"source_format": "caffe2" if checkpoint.caffe2_layout else checkpoint.format}
        if checkpoint.cfg_text:
            extra["pyslowfast_cfg"] = checkpoint.cfg_text
    _check_fits(checkpoint, config, src)
    if labels is not None:
        from vidact.data.labels import names_by_id

        labels = list(names_by_id(labels, from_zero=not config.detection.enable))
    else:
        labels = checkpoint.metadata.get("labels")
    if labels is not None and len(labels) != config.num_classes:
        raise VidactError(f"{src}: {len(labels)} class names for a model of {config.num_classes} classes; "
                          "pass the model's own label map")
    return native.save_native(dst, checkpoint.state_dict, model_config=config, labels=labels, source=source,
                              extra_metadata=extra)


def _without_prefixes(name: str, prefixes: tuple[str, ...]) -> str:
    for prefix in prefixes:
        name = name.removeprefix(prefix)
    return name


def _check_destination(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Refuse an output that would replace the input checkpoint, or hide safetensors under another format's name."""
    src, dst = Path(src), Path(dst)
    if same_file(src, dst):
        raise VidactError(f"{dst}: is the input checkpoint; write the converted file to another one, OUT.safetensors")
    if dst.suffix != ".safetensors":
        raise VidactError(f"{dst}: the converted file is in vidact's safetensors format; name it OUT.safetensors")


def _check_fits(checkpoint: Checkpoint, config: ModelConfig, src: str | os.PathLike) -> None:
    """Refuse to write a file that no model loads: the weights must fit the config's model, head included."""
    from vidact.models import build_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HeadReinitialisedWarning)  # refused below, with the reason
        report = load_into(build_model(config), checkpoint)
    if report.head_reinitialised:
        raise VidactError(f"{src}: the classifier head does not fit the config's MODEL.NUM_CLASSES {config.num_classes}; "
                          "pass the config the checkpoint was trained with")
