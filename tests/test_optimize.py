"""Inference mode (BN folding, oneDNN convs, channels_last, bf16) and the ``vidact bench`` tool."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from conftest import shared_path
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from vidact.api import create_model
from vidact.errors import VidactError
from vidact.models import count_gflops
from vidact.models.resnet3d import BasicTransform, BottleneckTransform, ResBlock
from vidact.models.nonlocal_block import NonLocal
from vidact.models.optimize import (
    FramewiseMaxPool,
    FusedNonLocal,
    FusedResBlock,
    InferenceModel,
    fold_conv_bn,
    optimize_for_inference,
    select_precision,
)
from vidact.tools import bench

PARITY_CASES = ["tiny_k400_slowfast", "tiny_ava_slowfast_r101_nln", "tiny_slow_i3d_nln", "tiny_x3d"]


def load_case(name: str) -> tuple[nn.Module, tuple, torch.Tensor]:
    case = shared_path("fixtures", "parity", name)
    model = create_model(case / "config.yaml", weights=case / "model.pyth").eval()
    inputs = np.load(case / "inputs.npz")
    pathways = [torch.from_numpy(inputs[k]) for k in sorted(inputs.files) if k.startswith("pathway")]
    args = (pathways, torch.from_numpy(inputs["boxes"])) if "boxes" in inputs.files else (pathways,)
    return model, args, torch.from_numpy(np.load(case / "expected.npz")["output"])


@pytest.fixture(scope="module", params=PARITY_CASES)
def parity_case(request):
    return request.param, *load_case(request.param)


def test_optimized_fp32_matches_eager_on_parity_fixtures(parity_case):
    name, model, args, expected = parity_case
    optimized = optimize_for_inference(model, precision="fp32")
    assert optimized.settings.unfolded_bn == 0, f"{name}: a BatchNorm was left unfolded (missing from FOLDABLE?)"
    assert optimized.settings.folded_bn > 0
    assert optimized.settings.channels_last
    output = optimized(*args)
    assert output.dtype == torch.float32 and output.shape == expected.shape
    torch.testing.assert_close(output, expected, rtol=1e-4, atol=1e-6)


def test_optimized_bf16_close_to_fp32_on_parity_fixtures(parity_case):
    name, model, args, expected = parity_case
    optimized = optimize_for_inference(model, precision="bf16")
    output = optimized(*args)
    assert output.dtype == torch.float32
    relative_l2 = ((output - expected).norm() / expected.norm()).item()
    assert relative_l2 < 2e-2, f"{name}: bf16 relative L2 error {relative_l2:.3g}"
    # Same top class per clip (per box for AVA).
    assert torch.equal(output.argmax(-1), expected.argmax(-1))


def test_contiguous_layout_also_matches():
    # The non-default layout goes through the same folding; non-local blocks included.
    model, args, expected = load_case("tiny_slow_i3d_nln")
    optimized = optimize_for_inference(model, precision="fp32", channels_last=False)
    torch.testing.assert_close(optimized(*args), expected, rtol=1e-4, atol=1e-6)


def test_original_model_is_left_trainable_and_unchanged():
    model, args, expected = load_case("tiny_x3d")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimized = optimize_for_inference(model, precision="bf16")
    assert model.state_dict().keys() == before.keys()
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert any(isinstance(m, nn.BatchNorm3d) for m in model.modules())
    assert all(p.requires_grad and p.dtype == torch.float32 for p in model.parameters())
    assert not any(p.requires_grad for p in optimized.parameters())
    with torch.no_grad():
        torch.testing.assert_close(model(*args), expected, rtol=1e-5, atol=1e-7)


def test_wrapper_keeps_config_and_refuses_training():
    model, _, _ = load_case("tiny_x3d")
    optimized = optimize_for_inference(model, precision="fp32")
    assert isinstance(optimized, InferenceModel)
    assert optimized.config is model.config
    assert optimized.zoo_entry is None
    with pytest.raises(VidactError, match="cannot be trained"):
        optimized.train()


def test_wrapper_is_in_eval_mode_so_helpers_can_restore_its_mode():
    model, args, _ = load_case("tiny_x3d")
    optimized = optimize_for_inference(model, precision="fp32")
    assert not optimized.training
    count_gflops(optimized, *args)  # ends with optimized.train(optimized.training)
    assert not optimized.training


def test_bf16_roi_align_gets_the_boxes_unrounded_in_fp32():
    model, (pathways, boxes), _ = load_case("tiny_ava_slowfast_r101_nln")
    assert not torch.equal(boxes.bfloat16().float(), boxes)  # e.g. 140.75, which bf16 rounds to 141
    optimized = optimize_for_inference(model, precision="bf16")
    head = optimized.network.head
    seen = []
    for p in range(head.num_pathways):
        getattr(head, f"s{p}_roi").register_forward_pre_hook(lambda module, args: seen.append(args))
    optimized(pathways, boxes)
    assert len(seen) == head.num_pathways
    for features, rois in seen:
        assert features.dtype == rois.dtype == torch.float32
        assert torch.equal(rois, boxes)


def test_fold_conv_bn_is_exact_with_bias_and_affine():
    generator = torch.Generator().manual_seed(0)
    conv = nn.Conv3d(4, 6, (3, 3, 3), padding=1, bias=True)
    bn = nn.BatchNorm3d(6).eval()
    with torch.no_grad():
        for tensor in (conv.weight, conv.bias, bn.weight, bn.bias, bn.running_mean):
            tensor.copy_(torch.randn(tensor.shape, generator=generator))
        bn.running_var.copy_(torch.rand(6, generator=generator) + 0.1)
    x = torch.randn(2, 4, 3, 5, 5, generator=generator)
    with torch.no_grad():
        expected = bn(conv(x))
        fold_conv_bn(conv, bn)
        torch.testing.assert_close(conv(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize(
    "pool",
    [nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)), nn.MaxPool3d((2, 2, 2), stride=(2, 2, 2))],
    ids=["spatial", "non_local_2x2x2"],
)
def test_framewise_max_pool_equals_max_pool_3d(channels_last, pool):
    x = torch.randn(2, 5, 5, 9, 11)  # odd frame count: the 2x2x2 pool drops the last frame
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    out = FramewiseMaxPool(pool)(x)
    assert torch.equal(out, pool(x))
    assert out.is_contiguous(memory_format=torch.channels_last_3d) == channels_last


class FirstInput(nn.Module):
    """Runs one block on the first pathway, as optimize_for_inference calls networks."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return self.block(inputs[0])


