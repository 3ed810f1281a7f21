"""``vidact doctor``: which versions, GPUs, CPU features, codecs and cached weights this machine has,
and whether they work together.

:func:`collect` builds one JSON-ready report (its shape is ``doctor_schema.json`` beside
this file); :func:`format_report` renders it as text for bug reports; :func:`exit_status`
is 0 when everything needed is usable (a CPU-only machine is usable) and 1 otherwise.

The judgements are pure functions with their inputs passed in, so that tests can put any
GPU in front of any torch build: :func:`arch_verdict`, :func:`driver_verdict`,
:func:`bf16_verdict`.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform
import re
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, Sequence

import vidact
from vidact.fileutil import nearest_existing
from vidact.paths import weights_dir
from vidact.tools.gpu_monitor import GpuInfo, Nvml, NvmlUnavailable, normalize_uuid

SCHEMA_VERSION = 1

#: First CUDA toolkit that compiles native kernels (SASS) for a compute capability.
MIN_CUDA: dict[tuple[int, int], tuple[int, int]] = {
    (5, 0): (6, 0), (5, 2): (6, 5), (5, 3): (7, 0),
    (6, 0): (8, 0), (6, 1): (8, 0), (6, 2): (8, 0),
    (7, 0): (9, 0), (7, 2): (10, 0), (7, 5): (10, 0),
    (8, 0): (11, 0), (8, 6): (11, 1), (8, 7): (11, 4), (8, 9): (11, 8),
    (9, 0): (11, 8),
    (10, 0): (12, 8), (10, 1): (12, 8), (10, 3): (12, 9),
    (11, 0): (13, 0),
    (12, 0): (12, 8), (12, 1): (12, 9),
}

#: Last CUDA toolkit that still compiles for an architecture it later dropped.
#: CUDA 13.0 dropped Maxwell, Pascal and Volta, and renumbered sm_101 as sm_110.
MAX_CUDA: dict[tuple[int, int], tuple[int, int]] = {
    cc: (12, 9) for cc in [(5, 0), (5, 2), (5, 3), (6, 0), (6, 1), (6, 2), (7, 0), (7, 2), (10, 1)]
}

#: Oldest Linux driver for each CUDA major version (minor-version compatibility covers the rest).
MIN_DRIVER = {11: "450.80.02", 12: "525.60.13", 13: "580.65.06"}

VerdictStatus = Literal["ok", "jit", "broken"]


@dataclass(frozen=True)
class ArchVerdict:
    """Whether a torch build has kernels for a GPU: ``ok`` (native), ``jit`` (PTX, slow first start) or ``broken``."""

    status: VerdictStatus
    message: str
    fix: str | None = None


@dataclass(frozen=True)
class _Arch:
    ptx: bool  # compute_XY (PTX, JIT-compiled by the driver) rather than sm_XY (native SASS)
    capability: tuple[int, int]
    suffix: str  # "" portable, "a" this exact GPU only, "f" this major (family), same or higher minor

    def runs_on(self, gpu: tuple[int, int]) -> bool:
        if self.suffix == "a":
            return self.capability == gpu
        if self.suffix == "f" or not self.ptx:
            # Native code, and family code, runs within one major version on the same or a later minor.
            return self.capability[0] == gpu[0] and self.capability[1] <= gpu[1]
        return self.capability <= gpu  # portable PTX is forward compatible across majors


_ARCH_NAME = re.compile(r"^(sm|compute)_(\d+)(\d)([af]?)$")


def _parse_arch(name: str) -> _Arch | None:
    match = _ARCH_NAME.match(name.strip())
    if match is None:
        return None
    kind, major, minor, suffix = match.groups()
    return _Arch(kind == "compute", (int(major), int(minor)), suffix)


def _sm(capability: tuple[int, int]) -> str:
    return f"sm_{capability[0]}{capability[1]}"


def _version(v: tuple[int, int]) -> str:
    return f"{v[0]}.{v[1]}"


def _parse_version(text: str | None) -> tuple[int, int] | None:
    match = re.match(r"^(\d+)\.(\d+)", text or "")
    return (int(match[1]), int(match[2])) if match else None


def _torch_fix(capability: tuple[int, int], build_cuda: str | None) -> str:
    """One line: which torch build to install for a GPU this build cannot run."""
    sm = _sm(capability)
    low, high = MIN_CUDA.get(capability), MAX_CUDA.get(capability)
    if low is None:
        if capability < (5, 0):
            return f"{sm} is older than any current CUDA toolkit supports; use a newer GPU or run on the CPU"
        return (
            f"no CUDA version known to vidact targets {sm}; install the newest torch and check"
            " torch.cuda.get_arch_list()"
        )
    build = _parse_version(build_cuda)
    if high is not None and build is not None and build > high:
        return (
            f"CUDA {_version(build)} dropped {sm}; install a torch built for CUDA {_version(low)} to {_version(high)}"
            f" whose torch.cuda.get_arch_list() lists {sm}"
        )
    if build is not None and build >= low:
        return (
            f"this build (CUDA {_version(build)}) was compiled without {sm}; install an official torch wheel for"
            f" CUDA >= {_version(low)} or rebuild with TORCH_CUDA_ARCH_LIST={_version(capability)}"
        )
    return f"install a torch built for CUDA >= {_version(low)}"


def arch_verdict(
    capability: tuple[int, int], arch_list: Sequence[str], build_cuda: str | None = None
) -> ArchVerdict:
    """Judge whether a torch build with ``arch_list`` (``torch.cuda.get_arch_list()``) runs on a GPU.

    A GPU of compute capability X.Y runs native code built for sm_XZ with Z <= Y (the
    ``a`` variants such as sm_90a only on X.Y itself; the ``f`` family variants within
    major X), and otherwise PTX (``compute_XY``) for an older or equal architecture,
    JIT-compiled by the driver at first use. ``build_cuda`` (``torch.version.cuda``)
    sharpens the fix.
    """
    sm = _sm(capability)
    archs = [(name, arch) for name in arch_list if (arch := _parse_arch(name)) is not None]
    if not archs:
        return ArchVerdict(
            "broken",
            f"this torch build has no CUDA kernels at all (a CPU-only build), so the {sm} GPU is unused",
            _torch_fix(capability, None),
        )
    native = [name for name, arch in archs if not arch.ptx and arch.runs_on(capability)]
    if native:
        exact = [name for name in native if _parse_arch(name).capability == capability]
        how = "native kernels" if exact else "binary-compatible kernels"
        return ArchVerdict("ok", f"{sm}: {how} ({', '.join(exact or native)}) in this torch build")
    ptx = [name for name, arch in archs if arch.ptx and arch.runs_on(capability)]
    carried = " ".join(name for name, _ in archs)
    if ptx:
        return ArchVerdict(
            "jit",
            f"{sm}: no native kernels; the driver JIT-compiles the {', '.join(ptx)} PTX at first use"
            " (works, but the first start takes minutes)",
            _torch_fix(capability, build_cuda) + " for native kernels",
        )
    return ArchVerdict(
        "broken",
        f"the build has no {sm} kernels (it carries {carried})",
        _torch_fix(capability, build_cuda),
    )


def driver_verdict(driver_cuda: tuple[int, int] | None, build_cuda: str | None) -> ArchVerdict | None:
    """Whether the driver (newest CUDA it supports) can run torch's CUDA runtime; None when either is unknown."""
    build = _parse_version(build_cuda)
    if driver_cuda is None or build is None:
        return None
    needed = (
        f"update the NVIDIA driver to >= {MIN_DRIVER.get(build[0], 'the newest')}"
        f" or install a torch built for CUDA <= {_version(driver_cuda)}"
    )
    if driver_cuda[0] < build[0]:
        return ArchVerdict(
            "broken", f"the driver supports CUDA {_version(driver_cuda)} but torch needs CUDA {_version(build)}", needed
        )
    if driver_cuda < build:
        # Minor-version compatibility runs the kernels, but the driver cannot JIT newer PTX.
        return ArchVerdict(
            "jit",
            f"the driver supports CUDA {_version(driver_cuda)}, older than torch's {_version(build)}:"
            " native kernels run, PTX JIT may fail",
            needed,
        )
    return ArchVerdict("ok", f"the driver supports CUDA {_version(driver_cuda)} >= torch's {_version(build)}")


