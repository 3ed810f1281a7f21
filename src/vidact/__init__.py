"""vidact: video action recognition and spatio-temporal action detection."""

__version__ = "0.1.0"

from vidact.api import classify, create_model, detect, list_models  # noqa: E402
from vidact.errors import VidactError  # noqa: E402

__all__ = ["VidactError", "__version__", "classify", "create_model", "detect", "list_models"]