class OpRecorder(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


def randomize_batchnorms(module: nn.Module) -> nn.Module:
    generator = torch.Generator().manual_seed(0)
    for bn in module.modules():
        if isinstance(bn, nn.BatchNorm3d):
            n = bn.num_features
            bn.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            bn.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            bn.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            bn.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)
    return module.eval()


# downsample: a strided ResBlock (projection shortcut, in-place sum) or a pooled NonLocal.
@pytest.mark.parametrize("downsample", [False, True], ids=["plain", "downsample"])
@pytest.mark.parametrize("block_kind", [BottleneckTransform, BasicTransform, NonLocal])
def test_fused_residual_blocks_match_eager(block_kind, downsample):
    torch.manual_seed(0)
    if block_kind is not NonLocal:
        dim_in = 16 if downsample else 32
        branch2 = block_kind(dim_in, 32, temporal_kernel=3, stride=2 if downsample else 1, dim_inner=8)
        block, fused_type = ResBlock(dim_in, 32, 2 if downsample else 1, branch2, 1e-5, 0.1), FusedResBlock
    else:
        block, fused_type = NonLocal(32, 16, pool_size=(2, 2, 2) if downsample else None), FusedNonLocal
    network = randomize_batchnorms(FirstInput(block))
    x = torch.randn(2, 32 if block_kind is NonLocal else dim_in, 4, 6, 5)
    with torch.no_grad():
        expected = network([x])
    fp32 = optimize_for_inference(network, precision="fp32")
    assert type(fp32.network.block) is fused_type
    recorder = OpRecorder()
    with recorder:
        output = fp32([x])
    # The channels_last path, not the unfused fallback, ran: no separate add/relu.
    assert any("_convolution_pointwise" in op and "binary" in op for op in recorder.ops), recorder.ops
    assert not any(op.startswith(("aten.add", "aten.relu")) for op in recorder.ops), recorder.ops
    torch.testing.assert_close(output, expected, rtol=1e-4, atol=1e-5)
    bf16 = optimize_for_inference(network, precision="bf16")([x])
    assert ((bf16 - expected).norm() / expected.norm()).item() < 2e-2


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"avx2", "avx512f", "avx512_bf16"}, "bf16"),
        ({"avx2", "avx512f", "amx_tile", "amx_bf16"}, "bf16"),
        ({"avx2", "avx512f"}, "fp32"),
        (set(), "fp32"),
    ],
)
def test_cpu_precision_follows_doctor_flags(flags, expected):
    assert select_precision("cpu", cpu_flags=flags) == expected