# ---------------------------------------------------------------- CPU

CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")


def parse_cpuinfo(text: str) -> tuple[str, set[str]]:
    """The CPU model name and feature flags from ``/proc/cpuinfo`` text (x86 ``flags``, Arm ``Features``)."""
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return model, flags


def bf16_verdict(flags: set[str]) -> tuple[bool, str]:
    """Whether bf16 inference pays on a CPU with these flags, and why."""
    if "amx_bf16" in flags:
        return True, "AMX-BF16 tile units: bf16 matmuls and convolutions run much faster than fp32"
    if "avx512_bf16" in flags:
        return True, "AVX-512 BF16 instructions: bf16 is native and halves memory traffic"
    if "bf16" in flags:  # Arm BF16 extension
        return True, "Arm BF16 instructions: bf16 is native"
    return False, "no native bf16 instructions: bf16 is emulated and slower than fp32; use fp32 here"


def _cpu(torch: ModuleType) -> dict[str, Any]:
    try:
        model, flags = parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:
        model, flags = platform.processor(), set()
    worthwhile, note = bf16_verdict(flags)
    return {
        "model": model or platform.machine(),
        "cores": os.cpu_count() or 0,
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 0),
        "flags": {flag: flag in flags for flag in CPU_FLAGS},
        "torch_capability": torch.backends.cpu.get_cpu_capability(),
        "bf16_worthwhile": worthwhile,
        "bf16_note": note,
    }


