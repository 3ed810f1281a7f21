"""Download checkpoints into vidact's cache, never leaving a partial file behind."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import json
import os
import struct
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import BinaryIO, Iterator

from tqdm.auto import tqdm

from vidact.errors import VidactError
from vidact.fileutil import atomic_path, part_files
from vidact.paths import weights_dir

_CHUNK = 1 << 20
_TIMEOUT_S = 60
# A running download writes every few seconds: a part file untouched this long was left by a killed one.
_STALE_PART_S = 3600
# A folder that cannot exist (VIDACT_HOME is a file) or be written (a read-only mount): free disk space would not help.
_NOT_WRITABLE = {errno.ENOTDIR, errno.EACCES, errno.EPERM, errno.EROFS}


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

    A whole file already at ``dest`` is reused without a request; one that fails the
    check below is deleted and fetched again. The body streams into a temporary file
    in the destination folder and is renamed into place only once it is whole: its
    size matches Content-Length, and it matches ``sha256`` when one is pinned, else
    :func:`incomplete_checkpoint` finds nothing wrong with it. On any failure nothing
    is left behind and the :class:`VidactError` names the URL and the path where the
    file can be placed by hand.
    """
    dest = Path(dest) if dest is not None else cache_path(url)
    by_hand = f"download it by other means and place it at {dest}"
    _remove_stale_parts(dest)
    if dest.is_file():
        if sha256 and sha256_of(dest).lower() == sha256.lower():
            return dest  # the pin vouches for it, whatever its format
        problem = incomplete_checkpoint(dest)
        if problem is None:
            if sha256:
                raise VidactError(f"{dest}: cached file does not match the pinned sha256 {sha256}; delete it to download {url} again")
            return dest
        print(f"vidact: {dest}: cached file is {problem}; deleting it and downloading {url} again", file=sys.stderr)
        dest.unlink()

    digest = hashlib.sha256()
    try:
        with atomic_path(dest) as tmp:  # readable as the umask allows, like any file vidact writes
            # Closed inside the guard: a full disk often shows only when the last chunk is flushed.
            with open(tmp, "wb") as out, contextlib.closing(_body(url, progress, by_hand)) as body:
                for chunk in body:
                    out.write(chunk)
                    digest.update(chunk)
            if sha256:
                if digest.hexdigest() != sha256.lower():
                    raise VidactError(f"{url}: sha256 {digest.hexdigest()} does not match the pinned {sha256}; nothing was saved; check the URL or {by_hand}")
            elif (problem := incomplete_checkpoint(tmp)) is not None:
                raise VidactError(f"{url}: download incomplete or not a checkpoint ({problem}); nothing was saved; "
                                  f"run again, or {by_hand}")
    except OSError as err:  # the disk, not the network (_body turns those into VidactError): retrying would not help
        if err.errno in _NOT_WRITABLE:
            advice = "that path cannot be a folder or is not writable; set VIDACT_HOME to a writable folder"
        else:
            advice = "free disk space there or set VIDACT_HOME to a folder with room"
        raise VidactError(f"{dest}: cannot save the download of {url} ({err.strerror or err}); {advice}") from None
    return dest


def _body(url: str, progress: bool, by_hand: str) -> Iterator[bytes]:
    """The body of ``url`` in chunks, with a progress bar; a network failure raises :class:`VidactError`."""
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
            if response.headers.get_content_type() == "text/html":  # a login or error page, served as 200
                raise VidactError(f"{url}: the server sent a web page, not a checkpoint; {by_hand}")
            length = response.headers.get("Content-Length")
            expected = int(length) if length and length.isdigit() else None
            received = 0
            with tqdm(total=expected, unit="B", unit_scale=True, unit_divisor=1024, desc=Path(urllib.parse.urlparse(url).path).name,
                      disable=None if progress else True) as bar:  # None: no bar off a terminal (a log file)
                while chunk := response.read(_CHUNK):
                    yield chunk
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


def _remove_stale_parts(dest: Path) -> None:
    """Delete the part files killed downloads to ``dest`` left."""
    with contextlib.suppress(OSError):  # an unreadable cache folder is reported by the download itself
        for part in part_files(dest):
            with contextlib.suppress(OSError):  # gone meanwhile, or another user's
                if time.time() - part.stat().st_mtime > _STALE_PART_S:
                    part.unlink()


# ------------------------------------------------------------------ completeness by format

_ZIP_END = b"PK\x05\x06"  # end of central directory record, 22 bytes plus a comment, ends every zip
_ZIP_END_MAX = 22 + 0xFFFF
_LEGACY_TORCH_MAGIC = b"\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"  # torch.save before the zip format
_PICKLE_STARTS = (b"\x80", b"(", b"}", b"]")  # PROTO 2+, or a protocol 0/1 mark, dict or list


def incomplete_checkpoint(path: str | os.PathLike) -> str | None:
    """What shows ``path`` is cut short or no checkpoint at all, or None when it looks whole.

    Cheap: reads the file's head and tail, never the tensors. The format is told from the
    bytes: a torch zip file ends with its end-of-central-directory record, a pickle (Caffe2
    and Detectron2 ``.pkl``) with the STOP opcode, a safetensors file where its header's
    last tensor ends; a legacy (pre-zip) torch file is taken as whole. Anything else (a web
    page) is no checkpoint.
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(16)
            if head.startswith(b"PK\x03\x04"):
                f.seek(max(0, size - _ZIP_END_MAX))
                return None if _zip_ends(f.read()) else "a torch zip file without its end record"
            if _LEGACY_TORCH_MAGIC in head:
                # Telling a whole one needs walking its pickles for the tensor sizes; the
                # zoo's servers send a Content-Length, which download() checks.
                return None
            from vidact.weights.native import looks_like_safetensors

            if looks_like_safetensors(head):
                f.seek(0)
                return _safetensors_problem(f, size)
            if head.startswith(_PICKLE_STARTS):
                f.seek(size - 1)
                return None if f.read(1) == b"." else "a pickle without its STOP opcode"
    except OSError as err:
        return f"unreadable ({err.strerror or err})"
    return f"not a torch, pickle or safetensors file: it starts with {head!r}" if size else "empty"


def _zip_ends(tail: bytes) -> bool:
    at = tail.rfind(_ZIP_END)
    if at < 0 or at + 22 > len(tail):
        return False
    (comment,) = struct.unpack("<H", tail[at + 20 : at + 22])
    return at + 22 + comment == len(tail)


def _safetensors_problem(f: BinaryIO, size: int) -> str | None:
    (length,) = struct.unpack("<Q", f.read(8))
    try:
        header = json.loads(f.read(length))
        end = max((entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__"), default=0)
        want = 8 + length + int(end)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return "a safetensors file with a damaged header"
    return None if size == want else f"a safetensors file of {size} bytes, its header says {want}"