def test_cuda_precision_follows_bf16_support():
    assert select_precision("cuda", cuda_bf16=True) == "bf16"
    assert select_precision("cuda", cuda_bf16=False) == "fp32"


def test_bad_precision_is_a_one_line_error():
    model, _, _ = load_case("tiny_x3d")
    with pytest.raises(VidactError, match="precision 'int8' is not supported") as error:
        optimize_for_inference(model, precision="int8")
    assert "\n" not in str(error.value)


def small_x3d_config():
    from vidact.api import resolve_model

    config = resolve_model(shared_path("fixtures", "parity", "tiny_x3d", "config.yaml")).config
    return config.replace(input=dataclasses.replace(config.input, num_frames=4, test_crop_size=96, train_crop_size=96))


def test_bench_records_every_mode_with_speedups_and_writes_json(tmp_path):
    config = small_x3d_config()

    @bench.register_pipeline_bench("fake_pipeline")
    def fake(options: bench.BenchOptions) -> list[bench.BenchRecord]:
        return [bench.BenchRecord("fake", "stage:decode", "fp32", str(options.device), options.threads, 0.5, 0.4, 1)]

    seen = []
    try:
        result = bench.run_bench(
            [config], precisions=["fp32", "bf16"], device="cpu", repeats=2, gemm_size=64,
            pipelines=["fake_pipeline"], on_record=seen.append,
        )
    finally:
        del bench.PIPELINE_BENCHES["fake_pipeline"]
    records = result["records"]
    assert [r["mode"] for r in records] == ["eager_fp32", "optimized_fp32", "optimized_bf16", "stage:decode"]
    assert len(seen) == len(records)
    model_records = records[:3]
    assert model_records[0]["speedup"] == 1.0
    gmacs = model_records[0]["gmacs"]
    assert gmacs == pytest.approx(count_gflops(create_model(config), *bench.bench_inputs(config)))
    for record in model_records:
        assert record["repeats"] == 2 and record["latency_min_s"] <= record["latency_s"]
        assert record["gmacs"] == gmacs
        assert record["gflop_per_s"] == pytest.approx(2 * gmacs / record["latency_s"])
        assert record["peak_gflop_per_s"] == result["gemm_peak_gflop_per_s"][record["precision"]] > 0
        assert record["speedup"] == pytest.approx(model_records[0]["latency_s"] / record["latency_s"])

    out = tmp_path / "bench.json"
    bench.write_json(result, out)
    assert json.loads(out.read_text())["records"] == records


def test_bench_rejects_unknown_pipeline_and_bad_repeats():
    with pytest.raises(VidactError, match="unknown pipeline bench 'nope'"):
        bench.run_bench([], pipelines=["nope"], gemm_size=64)
    with pytest.raises(VidactError, match="--repeats 0"):
        bench.run_bench([], repeats=0, gemm_size=64)


