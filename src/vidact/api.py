"""What users and the CLI call: the model registry and the main jobs."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch
from torch import nn

from vidact.config.model import ModelConfig
from vidact.errors import VidactError
from vidact.weights.zoo import ZooEntry, get_entry, list_models

__all__ = ["classify", "create_model", "detect", "list_models", "resolve_model"]


@dataclasses.dataclass(frozen=True)
class ResolvedModel:
    """A model description before building: its config and where weights come from."""

    config: ModelConfig
    entry: ZooEntry | None = None  # set when the model is a zoo entry


def resolve_model(name_or_config: str | os.PathLike | ModelConfig) -> ResolvedModel:
    """Turn a zoo name, a typed config or a YAML file (vidact's or PySlowFast's) into a config."""
    if isinstance(name_or_config, ModelConfig):
        return ResolvedModel(name_or_config)
    text = os.fspath(name_or_config)
    if text.endswith((".yaml", ".yml")) or Path(text).is_file():
        from vidact.config.pyslowfast import load_model_config

        return ResolvedModel(load_model_config(text))
    entry = get_entry(text)
    return ResolvedModel(entry.config, entry)


def create_model(
    name_or_config: str | os.PathLike | ModelConfig,
    weights: str | os.PathLike | None = None,
    num_classes: int | None = None,
    *,
    progress: bool = True,
) -> nn.Module:
    """Build a model, optionally with weights.

    Args:
        name_or_config: a zoo name (``vidact.list_models()``), a :class:`ModelConfig`,
            or a YAML file (vidact's own or a PySlowFast config).
        weights: ``None`` for random initialisation, ``"default"`` for the zoo
            entry's official checkpoint (downloaded into the cache once), or a
            path to a checkpoint in any supported format.
        num_classes: replace the classifier; loaded weights of another head size
            are then skipped and the head is initialised afresh (reported).

    The model carries ``model.config`` (its :class:`ModelConfig`, including the
    input spec), ``model.zoo_entry`` (or ``None``) and, when weights were loaded,
    ``model.load_report``.
    """
    from vidact.models import build_model

    resolved = resolve_model(name_or_config)
    config = resolved.config
    if num_classes is not None and num_classes != config.num_classes:
        config = config.replace(num_classes=num_classes)

    checkpoint_path = None
    if weights is not None:
        if os.fspath(weights) == "default":
            if resolved.entry is None:
                raise VidactError('weights="default" needs a zoo model name; pass a checkpoint path for configs')
            checkpoint_path = fetch_weights(resolved.entry, progress=progress)
        else:
            checkpoint_path = Path(weights)

    model = build_model(config)
    model.config = config
    model.zoo_entry = resolved.entry
    model.load_report = None
    if checkpoint_path is not None:
        from vidact.weights.checkpoint import load_into

        try:
            model.load_report = load_into(model, checkpoint_path)  # warns itself about a re-initialised head
        except VidactError as err:
            if os.fspath(weights) != "default":
                raise
            # A download cut short without a stated length is only found here, and the cache
            # would hand back the same file on every run.
            raise VidactError(f"{err} (vidact's cached download of {resolved.entry.url}: delete the file and run "
                              "again to fetch it anew)") from None
    return model


def fetch_weights(entry: ZooEntry, *, progress: bool = True) -> Path:
    """The local path of a zoo entry's checkpoint, downloading it into the cache once."""
    from vidact.paths import weights_dir
    from vidact.weights.download import download

    return download(entry.url, weights_dir() / entry.filename, sha256=entry.sha256, progress=progress)


def load_labels(model: nn.Module) -> tuple[str, ...] | None:
    """Class names for a model's outputs, when known (zoo entries)."""
    from vidact.data.label_sets import LABEL_SETS

    entry = getattr(model, "zoo_entry", None)
    if entry is None:
        return None
    names = LABEL_SETS[entry.labels]
    return names if len(names) == model.config.num_classes else None


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def detect(source, **options):
    """Persons, track ids and actions in a video: iterate for typed per-keyframe results.

    ``vidact.api.detect("video.mp4", detector="fastestdet")`` returns a
    :class:`vidact.pipeline.detect.DetectionRun`; see :func:`vidact.pipeline.detect.detect`
    for the options and :func:`vidact.pipeline.detect.detect_video` for writing the files.
    """
    from vidact.pipeline.detect import detect as run_detection

    return run_detection(source, **options)


def classify(path: str | os.PathLike, model: str | os.PathLike | ModelConfig | nn.Module | None = None, **options):
    """Top-k actions of a whole video (Kinetics multi-view) and optionally a timeline.

    ``vidact.classify("video.mp4", "slowfast_8x8_r50", views="3x10", window=2.0)`` returns a
    :class:`vidact.pipeline.classify.ClassifyResult`; see :func:`vidact.pipeline.classify.classify`
    for the options.
    """
    from vidact.pipeline.classify import classify as run_classify

    return run_classify(path, *(() if model is None else (model,)), **options)
