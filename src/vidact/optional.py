"""Optional dependencies that speed things up when installed and are never required."""

from __future__ import annotations

import functools


@functools.cache
def opencv():
    """OpenCV (``cv2``) when it is installed (the ``detect`` extra brings it, through ``trackers``), else None."""
    try:
        import cv2
    except ImportError:
        return None
    return cv2