def test_bench_cli_writes_json(tmp_path, capsys):
    from vidact.cli.main import main

    config = shared_path("fixtures", "parity", "tiny_x3d", "config.yaml")
    out = tmp_path / "out.json"
    code = main(["bench", "--model", str(config), "--precision", "fp32", "--repeats", "1",
                 "--gemm-size", "64", "--device", "cpu", "--json", str(out)])
    assert code == 0
    written = json.loads(out.read_text())
    assert [r["mode"] for r in written["records"]] == ["eager_fp32", "optimized_fp32"]
    assert written["complete"] is True
    assert "optimized_fp32" in capsys.readouterr().out


def test_bench_cli_stopped_part_way_keeps_the_records_measured(tmp_path, capsys):
    from vidact.cli.main import main

    @bench.register_pipeline_bench("failing_pipeline")
    def failing(options: bench.BenchOptions) -> list[bench.BenchRecord]:
        raise VidactError("the pipeline broke")

    config = shared_path("fixtures", "parity", "tiny_x3d", "config.yaml")
    out = tmp_path / "out.json"
    try:
        code = main(["bench", "--model", str(config), "--precision", "fp32", "--repeats", "1", "--gemm-size", "64",
                     "--device", "cpu", "--pipeline", "failing_pipeline", "--json", str(out)])
    finally:
        del bench.PIPELINE_BENCHES["failing_pipeline"]
    assert code == 2 and "the pipeline broke" in capsys.readouterr().err
    written = json.loads(out.read_text())
    assert [r["mode"] for r in written["records"]] == ["eager_fp32", "optimized_fp32"]
    assert written["complete"] is False and written["gemm_peak_gflop_per_s"]["fp32"] > 0


@pytest.mark.parametrize("video", ["mmaction2_demo.mp4", "mmaction2_test_video_structuralize.mp4"])
def test_bf16_keeps_the_top1_class_on_shared_videos(video):
    """The tiny Kinetics parity weights on real video: optimised bf16 and fp32 agree with eager."""
    import vidact

    case = shared_path("fixtures", "parity", "tiny_k400_slowfast")
    model = vidact.create_model(case / "config.yaml", weights=case / "model.pyth")
    path = shared_path("data", "videos", video)
    results = {
        precision: vidact.classify(path, model, views="1x1", precision=precision, progress=False)
        for precision in ("eager", "fp32", "bf16")
    }
    eager = results["eager"].scores
    assert results["fp32"].top_k[0].index == results["eager"].top_k[0].index
    assert results["bf16"].top_k[0].index == results["eager"].top_k[0].index
    np.testing.assert_allclose(results["fp32"].scores, eager, rtol=1e-4, atol=1e-6)
    assert np.linalg.norm(results["bf16"].scores - eager) <= 2e-2 * np.linalg.norm(eager)


def test_fp16_on_a_cpu_without_it_is_a_clear_error(monkeypatch):
    from vidact.models.optimize import optimize_for_inference

    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_fp16_supported", lambda: False)
    model = create_model("x3d_xs")
    with pytest.raises(VidactError, match="fp16 on this CPU"):
        optimize_for_inference(model, device="cpu", precision="fp16")


def test_bench_times_each_batch_size_and_reports_clips_per_second():
    config = small_x3d_config()
    result = bench.run_bench([config], precisions=["fp32"], device="cpu", repeats=1, gemm_size=64, batch_sizes=[1, 3])
    records = result["records"]
    assert [(r["batch"], r["mode"]) for r in records] == [
        (1, "eager_fp32"), (1, "optimized_fp32"), (3, "eager_fp32"), (3, "optimized_fp32")]
    for record in records:
        assert record["clips_per_s"] == pytest.approx(record["batch"] / record["latency_s"])
    assert records[2]["gmacs"] == pytest.approx(3 * records[0]["gmacs"], rel=1e-6)
    assert records[2]["speedup"] == 1.0  # each batch size against its own eager run
    with pytest.raises(VidactError, match="--batch 0"):
        bench.run_bench([config], batch_sizes=[0], gemm_size=64)


