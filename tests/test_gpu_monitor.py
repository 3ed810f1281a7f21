"""GPU monitor against a fake NVML module with pynvml's interface; the real pynvml takes the same path."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from vidact.cli.main import _DiscardOnceUnread, main
from vidact.errors import VidactError
from vidact.tools.gpu_monitor import (
    CSV_COLUMNS,
    MIB,
    CsvLog,
    GpuSampler,
    GpuUsageRecorder,
    Nvml,
    NvmlUnavailable,
    format_table,
    gpu_metrics,
    monitor,
    sample_gpus,
)


class FakeNvml:
    """pynvml's functions over a list of GPUs given as dicts; memory in bytes as NVML reports it."""

    class NVMLError(Exception):
        pass

    def __init__(self, gpus: list[dict], init_error: str | None = None) -> None:
        self.gpus = gpus
        self.init_error = init_error
        self.open_sessions = 0

    def nvmlInit(self):
        if self.init_error:
            raise self.NVMLError(self.init_error)
        self.open_sessions += 1

    def nvmlShutdown(self):
        self.open_sessions -= 1

    def nvmlDeviceGetCount(self):
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index):
        return self.gpus[index]

    def nvmlDeviceGetName(self, handle):
        return handle["name"]

    def nvmlDeviceGetUtilizationRates(self, handle):
        if handle.get("util") is None:
            raise self.NVMLError("Not Supported")
        gpu, memory = handle["util"]
        return SimpleNamespace(gpu=gpu, memory=memory)

    def nvmlDeviceGetMemoryInfo(self, handle):
        total, used = handle["memory"]
        return SimpleNamespace(total=total, free=total - used, used=used)

    def nvmlDeviceGetCudaComputeCapability(self, handle):
        return handle["cc"]

    def nvmlDeviceGetUUID(self, handle):
        if "uuid" not in handle:
            raise self.NVMLError("Not Supported")
        return handle["uuid"]

    def nvmlDeviceGetPciInfo(self, handle):
        if "pci" not in handle:
            raise self.NVMLError("Not Supported")
        domain, bus, device = handle["pci"]
        return SimpleNamespace(domain=domain, bus=bus, device=device)

    def nvmlSystemGetDriverVersion(self):
        return "580.65.06"

    def nvmlSystemGetCudaDriverVersion(self):
        return 13000


def h100(**overrides) -> dict:
    # 81559 MiB total as nvidia-smi shows for an H100 80GB HBM3; a few stray bytes must floor away.
    gpu = {"name": "NVIDIA H100 80GB HBM3", "util": (97, 41), "memory": (81559 * MIB + 123, 20480 * MIB), "cc": (9, 0)}
    return gpu | overrides


@pytest.fixture
def fake() -> FakeNvml:
    # Old nvidia-ml-py returns bytes for names: the second GPU checks that they are decoded.
    return FakeNvml([h100(), h100(name=b"NVIDIA A100-SXM4-40GB", util=(3, 0), memory=(40960 * MIB, 5 * MIB))])


def test_sample_values_and_units(fake):
    with Nvml(fake) as nvml:
        first, second = nvml.sample_all()
    assert fake.open_sessions == 0
    assert (first.index, first.name, first.utilization_gpu, first.utilization_memory) == (
        0, "NVIDIA H100 80GB HBM3", 97, 41,
    )
    assert (first.memory_total_mib, first.memory_used_mib, first.memory_free_mib) == (81559, 20480, 61079)
    assert second.name == "NVIDIA A100-SXM4-40GB" and second.memory_free_mib == 40955
    assert first.timestamp == second.timestamp

    table = format_table([first, second])
    assert "97 %" in table and "81559 MiB" in table and "61079 MiB" in table and "NVIDIA A100-SXM4-40GB" in table


def test_unsupported_utilisation_is_reported_as_missing():
    with Nvml(FakeNvml([h100(util=None)])) as nvml:
        [sample] = nvml.sample_all()
    assert sample.utilization_gpu is None and sample.memory_used_mib == 20480
    assert "[N/A]" in format_table([sample])
    assert sample.csv_row()[3:5] == ["", ""]
    assert gpu_metrics([sample]) == {"gpu0/mem_used_mib": 20480, "gpu0/mem_total_mib": 81559}


