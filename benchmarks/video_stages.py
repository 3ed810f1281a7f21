"""The detect pipeline's per-frame stages, each alone on one clip: the ceilings its frames/s can reach.

    python -m benchmarks.video_stages VIDEO

Prints frames/s for: decoding only (PyAV, frames stay YUV), VideoReader (decoding + RGB),
the action model's resize (short side to 256, OpenCV), drawing three labelled boxes and the
time panel the two ways ``vidact detect`` can (on an RGB copy converted for the encoder, from
frames converted to RGB there or before, as the clips' frames are; or on the decoded YUV
planes) with the ratios between them, drawing on the planes as a run with 8 persons does
(labels drawn anew at each keyframe), and VideoWriter at the ``veryfast`` and ``ultrafast``
x264 presets (the first 300 frames, with the file size), fed RGB frames (converted to YUV in
the call) and fed the decoded YUV planes as detect feeds it (x264 alone). ``vidact detect``
runs these stages at once, so its frames/s is at most the slowest of them.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time

import av

from vidact.data.label_sets import AVA80
from vidact.io.video import VideoReader, VideoWriter
from vidact.pipeline.render import (
    BoxOverlay,
    I420Painter,
    PanelOverlay,
    action_label_lines,
    draw_overlays,
    track_color,
)
from vidact.transforms import scale_short_side_cv2

from benchmarks import run_main


def _drawing(clip: str, count: int, height: int, width: int) -> None:
    """detect's drawing stage both ways, side by side: on RGB (copy, draw, convert) and on the planes.

    Each way streams over the first ``count`` frames as detect does (frames released after
    drawing: holding hundreds of 1080p arrays would time the page faults of fresh memory) and
    times the drawing calls only.
    """
    overlays = [
        BoxOverlay((width * k / 4, height * 0.2, width * (k + 0.8) / 4, height * 0.95), track_color(k),
                   (f"#{k}", ("0.91 stand", (179, 226, 205)), ("0.40 watch (a person)", (30, 30, 120))))
        for k in range(3)
    ] + [PanelOverlay(("  12.34 s",))]

    def rate(draw, rgb_first: bool = False) -> float:
        busy = 0.0
        with VideoReader(clip) as reader:
            for _, frame in zip(range(count), reader):
                if rgb_first:
                    frame.rgb  # noqa: B018 - converted beforehand, as a clip's frame is
                start = time.perf_counter()
                draw(frame)
                busy += time.perf_counter() - start
        return count / busy

    def on_rgb(frame):
        return VideoWriter.frame_from_rgb(draw_overlays(frame.rgb.copy(), overlays))

    rgb_fresh, rgb_converted = rate(on_rgb), rate(on_rgb, rgb_first=True)
    print(f"drawing on RGB (convert, copy, draw, convert for x264): {rgb_fresh:.1f} frames/s; "
          f"on frames already RGB: {rgb_converted:.1f}")
    painter = I420Painter.create(height, width) if height % 2 == 0 and width % 2 == 0 else None
    with VideoReader(clip) as reader:
        usable = next(iter(reader)).i420() is not None
    if painter is None or not usable:
        print("drawing on the decoded planes: not possible here (needs OpenCV and even-sized 4:2:0 video)")
        return
    planes = rate(lambda frame: VideoWriter.frame_from_i420(painter.draw(frame.i420(), overlays)))
    print(f"drawing on the decoded planes: {planes:.1f} frames/s ({planes / rgb_fresh:.2f}x and "
          f"{planes / rgb_converted:.2f}x the two above)")

    # As in a detect run: the labels change at every keyframe (new scores), so each is drawn anew then.
    rng = random.Random(0)
    names = list(AVA80)
    shown: list = []

    def with_new_labels(frame):
        if frame.index % 30 == 0:
            shown[:] = [
                BoxOverlay((width * k / 8, height * 0.2, width * (k + 0.8) / 8, height * 0.95), track_color(k),
                           (f"#{k}", *action_label_lines([(name, rng.random()) for name in rng.sample(names, 5)], 80)))
                for k in range(8)
            ] + [PanelOverlay((f"{frame.index / 30:7.2f} s",))]
        return VideoWriter.frame_from_i420(painter.draw(frame.i420(), shown))

    print(f"drawing on the decoded planes, 8 persons with 5 actions each, labels new every 30 frames: "
          f"{rate(with_new_labels):.1f} frames/s")


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

    start, frames, planes = time.perf_counter(), [], []
    with VideoReader(clip) as reader:
        for frame in reader:
            rgb = frame.rgb  # made on first use: every frame converted here
            if len(frames) < 300:
                frames.append(rgb)
                planes.append(frame.i420())
    print(f"VideoReader (decode + RGB): {(frame.index + 1) / (time.perf_counter() - start):.1f} frames/s")

    start = time.perf_counter()
    for rgb in frames:
        scale_short_side_cv2(rgb, 256)
    print(f"resize to short side 256: {len(frames) / (time.perf_counter() - start):.1f} frames/s")

    height, width = frames[0].shape[:2]
    _drawing(clip, len(frames), height, width)
    # The YUV frames are made before the clock starts: detect makes them in its drawing thread.
    yuv = [VideoWriter.frame_from_i420(i420) for i420 in planes] if all(p is not None for p in planes) else None
    with tempfile.TemporaryDirectory(prefix="vidact_stages_") as tmp:
        for preset in ("veryfast", "ultrafast"):
            for fed, inputs in (("RGB", frames), ("YUV planes", yuv)):
                if inputs is None:
                    print(f"VideoWriter {preset} fed {fed}: not possible here (needs 8-bit 4:2:0 video of even sides)")
                    continue
                path = os.path.join(tmp, f"{preset}.mp4")
                start = time.perf_counter()
                with VideoWriter(path, 30, width, height, preset=preset) as writer:
                    for image in inputs:
                        writer.write(image)
                seconds = time.perf_counter() - start
                print(f"VideoWriter {preset} fed {fed}: {len(inputs) / seconds:.1f} frames/s, "
                      f"{os.path.getsize(path) / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    run_main(main)
