"""Unusable input videos: one-line error naming the file, exit status 2, no output left behind."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from conftest import shared_path
from PIL import Image

from vidact.cli.main import main

TINY = ("fixtures", "parity", "tiny_k400_slowfast")


def _audio_only(path) -> None:
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"
        for i in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """name -> a path that is not a usable video."""
    root = tmp_path_factory.mktemp("bad")
    video = shared_path("data", "videos", "mmaction2_demo.mp4").read_bytes()
    files = {
        "zero_bytes": b"",
        "truncated": video[: len(video) // 2],
        "random_bytes": np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes(),
    }
    paths = {}
    for name, data in files.items():
        paths[name] = root / f"{name}.mp4"
        paths[name].write_bytes(data)
    paths["image_renamed"] = root / "image_renamed.mp4"
    Image.fromarray(np.full((64, 80, 3), 128, np.uint8)).save(paths["image_renamed"], format="PNG")
    paths["audio_only"] = root / "audio_only.mp4"
    _audio_only(paths["audio_only"])
    paths["missing"] = root / "missing.mp4"
    paths["directory"] = root / "directory.mp4"
    paths["directory"].mkdir()
    return paths


def _commands(video, out):
    config, weights = str(shared_path(*TINY, "config.yaml")), str(shared_path(*TINY, "model.pyth"))
    return {
        "classify": ["classify", str(video), "--cfg", config, "--weights", weights, "--no-progress",
                     "--json", str(out / "result.json"), "--render", str(out / "timeline.mp4")],
        "predict": ["predict", str(video), "--cfg", config, "--weights", weights],
        "run": ["run", "--cfg", config, "--no-progress", "--opts", "DEMO.INPUT_VIDEO", str(video),
                "DEMO.OUTPUT_FILE", str(out / "demo.mp4"), "DEMO.LABEL_FILE_PATH", "",
                "TRAIN.CHECKPOINT_FILE_PATH", weights],
    }


@pytest.mark.parametrize("command", ["classify", "predict", "run"])
@pytest.mark.parametrize(
    "case", ["zero_bytes", "truncated", "random_bytes", "image_renamed", "audio_only", "missing", "directory"]
)
def test_bad_video_fails_cleanly(corpus, case, command, tmp_path, capsys):
    video = corpus[case]
    out = tmp_path / "out"
    out.mkdir()
    status = main(_commands(video, out)[command])
    captured = capsys.readouterr()
    assert status == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"vidact {command}: error: ") and video.name in lines[0]
    assert list(out.iterdir()) == []  # no output, not even a temporary file
    assert captured.out == ""


AVA = ("fixtures", "parity", "tiny_ava_slowfast_r101_nln")


def _detect_argv(out) -> list[str]:
    return ["detect", str(shared_path("data", "videos", "mmaction2_demo.mp4")), "--cfg", str(shared_path(*AVA, "config.yaml")),
            "--weights", str(shared_path(*AVA, "model.pyth")), "--detector",
            str(shared_path("data", "weights", "fastestdet", "FastestDet.onnx")), "--out", str(out)]


def _one_error_line(capsys, command: str) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"vidact {command}: error: "), lines
    return lines[0]


def test_an_output_folder_that_cannot_be_written_fails_before_the_work(tmp_path, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    assert main(_detect_argv(blocker / "sub")) == 2
    line = _one_error_line(capsys, "detect")
    assert "cannot write output there" in line and str(blocker / "sub") in line
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    argv = _detect_argv(tmp_path / "out")
    assert main([*argv[:1], "--list", str(empty), *argv[2:]]) == 2
    assert "lists no video" in _one_error_line(capsys, "detect")


def test_an_unwritable_output_file_is_one_line(tmp_path, capsys):
    """An OSError while writing (a folder where a file goes, a full disk) is one line, exit 2."""
    folder = shared_path("data", "ava", "mmaction2_eval_detection")
    (tmp_path / "blocker").write_text("a file where a folder goes")
    parity = shared_path("fixtures", "parity", "tiny_x3d", "model.pyth")
    assert main(["convert", str(parity), str(tmp_path / "blocker" / "x.safetensors")]) == 2
    assert "blocker is not a folder); pass a writable folder" in _one_error_line(capsys, "convert")
    # Outputs named up front are checked before the work: no table printed, then an error.
    argv = ["eval-ava", "--gt", str(folder / "gt.csv"), "--pred", str(folder / "pred.csv"),
            "--labelmap", str(folder / "action_list.txt"), "--json", str(tmp_path / "blocker" / "m.json")]
    assert main(argv) == 2
    assert capsys.readouterr().out == ""
    main(argv)
    assert "cannot write output there" in _one_error_line(capsys, "eval-ava")
    (tmp_path / "m.json").mkdir()  # a folder where the file goes: said so
    assert main([*argv[:-1], str(tmp_path / "m.json")]) == 2
    assert "m.json: is a folder" in _one_error_line(capsys, "eval-ava")
    assert main(["classify", str(shared_path("data", "videos", "mmaction2_demo.mp4")), "--cfg",
                 str(parity.parent / "config.yaml"), "--weights", str(parity), "--json", str(tmp_path / "m.json")]) == 2
    assert "m.json: is a folder" in _one_error_line(capsys, "classify")


@pytest.mark.parametrize("error, said", [
    (MemoryError(), "vidact classify: error: out of memory; "),
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.50 GiB. GPU 0 has a total capacity of 79.19 GiB "
                            "of which 1.06 GiB is free. If reserved but unallocated memory is large try setting "
                            "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True"),
     "vidact classify: error: out of GPU memory (tried to allocate 2.50 GiB); "),
    (RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"), "vidact classify: error: out of GPU memory; "),
])
def test_running_out_of_memory_is_one_line_and_leaves_no_output(error, said, tmp_path, capsys, monkeypatch):
    from vidact.pipeline import classify

    def out_of_memory(model, clip, frames, device):
        raise error

    monkeypatch.setattr(classify, "_run_clip", out_of_memory)
    out = tmp_path / "out"
    out.mkdir()
    assert main(_commands(shared_path("data", "videos", "mmaction2_demo.mp4"), out)["classify"]) == 2
    assert _one_error_line(capsys, "classify").startswith(said)
    assert list(out.iterdir()) == []


def test_other_runtime_errors_keep_their_traceback(tmp_path, monkeypatch):
    """A RuntimeError other than out-of-memory is a bug: shortened to a line, it could not be reported."""
    from vidact.pipeline import classify

    def broken(model, clip, frames, device):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(classify, "_run_clip", broken)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(RuntimeError, match="mat1 and mat2"):
        main(_commands(shared_path("data", "videos", "mmaction2_demo.mp4"), out)["classify"])
    assert list(out.iterdir()) == []


def test_worker_errors_come_out_as_their_own_line():
    from vidact.cli.main import _one_line

    wrapped = ("Caught VidactError in DataLoader worker process 2.\nOriginal Traceback (most recent call last):\n"
               '  File "x.py", line 1, in f\nvidact.errors.VidactError: list.csv: video a.mp4 cannot be decoded; fix or remove its line')
    assert _one_line(wrapped) == "list.csv: video a.mp4 cannot be decoded; fix or remove its line"
    assert _one_line("plain message") == "plain message"


def test_sigterm_unwinds_like_ctrl_c_and_leaves_no_partial_file(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "out"
    source = Path(__file__).resolve().parents[1] / "src"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(source), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, "-m", "vidact", *_detect_argv(out)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(out.glob(".*.part*")):  # until the video is being written
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1] == "vidact detect: interrupted"
    assert not out.exists()  # the video's temporary file removed, and the folder made for the outputs


@pytest.mark.parametrize("device", ["foo", "cuda:x"])
def test_an_unknown_device_is_one_line(device, tmp_path, capsys):
    video = shared_path("data", "videos", "mmaction2_demo.mp4")
    commands = _commands(video, tmp_path)
    for command, argv in (("classify", commands["classify"][:6]), ("predict", commands["predict"]),
                          ("bench", ["bench", "--model", "x3d_xs"])):  # detect's --device has argparse choices
        assert main([*argv, "--device", device]) == 2, command
        assert f"unknown device {device!r}; use cpu, cuda or cuda:N" in _one_error_line(capsys, command)
    from vidact.errors import VidactError
    from vidact.pipeline.detect import detect_video

    with pytest.raises(VidactError, match="unknown device"):
        detect_video(video, tmp_path / "det", device=device)


def test_bench_threads_must_be_positive(capsys):
    assert main(["bench", "--threads", "0", "--device", "cpu"]) == 2
    assert "--threads 0 must be at least 1" in _one_error_line(capsys, "bench")


def test_bench_json_that_cannot_be_written_is_refused_before_benchmarking(tmp_path, capsys, monkeypatch):
    import vidact.tools.bench

    monkeypatch.setattr(vidact.tools.bench, "run_bench", lambda *a, **k: pytest.fail("benchmarked first"))
    (tmp_path / "afile").write_text("not a folder")
    assert main(["bench", "--device", "cpu", "--json", str(tmp_path / "afile" / "b.json")]) == 2
    assert "afile: cannot write output there" in _one_error_line(capsys, "bench")


def test_a_binary_file_as_video_list_is_one_line(tmp_path, capsys):
    binary = tmp_path / "video.mp4"
    binary.write_bytes(bytes(range(256)) * 4)
    argv = _detect_argv(tmp_path / "out")
    assert main([*argv[:1], "--list", str(binary), *argv[2:]]) == 2
    assert "video.mp4: is not a text list of videos (one path or URL per line)" in _one_error_line(capsys, "detect")


def test_a_person_threshold_outside_0_1_is_one_line(tmp_path, capsys):
    """Above 1 no detection passes: the run would end with empty outputs and a "no person" notice."""
    assert main([*_detect_argv(tmp_path / "out"), "--detector-threshold", "2"]) == 2
    assert "person score threshold 2.0 is not in [0, 1]" in _one_error_line(capsys, "detect")
    assert not (tmp_path / "out").exists()