# ---------------------------------------------------------------- video

DECODERS = ("h264", "hevc", "vp9", "av1", "h264_cuvid", "hevc_cuvid", "vp9_cuvid", "av1_cuvid")
ENCODERS = ("h264", "hevc", "vp9", "av1", "h264_nvenc", "hevc_nvenc", "av1_nvenc")


def _video(cuda_gpu: bool) -> dict[str, Any]:
    try:
        import av
    except ImportError as err:
        return {"pyav": None, "error": str(err), "ffmpeg": None, "libraries": {}, "decoders": {}, "encoders": {},
                "nvdec_usable": False}

    def codec(name: str, mode: str) -> str | None:
        # FFmpeg resolves a format name to its preferred codec (h264 encoder -> libx264); report which.
        try:
            return av.codec.Codec(name, mode).name
        except Exception:  # PyAV raises UnknownCodecError or ValueError depending on version
            return None

    decoders = {name: codec(name, "r") for name in DECODERS}
    return {
        "pyav": av.__version__,
        "error": None,
        "ffmpeg": getattr(av, "ffmpeg_version_info", None),
        "libraries": {lib: ".".join(map(str, v)) for lib, v in av.library_versions.items()},
        "decoders": decoders,
        "encoders": {name: codec(name, "w") for name in ENCODERS},
        "nvdec_usable": decoders["h264_cuvid"] is not None and cuda_gpu,
    }


# ---------------------------------------------------------------- cache


def _cache() -> dict[str, Any]:
    folder = weights_dir()
    try:
        return _cache_of(folder)
    except OSError:  # a cache folder this user may not open: reported as absent, the rest of the report stands
        return {"dir": str(folder), "exists": False, "files": [], "total_bytes": 0, "free_bytes": 0}


