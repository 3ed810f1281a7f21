"""The detect pipeline's per-frame stages, each alone on one clip: the ceilings its frames/s can reach.

    python -m benchmarks.video_stages VIDEO

Prints frames/s for: decoding only (PyAV, frames stay YUV), VideoReader (decoding + RGB),
the action model's resize (short side to 256, OpenCV), and VideoWriter at the ``veryfast`` and
``ultrafast`` x264 presets (the first 300 frames, with the file size). ``vidact detect`` runs
these stages at once, so its frames/s is at most the slowest of them (encoding, with a video).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import av

from vidact.io.video import VideoReader, VideoWriter
from vidact.transforms import scale_short_side_cv2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video")
    clip = parser.parse_args(argv).video

    start, count = time.perf_counter(), 0
    with av.open(clip) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for _ in container.decode(stream):
            count += 1
    print(f"decode only (no RGB): {count / (time.perf_counter() - start):.1f} frames/s ({count} frames)")

    start, frames = time.perf_counter(), []
    with VideoReader(clip) as reader:
        for frame in reader:
            if len(frames) < 300:
                frames.append(frame.rgb)
    print(f"VideoReader (decode + RGB): {(frame.index + 1) / (time.perf_counter() - start):.1f} frames/s")

    start = time.perf_counter()
    for rgb in frames:
        scale_short_side_cv2(rgb, 256)
    print(f"resize to short side 256: {len(frames) / (time.perf_counter() - start):.1f} frames/s")

    height, width = frames[0].shape[:2]
    with tempfile.TemporaryDirectory(prefix="vidact_stages_") as tmp:
        for preset in ("veryfast", "ultrafast"):
            path = os.path.join(tmp, f"{preset}.mp4")
            start = time.perf_counter()
            with VideoWriter(path, 30, width, height, preset=preset) as writer:
                for rgb in frames:
                    writer.write(rgb)
            seconds = time.perf_counter() - start
            print(f"VideoWriter {preset}: {len(frames) / seconds:.1f} frames/s, {os.path.getsize(path) / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
