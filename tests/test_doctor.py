"""Doctor: the architecture verdict with injected GPUs and builds, CPU flags, the report, its schema and exit status."""

from __future__ import annotations

import copy
import importlib.resources
import json
import subprocess
import sys

import jsonschema
import pytest
import torch

from test_gpu_monitor import FakeNvml, h100
from vidact.cli.main import main
from vidact.paths import weights_dir
from vidact.tools.doctor import (
    arch_verdict,
    bf16_verdict,
    checks,
    collect,
    driver_verdict,
    exit_status,
    format_report,
    parse_cpuinfo,
)

# torch.cuda.get_arch_list() of real builds.
CU130 = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]  # torch 2.14.1+cu130
CU126 = ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"]  # torch 2.8+cu126
CU117 = ["sm_37", "sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86"]  # torch 1.13+cu117: no Hopper


@pytest.mark.parametrize(
    "capability, archs, build, status, in_message, in_fix",
    [
        # H100 (sm_90) with and without sm_90 in the build.
        ((9, 0), CU130, "13.0", "ok", "native kernels (sm_90)", None),
        ((9, 0), CU117, "11.7", "broken", "no sm_90 kernels", "install a torch built for CUDA >= 11.8"),
        ((9, 0), ["sm_80", "sm_86"], "12.1", "broken", "no sm_90", "compiled without sm_90"),
        # PTX only: JIT at first use, from an older or equal architecture.
        ((9, 0), ["sm_80", "compute_80"], "11.8", "jit", "compute_80 PTX", "CUDA >= 11.8"),
        ((9, 0), ["sm_75", "compute_90"], "12.1", "jit", "compute_90", None),
        ((8, 0), ["sm_90", "compute_90"], "12.1", "broken", "no sm_80 kernels", None),  # PTX never runs backwards
        # Binary compatibility within a major version; not across majors.
        ((8, 6), ["sm_80"], "11.0", "ok", "binary-compatible kernels (sm_80)", None),
        ((8, 0), ["sm_86"], "11.1", "broken", "no sm_80", None),
        # Blackwell consumer (sm_120): needs CUDA 12.8; sm_100 kernels are another major.
        ((12, 0), CU130, "13.0", "ok", "sm_120", None),
        ((12, 0), CU126, "12.6", "broken", "no sm_120 kernels", "CUDA >= 12.8"),
        ((12, 0), ["sm_90", "sm_100"], "12.8", "broken", "no sm_120", None),
        ((12, 0), ["sm_90", "compute_90"], "12.6", "jit", "compute_90", "CUDA >= 12.8"),
        # "a" variants run on their exact GPU only; "f" family variants within the major.
        ((9, 0), ["sm_90a"], "12.4", "ok", "sm_90a", None),
        ((10, 3), ["sm_100a", "compute_100a"], "12.9", "broken", "no sm_103", None),
        ((10, 3), ["sm_100f"], "12.9", "ok", "binary-compatible kernels (sm_100f)", None),
        ((12, 0), ["sm_90", "compute_90a"], "12.8", "broken", "no sm_120", None),
        # Old GPU, new build: CUDA 13 dropped Volta.
        ((7, 0), CU130, "13.0", "broken", "no sm_70", "CUDA 13.0 dropped sm_70"),
        # CPU-only build, and a GPU newer than any known CUDA.
        ((9, 0), [], None, "broken", "CPU-only", "CUDA >= 11.8"),
        ((13, 0), CU130, "13.0", "broken", "no sm_130", "no CUDA version known"),
    ],
)
def test_arch_verdict(capability, archs, build, status, in_message, in_fix):
    verdict = arch_verdict(capability, archs, build)
    assert verdict.status == status
    assert in_message in verdict.message
    if status == "ok":
        assert verdict.fix is None
    else:
        assert verdict.fix  # every problem comes with its fix
        if in_fix:
            assert in_fix in verdict.fix
    assert "\n" not in verdict.message + (verdict.fix or "")


def test_sm70_fix_names_the_cuda_range():
    assert "CUDA 9.0 to 12.9" in arch_verdict((7, 0), CU130, "13.0").fix


def test_driver_verdict():
    assert driver_verdict((12, 4), "13.0").status == "broken"
    assert ">= 580" in driver_verdict((12, 4), "13.0").fix
    assert driver_verdict((12, 2), "12.8").status == "jit"
    assert driver_verdict((13, 0), "12.8").status == "ok"
    assert driver_verdict(None, "12.8") is None and driver_verdict((13, 0), None) is None


def test_cpu_flags_and_bf16():
    x86 = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t\t: fpu avx2 avx512f amx_tile amx_bf16\n"
    model, flags = parse_cpuinfo(x86 + x86.replace("8480+", "other"))
    assert model == "Intel(R) Xeon(R) Platinum 8480+" and {"avx2", "amx_bf16"} <= flags
    assert bf16_verdict(flags)[0] and "AMX" in bf16_verdict(flags)[1]
    assert bf16_verdict({"avx2", "avx512f", "avx512_bf16"}) == (True, bf16_verdict({"avx512_bf16"})[1])
    assert bf16_verdict({"avx2", "avx512f"})[0] is False
    _, arm = parse_cpuinfo("processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n")
    assert bf16_verdict(arm)[0]