def _cache_of(folder: Path) -> dict[str, Any]:
    files = []
    if folder.is_dir():
        for path in sorted(folder.rglob("*")):
            # Names starting with "." are unfinished atomic writes.
            if path.is_file() and not path.name.startswith("."):
                files.append({"name": path.relative_to(folder).as_posix(), "size_bytes": path.stat().st_size})
    return {
        "dir": str(folder),
        "exists": folder.is_dir(),
        "files": files,
        "total_bytes": sum(f["size_bytes"] for f in files),
        "free_bytes": shutil.disk_usage(nearest_existing(folder)).free,
    }


def _unwritable_cache(folder: Path) -> list[dict[str, Any]]:
    """A warning when downloads cannot create files in ``folder``: VIDACT_HOME names a file, or a
    folder this user may not write to; the cache section alone would just say "not created yet"."""
    existing = nearest_existing(folder)
    if not existing.is_dir():
        reason = "is not a folder"
    elif not os.access(existing, os.W_OK | os.X_OK):
        reason = "is not writable"
    else:
        return []
    return [_check("cache", "warn", f"{folder}: {existing} {reason}, so no weights can be downloaded into it",
                   "set VIDACT_HOME to a writable folder")]


def _unfinished_downloads(folder: Path) -> list[dict[str, Any]]:
    """A warning about the hidden part files of downloads under ``folder``: a killed download leaves
    its own, which nothing else lists (the report's cache section has no field for them)."""
    try:
        parts = [path for path in folder.rglob(".*.part*") if path.is_file()] if folder.is_dir() else []
        size = sum(path.stat().st_size for path in parts)
    except OSError:  # an unreadable cache is reported as absent by _cache
        return []
    if not parts:
        return []
    count = f"{len(parts)} unfinished download{'s' if len(parts) > 1 else ''}"
    return [_check("cache", "warn", f"{count} ({_bytes(size)}) in {folder}: killed downloads, or ones running now",
                   "delete the hidden .part files there when no download is running; `vidact download NAME` "
                   "removes its own once they are an hour old")]


# ---------------------------------------------------------------- versions and GPUs


def _distribution_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


#: Prefix of ``versions.cudnn`` when torch refuses to use its cuDNN; the rest is torch's reason.
CUDNN_UNUSABLE = "unusable: "