def test_csv_header_once_and_rows_parse(tmp_path, fake):
    path = tmp_path / "logs" / "gpu.csv"
    with Nvml(fake) as nvml:
        CsvLog(path).append(nvml.sample_all())
        # A second monitor run appends to the same file without a second header.
        log = CsvLog(path)
        log.append(nvml.sample_all())
        log.append(nvml.sample_all())
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(CSV_COLUMNS)
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    assert len(rows) == 6
    assert [r["index"] for r in rows] == ["0", "1"] * 3
    assert rows[0]["name"] == "NVIDIA H100 80GB HBM3"
    assert rows[0]["utilization.gpu [%]"] == "97" and rows[0]["utilization.memory [%]"] == "41"
    assert rows[0]["memory.total [MiB]"] == "81559" and rows[0]["memory.free [MiB]"] == "61079"
    assert rows[0]["memory.used [MiB]"] == "20480" and rows[1]["memory.used [MiB]"] == "5"


def test_csv_refuses_a_foreign_file(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(VidactError, match="other.csv.*not a gpu-monitor CSV"):
        CsvLog(path)
    assert path.read_text() == "a,b\n1,2\n"


def test_monitor_counts_sleeps_and_stops_on_ctrl_c(tmp_path, fake):
    out, sleeps = io.StringIO(), []
    with Nvml(fake) as nvml:
        assert monitor(nvml, interval=2.5, count=3, csv_path=tmp_path / "g.csv", out=out, sleep=sleeps.append) == 3
    assert sleeps == [2.5, 2.5]
    text = out.getvalue()
    assert text.count("NVIDIA H100 80GB HBM3") == 3 and "\x1b[" not in text  # no redraw codes off a terminal
    assert len((tmp_path / "g.csv").read_text().splitlines()) == 1 + 3 * 2

    def interrupted(seconds):
        raise KeyboardInterrupt

    with Nvml(fake) as nvml:
        assert monitor(nvml, interval=1, count=None, out=io.StringIO(), sleep=interrupted) == 1

    with Nvml(fake) as nvml, pytest.raises(VidactError, match="--interval"):
        monitor(nvml, interval=0, count=1, out=io.StringIO())


# A PNG; a text file whose first line is too long for a CSV field.
@pytest.mark.parametrize("content", [b"\x89PNG\r\n\x1a\n\xff\xfe\x00", b"x" * 200_000])
def test_csv_refuses_a_file_that_is_not_csv_text_with_one_line(content, tmp_path, monkeypatch, capsys):
    path = tmp_path / "gpu.csv"
    path.write_bytes(content)
    with pytest.raises(VidactError, match="gpu.csv.*not a gpu-monitor CSV"):
        CsvLog(path)
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml([h100()]))
    assert main(["gpu-monitor", "--count", "1", "--csv", str(path)]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert path.read_bytes() == content


def test_csv_rows_start_on_a_new_line_after_a_header_without_one(tmp_path, fake):
    path = tmp_path / "gpu.csv"
    path.write_text(",".join(CSV_COLUMNS))
    with Nvml(fake) as nvml:
        CsvLog(path).append(nvml.sample_all())
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    assert [r["index"] for r in rows] == ["0", "1"] and rows[0]["name"] == "NVIDIA H100 80GB HBM3"


@pytest.mark.parametrize("interval", [float("inf"), float("nan")])
def test_cli_refuses_a_non_finite_interval_with_one_line(interval, fake, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    assert main(["gpu-monitor", "--count", "2", "--interval", str(interval)]) == 2
    err = capsys.readouterr().err
    assert "--interval" in err and err.count("\n") == 1


def test_monitor_stops_once_nobody_reads_the_table_unless_it_logs_to_csv(tmp_path, fake):
    def unread_stdout():
        read_end, write_end = os.pipe()
        os.close(read_end)  # the reader (head) has gone
        return _DiscardOnceUnread(pipes.enter_context(open(write_end, "w")))

    sleeps = []

    def sleep(seconds):  # a monitor that does not stop is interrupted after 3 rounds
        sleeps.append(seconds)
        if len(sleeps) % 3 == 0:
            raise KeyboardInterrupt

    with contextlib.ExitStack() as pipes, Nvml(fake) as nvml:
        assert monitor(nvml, interval=1, count=None, out=unread_stdout(), sleep=sleep) == 1
        assert monitor(nvml, interval=1, count=None, csv_path=tmp_path / "g.csv", out=unread_stdout(), sleep=sleep) == 3
    assert len((tmp_path / "g.csv").read_text().splitlines()) == 1 + 3 * 2


def test_cli_exits_once_its_pipe_reader_has_gone():
    # `vidact gpu-monitor | head -1`, with this file's fake NVML as pynvml.
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
        "from test_gpu_monitor import FakeNvml, h100; sys.modules['pynvml'] = FakeNvml([h100()]); "
        "from vidact.cli.main import main; sys.exit(main(['gpu-monitor', '--interval', '0.05']))"
    )
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip()  # the first table's time stamp
        process.stdout.close()
        assert process.wait(timeout=30) == 0
        assert process.stderr.read() == ""
    finally:
        process.kill()
        process.wait()
        process.stderr.close()


def test_sampler_records_metrics_and_is_a_no_op_without_driver(fake):
    with GpuSampler(fake) as sampler:
        assert sampler.available
        metrics = sampler.metrics()
    assert fake.open_sessions == 0
    assert metrics["gpu0/util_pct"] == 97 and metrics["gpu1/mem_used_mib"] == 5
    assert len(sample_gpus(fake)) == 2

    no_driver = FakeNvml([h100()], init_error="NVML Shared Library Not Found")
    sampler = GpuSampler(no_driver)
    assert not sampler.available and sampler.sample() == [] and sampler.metrics() == {}
    assert sample_gpus(no_driver) == []
    with pytest.raises(NvmlUnavailable, match="no NVIDIA driver"):
        Nvml(no_driver)


def test_cli_reads_pynvml(tmp_path, fake, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    path = tmp_path / "gpu.csv"
    assert main(["gpu-monitor", "--count", "2", "--interval", "0.01", "--csv", str(path)]) == 0
    assert capsys.readouterr().out.count("81559 MiB") == 2
    assert len(path.read_text().splitlines()) == 1 + 2 * 2


@pytest.mark.parametrize(
    "module, message",
    [
        (FakeNvml([], init_error="NVML Shared Library Not Found"), "no NVIDIA driver found"),
        (None, "nvidia-ml-py is not installed"),  # None in sys.modules makes the import fail
    ],
)
def test_cli_without_driver_exits_2_with_one_line(module, message, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pynvml", module)
    assert main(["gpu-monitor", "--count", "1"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_cli_on_this_machine():
    done = subprocess.run(
        [sys.executable, "-m", "vidact.cli.main", "gpu-monitor", "--count", "1"], capture_output=True, text=True
    )
    if sample_gpus():
        assert done.returncode == 0 and "MiB" in done.stdout
    else:
        assert done.returncode == 2 and done.stdout == ""
        assert done.stderr.startswith("vidact gpu-monitor: error: ") and done.stderr.count("\n") == 1


def test_usage_recorder_gives_the_mean_utilisation_and_peak_memory_of_a_job(fake):
    recorder = GpuUsageRecorder(GpuSampler(fake), interval=0.01).start()

    def two_more_samples():  # counted, not timed: a stalled sampler thread must not miss a state
        wanted = len(recorder.samples) + 2
        while len(recorder.samples) < wanted:
            time.sleep(0.005)

    two_more_samples()
    fake.gpus[0] = h100(util=(20, 10), memory=(81559 * MIB, 30000 * MIB))  # the job peaks, then idles
    two_more_samples()
    fake.gpus[0] = h100(util=(0, 0), memory=(81559 * MIB, 1000 * MIB))
    two_more_samples()
    metrics = recorder.stop()
    assert fake.open_sessions == 0 and len(recorder.samples) >= 6
    utilisations = [moment[0].utilization_gpu for moment in recorder.samples]
    assert {97, 20, 0} <= set(utilisations)
    assert metrics["gpu0/util_pct_mean"] == pytest.approx(sum(utilisations) / len(utilisations), abs=0.05)
    assert 0 < metrics["gpu0/util_pct_mean"] < 97
    assert metrics["gpu0/mem_used_mib_peak"] == 30000 and metrics["gpu0/mem_total_mib"] == 81559
    assert metrics["gpu1/util_pct_mean"] == 3 and metrics["gpu1/mem_used_mib_peak"] == 5

    no_driver = FakeNvml([h100()], init_error="NVML Shared Library Not Found")
    assert GpuUsageRecorder(GpuSampler(no_driver), interval=0.01).start().stop() == {}


class MigNvml(FakeNvml):
    """NVML as a non-root user sees a MIG-enabled GPU: its memory needs privileges (NVML_ERROR_NO_PERMISSION)."""

    def nvmlDeviceGetMemoryInfo(self, handle):
        if handle.get("mig"):
            raise self.NVMLError("Insufficient Permissions")
        return super().nvmlDeviceGetMemoryInfo(handle)


def mig_gpus() -> MigNvml:
    return MigNvml([h100(), h100(name="NVIDIA A100-SXM4-80GB", cc=(8, 0), util=(50, 10), mig=True)])


def test_an_unreadable_value_is_missing_and_the_rest_is_reported(tmp_path, monkeypatch, capsys):
    with Nvml(mig_gpus()) as nvml:
        full, mig = nvml.sample_all()
    assert full.memory_used_mib == 20480
    assert (mig.name, mig.utilization_gpu, mig.memory_total_mib, mig.memory_used_mib) == (
        "NVIDIA A100-SXM4-80GB", 50, None, None,
    )
    assert mig.csv_row()[3:] == ["50", "10", "", "", ""]
    assert gpu_metrics([full, mig]) == {
        "gpu0/util_pct": 97, "gpu0/mem_util_pct": 41, "gpu0/mem_used_mib": 20480, "gpu0/mem_total_mib": 81559,
        "gpu1/util_pct": 50, "gpu1/mem_util_pct": 10,
    }
    assert GpuSampler(mig_gpus()).metrics()["gpu1/util_pct"] == 50  # what training's GpuMonitorHook logs

    monkeypatch.setitem(sys.modules, "pynvml", mig_gpus())
    path = tmp_path / "gpu.csv"
    assert main(["gpu-monitor", "--count", "1", "--csv", str(path)]) == 0
    [mig_row] = [line for line in capsys.readouterr().out.splitlines() if "A100" in line]
    assert mig_row.split()[-3:] == ["[N/A]"] * 3
    assert path.read_text().splitlines()[2].endswith(",NVIDIA A100-SXM4-80GB,50,10,,,")


def test_usage_recorder_keeps_sampling_past_an_unreadable_value():
    recorder = GpuUsageRecorder(GpuSampler(mig_gpus()), interval=0.01).start()
    while len(recorder.samples) < 3:
        assert recorder._thread.is_alive()
        time.sleep(0.01)
    metrics = recorder.stop()
    assert metrics["gpu0/mem_used_mib_peak"] == 20480 and metrics["gpu1/util_pct_mean"] == 50
    assert "gpu1/mem_used_mib_peak" not in metrics and "gpu1/mem_total_mib" not in metrics


class LostNvml(FakeNvml):
    """A driver that lost its GPUs after initialising: even the count fails."""

    def nvmlDeviceGetCount(self):
        raise self.NVMLError("GPU is lost")


def test_a_lost_gpu_count_stops_nothing_in_a_job_and_is_one_line_in_the_cli(monkeypatch, capsys):
    assert GpuSampler(LostNvml([h100()])).metrics() == {}
    monkeypatch.setitem(sys.modules, "pynvml", LostNvml([h100()]))
    assert main(["gpu-monitor", "--count", "1"]) == 2
    err = capsys.readouterr().err
    assert "NVML cannot count the GPUs (GPU is lost)" in err and err.count("\n") == 1
