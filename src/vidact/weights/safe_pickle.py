"""A restricted unpickler for Caffe2 and Detectron2 ``.pkl`` checkpoints.

Those files are Python-2 pickles of plain containers and numpy arrays. A pickle
can name any importable callable, so loading one with :mod:`pickle` runs code.
This unpickler resolves only the few globals that numpy arrays need and refuses
everything else before anything is called.
"""

from __future__ import annotations

import codecs
import collections
import io
import os
import pickle
import struct

import numpy as np
import torch

from vidact.errors import VidactError

def _numpy_internals():
    try:  # numpy >= 2 moved the internals; the old path still resolves with a warning
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray, numeric
    return multiarray, numeric


# What a weights pickle may reference: numpy's array and scalar reconstruction
# (under the numpy 1.x and 2.x module paths) and plain containers.
def _allowed_globals() -> dict[tuple[str, str], object]:
    multiarray, numeric = _numpy_internals()
    allowed = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("_codecs", "encode"): codecs.encode,  # bytes in protocol-2 pickles written by Python 3
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = multiarray._reconstruct
        allowed[(module, "scalar")] = multiarray.scalar
    for module in ("numpy.core.numeric", "numpy._core.numeric"):
        allowed[(module, "_frombuffer")] = numeric._frombuffer  # arrays in protocol-5 pickles
    # Not bytearray: bytearray(4_000_000_000) in a 58-byte file allocates 4 GB, and no weight pickle holds one.
    for module in ("builtins", "__builtin__"):
        for name, obj in (("set", set), ("frozenset", frozenset)):
            allowed[(module, name)] = obj
    return allowed


_ALLOWED = _allowed_globals()


class UnsafePickleError(VidactError):
    """The pickle references something other than containers, scalars and arrays."""


# The pure-Python unpickler: its memo is a dict, so a forged LONG_BINPUT index in a damaged
# file cannot make it preallocate gigabytes (the C unpickler's array memo does, and gets OOM-killed).
class _RestrictedUnpickler(pickle._Unpickler):
    dispatch = dict(pickle._Unpickler.dispatch)

    def _load_bytearray8(self):
        # Protocol 5's array bytes. pickle's own reader zero-fills the declared length first: a
        # forged length in a small file would allocate gigabytes. Only the bytes present are taken.
        (length,) = struct.unpack("<Q", self.read(8))
        data = self.read(length)
        if len(data) < length:
            raise pickle.UnpicklingError(f"BYTEARRAY8 of {length} bytes runs past the end of the file")
        self.append(bytearray(data))

    dispatch[pickle.BYTEARRAY8[0]] = _load_bytearray8

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            pass
        raise UnsafePickleError(f"refuses to load {module}.{name}: only containers, scalars and numpy arrays are allowed")


def load_pickle(path: str | os.PathLike):
    """Load a latin-1 (Python 2 compatible) pickle without executing code from it."""
    with open(path, "rb") as f:
        data = f.read()
    return loads_pickle(data, name=os.fspath(path))


def loads_pickle(data: bytes, name: str = "<bytes>"):
    try:
        return _RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except UnsafePickleError as err:
        raise UnsafePickleError(f"{name}: {err}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, struct.error, OverflowError, MemoryError) as err:
        detail = str(err) if len(str(err)) <= 60 else str(err)[:57] + "..."  # garbage bytes can make it kilobytes long
        raise VidactError(f"{name}: not a readable pickle checkpoint ({type(err).__name__}: {detail}); "
                          "pass a .pyth, .pkl or .safetensors checkpoint, re-downloaded if it is one") from None


def array_to_tensor(array: np.ndarray) -> torch.Tensor:
    """A tensor of an unpickled array: its shape and values, in C order.

    Not ``np.ascontiguousarray``: it returns at least 1-d, so a 0-d ``num_batches_tracked``
    would no longer fit the model.
    """
    # Writable too: protocol-5 pickles may hold arrays over read-only bytes, which torch warns about.
    return torch.from_numpy(np.require(array, requirements=["C", "W"]))
