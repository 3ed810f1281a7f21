"""Doctor: the architecture verdict with injected GPUs and builds, CPU flags, the report, its schema and exit status."""

from __future__ import annotations

import copy
import importlib.resources
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import jsonschema
import pytest
import torch

from test_gpu_monitor import FakeNvml, MigNvml, h100
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


def test_unfinished_downloads_are_counted_in_a_warning(no_cuda, schema, monkeypatch, capsys):
    """Part files a killed download left are hidden: doctor names how many and how big, in text and JSON."""
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml([]))
    folder = weights_dir()
    (folder / "kinetics").mkdir(parents=True)
    (folder / "x3d_m.pyth").write_bytes(b"y" * 24)
    (folder / ".x3d_l.k1ll3d_x.part.pyth").write_bytes(b"u" * 1000)
    (folder / "kinetics" / ".SLOWFAST_8x8_R50.k1ll3d_x.part.pkl").write_bytes(b"u" * 2000)
    report = collect()
    validate(report, schema)
    [check] = [c for c in report["checks"] if c["name"] == "cache"]
    assert check["status"] == "warn" and "2 unfinished downloads (2.9 KiB)" in check["message"] and check["fix"]
    assert report["cache"]["total_bytes"] == 24 and report["exit_status"] == 0

    assert main(["doctor"]) == 0
    text = capsys.readouterr().out
    assert "[warn] cache: 2 unfinished downloads (2.9 KiB)" in text


def test_a_cache_that_cannot_be_created_is_a_warning(no_cuda, schema, monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml([]))
    assert not [c for c in collect()["checks"] if c["name"] == "cache"]  # a fresh, writable VIDACT_HOME

    home = tmp_path / "a_file"
    home.write_text("not a folder")
    monkeypatch.setenv("VIDACT_HOME", str(home))
    report = collect()
    validate(report, schema)
    [check] = [c for c in report["checks"] if c["name"] == "cache"]
    assert check["status"] == "warn" and f"{home} is not a folder" in check["message"]
    assert "VIDACT_HOME" in check["fix"] and report["exit_status"] == 0
    assert main(["doctor"]) == 0
    assert f"[warn] cache: {weights_dir()}: {home} is not a folder" in capsys.readouterr().out

    # A read-only folder (os.access, since root may write anywhere).
    monkeypatch.setenv("VIDACT_HOME", str(tmp_path))
    monkeypatch.setattr(os, "access", lambda path, mode: str(path) != str(tmp_path))
    [check] = [c for c in collect()["checks"] if c["name"] == "cache"]
    assert f"{tmp_path} is not writable" in check["message"] and "writable folder" in check["fix"]


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


def test_every_warning_and_failure_says_how_to_fix_it(no_cuda):
    # A GPU NVML lost (compute capability unknown) and an FFmpeg with NVDEC but no working CUDA GPU.
    report = collect(LostGpuNvml([h100(), h100()]))
    report["video"]["decoders"]["h264_cuvid"] = "h264_cuvid"
    report["video"]["nvdec_usable"] = False
    report["checks"] = checks(report)
    problems = {c["name"]: c for c in report["checks"] if c["status"] != "ok"}
    assert {"gpu 1", "nvdec"} <= problems.keys()
    assert all(c["fix"] and "\n" not in c["fix"] for c in problems.values())
    assert "nvidia-smi -q -i 1" in problems["gpu 1"]["fix"] and "--decode cpu" in problems["nvdec"]["fix"]
    text = format_report(report)
    assert text.count("fix: ") == len(problems)


def test_a_gpu_whose_memory_nvml_refuses_keeps_its_verdict(no_cuda, schema):
    a100 = h100(name="NVIDIA A100-SXM4-80GB", cc=(8, 0), mig=True)
    report = collect(MigNvml([a100]))
    validate(report, schema)
    [gpu] = report["gpus"]
    assert (gpu["name"], gpu["memory_total_mib"], gpu["verdict"]["status"]) == ("NVIDIA A100-SXM4-80GB", 0, "ok")


CUDNN_SM75_ERROR = (
    "cuDNN version 92400 is not compatible with devices with SM < 7.5. Please install a version of PyTorch with a"
    " compatible cuDNN version. https://github.com/pytorch/pytorch/blob/main/RELEASE.md#release-compatibility-matrix"
)


