"""Decode throughput (frames/s): vidact's VideoReader vs the ffmpeg command line on the same file.

    python -m benchmarks.decode [VIDEO ...] [--repeats 3] [--hwaccel cpu|cuda|auto] [--json OUT]

Default videos: the three shared test videos ($VIDACT_SHARED/data/videos, default ../shared).
Measured alternately in one run, median over repeats, all threads as FFmpeg picks them:

* ``VideoReader``: open (probes the first frame) + iterate every frame to an HxWx3 RGB array;
  ``--hwaccel cuda`` decodes with NVDEC (frames downloaded from the GPU, then converted as usual).
* ``ffmpeg``: ``ffmpeg -i FILE -f null -``: decode only, frames stay YUV.
* ``ffmpeg rgb24``: ``... -pix_fmt rgb24 -f null -``: decode and convert to RGB as VideoReader does.

ffmpeg's time is its own ``-benchmark`` ``rtime`` (the decode loop, without process start);
the ratio printed is VideoReader's frames/s over ffmpeg's. Without an ``ffmpeg`` on PATH only
VideoReader is measured and the report says so (``apt-get install -y ffmpeg``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import positive_int, run_main

SHARED = Path(os.environ.get("VIDACT_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
DEFAULT_VIDEOS = (
    "mmaction2_demo.mp4",
    "mmaction2_test_video_structuralize.mp4",
    "intel_one-by-one-person-detection.mp4",
)


def time_reader(path: Path, hwaccel: str = "cpu") -> tuple[float, int, str]:
    """Seconds to open ``path`` and decode every frame to RGB, the number of frames, and the decoder used."""
    from vidact.io.video import VideoReader

    start = time.perf_counter()
    with VideoReader(path, hwaccel=hwaccel) as reader:
        count = sum(1 for frame in reader if frame.rgb is not None)  # RGB is made on first use
    return time.perf_counter() - start, count, reader.decoder


def time_ffmpeg(ffmpeg: str, path: Path, rgb: bool) -> float:
    """ffmpeg's own ``rtime`` for decoding ``path`` to the null muxer."""
    command = [ffmpeg, "-hide_banner", "-nostdin", "-benchmark", "-i", str(path)]
    command += ["-pix_fmt", "rgb24"] if rgb else []
    command += ["-f", "null", "-"]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{path}: ffmpeg failed: {result.stderr.strip().splitlines()[-1]}")
    match = re.search(r"rtime=([0-9.]+)s", result.stderr)
    return float(match.group(1)) if match else wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", nargs="*", type=Path, help="video files (default: the shared test videos)")
    parser.add_argument("--repeats", type=positive_int, default=3)
    parser.add_argument("--hwaccel", choices=("cpu", "cuda", "auto"), default="cpu",
                        help="VideoReader's decoder: cpu (default), cuda (NVDEC) or auto")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    from vidact.errors import VidactError

    videos = args.videos or [SHARED / "data" / "videos" / name for name in DEFAULT_VIDEOS]
    missing = [str(v) for v in videos if not v.is_file()]
    if missing:
        print(f"videos not found: {', '.join(missing)} (set VIDACT_SHARED or pass paths)", file=sys.stderr)
        return 2

    ffmpeg = shutil.which("ffmpeg")
    found = ffmpeg or "NOT FOUND on PATH (apt-get install -y ffmpeg): comparison skipped"
    print(f"cpus: {os.cpu_count()}  ffmpeg: {found}")
    results = []
    for video in videos:
        reader_s, ffmpeg_s, ffmpeg_rgb_s = [], [], []
        for _ in range(args.repeats):
            try:
                seconds, frames, decoder = time_reader(video, args.hwaccel)
            except VidactError as error:  # e.g. --hwaccel cuda without NVDEC
                print(error, file=sys.stderr)
                return 2
            reader_s.append(seconds)
            if ffmpeg:
                ffmpeg_s.append(time_ffmpeg(ffmpeg, video, rgb=False))
                ffmpeg_rgb_s.append(time_ffmpeg(ffmpeg, video, rgb=True))
        row = {"video": video.name, "frames": frames, "decoder": decoder,
               "reader_fps": frames / statistics.median(reader_s)}
        line = f"{video.name}: {frames} frames  VideoReader ({decoder}) {row['reader_fps']:.0f} fps"
        if ffmpeg:
            row["ffmpeg_fps"] = frames / statistics.median(ffmpeg_s)
            row["ffmpeg_rgb24_fps"] = frames / statistics.median(ffmpeg_rgb_s)
            row["ratio_vs_ffmpeg"] = row["reader_fps"] / row["ffmpeg_fps"]
            row["ratio_vs_ffmpeg_rgb24"] = row["reader_fps"] / row["ffmpeg_rgb24_fps"]
            line += (
                f"  ffmpeg {row['ffmpeg_fps']:.0f} fps  ffmpeg rgb24 {row['ffmpeg_rgb24_fps']:.0f} fps"
                f"  ratio {row['ratio_vs_ffmpeg']:.2f} (vs rgb24 {row['ratio_vs_ffmpeg_rgb24']:.2f})"
            )
        print(line, flush=True)
        results.append(row)
    if args.json:
        from vidact.fileutil import atomic_open

        with atomic_open(args.json) as f:
            report = {"cpus": os.cpu_count(), "ffmpeg": ffmpeg, "repeats": args.repeats, "hwaccel": args.hwaccel,
                      "results": results}
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    run_main(main)
