"""Read GPU utilisation and memory through NVML (``nvidia-ml-py``), like ``nvidia-smi --query-gpu``.

Three users share this module:

* ``vidact gpu-monitor`` prints a live table and appends CSV rows (:func:`monitor`);
* ``vidact doctor`` lists GPUs, driver and compute capability (:class:`Nvml`);
* long runs (``detect``, ``train``) record utilisation next to their own metrics
  (:class:`GpuSampler` / :func:`sample_gpus`), which must cost nothing without a GPU.

The NVML module is looked up as ``pynvml`` at call time, or passed in. Tests pass a
fake module with the same functions, so the code path is the one a real driver takes.
"""

from __future__ import annotations

import csv
import importlib
import io
import math
import os
import re
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Callable, TextIO

from vidact.errors import VidactError

MIB = 1024 * 1024

#: CSV header, the ``nvidia-smi --query-gpu=... --format=csv,nounits`` names plus timestamp and index.
CSV_COLUMNS = (
    "timestamp",
    "index",
    "name",
    "utilization.gpu [%]",
    "utilization.memory [%]",
    "memory.total [MiB]",
    "memory.free [MiB]",
    "memory.used [MiB]",
)


class NvmlUnavailable(VidactError):
    """No NVML: ``nvidia-ml-py`` is not installed, or no NVIDIA driver answers."""


@dataclass(frozen=True)
class GpuSample:
    """One GPU at one moment. Utilisation in percent, memory in MiB; None where NVML does not report a value."""

    timestamp: datetime
    index: int
    name: str | None
    utilization_gpu: int | None
    utilization_memory: int | None
    memory_total_mib: int | None
    memory_free_mib: int | None
    memory_used_mib: int | None

    def csv_row(self) -> list[str]:
        """The row under :data:`CSV_COLUMNS`; unreported values are empty."""
        values = (
            self.timestamp.isoformat(timespec="milliseconds"),
            self.index,
            self.name,
            self.utilization_gpu,
            self.utilization_memory,
            self.memory_total_mib,
            self.memory_free_mib,
            self.memory_used_mib,
        )
        return ["" if v is None else str(v) for v in values]


@dataclass(frozen=True)
class GpuInfo:
    """What the doctor needs from NVML about one GPU; None where NVML does not report a value.

    ``uuid`` (32 lower-case hex digits) and ``pci`` (domain, bus, device) find the same GPU
    among torch's devices, which CUDA numbers in another order.
    """

    index: int
    name: str | None
    compute_capability: tuple[int, int] | None
    memory_total_mib: int | None
    uuid: str | None = None
    pci: tuple[int, int, int] | None = None


def _text(value: str | bytes | None) -> str | None:
    # nvidia-ml-py < 11.515 returned bytes for names and versions.
    return value.decode() if isinstance(value, bytes) else value


def normalize_uuid(uuid: str | bytes | None) -> str | None:
    """A GPU UUID as 32 lower-case hex digits, as NVML (``GPU-8f6b...-...``) and torch (``8f6b...-...``) write it."""
    text = _text(uuid)
    if not text:
        return None
    text = text.strip().lower().removeprefix("gpu-").replace("-", "")
    return text if re.fullmatch(r"[0-9a-f]{32}", text) else None


