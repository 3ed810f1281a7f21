"""What users and the CLI call: the model registry and the main jobs."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import torch
from torch import nn

from vidact.config.model import ModelConfig
from vidact.errors import VidactError, first_few
from vidact.weights.checkpoint import Checkpoint
from vidact.weights.zoo import DEFAULT_KINETICS_MODEL, ZOO, ZooEntry, get_entry, list_models

if TYPE_CHECKING:  # the pipelines load only when detect/classify are called
    from vidact.detectors.base import PersonDetector
    from vidact.pipeline.classify import ClassifyResult
    from vidact.pipeline.detect import ActionModel, ActionThresholds, DetectionRun

__all__ = ["classify", "create_model", "detect", "list_models", "resolve_model"]


@dataclasses.dataclass(frozen=True)
class ResolvedModel:
    """A model description before building: its config and where weights come from."""

    config: ModelConfig
    entry: ZooEntry | None = None  # set when the model is a zoo entry
    checkpoint: Checkpoint | None = None  # set when the model is a checkpoint that stores its config


def resolve_model(name_or_config: str | os.PathLike | ModelConfig) -> ResolvedModel:
    """Turn a zoo name, a typed config, a YAML file (vidact's or PySlowFast's) or a checkpoint
    that stores its config (vidact's ``.safetensors``, a PySlowFast ``.pyth``) into a config."""
    if isinstance(name_or_config, ModelConfig):
        return ResolvedModel(name_or_config)
    text = os.fspath(name_or_config)
    if _looks_like_path(text) and not Path(text).exists():
        raise VidactError(f"{text}: no such file; check the path, or pass a zoo model name (see `vidact models`)")
    if not text.endswith((".yaml", ".yml")) and Path(text).is_file() and _is_checkpoint(text):
        from vidact.weights.checkpoint import checkpoint_model_config, read_checkpoint

        checkpoint = read_checkpoint(text)
        if checkpoint.model_config is None and not checkpoint.cfg_text:  # given as the model, so say both parts
            raise VidactError(f"{text}: a {checkpoint.format} checkpoint stores no model config; pass the PySlowFast "
                              f"config it was trained with as the model and this file as its weights "
                              f"(--cfg CONFIG.yaml --weights {text})")
        return ResolvedModel(checkpoint_model_config(checkpoint), checkpoint=checkpoint)
    if text.endswith((".yaml", ".yml")) or Path(text).is_file():
        from vidact.config.pyslowfast import load_model_config

        return ResolvedModel(load_model_config(text))
    entry = get_entry(text)
    return ResolvedModel(entry.config, entry)


_FILE_SUFFIXES = (".pyth", ".pth", ".pkl", ".safetensors", ".yaml", ".yml")


def _looks_like_path(text: str) -> bool:
    # Zoo names have neither a separator nor a file suffix, so a missing file is not called an unknown model.
    separators = tuple(sep for sep in (os.sep, os.altsep, "/") if sep)
    return any(sep in text for sep in separators) or text.endswith(_FILE_SUFFIXES)


def _is_checkpoint(path: str) -> bool:
    from vidact.weights.checkpoint import sniff_format

    try:
        container = sniff_format(path)
    except VidactError:  # not a checkpoint: read as a config
        return False
    # sniff_format calls whatever it does not recognise a pickle, config text included: a Caffe2
    # pickle is named .pkl or starts with the protocol opcode 0x80, which no text file does.
    if container != "pickle" or path.endswith(".pkl"):
        return True
    with open(path, "rb") as f:
        return f.read(1) == b"\x80"


def create_model(
    name_or_config: str | os.PathLike | ModelConfig,
    *,
    weights: str | os.PathLike | Checkpoint | None = None,
    num_classes: int | None = None,
    progress: bool = True,
) -> nn.Module:
    """Build a model, optionally with weights.

    Args:
        name_or_config: a zoo name (``vidact.list_models()``), a :class:`ModelConfig`,
            a YAML file (vidact's own or a PySlowFast config), or a checkpoint that stores
            its config (``vidact convert``'s ``.safetensors``, a PySlowFast ``.pyth``), whose
            weights are then loaded unless ``weights`` names others.
        weights: ``None`` for random initialisation, ``"default"`` (in any case) for the zoo
            entry's official checkpoint (downloaded into the cache once), or a
            path to a checkpoint in any supported format (or one already read).
        num_classes: replace the classifier; loaded weights of another head size
            are then skipped and the head is initialised afresh (reported).

    The model carries ``model.config`` (its :class:`ModelConfig`, including the
    input spec), ``model.zoo_entry`` (or ``None``) and, when weights were loaded,
    ``model.load_report`` and ``model.labels``: the class names the checkpoint stores, if any.
    """
    from vidact.models import build_model

    whole = isinstance(num_classes, int) and not isinstance(num_classes, bool)
    if num_classes is not None and not (whole and num_classes >= 1):
        raise VidactError(f"num_classes must be a whole number of at least 1, got {num_classes!r}")
    resolved = resolve_model(name_or_config)
    config = resolved.config
    if num_classes is not None and num_classes != config.num_classes:
        config = config.replace(num_classes=num_classes)

    checkpoint_path = _weights_source(weights, resolved, progress=progress)
    model = build_model(config)
    model.config = config
    model.zoo_entry = resolved.entry
    model.load_report = None
    model.labels = None
    if checkpoint_path is not None:
        from vidact.weights.checkpoint import load_into, read_checkpoint

        try:
            checkpoint = checkpoint_path if isinstance(checkpoint_path, Checkpoint) else read_checkpoint(checkpoint_path)
            model.load_report = load_into(model, checkpoint)  # warns itself about a re-initialised head
            labels = checkpoint.metadata.get("labels")
            # A num_classes override gives a fresh head the stored names no longer describe.
            model.labels = labels if labels is not None and len(labels) == config.num_classes else None
        except VidactError as err:
            if not _is_default(weights):
                raise
            # A download cut short without a stated length is only found here, and the cache
            # would hand back the same file on every run.
            raise VidactError(f"{err} (vidact's cached download of {resolved.entry.url}: delete the file and run "
                              "again to fetch it anew)") from None
    return model


def create_inference_model(
    name_or_config: str | os.PathLike | ModelConfig, *, weights: str | os.PathLike | Checkpoint | None = None,
    progress: bool = True,
) -> nn.Module:
    """:func:`create_model` for scoring videos: weights whose classifier has another number of classes
    than the config, or that have none, are refused. (``create_model`` gives them a fresh head to
    fine-tune; scores from that random head would be noise under real class names.)"""
    import warnings

    from vidact.weights.checkpoint import HeadReinitialisedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HeadReinitialisedWarning)  # refused below, with what to do
        model = create_model(name_or_config, weights=weights, progress=progress)
    report = model.load_report
    if report is None:
        return model
    source = weights if weights is not None else name_or_config
    source = os.fspath(getattr(source, "path", source))
    if report.head_reinitialised:
        stored = next(shape[0] for name, shape, _ in report.shape_mismatched if name.startswith("head.projection."))
        raise VidactError(f"{source}: the checkpoint's classifier has {stored} classes, "
                          f"the config's MODEL.NUM_CLASSES {model.config.num_classes}; pass the config it was trained with")
    headless = [name for name in report.missing if name.startswith("head.projection.")]
    if headless:
        raise VidactError(f"{source}: the checkpoint has no classifier ({', '.join(headless)} missing): a backbone to "
                          "fine-tune, not to score videos with; pass a trained checkpoint")
    # A BatchNorm left at its initialisation is the identity (hub X3D files have none after the
    # stage-2 shortcut); any other layer left out would score with random weights.
    unset = [name for name in report.missing
             if not isinstance(model.get_submodule(name.rpartition(".")[0]), nn.modules.batchnorm._BatchNorm)]
    if unset:
        raise VidactError(f"{source}: the checkpoint lacks {len(unset)} tensors of this model ({first_few(unset)}); "
                          "pass the config it was trained with")
    return model


