"""Download checkpoints into vidact's cache, never leaving a partial file behind."""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from vidact.errors import VidactError
from vidact.fileutil import atomic_path
from vidact.paths import weights_dir

_CHUNK = 1 << 20
_TIMEOUT_S = 60


def cache_path(url: str) -> Path:
    """Where :func:`download` puts ``url`` by default: the URL's file name in the weights cache,
    after a digest of the whole URL (two URLs ending in ``model_final.pth`` are two files)."""
    name = Path(urllib.parse.unquote(urllib.parse.urlparse(url).path)).name
    if not name:
        raise VidactError(f"{url}: the URL names no file; pass dest=")
    return weights_dir() / f"{hashlib.sha256(url.encode()).hexdigest()[:12]}-{name}"


def sha256_of(path: str | os.PathLike) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(url: str, dest: str | os.PathLike | None = None, *, sha256: str | None = None, progress: bool = True) -> Path:
    """Fetch ``url`` to ``dest`` (default: the weights cache) and return the path.

    A file already at ``dest`` is reused without a request (and checked against
    ``sha256`` when one is pinned). The body streams into a temporary file in the
    destination folder and is renamed into place only once its size matches
    Content-Length and its sha256 matches ``sha256``; on any failure nothing is
    left behind and the :class:`VidactError` names the URL and the path where the
    file can be placed by hand.
    """
    dest = Path(dest) if dest is not None else cache_path(url)
    by_hand = f"download it by other means and place it at {dest}"
    if dest.is_file():
        if sha256 and sha256_of(dest).lower() != sha256.lower():
            raise VidactError(f"{dest}: cached file does not match the pinned sha256 {sha256}; delete it to download {url} again")
        return dest

    with atomic_path(dest) as tmp:  # readable as the umask allows, like any file vidact writes
        with open(tmp, "wb") as out:
            digest = _fetch(url, out, progress, by_hand)
        if sha256 and digest != sha256.lower():
            raise VidactError(f"{url}: sha256 {digest} does not match the pinned {sha256}; nothing was saved; check the URL or {by_hand}")
    return dest


def _fetch(url: str, out, progress: bool, by_hand: str) -> str:
    """Stream ``url`` into ``out``; return the hex sha256 of what was written."""
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
            if response.headers.get_content_type() == "text/html":  # a login or error page, served as 200
                raise VidactError(f"{url}: the server sent a web page, not a checkpoint; {by_hand}")
            length = response.headers.get("Content-Length")
            expected = int(length) if length and length.isdigit() else None
            received = 0
            with tqdm(total=expected, unit="B", unit_scale=True, unit_divisor=1024, desc=Path(urllib.parse.urlparse(url).path).name, disable=not progress) as bar:
                while chunk := response.read(_CHUNK):
                    try:
                        out.write(chunk)
                    except OSError as err:  # the disk, not the network: retrying would not help
                        raise VidactError(f"{out.name}: cannot save the download ({err.strerror or err}); "
                                          "free disk space or set VIDACT_HOME to another folder") from None
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as err:
        raise VidactError(f"{url}: HTTP {err.code} {err.reason}; {by_hand}") from None
    except urllib.error.URLError as err:
        raise VidactError(f"{url}: cannot connect ({err.reason}); if offline, {by_hand}") from None
    except (OSError, ValueError, http.client.HTTPException) as err:  # connection reset, timeout, IncompleteRead
        raise VidactError(f"{url}: download interrupted ({type(err).__name__}: {err}); retry, or {by_hand}") from None
    if expected is not None and received != expected:
        raise VidactError(f"{url}: download incomplete ({received} of {expected} bytes); retry, or {by_hand}")
    if received == 0:
        raise VidactError(f"{url}: the server sent an empty file; retry, or {by_hand}")
    return digest.hexdigest()