def _cudnn_version(torch: ModuleType) -> str | None:
    """The cuDNN version, None without cuDNN, or :data:`CUDNN_UNUSABLE` and torch's reason."""
    if not torch.backends.cudnn.is_available():
        return None
    try:
        packed = torch.backends.cudnn.version()  # cuDNN 9: major*10000 + minor*100 + patch; cuDNN 8: *1000, *100
    except RuntimeError as err:
        # torch refuses a cuDNN that does not match its build, or cuDNN >= 9.11 next to a GPU below sm_75:
        # a finding for the report, not a reason to print none.
        return CUDNN_UNUSABLE + str(err).splitlines()[0].split(". ")[0]
    major, rest = (packed // 10000, packed % 10000) if packed >= 90000 else (packed // 1000, packed % 1000)
    return f"{major}.{rest // 100}.{rest % 100}"


def _onnxruntime() -> dict[str, Any] | None:
    try:
        ort = importlib.import_module("onnxruntime")
    except ImportError:
        return None
    return {"version": ort.__version__, "providers": list(ort.get_available_providers())}


def _torchvision_ops(torch: ModuleType) -> str | None:
    """Run the C++ ops vidact needs on the CPU; the error text when torchvision does not match torch."""
    try:
        import torchvision

        boxes = torch.tensor([[0.0, 0.0, 4.0, 4.0], [0.5, 0.5, 4.0, 4.0]])
        torchvision.ops.nms(boxes, torch.tensor([0.9, 0.8]), 0.5)
        torchvision.ops.roi_align(torch.ones(1, 1, 8, 8), [boxes[:1]], output_size=2)
    except Exception as err:  # a mismatched build fails in many ways; the message is what matters
        return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    return None


def _arch_list(torch: ModuleType) -> list[str]:
    """The GPU architectures this torch build carries kernels for; [] for a CPU-only (or ROCm) build."""
    if not torch.version.cuda:
        return []
    archs = torch.cuda.get_arch_list()
    if not archs:
        # torch 2.4 to 2.11 answer [] whenever torch.cuda.is_available() is False (a driver too old, say),
        # which would read as a CPU-only build; the build's own flags say what it carries.
        read_flags = getattr(torch._C, "_cuda_getArchFlags", None)
        flags = read_flags() if read_flags is not None else None
        archs = flags.split() if flags else []
    return archs


def _torch_ids(torch: ModuleType) -> list[tuple[str | None, tuple[int, int, int] | None]]:
    """UUID and PCI address (domain, bus, device) of each torch device, None where torch does not say."""
    ids = []
    for i in range(torch.cuda.device_count()):
        try:
            props = torch.cuda.get_device_properties(i)
        except Exception:  # a device torch cannot query: its smoke test will say what is wrong
            ids.append((None, None))
            continue
        uuid = getattr(props, "uuid", None)
        pci = tuple(getattr(props, f"pci_{part}_id", None) for part in ("domain", "bus", "device"))
        ids.append((normalize_uuid(str(uuid)) if uuid is not None else None, pci if None not in pci else None))
    return ids


def _torch_device(gpu: GpuInfo, torch_ids: list[tuple[str | None, tuple[int, int, int] | None]]) -> int | None:
    """The torch device that is NVML's GPU ``gpu``, None when torch does not see it.

    NVML numbers GPUs in PCI bus order, CUDA fastest first (unless CUDA_DEVICE_ORDER=PCI_BUS_ID) and
    only those in CUDA_VISIBLE_DEVICES, so the same number can be another GPU. Without UUIDs or PCI
    addresses on both sides, the same number is the best guess left.
    """
    comparable = False
    for mine, theirs in ((gpu.uuid, [uuid for uuid, _ in torch_ids]), (gpu.pci, [pci for _, pci in torch_ids])):
        if mine is not None and any(t is not None for t in theirs):
            comparable = True
            if mine in theirs:
                return theirs.index(mine)
    if comparable:
        return None
    return gpu.index if gpu.index < len(torch_ids) else None


def _gpus(
    nvml_module: ModuleType | None, torch: ModuleType, arch_list: list[str]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The driver section and one entry per GPU, from NVML, or from torch where NVML is missing."""
    driver: dict[str, Any] = {"nvml": None, "version": None, "cuda": None}
    cuda_ok = torch.cuda.is_available()
    torch_ids = _torch_ids(torch) if cuda_ok else []
    # (NVML index, name, compute capability, memory in MiB, torch device or None)
    found: list[tuple[int, str, tuple[int, int] | None, int, int | None]] = []
    try:
        with Nvml(nvml_module) as nvml:
            driver["nvml"] = "ok"
            driver["version"] = nvml.driver_version()
            cuda = nvml.driver_cuda_version()
            driver["cuda"] = _version(cuda) if cuda else None
            for i in range(nvml.device_count()):
                try:
                    info = nvml.info(i)
                except nvml.nvml.NVMLError as err:  # a lost or failing GPU is what doctor must still report
                    found.append((i, f"unreadable through NVML ({err})", None, 0, None))
                    continue
                found.append((
                    info.index,
                    info.name or "name unreadable through NVML",
                    info.compute_capability,
                    info.memory_total_mib or 0,  # 0: NVML refused to say (e.g. a MIG-enabled GPU, not root)
                    _torch_device(info, torch_ids),
                ))
    except NvmlUnavailable as err:
        driver["nvml"] = str(err)
        if cuda_ok:
            for i in range(torch.cuda.device_count()):
                props = torch.cuda.get_device_properties(i)
                found.append((i, props.name, (props.major, props.minor), props.total_memory // 2**20, i))

    hip = getattr(torch.version, "hip", None)
    gpus = []
    for index, name, capability, memory, device in found:
        if hip:
            # CUDA architectures and driver versions say nothing about a ROCm build: the smoke test judges the GPU.
            verdict = ArchVerdict("ok", f"ROCm build (HIP {hip}): no CUDA architecture check; the smoke test decides")
        else:
            verdict = arch_verdict(capability, arch_list, torch.version.cuda) if capability else None
        smoke = None
        if cuda_ok and verdict is not None and verdict.status != "broken" and device is not None:
            smoke = _smoke_test(torch, device)
        gpus.append({
            "index": index,
            "name": name,
            "compute_capability": _version(capability) if capability else None,
            "memory_total_mib": memory,
            "verdict": asdict(verdict) if verdict else None,
            "smoke_test": smoke,
        })
    return driver, gpus


def _smoke_test(torch: ModuleType, index: int) -> str:
    """``"ok"``, or the first line of the error a tiny kernel raises on GPU ``index``."""
    try:
        value = (torch.ones(8, device=f"cuda:{index}") * 2).sum().item()
    except Exception as err:  # "no kernel image is available", out of memory, ECC...
        return str(err).splitlines()[0]
    return "ok" if value == 16 else f"wrong result {value} (expected 16)"


def collect(nvml_module: ModuleType | None = None) -> dict[str, Any]:
    """Probe this machine and return the report (see ``doctor_schema.json``).

    ``nvml_module`` replaces ``pynvml`` (tests pass a fake one).
    """
    import torch

    arch_list = _arch_list(torch)
    driver, gpus = _gpus(nvml_module, torch, arch_list)
    cuda_gpu = any(g["smoke_test"] == "ok" for g in gpus)
    onnx = _onnxruntime()
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "versions": {
            "python": platform.python_version(),
            "python_executable": sys.executable,
            "platform": platform.platform(),
            "vidact": vidact.__version__,
            "torch": torch.__version__,
            "torchvision": _distribution_version("torchvision"),
            "numpy": _distribution_version("numpy"),
            "av": _distribution_version("av"),
            "onnxruntime": onnx["version"] if onnx else None,
            "nvidia_ml_py": _distribution_version("nvidia-ml-py"),
            "cuda_runtime": torch.version.cuda,
            "cudnn": _cudnn_version(torch),
            "nvidia_driver": driver["version"],
        },
        "torch": {
            "cuda_build": torch.version.cuda,
            "arch_list": arch_list,
            "cuda_available": torch.cuda.is_available(),
            "device_count": torch.cuda.device_count(),
            "torchvision_ops_error": _torchvision_ops(torch),
        },
        "driver": driver,
        "gpus": gpus,
        "cpu": _cpu(torch),
        "video": _video(cuda_gpu),
        "onnxruntime_providers": onnx["providers"] if onnx else [],
        "cache": _cache(),
    }
    report["checks"] = checks(report) + _unwritable_cache(weights_dir()) + _unfinished_downloads(weights_dir())
    report["exit_status"] = exit_status(report)
    return report


# ---------------------------------------------------------------- judgement and text


#: How a verdict counts for the exit status: JIT-only kernels work, slowly.
_CHECK_STATUS = {"ok": "ok", "jit": "warn", "broken": "fail"}


def _check(name: str, status: str, message: str, fix: str | None = None) -> dict[str, Any]:
    return {"name": name, "status": status, "message": message, "fix": fix}


def checks(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The verdicts: ``ok``, ``warn`` (works, worse than it could) or ``fail`` (something needed is broken)."""
    out = []
    tv_error = report["torch"]["torchvision_ops_error"]
    if tv_error:
        fix = f"install the torchvision release that matches torch {report['versions']['torch']} (same index URL)"
        out.append(_check("torchvision ops", "fail", f"torchvision C++ ops fail: {tv_error}", fix))
    else:
        out.append(_check("torchvision ops", "ok", "nms and roi_align run"))

    cudnn = report["versions"]["cudnn"]
    if cudnn and cudnn.startswith(CUDNN_UNUSABLE):
        reason = cudnn.removeprefix(CUDNN_UNUSABLE)
        if "SM < 7.5" in reason:
            fix = "install a torch whose cuDNN is older than 9.11 (torch's release compatibility matrix), or use the CPU"
        else:
            fix = "keep other cuDNN libraries off LD_LIBRARY_PATH so torch loads the cuDNN it ships with"
        out.append(_check("cudnn", "fail", f"torch refuses its cuDNN: {reason}", fix))

    video = report["video"]
    if video["error"]:
        out.append(_check("video decode", "fail", f"PyAV does not import: {video['error']}", "pip install av"))
    elif video["decoders"].get("h264") is None:
        out.append(_check("video decode", "fail", "PyAV's FFmpeg has no h264 decoder",
                          "install the PyAV wheel from PyPI (pip install --force-reinstall av)"))
    else:
        out.append(_check("video decode", "ok", f"h264 decoder {video['decoders']['h264']}"))
        if video["encoders"].get("h264") is None:
            out.append(_check("video encode", "warn", "no h264 encoder: annotated videos cannot be written as mp4",
                              "install the PyAV wheel from PyPI, which bundles libx264"))

    gpus = report["gpus"]
    driver = report["driver"]
    if not gpus:
        why = "" if driver["nvml"] == "ok" else f" ({driver['nvml']})"
        out.append(_check("gpu", "ok", f"no NVIDIA GPU{why}; vidact runs on the CPU"))
    else:
        drv = driver_verdict(_parse_version(driver["cuda"]), report["torch"]["cuda_build"])
        if drv is not None:
            out.append(_check("driver", _CHECK_STATUS[drv.status], drv.message, drv.fix))
        if not report["torch"]["cuda_available"] and report["torch"]["cuda_build"]:
            out.append(_check("torch cuda", "fail", "torch.cuda.is_available() is False although a GPU is present",
                              "check the driver line above and CUDA_VISIBLE_DEVICES"))
    for gpu in gpus:
        name = f"gpu {gpu['index']}"
        verdict = gpu["verdict"]
        if verdict is None:
            # NVML could not read the GPU (lost, or refusing queries): neither kernels nor a smoke test can be judged.
            out.append(_check(name, "warn", f"{gpu['name']}: compute capability unknown",
                              f"check the GPU with nvidia-smi -q -i {gpu['index']} (a lost GPU needs a reset or a "
                              "reboot), then run vidact doctor again"))
            continue
        status = _CHECK_STATUS[verdict["status"]]
        out.append(_check(name, status, f"{gpu['name']}: {verdict['message']}", verdict["fix"]))
        smoke = gpu["smoke_test"]
        if smoke not in (None, "ok"):
            out.append(_check(name, "fail", f"{gpu['name']}: a tiny CUDA kernel fails: {smoke}",
                              "see the torch/driver lines above"))
    if gpus and video["decoders"].get("h264_cuvid") is not None and not video["nvdec_usable"]:
        out.append(_check("nvdec", "warn", "FFmpeg has NVDEC decoders but no working CUDA GPU; decoding on the CPU",
                          "NVDEC needs a GPU that passes the smoke test: see the GPU checks above and "
                          "CUDA_VISIBLE_DEVICES; or keep decoding on the CPU (vidact detect --decode cpu, "
                          "the default)"))

    cache = report["cache"]
    if cache["free_bytes"] < 2**30:
        out.append(_check("disk", "warn", f"{cache['free_bytes'] / 2**30:.2f} GiB free under {cache['dir']}",
                          "free disk space or set VIDACT_HOME to a larger disk"))
    return out


def exit_status(report: dict[str, Any]) -> int:
    """1 when a check failed (something needed is broken), else 0."""
    return int(any(c["status"] == "fail" for c in report["checks"]))


def _bytes(n: float) -> str:
    units = ("B", "KiB", "MiB", "GiB")
    step = 0
    while n >= 1024 and step < len(units) - 1:
        n /= 1024
        step += 1
    return f"{n:.0f} B" if step == 0 else f"{n:.1f} {units[step]}"


def format_report(report: dict[str, Any]) -> str:
    """The report as plain text, meant to be pasted into a bug report."""
    v, t, cpu, video, cache = report["versions"], report["torch"], report["cpu"], report["video"], report["cache"]
    none = "-"
    lines = ["vidact doctor", "", "versions"]
    rows = [
        ("python", f"{v['python']}  {v['python_executable']}"),
        ("platform", v["platform"]),
        ("vidact", v["vidact"]),
        ("torch", f"{v['torch']}  CUDA {t['cuda_build'] or none}  cuDNN {v['cudnn'] or none}"),
        ("torch archs", " ".join(t["arch_list"]) or none),
        ("torchvision", v["torchvision"] or none),
        ("numpy", v["numpy"] or none),
        ("PyAV", f"{v['av'] or none}  FFmpeg {video['ffmpeg'] or none}"),
        ("onnxruntime", f"{v['onnxruntime'] or none}  {' '.join(report['onnxruntime_providers'])}".rstrip()),
        ("nvidia-ml-py", v["nvidia_ml_py"] or none),
        ("driver", f"{v['nvidia_driver'] or none}  (CUDA {report['driver']['cuda'] or none})"),
    ]
    lines += [f"  {key:<13} {value}" for key, value in rows]

    lines += ["", "gpus"]
    if not report["gpus"]:
        lines.append(f"  none  ({report['driver']['nvml']})" if report["driver"]["nvml"] != "ok" else "  none")
    for g in report["gpus"]:
        verdict = g["verdict"]["status"] if g["verdict"] else "unknown"
        memory = f"{g['memory_total_mib']} MiB" if g["memory_total_mib"] else "memory n/a"
        lines.append(f"  {g['index']}  {g['name']}  cc {g['compute_capability'] or none}  "
                     f"{memory}  kernels: {verdict}  smoke test: {g['smoke_test'] or none}")

    flags = " ".join(flag for flag, present in cpu["flags"].items() if present) or none
    lines += [
        "",
        "cpu",
        f"  {cpu['model']}",
        f"  cores {cpu['cores_usable']} usable of {cpu['cores']}  flags {flags}",
        f"  torch CPU capability {cpu['torch_capability']}",
        f"  bf16 inference {'worthwhile' if cpu['bf16_worthwhile'] else 'not worthwhile'}: {cpu['bf16_note']}",
        "",
        "video",
    ]
    if video["error"]:
        lines.append(f"  PyAV unavailable: {video['error']}")
    else:
        for role in ("decoders", "encoders"):
            lines.append(f"  {role:<9} " + "  ".join(f"{k}={val or none}" for k, val in video[role].items()))
        lines.append(f"  NVDEC path usable: {'yes' if video['nvdec_usable'] else 'no'}")

    lines += ["", "cache", f"  {cache['dir']}{'' if cache['exists'] else '  (not created yet)'}"]
    lines += [f"  {_bytes(f['size_bytes']):>10}  {f['name']}" for f in cache["files"]]
    lines.append(f"  {len(cache['files'])} files, {_bytes(cache['total_bytes'])}; {_bytes(cache['free_bytes'])} free")

    lines += ["", "checks"]
    for c in report["checks"]:
        mark = {"ok": "[ok]  ", "warn": "[warn]", "fail": "[FAIL]"}[c["status"]]
        lines.append(f"  {mark} {c['name']}: {c['message']}" + (f"\n         fix: {c['fix']}" if c["fix"] else ""))
    usable = "usable" if report["exit_status"] == 0 else "BROKEN"
    where = "GPU" if any(g["smoke_test"] == "ok" for g in report["gpus"]) else "CPU only"
    lines += ["", f"result: {usable} ({where}), exit status {report['exit_status']}"]
    return "\n".join(lines)