class Nvml:
    """An initialised NVML session; use as a context manager, or call :meth:`close`."""

    def __init__(self, module: ModuleType | None = None) -> None:
        """Initialise NVML from ``module`` (default: ``import pynvml``); :class:`NvmlUnavailable` if that fails."""
        if module is None:
            try:
                module = importlib.import_module("pynvml")
            except ImportError as err:
                raise NvmlUnavailable(
                    "nvidia-ml-py is not installed; install it with: pip install 'vidact[gpu]'"
                ) from err
        self.nvml = module
        try:
            module.nvmlInit()
        except module.NVMLError as err:
            raise NvmlUnavailable(
                f"no NVIDIA driver found (NVML: {err}); install the NVIDIA driver to use GPUs"
            ) from err
        self._open = True

    def __enter__(self) -> Nvml:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Shut NVML down; safe to call twice."""
        if self._open:
            self._open = False
            self.nvml.nvmlShutdown()

    def device_count(self) -> int:
        """The number of GPUs; :class:`NvmlUnavailable` when NVML cannot say (nothing per GPU can be read then)."""
        try:
            return self.nvml.nvmlDeviceGetCount()
        except self.nvml.NVMLError as err:
            raise NvmlUnavailable(f"NVML cannot count the GPUs ({err}); check the driver with nvidia-smi") from err

    def _read(self, query: Callable, *args: object) -> object:
        """``query(*args)``, or None when NVML refuses: not supported, no permission (a MIG-enabled GPU for a
        non-root user), GPU lost. One unreadable value must not cost the others, nor stop a monitor or a job."""
        try:
            return query(*args)
        except self.nvml.NVMLError:
            return None

    def driver_version(self) -> str | None:
        """The NVIDIA driver version, e.g. ``"580.65.06"``."""
        return _text(self._read(self.nvml.nvmlSystemGetDriverVersion))

    def driver_cuda_version(self) -> tuple[int, int] | None:
        """The newest CUDA version the driver supports, e.g. ``(13, 0)``."""
        packed = self._read(self.nvml.nvmlSystemGetCudaDriverVersion)
        return None if packed is None else (packed // 1000, packed % 1000 // 10)

    def info(self, index: int) -> GpuInfo:
        """Name, compute capability, memory and identity of GPU ``index``; NVMLError only when the GPU is lost."""
        handle = self.nvml.nvmlDeviceGetHandleByIndex(index)
        capability = self._read(self.nvml.nvmlDeviceGetCudaComputeCapability, handle)
        memory = self._read(self.nvml.nvmlDeviceGetMemoryInfo, handle)
        pci = self._read(self.nvml.nvmlDeviceGetPciInfo, handle)
        return GpuInfo(
            index,
            _text(self._read(self.nvml.nvmlDeviceGetName, handle)),
            tuple(capability) if capability is not None else None,
            memory.total // MIB if memory is not None else None,
            normalize_uuid(self._read(self.nvml.nvmlDeviceGetUUID, handle)),
            (pci.domain, pci.bus, pci.device) if pci is not None else None,
        )

    def sample(self, index: int, timestamp: datetime | None = None) -> GpuSample:
        """Utilisation and memory of GPU ``index`` now; what NVML does not report is None."""
        handle = self._read(self.nvml.nvmlDeviceGetHandleByIndex, index)
        name = rates = memory = None
        if handle is not None:
            name = _text(self._read(self.nvml.nvmlDeviceGetName, handle))
            # Some GPUs (and MIG slices) do not report utilisation; nvidia-smi prints [N/A].
            rates = self._read(self.nvml.nvmlDeviceGetUtilizationRates, handle)
            memory = self._read(self.nvml.nvmlDeviceGetMemoryInfo, handle)
        return GpuSample(
            timestamp=timestamp or datetime.now().astimezone(),
            index=index,
            name=name,
            utilization_gpu=int(rates.gpu) if rates is not None else None,
            utilization_memory=int(rates.memory) if rates is not None else None,
            memory_total_mib=memory.total // MIB if memory is not None else None,
            memory_free_mib=memory.free // MIB if memory is not None else None,
            memory_used_mib=memory.used // MIB if memory is not None else None,
        )

    def sample_all(self) -> list[GpuSample]:
        """One sample per GPU, all with the same timestamp."""
        now = datetime.now().astimezone()
        return [self.sample(i, now) for i in range(self.device_count())]


class GpuSampler:
    """Samples every GPU on demand for long runs; a no-op without NVML.

    Open it once (NVML initialisation is the expensive part) and call :meth:`metrics`
    at each logging step::

        with GpuSampler() as gpus:
            for step in ...:
                log({**train_metrics, **gpus.metrics()})
    """

    def __init__(self, nvml_module: ModuleType | None = None) -> None:
        try:
            self._nvml: Nvml | None = Nvml(nvml_module)
        except NvmlUnavailable:
            self._nvml = None

    @property
    def available(self) -> bool:
        """Whether NVML answered (a driver is installed); False means every call returns nothing."""
        return self._nvml is not None

    def __enter__(self) -> GpuSampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._nvml is not None:
            self._nvml.close()
            self._nvml = None

    def sample(self) -> list[GpuSample]:
        """One sample per GPU; ``[]`` without a driver, or when NVML cannot count the GPUs."""
        if self._nvml is None:
            return []
        try:
            return self._nvml.sample_all()
        except NvmlUnavailable:  # a job must not stop because its GPU log cannot be written
            return []

    def metrics(self) -> dict[str, float]:
        """Flat scalars for a metrics log, e.g. ``{"gpu0/util_pct": 97, "gpu0/mem_used_mib": 20480}``."""
        return gpu_metrics(self.sample())


class GpuUsageRecorder:
    """Samples every GPU on a background thread while a job runs; :meth:`stop` summarises.

    One sample at the end of a job says little about it (the GPU is idle by then): this
    gives each GPU's mean utilisation over the job and its peak memory use, as
    ``gpu<i>/util_pct_mean``, ``gpu<i>/mem_util_pct_mean``, ``gpu<i>/mem_used_mib_peak`` and
    ``gpu<i>/mem_total_mib``. Without a driver it records nothing and ``stop()`` returns ``{}``.
    It owns ``sampler``: ``stop()`` closes it.
    """

    def __init__(self, sampler: GpuSampler, interval: float = 0.5) -> None:
        self._sampler = sampler
        self.interval = interval
        self.samples: list[list[GpuSample]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vidact-gpu-usage", daemon=True)

    def start(self) -> GpuUsageRecorder:
        self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            self.samples.append(self._sampler.sample())
            if self._stop.wait(self.interval):
                return

    def stop(self) -> dict[str, float]:
        """Stop sampling and return the summary."""
        self._stop.set()
        self._thread.join()
        self._sampler.close()
        metrics: dict[str, float] = {}
        by_gpu: dict[int, list[GpuSample]] = {}
        for sample in (s for moment in self.samples for s in moment):
            by_gpu.setdefault(sample.index, []).append(sample)
        for index, samples in sorted(by_gpu.items()):
            # Means and peaks over the samples that reported the value; a value never reported is left out.
            for key, values, summary in (
                ("util_pct_mean", [s.utilization_gpu for s in samples], lambda v: round(statistics.fmean(v), 1)),
                ("mem_util_pct_mean", [s.utilization_memory for s in samples], lambda v: round(statistics.fmean(v), 1)),
                ("mem_used_mib_peak", [s.memory_used_mib for s in samples], max),
                ("mem_total_mib", [s.memory_total_mib for s in samples], lambda v: v[-1]),
            ):
                reported = [v for v in values if v is not None]
                if reported:
                    metrics[f"gpu{index}/{key}"] = summary(reported)
        return metrics


def sample_gpus(nvml_module: ModuleType | None = None) -> list[GpuSample]:
    """One sample per GPU, opening and closing NVML; ``[]`` when there is no driver or no ``nvidia-ml-py``."""
    with GpuSampler(nvml_module) as sampler:
        return sampler.sample()


def gpu_metrics(samples: list[GpuSample]) -> dict[str, float]:
    """Samples as flat scalars named ``gpu<index>/<quantity>``, for logs next to loss and throughput."""
    metrics: dict[str, float] = {}
    for s in samples:
        for key, value in (
            ("util_pct", s.utilization_gpu),
            ("mem_util_pct", s.utilization_memory),
            ("mem_used_mib", s.memory_used_mib),
            ("mem_total_mib", s.memory_total_mib),
        ):
            if value is not None:  # unreported values are left out, not logged as 0
                metrics[f"gpu{s.index}/{key}"] = value
    return metrics


def format_table(samples: list[GpuSample]) -> str:
    """A fixed-width table of one round of samples, with units in the cells like ``nvidia-smi``."""

    def cell(value: object, unit: str = "") -> str:
        return "[N/A]" if value is None else f"{value}{unit}"

    header = ("idx", "name", "util.gpu", "util.mem", "mem.total", "mem.free", "mem.used")
    rows = [
        (
            str(s.index),
            cell(s.name),
            cell(s.utilization_gpu, " %"),
            cell(s.utilization_memory, " %"),
            cell(s.memory_total_mib, " MiB"),
            cell(s.memory_free_mib, " MiB"),
            cell(s.memory_used_mib, " MiB"),
        )
        for s in samples
    ]
    widths = [max(len(r[c]) for r in (header, *rows)) for c in range(len(header))]
    # Name left-aligned, numbers right-aligned.
    lines = [
        "  ".join(cell.ljust(w) if c == 1 else cell.rjust(w) for c, (cell, w) in enumerate(zip(row, widths)))
        for row in (header, *rows)
    ]
    stamp = samples[0].timestamp.strftime("%Y-%m-%d %H:%M:%S") if samples else ""
    return "\n".join([stamp, *lines])


class CsvLog:
    """Appends sample rows to a CSV file; writes the header only when the file is new or empty.

    Each round of samples goes out in one ``write`` on a file opened for appending, so a
    reader (or a crash) never sees a partial round; rewriting the file atomically each
    interval would cost time quadratic in the run length.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise VidactError(f"{self.path} is a directory; pass a file name to --csv")
        # A header written by hand or cut short may lack its newline: the first row must not join it.
        self._needs_newline = False
        if self.path.exists() and self.path.stat().st_size > 0:
            self._check_header()
            with open(self.path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                self._needs_newline = f.read(1) != b"\n"
            self._needs_header = False
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._needs_header = True

    def _check_header(self) -> None:
        try:
            with open(self.path, newline="", encoding="utf-8") as f:
                first = next(csv.reader(f), [])
        except (UnicodeDecodeError, csv.Error):  # binary, another encoding, a line too long for a CSV field
            first = None
        if first is None or tuple(first) != CSV_COLUMNS:
            found = "not UTF-8 CSV text" if first is None else f"header {first[:3]}..."
            raise VidactError(f"{self.path} exists and is not a gpu-monitor CSV ({found}); pick another --csv file")

    def append(self, samples: list[GpuSample]) -> None:
        """Append one row per sample."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        if self._needs_newline:
            buffer.write("\n")
        if self._needs_header:
            writer.writerow(CSV_COLUMNS)
        writer.writerows(s.csv_row() for s in samples)
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            f.write(buffer.getvalue())
        self._needs_header = self._needs_newline = False


def monitor(
    nvml: Nvml,
    interval: float = 5.0,
    count: int | None = None,
    csv_path: str | os.PathLike | None = None,
    out: TextIO | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Print a table of all GPUs every ``interval`` seconds, ``count`` times (None: until Ctrl-C).

    The table is redrawn in place on a terminal and printed one after another otherwise
    (logs, pipes). Rows are appended to ``csv_path`` when given. ``out`` defaults to stdout.
    Without ``csv_path``, the monitor stops once ``out`` has been discarded because its reader
    has gone (``vidact gpu-monitor | head``), as ``nvidia-smi -l`` does. Returns the number of rounds.
    """
    out = out or sys.stdout
    if not (math.isfinite(interval) and interval > 0):
        raise VidactError(f"--interval must be a positive, finite number of seconds, got {interval}")
    if count is not None and count < 1:
        raise VidactError(f"--count must be at least 1, got {count}")
    log = CsvLog(csv_path) if csv_path is not None else None
    redraw = out.isatty()
    rounds = 0
    try:
        while count is None or rounds < count:
            if rounds:
                sleep(interval)
            samples = nvml.sample_all()
            if log is not None:
                log.append(samples)
            # Home the cursor and clear the screen, so the table stays in place.
            out.write(("\x1b[H\x1b[2J" if redraw else "") + format_table(samples) + "\n")
            out.flush()
            rounds += 1
            if log is None and getattr(out, "discarded", False):
                break  # nothing is left to show the samples to
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a live monitor is meant to stop.
    return rounds
