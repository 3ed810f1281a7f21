"""Unusable input videos: one-line error naming the file, exit status 2, no output left behind."""

from __future__ import annotations

import av
import numpy as np
import pytest
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
