"""Atomic file output: a reader never sees a half-written file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator, Mapping, TypeVar

from vidact.errors import VidactError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is left as it was.
    The suffix is kept so that writers that pick a format from it (video muxers,
    matplotlib) still work.
    """
    path = Path(path)
    _refuse_folder(path)  # now, not at the rename at the end, whose error names the temporary file
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".part{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    # mkstemp creates the file private (0600); give the result the usual umask-based mode.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


Key = TypeVar("Key")


@contextlib.contextmanager
def atomic_paths(paths: Mapping[Key, str | os.PathLike]) -> Iterator[dict[Key, Path]]:
    """:func:`atomic_path` for files that belong together: all are renamed into place only when
    the block succeeds, so a failure on the last one (a full disk) leaves none of them."""
    with contextlib.ExitStack() as stack:
        yield {key: stack.enter_context(atomic_path(path)) for key, path in paths.items()}


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs):
    """``open()`` a temporary file that replaces ``path`` when the block succeeds; text is
    UTF-8 unless told otherwise (not the locale's encoding, which may lack a video's name)."""
    if "b" not in mode:
        kwargs.setdefault("encoding", "utf-8")
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as f:
        yield f


def check_writable_file(path: str | os.PathLike) -> None:
    """Raise a one-line :class:`~vidact.errors.VidactError` unless the file ``path`` can be
    written (not a folder; its folder writable), for checking an output before long work."""
    path = Path(path)
    _refuse_folder(path)
    check_writable_folder(path.parent)


def check_writable_folder(path: str | os.PathLike) -> None:
    """Raise a one-line :class:`~vidact.errors.VidactError` unless files can be written into the
    folder ``path`` (made on writing if missing): for checking an output before long work,
    without creating anything."""
    path = Path(path)
    existing = path
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise VidactError(f"{path}: cannot write output there ({existing} is not a folder); pass a writable folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise VidactError(f"{path}: cannot write output there ({reason}); pass a writable folder") from None


def _refuse_folder(path: Path) -> None:
    if path.is_dir():
        raise VidactError(f"{path}: is a folder; name a file to write")
