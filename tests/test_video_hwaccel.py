"""VideoReader's hwaccel (NVDEC) choice, ``vidact detect --decode`` and the ``decoder`` metric.

Without a CUDA GPU these check the refusals and the silent CPU fallback; on a GPU machine they
compare NVDEC's frames with the CPU's. H.264 decoding is bit-exact and VideoReader converts
NVDEC's NV12 through the CPU decoder's yuv420p, so the RGB arrays must be identical.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from conftest import shared_path
from PIL import Image

import vidact
from vidact.cli.main import build_parser
from vidact.config.pyslowfast import load_model_config
from vidact.detectors.base import Detections
from vidact.errors import VidactError
from vidact.io.frames import ava_frame_path
from vidact.io.video import VideoReader
from vidact.pipeline.detect import ActionModel, ActionThresholds, DetectionRun, default_class_names, detect_video

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="NVDEC needs a CUDA GPU")


def demo_video() -> Path:
    return shared_path("data", "videos", "mmaction2_demo.mp4")  # H.264 yuv420p, 28 fps, 280 frames


def first_frames(reader: VideoReader, count: int) -> np.ndarray:
    frames = []
    for frame in reader:
        frames.append(frame.rgb)
        if len(frames) == count:
            break
    return np.stack(frames)


@pytest.mark.skipif(CUDA, reason="checks the refusal on a machine without a CUDA GPU")
def test_cuda_without_gpu_is_a_one_line_error_naming_the_file_and_the_fix():
    with pytest.raises(VidactError) as caught:
        VideoReader(demo_video(), hwaccel="cuda")
    message = str(caught.value)
    assert "\n" not in message
    assert str(demo_video()) in message and "NVDEC" in message and "--decode cpu" in message


def test_auto_decodes_like_the_default_reader():
    """Without CUDA "auto" is the CPU decoder; with it, NVDEC; the frames are the same either way."""
    with VideoReader(demo_video()) as reader:
        assert reader.decoder == "cpu"
        expected = [frame for frame in reader]
        expected_at = reader.frame_at(4.0)
    with VideoReader(demo_video(), hwaccel="auto") as reader:
        assert reader.decoder == ("nvdec" if CUDA else "cpu")
        decoded = [frame for frame in reader]
        decoded_at = reader.frame_at(4.0)
    assert [(f.index, f.pts_seconds) for f in decoded] == [(f.index, f.pts_seconds) for f in expected]
    assert (decoded_at.index, decoded_at.pts_seconds) == (expected_at.index, expected_at.pts_seconds)
    pairs = [(d.rgb, e.rgb) for d, e in zip(decoded, expected)] + [(decoded_at.rgb, expected_at.rgb)]
    assert all(np.array_equal(d, e) for d, e in pairs)


def test_cpu_is_the_default_and_seeks_as_before():
    with VideoReader(demo_video(), hwaccel="cpu") as reader, VideoReader(demo_video()) as default:
        assert reader.decoder == "cpu"
        for t in (0.0, 3.3, 9.99):
            a, b = reader.frame_at(t), default.frame_at(t)
            assert (a.index, a.pts_seconds) == (b.index, b.pts_seconds) and np.array_equal(a.rgb, b.rgb)


@pytest.mark.parametrize("hwaccel", ["gpu", "nvdec", "CUDA", ""])
def test_unknown_decoder_is_a_vidact_error(hwaccel):
    with pytest.raises(VidactError, match=r"unknown decoder .*auto, cpu, cuda"):
        VideoReader(demo_video(), hwaccel=hwaccel)


def test_frame_directory_ignores_hwaccel(tmp_path):
    for number in (1, 2, 3):
        path = ava_frame_path(tmp_path, "vid", number)
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(np.full((16, 24, 3), 40 * number, np.uint8)).save(path, quality=95)
    with VideoReader(tmp_path / "vid", hwaccel="cuda") as reader:
        assert reader.decoder == "cpu" and len(list(reader)) == 3


def test_detect_cli_parses_decode():
    parser = build_parser()
    assert parser.parse_args(["detect", "v.mp4"]).decode == "cpu"  # NVDEC was slower per stream on an H200
    assert parser.parse_args(["detect", "v.mp4", "--decode", "auto"]).decode == "auto"
    assert parser.parse_args(["detect", "v.mp4", "--decode", "cuda"]).decode == "cuda"
    with pytest.raises(SystemExit) as caught:
        parser.parse_args(["detect", "v.mp4", "--decode", "gpu"])
    assert caught.value.code == 2


class OneBox:
    """A person detector that finds the same box on every frame."""

    def __call__(self, frames: list[np.ndarray]) -> list[Detections]:
        box = np.array([[10, 10, 200, 240]], np.float32)
        return [Detections(box, np.ones(1, np.float32)) for _ in frames]


@pytest.fixture(scope="module")
def micro_model() -> ActionModel:
    """The tiny AVA parity model on the CPU, fed 8 frames: the cheapest real action model."""
    case = shared_path("fixtures", "parity", "tiny_ava_slowfast_r101_nln")
    config = load_model_config(case / "config.yaml")
    config = config.replace(input=dataclasses.replace(config.input, num_frames=8, sampling_rate=8))
    model = vidact.create_model(config, weights=case / "model.pyth")
    return ActionModel(model, default_class_names(model), "cpu")


def test_auto_decodes_on_the_cpu_when_the_model_does(micro_model):
    """"auto" means NVDEC only for a model on CUDA: this one runs on the CPU, so even with a GPU, no NVDEC."""
    thresholds = ActionThresholds.uniform(0.5, micro_model.num_classes)
    run = DetectionRun(demo_video(), micro_model, OneBox(), thresholds, decode="auto")
    try:
        assert run.reader.decoder == "cpu"
    finally:
        run.reader.close()


def test_metrics_record_the_decoder(micro_model, tmp_path):
    result = detect_video(
        demo_video(), tmp_path, model=micro_model, detector=OneBox(), thresholds=0.5, end=1.0,
        video=False, timeline=False, decode="cpu",
    )
    assert result.metrics["decoder"] == "cpu"
    written = json.loads(result.metrics_json.read_text())
    assert written["decoder"] == "cpu" and written["keyframes"] == 2.0


@needs_cuda
def test_nvdec_frames_match_cpu_frames():
    """The first 30 frames, and a frame reached by seeking (decoded from its keyframe on)."""
    with VideoReader(demo_video(), hwaccel="cuda") as gpu, VideoReader(demo_video()) as cpu:
        assert gpu.decoder == "nvdec"
        on_gpu, on_cpu = first_frames(gpu, 30), first_frames(cpu, 30)
        assert on_gpu.shape == on_cpu.shape == (30, 256, 340, 3)
        np.testing.assert_array_equal(on_gpu, on_cpu)
        a, b = gpu.frame_at(7.5), cpu.frame_at(7.5)
        assert (a.index, a.pts_seconds) == (b.index, b.pts_seconds)
        np.testing.assert_array_equal(a.rgb, b.rgb)


@needs_cuda
def test_software_fallback_is_reported_as_cpu(tmp_path):
    """NVDEC has no H.264 4:4:4 (up to Hopper): FFmpeg falls back to software, and vidact says so."""
    path = tmp_path / "yuv444.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv444p"
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 30 * i, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with VideoReader(path, hwaccel="auto") as reader:
        assert reader.decoder == "cpu" and len(list(reader)) == 5
    with pytest.raises(VidactError, match=r"NVDEC has no h264 yuv444p\); use --decode cpu"):
        VideoReader(path, hwaccel="cuda")
