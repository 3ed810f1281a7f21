"""Atomic file output: a reader never sees a half-written file."""

from __future__ import annotations

import contextlib
import glob
import os
import stat
import tempfile
from pathlib import Path
from typing import Iterator, Mapping, TypeVar

from vidact.errors import VidactError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is left as it was.
    The suffix is kept so that writers that pick a format from it (video muxers,
    matplotlib) still work. A symlink is followed (its target gets the new content, the
    link stays); an existing path that is not a regular file (``/dev/null``, a FIFO) is
    yielded itself, to be written straight into: replacing it would destroy it. An
    ``OSError`` naming the temporary file is re-raised naming ``path``.
    """
    path = _resolve_link(Path(path))
    _refuse_folder(path)  # now, not at the rename at the end, whose error names the temporary file
    if _is_special(path):
        yield path
        return
    made = _make_folders(path.parent)
    done = False
    try:
        try:
            fd, tmp = tempfile.mkstemp(prefix=_part_prefix(path), suffix=_part_suffix(path), dir=path.parent)
        except OSError as err:  # named after the output, not the temporary name
            raise OSError(err.errno, err.strerror, str(path)) from None
        os.close(fd)
        tmp = Path(tmp)
        # mkstemp creates the file private (0600); give the result the usual umask-based mode.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        try:
            yield tmp
            os.replace(tmp, path)
            done = True
        except OSError as err:
            if err.filename is None or os.fspath(err.filename) != str(tmp):
                raise
            # "..out.x1y2.part.mp4: No space left on device" means nothing to the user: name the output.
            raise OSError(err.errno, err.strerror, str(path)).with_traceback(err.__traceback__) from None
        finally:
            tmp.unlink(missing_ok=True)
    finally:
        if not done:  # a failed run leaves no empty output folder behind either
            _remove_empty(made)


def _part_prefix(path: Path) -> str:
    return f".{path.stem}."


def _part_suffix(path: Path) -> str:
    return f".part{path.suffix}"


def part_files(path: str | os.PathLike) -> list[Path]:
    """The temporary files :func:`atomic_path` has beside ``path`` (a killed writer leaves its own):
    the prefix, mkstemp's 8 random characters, the suffix, so no other output's parts match."""
    path = _resolve_link(Path(path))
    pattern = glob.escape(_part_prefix(path)) + "?" * 8 + glob.escape(_part_suffix(path))
    return list(path.parent.glob(pattern))


def _make_folders(folder: Path) -> list[Path]:
    """Make ``folder`` and its missing parents; return the ones this call made, deepest first."""
    missing = []
    while not folder.exists() and folder.parent != folder:
        missing.append(folder)
        folder = folder.parent
    for each in reversed(missing):
        each.mkdir(exist_ok=True)
    return missing


def _remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first) while they are empty: another writer may have used them."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def _resolve_link(path: Path) -> Path:
    """``path``, or the file it links to: writing must update the target, not replace the link."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def is_regular_file_path(path: str | os.PathLike) -> bool:
    """Whether ``path`` is, or would be created as, a plain file that can be replaced again
    (not a device, a FIFO or a /proc/self/fd link, which take one write each)."""
    path = Path(path)
    return not _is_special(_resolve_link(path)) and not os.fspath(path).startswith(("/proc/", "/dev/"))


def _is_special(path: Path) -> bool:
    """Whether ``path`` exists and is neither a regular file nor a folder (a device, a FIFO)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


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
    path = _resolve_link(Path(path))
    _refuse_folder(path)
    if _is_special(path):  # /dev/null, a FIFO: written into, not beside
        if not os.access(path, os.W_OK):
            raise VidactError(f"{path}: cannot write output there (permission denied); pass a writable file")
        return
    check_writable_folder(path.parent)


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file (through links, and hard links when both exist): an
    output renamed over its input would replace it."""
    paths = []
    for path in (os.fspath(a), os.fspath(b)):
        if "://" in path:  # a stream; file:// is the file it names (as VideoReader reads it)
            if not path.startswith("file://"):
                return False
            path = path.removeprefix("file://")
        paths.append(Path(path))
    a, b = paths
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except (OSError, RuntimeError):  # a link loop (RuntimeError before Python 3.13): no file to replace
        return False


def nearest_existing(path: Path) -> Path:
    """``path``, else its nearest ancestor that exists: where creating ``path`` starts."""
    # os.path.exists is False, never an error, below a regular file or an unreadable folder.
    while not os.path.exists(path) and path != path.parent:
        path = path.parent
    return path


def check_writable_folder(path: str | os.PathLike) -> None:
    """Raise a one-line :class:`~vidact.errors.VidactError` unless files can be written into the
    folder ``path`` (made on writing if missing): for checking an output before long work,
    without creating anything."""
    path = Path(path)
    existing = nearest_existing(path)
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
