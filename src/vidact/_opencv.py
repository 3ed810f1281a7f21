"""OpenCV when it is installed (the ``detect`` extra brings it, through ``trackers``), else None.

vidact never needs it: where it is present, a few per-frame conversions use its
multi-threaded kernels, which release the GIL, instead of slower equivalents.
"""

from __future__ import annotations

import functools
from types import ModuleType


@functools.cache
def opencv() -> ModuleType | None:
    try:
        import cv2
    except ImportError:
        return None
    return cv2
