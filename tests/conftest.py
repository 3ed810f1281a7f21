"""Shared test set-up: the reference material lives in $VIDACT_SHARED (default ../shared)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VIDACT_SHARED", REPO.parent / "shared")).resolve()

THREADS = 2
torch.set_num_threads(THREADS)


@pytest.fixture(autouse=True)
def _same_torch_threads():
    """Every test runs on THREADS threads: one that changes the count (bench --threads) must not
    change the float sums of the tests after it, which would then depend on the tests selected."""
    yield
    if torch.get_num_threads() != THREADS:
        torch.set_num_threads(THREADS)


def shared_path(*parts: str) -> Path:
    """A file of the shared reference material; missing is a failure, not a skip."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"shared reference file missing: {path} (set VIDACT_SHARED)")
    return path


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"shared reference folder missing: {SHARED} (set VIDACT_SHARED)")
    return SHARED


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Keep every test's weight cache out of the user's real cache."""
    monkeypatch.setenv("VIDACT_HOME", str(tmp_path_factory.mktemp("vidact_home")))


def write_vfr_video(path: Path, times_ms: list[int], width: int, height: int) -> Path:
    """An H.264 MP4 whose frames (a grey level rising by 3 per frame) show at ``times_ms``:
    a variable frame rate, as phones and screen recorders write."""
    from fractions import Fraction

    import av
    import numpy as np

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for index, ms in enumerate(times_ms):
            frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), index * 3, np.uint8), format="rgb24")
            frame.pts, frame.time_base = ms, Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def write_cut_video(path: Path, source: Path, seconds: float) -> Path:
    """``ffmpeg -ss SECONDS -i SOURCE -c copy PATH``: the packets before the cut keep negative
    times, which an edit list hides; the header still counts their frames."""
    import av

    with av.open(str(source)) as original, av.open(str(path), "w") as cut:
        stream = original.streams.video[0]
        copy = cut.add_stream_from_template(stream)
        shift = int(seconds / stream.time_base)
        for packet in original.demux(stream):
            if packet.dts is not None:
                packet.pts, packet.dts, packet.stream = packet.pts - shift, packet.dts - shift, copy
                cut.mux(packet)
    return path

