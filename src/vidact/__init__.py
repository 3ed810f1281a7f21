"""vidact: video action recognition and spatio-temporal action detection."""

from typing import TYPE_CHECKING

from vidact.errors import VidactError

__version__ = "0.1.0"

__all__ = ["VidactError", "__version__", "classify", "create_model", "detect", "list_models"]

# vidact.api imports torch, which takes seconds: loaded on first use, so that `vidact` (the CLI imports
# this package first) catches a Ctrl-C in those seconds instead of dying with a traceback.
_API_NAMES = ("classify", "create_model", "detect", "list_models")

if TYPE_CHECKING:
    from vidact.api import classify, create_model, detect, list_models


def __getattr__(name: str) -> object:
    if name in _API_NAMES:
        from vidact import api

        return getattr(api, name)
    raise AttributeError(f"module 'vidact' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API_NAMES))
