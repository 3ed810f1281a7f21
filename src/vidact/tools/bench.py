"""``vidact bench``: model latency per inference mode, against a GEMM peak measured in the same run.

For every model: eager fp32 (the baseline), then the optimised mode
(:func:`vidact.models.optimize.optimize_for_inference`) at each precision asked for.
Modes are timed round-robin (one call of each in turn, per repeat), so load from
other processes hits them alike and the speedups are side-by-side ratios. Achieved
GFLOP/s is 2 x the model's multiply-adds (fvcore convention, counted on the eager
warm-up call) / median latency, compared with a square matrix product's GFLOP/s at
the mode's precision.

Each batch size asked for is timed on its own; ``clips_per_s`` is batch / latency. On
CUDA, cuDNN's autotuner is switched on for every mode (shapes are fixed) and the GEMM is
8192 wide (a 4096 product is too short to reach a large GPU's peak).

Pipelines (``detect`` end to end) plug in through :func:`register_pipeline_bench`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from vidact.config.model import ModelConfig
from vidact.errors import VidactError
from vidact.fileutil import atomic_open

DEFAULT_MODELS = ("slowfast_8x8_r50", "ava_slowfast_32x2_r101_v2.2", "x3d_m")
DETECTION_BOXES = 3  # person boxes per clip for AVA models, as in the reference measurement


@dataclass
class BenchRecord:
    """One model (or pipeline stage) in one mode. Times in seconds, rates in GFLOP/s."""

    model: str
    mode: str  # "eager_fp32", "optimized_<precision>[_compiled]", or a pipeline's stage name
    precision: str
    device: str
    threads: int
    latency_s: float  # median
    latency_min_s: float
    repeats: int
    gmacs: float | None = None  # multiply-adds per call, 1e9
    gflop_per_s: float | None = None  # 2 x gmacs / latency
    peak_gflop_per_s: float | None = None  # GEMM at this precision, same run
    fraction_of_peak: float | None = None
    speedup: float | None = None  # eager fp32 latency / this latency, same batch
    batch: int = 1  # clips per call
    clips_per_s: float | None = None
    extra: dict = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class BenchOptions:
    device: torch.device
    repeats: int = 5
    warmup: int = 1
    threads: int = 1
    video: str | None = None  # input of the pipeline benches
    precisions: tuple[str, ...] = ("fp32",)


# A pipeline bench returns its records (one per stage, plus "total"); the detect
# pipeline registers one named "detect".
PipelineBench = Callable[[BenchOptions], list[BenchRecord]]
PIPELINE_BENCHES: dict[str, PipelineBench] = {}
_NEEDS_VIDEO: set[str] = set()  # pipeline benches that run on options.video


def register_pipeline_bench(name: str, *, needs_video: bool = False) -> Callable[[PipelineBench], PipelineBench]:
    """Decorator: make ``fn(options) -> list[BenchRecord]`` runnable as ``vidact bench --pipeline NAME``;
    with ``needs_video``, :func:`run_bench` refuses to start without ``--video``."""

    def register(fn: PipelineBench) -> PipelineBench:
        PIPELINE_BENCHES[name] = fn
        if needs_video:
            _NEEDS_VIDEO.add(name)
        return fn

    return register


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gemm_peak(dtype: torch.dtype, device: torch.device, size: int = 4096, repeats: int = 3) -> float:
    """GFLOP/s of a ``size`` x ``size`` matrix product at ``dtype`` (best of ``repeats``, after a warm-up)."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(device, dtype)
    b = torch.randn(size, size, generator=generator).to(device, dtype)
    best = float("inf")
    with torch.inference_mode():
        for i in range(repeats + 1):
            _synchronize(device)
            start = time.perf_counter()
            torch.mm(a, b)
            _synchronize(device)
            if i:  # the first call is the warm-up
                best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def bench_inputs(config, device: torch.device | str = "cpu", batch: int = 1) -> tuple:
    """Call arguments for ``batch`` clips of ``config``'s model: ``(pathways,)`` or ``(pathways, boxes)``.

    Frames at the test crop size; detection models get a 4:5 frame (256x320 for AVA)
    and :data:`DETECTION_BOXES` person boxes per clip. Latency does not depend on the values.
    """
    spec = config.input
    height = spec.test_crop_size
    width = height * 5 // 4 if config.detection.enable else height
    frames = [spec.num_frames // config.slowfast.alpha, spec.num_frames] if config.num_pathways == 2 \
        else [spec.num_frames]
    generator = torch.Generator().manual_seed(0)
    pathways = [torch.randn(batch, 3, t, height, width, generator=generator).to(device) for t in frames]
    if not config.detection.enable:
        return (pathways,)
    boxes = torch.tensor([[0.05, 0.10, 0.40, 0.90], [0.45, 0.05, 0.95, 0.95], [0.20, 0.25, 0.65, 0.85]])
    boxes = boxes[:DETECTION_BOXES] * torch.tensor([width, height, width, height])
    clip_index = torch.arange(batch).repeat_interleave(len(boxes))[:, None].float()
    return (pathways, torch.cat([clip_index, boxes.repeat(batch, 1)], dim=1).to(device))


def _time_round_robin(
    calls: dict[str, Callable[[], object]], options: BenchOptions
) -> dict[str, list[float]]:
    for call in calls.values():
        for _ in range(options.warmup):
            call()
    times: dict[str, list[float]] = {mode: [] for mode in calls}
    for _ in range(options.repeats):
        for mode, call in calls.items():
            _synchronize(options.device)
            start = time.perf_counter()
            call()
            _synchronize(options.device)
            times[mode].append(time.perf_counter() - start)
    return times


def bench_model(
    model: nn.Module,
    name: str,
    precisions: Sequence[str],
    options: BenchOptions,
    peaks: dict[str, float],
    compile: bool = False,
    batch: int = 1,
) -> list[BenchRecord]:
    """Eager fp32 and the optimised mode at each of ``precisions``, timed side by side on ``batch`` clips."""
    from vidact.models.flops import count_gflops
    from vidact.models.optimize import optimize_for_inference

    model = model.eval().to(options.device)
    args = bench_inputs(model.config, options.device, batch)
    gmacs = count_gflops(model, *args)  # also the eager warm-up call (not under inference_mode: it counts 0 there)

    calls: dict[str, Callable[[], object]] = {}
    mode_precision = {"eager_fp32": "fp32"}

    def eager() -> object:
        with torch.no_grad():  # as the reference, and plain users, run it
            return model(*args)

    calls["eager_fp32"] = eager
    for precision in precisions:
        optimized = optimize_for_inference(model, device=options.device, precision=precision, compile=compile)
        mode = f"optimized_{precision}" + ("_compiled" if compile else "")
        calls[mode] = lambda optimized=optimized: optimized(*args)
        mode_precision[mode] = precision
    times = _time_round_robin(calls, options)

    baseline = statistics.median(times["eager_fp32"])
    records = []
    for mode, samples in times.items():
        latency = statistics.median(samples)
        rate = 2 * gmacs / latency
        peak = peaks.get(mode_precision[mode])
        records.append(BenchRecord(
            model=name, mode=mode, precision=mode_precision[mode], device=str(options.device),
            threads=options.threads, latency_s=latency, latency_min_s=min(samples), repeats=len(samples),
            gmacs=gmacs, gflop_per_s=rate, peak_gflop_per_s=peak,
            fraction_of_peak=rate / peak if peak else None, speedup=baseline / latency,
            batch=batch, clips_per_s=batch / latency,
        ))
    return records


def default_precisions(device: torch.device) -> list[str]:
    """fp32, plus bf16 where it is native (see :func:`~vidact.models.optimize.select_precision`)."""
    from vidact.models.optimize import select_precision

    chosen = select_precision(device)
    return ["fp32"] if chosen == "fp32" else ["fp32", chosen]


def environment(options: BenchOptions) -> dict:
    """The facts a reader needs to compare runs: CPU, torch, threads, device."""
    from vidact.tools.doctor import _cpu

    cpu = _cpu(torch)
    return {
        "cpu": cpu["model"], "cpu_flags": sorted(k for k, v in cpu["flags"].items() if v),
        "cores_usable": cpu["cores_usable"], "threads": options.threads, "device": str(options.device),
        "gpu": torch.cuda.get_device_name(options.device) if options.device.type == "cuda" else None,
        "torch": torch.__version__, "python": platform.python_version(),
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def run_bench(
    models: Sequence[str | os.PathLike | ModelConfig] = DEFAULT_MODELS,
    *,
    precisions: Sequence[str] | None = None,
    device: str | torch.device | None = None,
    threads: int | None = None,
    repeats: int = 5,
    compile: bool = False,
    batch_sizes: Sequence[int] = (1,),
    pipelines: Sequence[str] = (),
    video: str | os.PathLike | None = None,
    gemm_size: int | None = None,
    on_record: Callable[[BenchRecord], None] | None = None,
    on_progress: Callable[[dict], None] | None = None,
) -> dict:
    """Run the benchmark; returns ``{"environment", "gemm_peak_gflop_per_s", "records", "complete"}``.

    ``models`` are zoo names, config files, checkpoints or configs (random weights:
    latency does not depend on them). ``batch_sizes``: clips per call, each timed separately.
    ``gemm_size`` defaults to 4096 on CPU, 8192 on CUDA. ``on_record`` sees each record
    as soon as it is measured; ``on_progress`` the result so far (``"complete": False``)
    after each model and pipeline, so that a run stopped part way keeps what it measured.
    """
    from vidact.api import create_model, parse_device, resolve_model
    from vidact.models.optimize import DTYPES, check_precision

    if repeats < 1:
        raise VidactError(f"--repeats {repeats} must be at least 1")
    if threads is not None and threads < 1:
        raise VidactError(f"--threads {threads} must be at least 1 (or leave it out for torch's choice)")
    if not batch_sizes or min(batch_sizes) < 1:
        raise VidactError(f"--batch {' '.join(map(str, batch_sizes))}: batch sizes must be at least 1")
    unknown = [p for p in pipelines if p not in PIPELINE_BENCHES]
    if unknown:
        known = ", ".join(sorted(PIPELINE_BENCHES)) or "none registered"
        raise VidactError(f"unknown pipeline bench {unknown[0]!r}; available: {known}")
    without_video = [p for p in pipelines if p in _NEEDS_VIDEO] if video is None else []
    if without_video:  # before minutes of model timing, not after
        raise VidactError(f"--pipeline {without_video[0]} needs --video PATH (a video file to run on)")
    device = parse_device(device)
    precisions = list(precisions) if precisions else default_precisions(device)
    # Everything below is refused before the GEMM peak and the model timings (minutes), not after.
    for precision in precisions:
        check_precision(precision, device)
    # Configs only: the models get random weights anyway, and a checkpoint kept from here
    # would hold its weights in memory through the other models' timings.
    configs = [resolve_model(name).config for name in models]
    if any(p in _NEEDS_VIDEO for p in pipelines):
        from vidact.io.video import VideoReader

        VideoReader(video).close()
    if threads is not None:
        torch.set_num_threads(threads)
    if device.type == "cuda":
        # Fixed shapes: let cuDNN pick its fastest kernels, for every mode alike. The first
        # calls autotune, so they are warm-ups.
        torch.backends.cudnn.benchmark = True
    options = BenchOptions(
        device=device, repeats=repeats, warmup=2 if device.type == "cuda" else 1, threads=torch.get_num_threads(),
        video=video, precisions=tuple(precisions),
    )
    if gemm_size is None:
        gemm_size = 8192 if device.type == "cuda" else 4096

    peaks = {p: gemm_peak(DTYPES[p], device, size=gemm_size) for p in dict.fromkeys(["fp32", *precisions])}
    records: list[BenchRecord] = []
    facts = environment(options)

    def result(complete: bool) -> dict:
        return {"environment": facts, "gemm_peak_gflop_per_s": peaks,
                "records": [dataclasses.asdict(r) for r in records], "complete": complete}

    def emit(new: list[BenchRecord]) -> None:
        records.extend(new)
        if on_record is not None:
            for record in new:
                on_record(record)
        if on_progress is not None:
            on_progress(result(complete=False))

    for name, config in zip(models, configs):
        model = create_model(config)
        label = f"{name.arch} config" if isinstance(name, ModelConfig) else os.fspath(name)
        for batch in batch_sizes:
            emit(bench_model(model, label, precisions, options, peaks, compile=compile, batch=batch))
        del model
    for pipeline in pipelines:
        emit(PIPELINE_BENCHES[pipeline](options))
    return result(complete=True)


def write_json(result: dict, path: str | os.PathLike) -> None:
    """Write a :func:`run_bench` result atomically."""
    with atomic_open(path) as f:
        json.dump(result, f, indent=2)
        f.write("\n")


def format_record(record: BenchRecord) -> str:
    """One table row: model, mode, batch, latency, clips/s, GFLOP/s and share of the GEMM peak, speedup."""
    clips = "" if record.clips_per_s is None else f" {record.clips_per_s:8.2f} clips/s"
    rate = "" if record.gflop_per_s is None else f" {record.gflop_per_s:9.1f} GFLOP/s"
    share = "" if record.fraction_of_peak is None else f" ({record.fraction_of_peak:4.0%} of GEMM)"
    speedup = "" if record.speedup is None else f"  x{record.speedup:.2f}"
    return (f"{record.model:32s} {record.mode:24s} b{record.batch:<3d} {record.latency_s * 1000:9.1f} ms"
            f"{clips}{rate}{share}{speedup}")


@register_pipeline_bench("detect", needs_video=True)
def bench_detect(options: BenchOptions) -> list[BenchRecord]:
    """``vidact detect`` end to end on ``options.video``: busy seconds per stage and the wall time.

    The default AVA model (random weights) at 1 prediction per second, eager fp32 and then
    optimised at each precision, with three fixed person boxes per keyframe so that the
    figures do not depend on a detector download. Stages overlap, so their busy times add
    up to more than the wall time ("total").
    """
    import tempfile
    import warnings
    from pathlib import Path

    from vidact.pipeline.detect import STAGES, DetectNotice, detect_video, load_action_model
    from vidact.weights.zoo import DEFAULT_AVA_MODEL, ZOO

    config = ZOO[DEFAULT_AVA_MODEL].config
    records = []
    for precision in ("eager", *options.precisions):
        with tempfile.TemporaryDirectory(prefix="vidact_bench_") as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore", DetectNotice)  # random weights are the point here
            boxes = Path(tmp) / "boxes.csv"
            boxes.write_text("".join(
                f"bench,{t},{x:.2f},0.10,{x + 0.28:.2f},0.95,,0.99\n" for t in range(3600) for x in (0.03, 0.36, 0.69)
            ))
            model = load_action_model(config, device=options.device, precision=precision)
            # As `vidact detect` runs, without cuDNN's autotuner: the optimised models are loaded so,
            # but the eager one, left as it is, would run with the autotuner this bench set above.
            torch.backends.cudnn.benchmark = False
            result = detect_video(options.video, tmp, model=model, detector=f"csv:{boxes}", timeline=False)
        metrics = result.metrics
        mode = "eager_fp32" if precision == "eager" else f"optimized_{precision}"
        name = f"detect:{Path(options.video).name}"
        for stage in (*STAGES, "wall"):
            seconds = metrics["wall_s"] if stage == "wall" else metrics[f"time_{stage}_s"]
            records.append(BenchRecord(
                model=name, mode=f"{mode}:{'total' if stage == 'wall' else stage}",
                precision="fp32" if precision == "eager" else precision,  # as the model records say
                device=str(options.device), threads=options.threads, latency_s=seconds, latency_min_s=seconds,
                repeats=1,
            ))
    return records
