"""Where vidact keeps downloaded weights and other cached files."""

from __future__ import annotations

import os
from pathlib import Path


def vidact_home() -> Path:
    """``$VIDACT_HOME``, else ``$XDG_CACHE_HOME/vidact``, else ``~/.cache/vidact``."""
    if os.environ.get("VIDACT_HOME"):  # set but empty: unset, as for XDG_CACHE_HOME
        return Path(os.environ["VIDACT_HOME"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "vidact"


def weights_dir() -> Path:
    """The folder downloaded checkpoints are cached in."""
    return vidact_home() / "weights"
