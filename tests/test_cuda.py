"""CUDA paths: the optimised model with CUDA graphs, and `vidact detect` on the GPU.

Skipped where torch sees no GPU (CI); run on a GPU machine with ``pytest -q tests/test_cuda.py``.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import shared_path
from torch import nn

from vidact.api import create_model
from vidact.errors import VidactError
from vidact.models import optimize
from vidact.models.optimize import (
    CUDAGraphRunner,
    InferenceModel,
    InferenceSettings,
    optimize_for_inference,
)
from vidact.tools.bench import bench_inputs

CASE = "tiny_ava_slowfast_r101_nln"


def _ava_case():
    """The tiny AVA parity model (real weights) on a random clip with three person boxes."""
    case = shared_path("fixtures", "parity", CASE)
    model = create_model(case / "config.yaml", weights=case / "model.pyth").eval()
    pathways, boxes = bench_inputs(model.config)
    return model, pathways, boxes


def test_cuda_graphs_need_a_cuda_device():
    model, _, _ = _ava_case()
    assert optimize_for_inference(model, device="cpu", precision="fp32").settings.cuda_graphs is False
    with pytest.raises(VidactError, match="CUDA graphs need a CUDA device"):
        optimize_for_inference(model, device="cpu", precision="fp32", cuda_graphs=True)


@pytest.fixture
def fake_cuda(monkeypatch):
    """torch.cuda's device, stream and graph calls stubbed, so CUDAGraphRunner's control flow runs on CPU.

    Records each capture's keyword arguments and the device current during it; set
    ``fail_capture`` to make captures fail.
    """
    log = SimpleNamespace(device=None, captures=[], fail_capture=False)

    @contextlib.contextmanager
    def device(index):
        previous, log.device = log.device, torch.device(index)
        try:
            yield
        finally:
            log.device = previous

    class Stream:
        def __init__(self, device=None):
            self.device = log.device if device is None else torch.device(device)

        def wait_stream(self, other):
            pass

    @contextlib.contextmanager
    def graph(cuda_graph, **kwargs):
        if log.fail_capture:
            raise RuntimeError("operation not permitted when stream is capturing")
        log.captures.append({"device": log.device, **kwargs})
        yield

    monkeypatch.setattr(torch.cuda, "device", device)
    monkeypatch.setattr(torch.cuda, "Stream", Stream)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: Stream(device))
    monkeypatch.setattr(torch.cuda, "stream", lambda stream: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "CUDAGraph", lambda: SimpleNamespace(replay=lambda: None))
    monkeypatch.setattr(torch.cuda, "graph", graph)
    return log


def _three_channel_net(inputs):
    if inputs[0].shape[1] != 3:
        raise RuntimeError(f"expected input to have 3 channels, but got {inputs[0].shape[1]}")
    return inputs[0] * 2


def test_graph_runner_gives_up_graphs_only_when_the_plain_call_works(fake_cuda):
    runner = CUDAGraphRunner(_three_channel_net, torch.device("cuda", 0), warmup=1)
    good = [torch.ones(1, 3, 2)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the caller's own mistake is no "capture failed"
        with pytest.raises(RuntimeError, match="3 channels"):
            runner([torch.ones(1, 2, 2)])
        assert not runner.failed
        assert torch.equal(runner(good), good[0] * 2)
    assert len(runner.graphs) == len(fake_cuda.captures) == 1

    fake_cuda.fail_capture = True
    other = [torch.ones(2, 3, 2)]  # a new signature, whose capture fails though the call works
    with pytest.warns(RuntimeWarning, match="CUDA graph capture failed"):
        assert torch.equal(runner(other), other[0] * 2)
    assert runner.failed and not runner.graphs
    assert torch.equal(runner(good), good[0] * 2)


def test_graph_capture_is_thread_local_and_on_the_runner_device(fake_cuda):
    runner = CUDAGraphRunner(_three_channel_net, torch.device("cuda", 1), warmup=1)
    runner([torch.ones(1, 3, 2)])
    (capture,) = fake_cuda.captures
    # Other threads (detector, decoder) use the GPU during the capture; "global" fails on that.
    assert capture.get("capture_error_mode") == "thread_local"
    assert capture["device"] == torch.device("cuda", 1)
    assert capture.get("stream") is not None and capture["stream"].device == torch.device("cuda", 1)


def test_compiled_cuda_outputs_are_not_overwritten_by_the_next_call(monkeypatch):
    graph_output = torch.zeros(2)

    def reduce_overhead_compile(network, device):
        # Like mode="reduce-overhead": every call writes the same CUDA graph output buffer.
        return lambda inputs: graph_output.copy_(inputs[0])

    monkeypatch.setattr(optimize, "_compile", reduce_overhead_compile)
    settings = InferenceSettings(device="cuda", precision="fp32", channels_last=False, compile=True,
                                 cuda_graphs=False, folded_bn=0, unfolded_bn=0)
    model = InferenceModel(nn.Identity(), settings, nn.Identity())
    model.device = torch.device("cpu")  # the CUDA configuration, run on CPU tensors
    first = model([torch.ones(2)])
    model([torch.full((2,), 5.0)])
    assert first.tolist() == [1.0, 1.0]


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_graph_replay_equals_the_plain_optimised_model(precision):
    model, pathways, boxes = _ava_case()
    with torch.no_grad():
        eager = model(pathways, boxes)
    graphed = optimize_for_inference(model, device="cuda", precision=precision)
    plain = optimize_for_inference(model, device="cuda", precision=precision, cuda_graphs=False)
    assert graphed.settings.cuda_graphs and isinstance(graphed._run, CUDAGraphRunner)
    for count in (len(boxes), 1, len(boxes)):  # a new signature, then a cached one again
        out = graphed(pathways, boxes[:count])
        torch.testing.assert_close(out, plain(pathways, boxes[:count]), rtol=1e-3, atol=1e-4)
        reference = eager[:count]
        tolerance = 1e-3 if precision == "fp32" else 2e-2  # fp32 here includes cuDNN's TF32 convolutions
        assert torch.linalg.norm(out.cpu() - reference) <= tolerance * torch.linalg.norm(reference)
    assert not graphed._run.failed and len(graphed._run.graphs) == 2
    shifted = [x + 0.5 for x in pathways]  # new values go through the static inputs
    torch.testing.assert_close(graphed(shifted, boxes), plain(shifted, boxes), rtol=1e-3, atol=1e-4)


@cuda
def test_detect_runs_on_the_gpu(tmp_path):
    from vidact.cli.main import main

    case = shared_path("fixtures", "parity", CASE)
    video = shared_path("data", "videos", "mmaction2_test_video_structuralize.mp4")
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("".join(f"{video.stem},{t},0.1,0.1,0.5,0.9,,0.99\n{video.stem},{t},0.5,0.2,0.9,0.9,,0.95\n"
                             for t in range(11)))
    argv = ["detect", str(video), "--cfg", str(case / "config.yaml"), "--weights", str(case / "model.pyth"),
            "--detector", f"csv:{boxes}", "--device", "cuda", "--threshold", "0", "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    stem = video.stem
    metrics = json.loads((tmp_path / "out" / f"{stem}.metrics.json").read_text())
    assert metrics["keyframes"] == 11 and metrics["frames"] == 300
    assert metrics["warmup_s"] > 0  # the model's first call, made before the first keyframe came
    from vidact.tools.gpu_monitor import GpuSampler

    with GpuSampler() as sampler:
        if sampler.available:  # recorded over the run, not sampled once at its end
            assert metrics["gpu0/mem_used_mib_peak"] > 0 and "gpu0/util_pct_mean" in metrics
    lines = (tmp_path / "out" / f"{stem}.keyframes.jsonl").read_text().splitlines()
    assert sum(len(json.loads(line)["persons"]) for line in lines) == 22


@cuda
def test_detect_leaves_cudnn_autotuning_off_and_classification_turns_it_on():
    """detect's model is seldom its slowest stage; the autotuner's first call, seconds long, was."""
    from vidact.pipeline.detect import load_action_model

    case = shared_path("fixtures", "parity", CASE)
    model = create_model(case / "config.yaml", weights=case / "model.pyth")
    optimize.inference_model(model, device="cuda", precision="fp32")
    assert torch.backends.cudnn.benchmark
    load_action_model(case / "config.yaml", case / "model.pyth", device="cuda", precision="fp32")
    assert not torch.backends.cudnn.benchmark


@cuda
def test_action_model_pads_boxes_to_a_power_of_two_without_changing_scores():
    from vidact.pipeline.detect import ActionModel, default_class_names

    model, pathways, boxes = _ava_case()
    with torch.no_grad():
        eager = model(pathways, boxes)
    graphed = optimize_for_inference(model, device="cuda", precision="fp32")
    action_model = ActionModel(graphed, default_class_names(model), "cuda")
    for count in (3, 2, 1):  # 3 is padded to 4: 4, 2 and 1 are the graphs
        scores = action_model([x for x in pathways], boxes[:count])
        assert scores.shape == (count, eager.shape[1])
        reference = eager[:count].numpy()
        assert abs(scores - reference).max() <= 1e-3 * abs(reference).max()
    assert sorted(key[-1][0][0] for key in graphed._run.graphs) == [1, 2, 4]


@cuda
def test_warm_up_captures_the_graph_the_first_keyframe_replays():
    from vidact.pipeline.detect import ActionModel, default_class_names

    case = shared_path("fixtures", "parity", CASE)
    model = create_model(case / "config.yaml", weights=case / "model.pyth").eval()
    graphed = optimize_for_inference(model, device="cuda", precision="fp32")
    action_model = ActionModel(graphed, default_class_names(model), "cuda")
    action_model.warm_up(240, 426)
    assert len(graphed._run.graphs) == 1
    frames = torch.randint(0, 256, (len(action_model.clip_offsets()), 240, 426, 3), dtype=torch.uint8).numpy()
    from vidact.transforms import scale_short_side_cv2

    clip = scale_short_side_cv2(frames, action_model.spec.test_crop_size)
    action_model(*action_model.prepare(clip, [[10.0, 20.0, 200.0, 230.0]], 240, 426))
    assert len(graphed._run.graphs) == 1  # one person: the warm-up's graph, replayed


@cuda
def test_a_rejected_input_raises_and_leaves_the_graphs_on():
    model, pathways, boxes = _ava_case()
    graphed = optimize_for_inference(model, device="cuda", precision="fp32")
    with pytest.raises(RuntimeError, match="channels"):
        graphed([x[:, :2] for x in pathways], boxes)
    assert not graphed._run.failed
    graphed(pathways, boxes)
    assert len(graphed._run.graphs) == 1


@cuda
def test_compiled_outputs_survive_the_next_call():
    case = shared_path("fixtures", "parity", "tiny_x3d")
    model = create_model(case / "config.yaml", weights=case / "model.pyth").eval()
    pathways = [torch.from_numpy(np.load(case / "inputs.npz")["pathway0"])]
    compiled = optimize_for_inference(model, device="cuda", precision="fp32", compile=True)
    for _ in range(3):  # reduce-overhead records its CUDA graph after warm-up calls
        compiled(pathways)
    first = compiled(pathways)
    kept = first.clone()
    compiled([x + 0.5 for x in pathways])
    assert torch.equal(first, kept)