@pytest.fixture(scope="module")
def schema() -> dict:
    text = importlib.resources.files("vidact.tools").joinpath("doctor_schema.json").read_text()
    schema = json.loads(text)
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def validate(report: dict, schema: dict) -> None:
    jsonschema.validate(report, schema, cls=jsonschema.Draft202012Validator)


@pytest.fixture
def no_cuda(monkeypatch):
    """torch as on a CUDA 13.0 build without a usable GPU, whatever machine runs the tests."""
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: list(CU130))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


def test_no_driver_is_usable_on_the_cpu(no_cuda, schema, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml([], init_error="NVML Shared Library Not Found"))
    report = collect()
    validate(report, schema)
    assert report["gpus"] == [] and report["exit_status"] == 0
    assert "Shared Library Not Found" in report["driver"]["nvml"]

    assert main(["doctor"]) == 0
    text = capsys.readouterr().out
    assert "gpus\n  none" in text and "result: usable (CPU only), exit status 0" in text
    assert f"torch         {torch.__version__}" in text


def test_gpu_without_kernels_fails(no_cuda, schema):
    v100 = h100(name="Tesla V100-SXM2-16GB", cc=(7, 0), memory=(16384 * 2**20, 0))
    report = collect(FakeNvml([h100(), v100]))
    validate(report, schema)
    h, v = report["gpus"]
    assert (h["compute_capability"], h["memory_total_mib"], h["verdict"]["status"]) == ("9.0", 81559, "ok")
    assert (v["compute_capability"], v["verdict"]["status"]) == ("7.0", "broken")
    assert report["driver"] == {"nvml": "ok", "version": "580.65.06", "cuda": "13.0"}
    assert report["exit_status"] == 1
    text = format_report(report)
    assert "[FAIL] gpu 1: Tesla V100-SXM2-16GB: the build has no sm_70 kernels" in text
    assert "fix: CUDA 13.0 dropped sm_70" in text
    # torch cannot see the GPUs NVML reports: a failure of its own.
    assert any(c["name"] == "torch cuda" and c["status"] == "fail" for c in report["checks"])


def test_broken_needed_parts_fail_and_schema_rejects_bad_reports(no_cuda, schema, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml([], init_error="NVML Shared Library Not Found"))
    report = collect()
    assert exit_status(report) == 0

    broken_tv = copy.deepcopy(report)
    broken_tv["torch"]["torchvision_ops_error"] = "RuntimeError: operator torchvision::nms does not exist"
    broken_tv["checks"] = checks(broken_tv)
    assert exit_status(broken_tv) == 1

    no_h264 = copy.deepcopy(report)
    no_h264["video"]["decoders"]["h264"] = None
    no_h264["checks"] = checks(no_h264)
    assert exit_status(no_h264) == 1
    assert "no h264 decoder" in format_report(no_h264 | {"exit_status": 1})

    for mutate in (
        lambda r: r.pop("gpus"),
        lambda r: r["checks"].append({"name": "x", "status": "bad", "message": "", "fix": None}),
        lambda r: r["cpu"]["flags"].update(avx2="yes"),
        lambda r: r.update(unexpected=1),
    ):
        bad = copy.deepcopy(report)
        mutate(bad)
        with pytest.raises(jsonschema.ValidationError):
            validate(bad, schema)


def test_cache_lists_weights_and_skips_partial_downloads(no_cuda, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml([]))
    folder = weights_dir()  # conftest points VIDACT_HOME at a temporary folder
    (folder / "kinetics").mkdir(parents=True)
    (folder / "kinetics" / "SLOWFAST_8x8_R50.pkl").write_bytes(b"x" * 1000)
    (folder / "x3d_m.pyth").write_bytes(b"y" * 24)
    (folder / ".x3d_l.part.pyth").write_bytes(b"unfinished")
    cache = collect()["cache"]
    assert cache["dir"] == str(folder) and cache["exists"]
    assert cache["files"] == [
        {"name": "kinetics/SLOWFAST_8x8_R50.pkl", "size_bytes": 1000},
        {"name": "x3d_m.pyth", "size_bytes": 24},
    ]
    assert cache["total_bytes"] == 1024 and cache["free_bytes"] > 0


def test_doctor_json_on_this_machine(schema):
    done = subprocess.run([sys.executable, "-m", "vidact.cli.main", "doctor", "--json"], capture_output=True, text=True)
    report = json.loads(done.stdout)
    validate(report, schema)
    assert done.returncode == report["exit_status"]
    if report["driver"]["nvml"] != "ok":  # no driver, as on the development machine: CPU use is fine
        assert report["gpus"] == [] and done.returncode == 0
    assert report["versions"]["torch"] == torch.__version__
    assert report["video"]["decoders"]["h264"] is not None


class LostGpuNvml(FakeNvml):
    def nvmlDeviceGetHandleByIndex(self, index):
        if index == 1:
            raise self.NVMLError("GPU is lost")
        return super().nvmlDeviceGetHandleByIndex(index)


def test_an_unreadable_gpu_is_reported_not_a_crash(no_cuda, schema):
    report = collect(LostGpuNvml([h100(), h100()]))
    validate(report, schema)
    assert report["gpus"][0]["verdict"]["status"] == "ok"
    lost = report["gpus"][1]
    assert "GPU is lost" in lost["name"] and lost["verdict"] is None
    assert any(c["name"] == "gpu 1" and c["status"] == "warn" for c in report["checks"])