def test_bench_inputs_give_every_clip_of_a_batch_its_boxes():
    from vidact.api import resolve_model

    config = resolve_model(shared_path("fixtures", "parity", "tiny_ava_slowfast_r101_nln", "config.yaml")).config
    pathways, boxes = bench.bench_inputs(config, batch=2)
    assert all(x.shape[0] == 2 for x in pathways)
    assert boxes[:, 0].tolist() == [0.0] * bench.DETECTION_BOXES + [1.0] * bench.DETECTION_BOXES
    torch.testing.assert_close(boxes[:bench.DETECTION_BOXES, 1:], boxes[bench.DETECTION_BOXES:, 1:])
    scores = create_model(config).eval()(pathways, boxes)
    assert scores.shape == (2 * bench.DETECTION_BOXES, config.num_classes)


def test_a_pipeline_bench_without_its_video_fails_before_timing(monkeypatch):
    from vidact.errors import VidactError

    monkeypatch.setattr(bench, "bench_model", lambda *a, **k: pytest.fail("timed a model first"))
    with pytest.raises(VidactError, match="--pipeline detect needs --video PATH"):
        bench.run_bench([small_x3d_config()], device="cpu", pipelines=["detect"])


def test_the_detect_pipeline_bench_runs_every_mode_without_cudnn_autotuning(monkeypatch, tmp_path):
    """As `vidact detect` runs: the eager model, which no optimisation touches, ran with the autotuner
    that the bench turns on for its model timings."""
    from vidact.pipeline import detect as pipeline

    seen = []

    def detect_video(*args, **kwargs):
        seen.append(torch.backends.cudnn.benchmark)
        return pipeline.DetectOutputs(*[None] * 8, metrics={"wall_s": 1.0, **{f"time_{s}_s": 0.0 for s in pipeline.STAGES}})

    monkeypatch.setattr(pipeline, "load_action_model", lambda config, **options: None)
    monkeypatch.setattr(pipeline, "detect_video", detect_video)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    options = bench.BenchOptions(device=torch.device("cpu"), repeats=1, warmup=0, threads=1, video=tmp_path / "v.mp4",
                                 precisions=("fp32", "bf16"))
    records = bench.bench_detect(options)
    assert seen == [False, False, False]
    assert {r.mode.split(":")[0] for r in records} == {"eager_fp32", "optimized_fp32", "optimized_bf16"}


@pytest.fixture
def untimed(monkeypatch):
    """Makes any timing in ``vidact bench`` fail the test: its checks must all come first."""

    def timed(*args, **kwargs):
        pytest.fail("bench timed something before refusing its input")

    for name in ("gemm_peak", "bench_model", "_time_round_robin"):
        monkeypatch.setattr(bench, name, timed)
    monkeypatch.setitem(bench.PIPELINE_BENCHES, "detect", timed)


def test_bench_refuses_fp16_on_a_cpu_without_it_before_timing(untimed, monkeypatch):
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_fp16_supported", lambda: False)
    with pytest.raises(VidactError, match="fp16 on this CPU"):
        bench.run_bench([small_x3d_config()], precisions=["fp32", "fp16"], device="cpu")


def test_bench_resolves_every_model_before_timing(untimed):
    with pytest.raises(VidactError, match="unknown model 'x3d_mm'"):
        bench.run_bench([small_x3d_config(), "x3d_mm"], precisions=["fp32"], device="cpu")


@pytest.mark.parametrize("content", [None, b"not a video"])
def test_bench_opens_the_pipeline_video_before_timing(untimed, tmp_path, content):
    video = tmp_path / "clip.mp4"
    if content is not None:
        video.write_bytes(content)
    with pytest.raises(VidactError, match="clip.mp4"):
        bench.run_bench([small_x3d_config()], precisions=["fp32"], device="cpu", pipelines=["detect"], video=video)


def test_bench_cli_bad_model_name_is_exit_2_and_writes_no_json(untimed, tmp_path, capsys):
    from vidact.cli.main import main

    config = shared_path("fixtures", "parity", "tiny_x3d", "config.yaml")
    out = tmp_path / "out.json"
    code = main(["bench", "--model", str(config), "x3d_mm", "--precision", "fp32", "--device", "cpu",
                 "--json", str(out)])
    assert code == 2
    error = capsys.readouterr().err
    assert "unknown model 'x3d_mm'" in error and len(error.strip().splitlines()) == 1
    assert not out.exists()
