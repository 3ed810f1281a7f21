"""Entry point: discovers the subcommand modules and maps errors to exit codes."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import pkgutil
import re
import signal
import sys
import warnings
from pathlib import Path

import vidact
import vidact.cli
from vidact.errors import VidactError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vidact", description="Video action recognition and detection.")
    parser.add_argument("--version", action="version", version=f"vidact {vidact.__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(vidact.cli.__path__), key=lambda m: m.name):
        if info.name == "main":
            continue
        module = importlib.import_module(f"vidact.cli.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    with _discard_output_once_unread():
        return _run_command(argv)


def _run_command(argv: list[str] | None) -> int:
    prefix = "vidact"  # "vidact COMMAND" once the command is known
    previous_term = _terminate_like_interrupt()
    try:
        parser = build_parser()  # imports torch: seconds in which Ctrl-C must be caught too
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        prefix = f"vidact {args.command}"
        configure_logging()
        with warnings_as_lines(prefix):
            status = args.func(args)
    except VidactError as err:
        print(f"{prefix}: error: {_one_line(str(err))}", file=sys.stderr)
        return 2
    except OSError as err:  # an output that cannot be written: unwritable folder, full disk
        where = f"{err.filename}: " if err.filename else ""
        print(f"{prefix}: error: {where}{err.strerror or err}; check the path: a writable folder "
              "with free space", file=sys.stderr)
        return 2
    except MemoryError as err:  # torch.OutOfMemoryError is a RuntimeError: the GPU's is caught below
        print(f"{prefix}: error: out of memory{_memory_detail(err)}; close other programs, or ask for less: "
              "a smaller batch, clip or video size", file=sys.stderr)
        return 2
    except RuntimeError as err:
        if not _is_gpu_out_of_memory(err):
            raise  # a bug: its traceback is what to report
        print(f"{prefix}: error: out of GPU memory{_memory_detail(err)}; free the GPU of other jobs "
              "(vidact gpu-monitor shows them), or ask for less: a smaller batch, clip or video size, "
              "or --device cpu where the command has it", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr)
        return 130
    finally:
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)
    return int(status or 0)


def configure_logging() -> None:
    """vidact's log lines (training progress, checkpoints saved and resumed) on stderr, whatever
    the command. Under torchrun only rank 0 logs them, as PySlowFast logs on the master only;
    the other ranks still show warnings and errors. Other libraries log warnings and errors only."""
    from vidact.engine import distributed as dist

    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("vidact").setLevel(logging.INFO if dist.is_main_process() else logging.WARNING)


@contextlib.contextmanager
def warnings_as_lines(prefix: str):
    """Print vidact's own warnings as one ``PREFIX: warning: ...`` line (its notices as
    ``notice:``, each time they occur); other libraries' warnings print as usual."""
    from vidact.pipeline.detect import DetectNotice

    package = str(Path(vidact.__file__).parent)
    with warnings.catch_warnings():
        warnings.simplefilter("always", DetectNotice)
        show = warnings.showwarning

        def show_line(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, DetectNotice):
                print(f"{prefix}: notice: {message}", file=sys.stderr)
            elif str(filename).startswith(package):
                print(f"{prefix}: warning: {message}", file=sys.stderr)
            else:
                show(message, category, filename, lineno, file, line)

        warnings.showwarning = show_line
        yield


@contextlib.contextmanager
def _discard_output_once_unread():
    """Let a command whose output is piped into ``head`` and the like carry on and write its
    files: once the reader of stdout or stderr has gone, what is printed there is discarded."""
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = (_DiscardOnceUnread(stream) for stream in streams)
    try:
        yield
    finally:
        # Output still buffered would otherwise fail at exit, after the reader has gone.
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = streams


class _DiscardOnceUnread:
    """A text stream that points its file descriptor at os.devnull once its pipe's reader has
    gone, as the Python docs advise for SIGPIPE, instead of failing every later write.
    ``discarded`` tells a command that would print forever (gpu-monitor) that nobody reads it."""

    def __init__(self, stream):
        self._stream = stream
        self.discarded = False

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._discard()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._discard()

    def _discard(self) -> None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self._stream.fileno())
        os.close(devnull)
        self.discarded = True

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _terminate_like_interrupt():
    """Let SIGTERM (``timeout``, ``kill``, a scheduler) unwind like Ctrl-C, so that no temporary
    output is left behind; returns the handler it replaced (None off the main thread)."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        return None


def _is_gpu_out_of_memory(error: RuntimeError) -> bool:
    import torch

    # cuDNN and cuBLAS report their failed allocations as plain RuntimeErrors.
    return isinstance(error, torch.OutOfMemoryError) or any(
        marker in str(error) for marker in ("CUDNN_STATUS_ALLOC_FAILED", "CUBLAS_STATUS_ALLOC_FAILED"))


def _memory_detail(error: BaseException) -> str:
    """The size torch asked for ("Tried to allocate 2.00 GiB"), without its paragraph of advice."""
    found = re.search(r"Tried to allocate ([\d.]+ \w+)", str(error))
    return f" (tried to allocate {found.group(1)})" if found else ""


def _one_line(message: str) -> str:
    # An error raised in a DataLoader worker comes back wrapped with the worker's traceback;
    # its last line is the error itself ("vidact.errors.VidactError: ...").
    lines = [line for line in message.splitlines() if line.strip()]
    if len(lines) > 1 and "Original Traceback" in message:
        return re.sub(r"^[\w.]*Error: ", "", lines[-1])
    return message


if __name__ == "__main__":
    sys.exit(main())