def _is_default(weights) -> bool:
    return isinstance(weights, str) and weights.lower() == "default"


def _weights_source(weights, resolved: ResolvedModel, *, progress: bool) -> Checkpoint | Path | None:
    """The checkpoint ``create_model``'s ``weights`` names, checked before the model is built (seconds for an R101)."""
    if weights is None:
        return resolved.checkpoint
    if isinstance(weights, Checkpoint):
        return weights
    if _is_default(weights):
        if resolved.entry is None:
            raise VidactError('weights="default" needs a zoo model name; pass a checkpoint path for configs')
        return fetch_weights(resolved.entry, progress=progress)
    if not isinstance(weights, (str, os.PathLike)):
        timm = " (timm's pretrained=True is weights='default')" if isinstance(weights, bool) else ""
        raise VidactError(f"weights must be None, 'default' or a checkpoint path; got {weights!r}{timm}")
    path = Path(weights)
    if not path.exists():
        name = os.fspath(weights)
        if name.lower() in ZOO:
            raise VidactError(f"{name!r} is a zoo model name; use create_model({name.lower()!r}, weights='default')")
        raise VidactError(f"{path}: no such file; weights takes None, 'default' or a checkpoint path")
    return path


def fetch_weights(entry: ZooEntry, *, progress: bool = True) -> Path:
    """The local path of a zoo entry's checkpoint, downloading it into the cache once."""
    from vidact.paths import weights_dir
    from vidact.weights.download import download

    return download(entry.url, weights_dir() / entry.filename, sha256=entry.sha256, progress=progress)


