"""vidact's own weights format: a safetensors file, written and read here by hand.

Layout (the safetensors spec): an 8-byte little-endian header length N, N bytes
of UTF-8 JSON, then the raw tensor bytes. The header maps each tensor name to
``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets into the data
section, contiguous, in order) and ``__metadata__`` to a str -> str map. vidact
stores its ModelConfig, label names and provenance there as JSON strings, so a
file is self-describing and loads without a YAML config.
"""

from __future__ import annotations

import json
import os
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from vidact.config.model import ModelConfig, model_config_from_dict, to_dict
from vidact.errors import VidactError
from vidact.fileutil import atomic_open

FORMAT_NAME = "vidact"
FORMAT_VERSION = "1"
_MAX_HEADER_BYTES = 100 * 1024 * 1024  # the reference implementation's limit

_DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}
_TORCH_DTYPES = {v: k for k, v in _DTYPES.items()}


@dataclass
class NativeWeights:
    """The contents of a vidact weights file."""

    state_dict: dict[str, torch.Tensor]
    model_config: ModelConfig | None = None
    labels: list[str] | None = None
    source: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)  # the raw ``__metadata__`` map


def save_native(
    path: str | os.PathLike,
    state_dict: Mapping[str, torch.Tensor],
    *,
    model_config: ModelConfig | None = None,
    labels: list[str] | None = None,
    source: str | None = None,
    extra_metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write tensors and vidact metadata as a safetensors file (atomically)."""
    metadata = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION}
    if model_config is not None:
        metadata["model_config"] = json.dumps(to_dict(model_config))
    if labels is not None:
        metadata["labels"] = json.dumps(list(labels))
    if source is not None:
        metadata["source"] = source
    metadata.update(extra_metadata or {})

    header: dict[str, Any] = {"__metadata__": metadata}
    blobs = []
    offset = 0
    for name, tensor in state_dict.items():
        if tensor.dtype not in _DTYPES:
            raise VidactError(f"{os.fspath(path)}: cannot store tensor {name} of dtype {tensor.dtype}; convert it to float32 first")
        data = _tensor_bytes(tensor)
        header[name] = {"dtype": _DTYPES[tensor.dtype], "shape": list(tensor.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    header_bytes += b" " * (-len(header_bytes) % 8)  # keep the data section 8-byte aligned, as the spec allows
    path = Path(path)
    with atomic_open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header_bytes)))
        f.write(header_bytes)
        for data in blobs:
            f.write(data)
    return path


def _tensor_bytes(tensor: torch.Tensor) -> bytes:
    tensor = tensor.detach().cpu().contiguous()
    if tensor.numel() == 0:
        return b""
    raw = tensor.reshape(-1).view(torch.uint8).numpy().tobytes()  # view: raw bytes for every dtype, bf16 included
    if sys.byteorder == "big" and tensor.element_size() > 1:
        raw = _swap_bytes(raw, tensor.element_size())
    return raw


def _swap_bytes(raw: bytes, width: int) -> bytes:
    swapped = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(-1, width).flip(1)
    return swapped.contiguous().numpy().tobytes()


def load_native(path: str | os.PathLike) -> NativeWeights:
    """Read a safetensors file (vidact's or any other) into tensors and metadata."""
    name = os.fspath(path)
    data = Path(path).read_bytes()
    header, data_start = _read_header(data, name)
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise _corrupt(name, "__metadata__ is not a string map")
    state: dict[str, torch.Tensor] = {}
    buffer = memoryview(data)[data_start:]
    for tensor_name, info in header.items():
        state[tensor_name] = _read_tensor(buffer, tensor_name, info, name)
    try:
        model_config = model_config_from_dict(json.loads(metadata["model_config"])) if "model_config" in metadata else None
        labels = json.loads(metadata["labels"]) if "labels" in metadata else None
    except (ValueError, TypeError) as err:
        raise _corrupt(name, f"unreadable vidact metadata ({err})") from None
    return NativeWeights(state_dict=state, model_config=model_config, labels=labels, source=metadata.get("source"), metadata=metadata)


def looks_like_safetensors(head: bytes) -> bool:
    """Whether a file's first bytes are a safetensors header length followed by JSON."""
    if len(head) < 9:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    # Not bounded by the file's size: a file cut inside its header is still told as safetensors,
    # so that reading it says it is damaged (a pickle reader would say something stranger).
    return 2 <= length <= _MAX_HEADER_BYTES and head[8:9] == b"{"


def _corrupt(name: str, what: str) -> VidactError:
    return VidactError(f"{name}: damaged safetensors file ({what}); re-create or re-download it")


def _read_header(data: bytes, name: str) -> tuple[dict, int]:
    if len(data) < 8:
        raise _corrupt(name, "shorter than the 8-byte header length")
    (length,) = struct.unpack("<Q", data[:8])
    if length > min(_MAX_HEADER_BYTES, len(data) - 8):
        raise _corrupt(name, f"header length {length} exceeds the file")
    try:
        header = json.loads(data[8 : 8 + length].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise _corrupt(name, f"header is not JSON: {err}") from None
    if not isinstance(header, dict):
        raise _corrupt(name, "header is not a JSON object")
    return header, 8 + length


def _read_tensor(buffer: memoryview, tensor_name: str, info: Any, name: str) -> torch.Tensor:
    try:
        dtype = _TORCH_DTYPES[info["dtype"]]
        shape = [int(d) for d in info["shape"]]
        begin, end = (int(o) for o in info["data_offsets"])
    except (KeyError, TypeError, ValueError):
        raise _corrupt(name, f"bad entry for {tensor_name}: {info!r}") from None
    element_size = torch.empty((), dtype=dtype).element_size()
    numel = 1
    for d in shape:
        numel *= d
    if not 0 <= begin <= end <= len(buffer) or end - begin != numel * element_size:
        raise _corrupt(name, f"{tensor_name} lies outside the file or has the wrong size (truncated?)")
    raw = bytes(buffer[begin:end])
    if sys.byteorder == "big" and element_size > 1:
        raw = _swap_bytes(raw, element_size)
    if numel == 0:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(bytearray(raw), dtype=dtype).reshape(shape)