def test_cudnn_refused_by_torch_is_a_failing_check_not_a_crash(no_cuda, schema, monkeypatch, capsys):
    def refuse():
        raise RuntimeError(CUDNN_SM75_ERROR)

    monkeypatch.setattr(torch.backends.cudnn, "is_available", lambda: True)
    monkeypatch.setattr(torch.backends.cudnn, "version", refuse)
    v100 = h100(name="Tesla V100-SXM2-16GB", cc=(7, 0))
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml([v100]))
    assert main(["doctor", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    validate(report, schema)
    assert report["versions"]["cudnn"] == "unusable: cuDNN version 92400 is not compatible with devices with SM < 7.5"
    [cudnn] = [c for c in report["checks"] if c["name"] == "cudnn"]
    assert cudnn["status"] == "fail" and "older than 9.11" in cudnn["fix"]
    assert "CUDA 13.0 dropped sm_70" in format_report(report)  # the GPU's own verdict still comes out


def test_old_torch_with_an_empty_arch_list_is_not_called_cpu_only(no_cuda, monkeypatch):
    # torch 2.4 to 2.11 return [] from get_arch_list() whenever is_available() is False: here a driver too old.
    class OldDriver(FakeNvml):
        def nvmlSystemGetCudaDriverVersion(self):
            return 12040

    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: [])
    monkeypatch.setattr(torch._C, "_cuda_getArchFlags", lambda: " ".join(CU130), raising=False)
    report = collect(OldDriver([h100()]))
    assert report["torch"]["arch_list"] == CU130 and report["gpus"][0]["verdict"]["status"] == "ok"
    [driver] = [c for c in report["checks"] if c["name"] == "driver"]
    assert driver["status"] == "fail" and ">= 580" in driver["fix"]

    # A build whose flags say nothing, or a torch without the function, is CPU-only after all.
    monkeypatch.setattr(torch._C, "_cuda_getArchFlags", lambda: None)
    assert "CPU-only" in collect(OldDriver([h100()]))["gpus"][0]["verdict"]["message"]
    monkeypatch.delattr(torch._C, "_cuda_getArchFlags")
    assert collect(OldDriver([h100()]))["torch"]["arch_list"] == []


def torch_sees(monkeypatch, gpus: list[dict]) -> list[str]:
    """Make torch see ``gpus`` (name, cc, optional uuid and pci) as cuda:0, cuda:1, ... and run kernels on the CPU.

    Returns the list of devices the smoke tests ran on; a GPU marked ``no_kernels`` fails its kernel.
    """
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(gpus))
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 91000)

    def properties(i):
        gpu = gpus[i]
        domain, bus, device = gpu.get("pci", (None, None, None))
        return SimpleNamespace(name=gpu["name"], major=gpu["cc"][0], minor=gpu["cc"][1], total_memory=2**34,
                               uuid=gpu.get("torch_uuid"), pci_domain_id=domain, pci_bus_id=bus, pci_device_id=device)

    monkeypatch.setattr(torch.cuda, "get_device_properties", properties)
    ran, real_ones = [], torch.ones

    def ones(*size, device=None, **kwargs):
        if str(device).startswith("cuda:"):
            ran.append(str(device))
            if gpus[int(str(device)[5:])].get("no_kernels"):
                raise RuntimeError("CUDA error: no kernel image is available for execution on the device")
            device = None
        return real_ones(*size, device=device, **kwargs)

    monkeypatch.setattr(torch, "ones", ones)
    return ran


def test_smoke_test_runs_on_the_gpu_it_reports(no_cuda, monkeypatch):
    # NVML numbers by PCI bus (the GTX 1080 first); CUDA fastest first (the RTX 4090 first).
    gtx = h100(name="NVIDIA GeForce GTX 1080", cc=(6, 1), uuid="GPU-11111111-2222-3333-4444-555555555555",
               pci=(0, 1, 0))
    rtx = h100(name="NVIDIA GeForce RTX 4090", cc=(8, 9), uuid="GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
               pci=(0, 2, 0))
    ran = torch_sees(monkeypatch, [
        rtx | {"torch_uuid": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"},
        gtx | {"torch_uuid": "11111111-2222-3333-4444-555555555555", "no_kernels": True},
    ])
    report = collect(FakeNvml([gtx, rtx]))
    assert [g["smoke_test"] for g in report["gpus"]] == [None, "ok"] and ran == ["cuda:0"]

    # Without UUIDs the PCI address tells them apart.
    ran = torch_sees(monkeypatch, [rtx, gtx | {"no_kernels": True}])
    report = collect(FakeNvml([{k: v for k, v in g.items() if k != "uuid"} for g in (gtx, rtx)]))
    assert report["gpus"][1]["smoke_test"] == "ok" and ran == ["cuda:0"]


def test_a_gpu_hidden_from_torch_gets_no_smoke_test(no_cuda, monkeypatch):
    # CUDA_VISIBLE_DEVICES=1: torch's cuda:0 is NVML's GPU 1.
    first = h100(uuid="GPU-11111111-2222-3333-4444-555555555555")
    second = h100(uuid="GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee")
    ran = torch_sees(monkeypatch, [second | {"torch_uuid": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"}])
    report = collect(FakeNvml([first, second]))
    assert [g["smoke_test"] for g in report["gpus"]] == [None, "ok"] and ran == ["cuda:0"]


def test_a_working_rocm_gpu_is_judged_by_its_smoke_test(no_cuda, schema, monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setattr(torch.version, "hip", "6.2.41133", raising=False)
    ran = torch_sees(monkeypatch, [{"name": "AMD Instinct MI300X", "cc": (9, 4)}])
    report = collect(FakeNvml([], init_error="NVML Shared Library Not Found"))
    validate(report, schema)
    [gpu] = report["gpus"]
    assert gpu["verdict"]["status"] == "ok" and gpu["smoke_test"] == "ok" and ran == ["cuda:0"]
    assert report["exit_status"] == 0

    ran = torch_sees(monkeypatch, [{"name": "AMD Instinct MI300X", "cc": (9, 4), "no_kernels": True}])
    report = collect(FakeNvml([], init_error="NVML Shared Library Not Found"))
    assert report["exit_status"] == 1 and "no kernel image" in report["gpus"][0]["smoke_test"]