def load_labels(model: nn.Module) -> tuple[str, ...] | None:
    """Class names for a model's outputs, when known: stored in its checkpoint, else its zoo entry's."""
    from vidact.data.label_sets import LABEL_SETS

    entry = getattr(model, "zoo_entry", None)
    for names in (getattr(model, "labels", None), LABEL_SETS[entry.labels] if entry is not None else None):
        if names and len(names) == model.config.num_classes:
            return tuple(names)
    return None


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def parse_device(device: str | torch.device | None) -> torch.device:
    """``device`` ("cpu", "cuda", "cuda:1", a torch.device) as a torch.device; None is :func:`default_device`.

    A string torch does not know, or CUDA where torch sees no GPU, is a one-line
    :class:`VidactError`, not torch's traceback."""
    if device is None:
        return default_device()
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise VidactError(f"unknown device {str(device)!r}; use cpu, cuda or cuda:N") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise VidactError("device cuda was asked for but torch sees no GPU; use --device cpu or run `vidact doctor`")
    return parsed


# detect and classify load their pipelines (PyAV, OpenCV, torchvision: over a second) only when
# called, so `import vidact` stays light; their signatures repeat the pipelines' for help() and
# editors (tests/test_api.py holds them equal).


def detect(
    source: str | int | os.PathLike,
    *,
    detector: str | os.PathLike | PersonDetector = "torchvision",
    model: str | os.PathLike | nn.Module | ActionModel | None = None,
    weights: str | os.PathLike | None = None,
    rate: float = 1.0,
    device: str | torch.device | None = None,
    thresholds: ActionThresholds | float | None = None,
    detector_threshold: float | None = None,
    boxes_start: float | None = None,
    label_file: str | os.PathLike | None = None,
    end: float | None = None,
    video_path: str | os.PathLike | None = None,
    video_fps: float | None = None,
    video_preset: str = "veryfast",
    precision: str = "auto",
    compile: bool = False,
    decode: str = "cpu",
) -> DetectionRun:
    """Detect persons and their actions in a video; iterate the result for :class:`KeyframeResult`.

    The arguments are :func:`vidact.pipeline.detect.detect`'s, documented there; this copy of
    its signature keeps the pipeline (PyAV, OpenCV, torchvision) unloaded until it is called.
    ``detect_video`` in the same module also writes the output files.
    """
    from vidact.pipeline.detect import detect as run_detection

    return run_detection(
        source, detector=detector, model=model, weights=weights, rate=rate, device=device, thresholds=thresholds,
        detector_threshold=detector_threshold, boxes_start=boxes_start, label_file=label_file, end=end,
        video_path=video_path, video_fps=video_fps, video_preset=video_preset, precision=precision,
        compile=compile, decode=decode,
    )


def classify(
    path: str | os.PathLike,
    model: str | os.PathLike | ModelConfig | nn.Module = DEFAULT_KINETICS_MODEL,
    *,
    weights: str | os.PathLike | None = None,
    labels: str | os.PathLike | Sequence[str] | None = None,
    views: str | tuple[int, int] = "3x10",
    window: float | None = None,
    stride: float | None = None,
    timeline: bool = False,
    top_k: int = 5,
    device: str | torch.device | None = None,
    precision: str = "auto",
    compile: bool = False,
    progress: bool = True,
) -> ClassifyResult:
    """Classify the actions of a whole video, optionally with a sliding-window timeline.

    The arguments are :func:`vidact.pipeline.classify.classify`'s, documented there; this copy
    of its signature keeps the pipeline unloaded until it is called.
    """
    from vidact.pipeline.classify import classify as run_classify

    return run_classify(
        path, model, weights=weights, labels=labels, views=views, window=window, stride=stride, timeline=timeline,
        top_k=top_k, device=device, precision=precision, compile=compile, progress=progress,
    )
