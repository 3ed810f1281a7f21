"""VideoReader / VideoWriter / frame directories on the shared videos and on files made here."""

from __future__ import annotations

import bisect
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from conftest import shared_path
from vidact.errors import VidactError
from vidact.io.frames import FrameDirectory, ava_frame_path
from vidact.io.video import VideoReader, VideoWriter

# name: (fps, frames, width, height, duration) from shared/data/README.md
SHARED_VIDEOS = {
    "mmaction2_demo.mp4": (Fraction(28), 280, 340, 256, 10.0),
    "mmaction2_test_video_structuralize.mp4": (Fraction(30000, 1001), 300, 426, 240, 10.01),
    "intel_one-by-one-person-detection.mp4": (Fraction(10), 1394, 768, 432, 139.4),
}


def video(name: str) -> Path:
    return shared_path("data", "videos", name)


def make_video(
    path: Path, frames: list[np.ndarray], rate=10, pts=None, rotation=None, audio=False, gop=None, faststart=False,
    sar=None,
) -> Path:
    """An H.264 MP4 of ``frames``; optionally explicit pts (1/rate units), a display rotation, AAC audio, moov first,
    a sample (pixel) aspect ratio."""
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {}) as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if gop:
            stream.codec_context.gop_size = gop
        if rotation is not None:
            stream.set_display_rotation(rotation)
        if sar is not None:
            stream.codec_context.sample_aspect_ratio = sar
        if audio:
            sound = container.add_stream("aac", rate=16000)
            sound.layout = "mono"
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i if pts is None else pts[i]
            frame.time_base = Fraction(1, rate)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if audio:
            seconds = (len(frames) if pts is None else pts[-1] + 1) / rate
            samples = int(seconds * 16000)
            tone = (0.3 * np.sin(np.arange(samples) * 2 * np.pi * 440 / 16000)).astype(np.float32)
            for start in range(0, samples, 1024):
                chunk = av.AudioFrame.from_ndarray(tone[None, start : start + 1024], format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts = 16000, start
                container.mux(sound.encode(chunk))
            container.mux(sound.encode(None))
    return path


def numbered_frames(n: int, height: int = 48, width: int = 64) -> list[np.ndarray]:
    """Flat frames whose grey level encodes their number (survives lossy coding)."""
    return [np.full((height, width, 3), 20 + 8 * i, np.uint8) for i in range(n)]


def grey_level_index(rgb: np.ndarray) -> int:
    return round((float(rgb.mean()) - 20) / 8)


@pytest.mark.parametrize("name", sorted(SHARED_VIDEOS))
def test_shared_videos_decode_with_documented_facts(name):
    fps, count, width, height, duration = SHARED_VIDEOS[name]
    with VideoReader(video(name)) as reader:
        assert (reader.fps, reader.num_frames, reader.width, reader.height) == (fps, count, width, height)
        assert reader.duration == pytest.approx(duration, abs=1e-6)
        n, previous = 0, -1.0
        for frame in reader:
            assert frame.index == n and frame.pts_seconds > previous
            assert frame.rgb.shape == (height, width, 3) and frame.rgb.dtype == np.uint8
            previous, n = frame.pts_seconds, n + 1
    assert n == count
    assert previous == pytest.approx(float((count - 1) / fps), abs=1e-9)


@pytest.mark.parametrize("name", ["mmaction2_test_video_structuralize.mp4", "mmaction2_demo.mp4"])
def test_frame_at_is_last_frame_not_after_t(name):
    with VideoReader(video(name)) as reader:
        decoded = list(reader)
        times = [f.pts_seconds for f in decoded]
        between = (times[37] + times[38]) / 2
        probes = [times[0], times[37], between, times[38] - 1e-6, times[150], 5.0, times[-1], -1.0, 1e3]
        for t in probes:
            expected = min(max(bisect.bisect_right(times, t) - 1, 0), len(times) - 1)
            got = reader.frame_at(t)
            assert (got.index, got.pts_seconds) == (expected, times[expected]), t
            assert np.array_equal(got.rgb, decoded[expected].rgb), t
        # Iterating from a time continues in order to the end.
        rest = list(reader.frames(start=times[200]))
        assert [f.index for f in rest] == list(range(200, len(times)))


def test_variable_frame_rate_times_come_from_pts(tmp_path):
    pts = [0, 1, 2, 5, 6, 10, 11, 19, 20, 21]  # in 1/10 s, gaps of up to 0.8 s
    path = make_video(tmp_path / "vfr.mp4", numbered_frames(len(pts)), rate=10, pts=pts, gop=3)
    with VideoReader(path) as reader:
        frames = list(reader)
        assert [f.pts_seconds for f in frames] == pytest.approx([p / 10 for p in pts])
        assert [grey_level_index(f.rgb) for f in frames] == list(range(len(pts)))
        for t, expected in [(0.45, 2), (0.5, 3), (1.85, 6), (1.9, 7), (2.5, 9)]:
            got = reader.frame_at(t)
            assert (got.index, grey_level_index(got.rgb)) == (expected, expected), t


def test_times_count_from_the_first_frame_when_timestamps_start_later(tmp_path):
    """MPEG-TS, edited MP4 and live sources start their timestamps elsewhere than 0: times are a player's."""
    pts = [70, 71, 72, 75, 76, 80, 81, 89, 90, 91]  # the first frame at 7 s, variable rate after it
    path = make_video(tmp_path / "late.mp4", numbered_frames(len(pts)), rate=10, pts=pts, gop=3)
    with VideoReader(path) as reader:
        frames = list(reader)
        expected = [(p - 70) / 10 for p in pts]
        assert [f.pts_seconds for f in frames] == pytest.approx(expected)
        assert [reader.frame_time(i) for i in range(len(pts))] == pytest.approx(expected)
        assert reader.frame_time(99) == pytest.approx(2.1)  # past the end: the last frame's
        for t, number in [(0.0, 0), (0.45, 2), (0.5, 3), (1.85, 6), (1.9, 7), (2.5, 9)]:
            got = reader.frame_at(t)
            assert (got.index, grey_level_index(got.rgb), got.pts_seconds) == (number, number, expected[number]), t
        assert [f.index for f in reader.frames(start=expected[7])] == [7, 8, 9]


@pytest.mark.parametrize("rotation, turns", [(90, 1), (-90, 3), (180, 2)])
def test_display_rotation_is_applied(tmp_path, rotation, turns):
    image = np.zeros((32, 64, 3), np.uint8)
    image[:16, :16] = 255  # a white block in the top-left corner
    path = make_video(tmp_path / "rot.mp4", [image] * 2, rotation=rotation)
    expected = np.rot90(image, turns)  # counter-clockwise, as ffmpeg's autorotate shows it
    with VideoReader(path) as reader:
        assert (reader.height, reader.width) == expected.shape[:2]
        rgb = next(iter(reader)).rgb
    assert rgb.shape == expected.shape
    assert np.abs(rgb.astype(int) - expected).mean() < 4


@pytest.mark.parametrize("rotation, expected", [(None, Fraction(64, 51)), (90, Fraction(51, 64))])
def test_sample_aspect_ratio_is_read_as_the_frames_come_out_and_written(tmp_path, rotation, expected):
    """Non-square pixels (DV, anamorphic video): a quarter turn turns them too, and the writer tags them."""
    path = make_video(tmp_path / "sar.mp4", numbered_frames(2), rotation=rotation, sar=Fraction(64, 51))
    with VideoReader(path) as reader:
        assert reader.sample_aspect_ratio == expected
        frames = [frame.rgb for frame in reader]
        out = tmp_path / "out.mp4"
        with VideoWriter(out, 10, reader.width, reader.height, sample_aspect_ratio=reader.sample_aspect_ratio) as writer:
            for rgb in frames:
                writer.write(rgb)
    with VideoReader(out) as written:
        assert written.sample_aspect_ratio == expected
    with VideoReader(video("mmaction2_test_video_structuralize.mp4")) as square:
        assert square.sample_aspect_ratio is None  # untagged: square pixels


@pytest.mark.parametrize("frames", [3, 10])  # x264 ends these on a B-frame, and on a P-frame
def test_a_last_frame_shows_for_the_duration_given(tmp_path, frames):
    """A last frame held longer than one frame (a slide, a paused recording): the video ends after it."""
    out = tmp_path / "held.mp4"
    with VideoWriter(out, 10, 64, 48) as writer:
        for index, rgb in enumerate(numbered_frames(frames)):
            writer.write(rgb, duration=2.5 if index == frames - 1 else None)
    with VideoReader(out) as reader:
        assert reader.duration == pytest.approx((frames - 1) / 10 + 2.5)
        assert [frame.pts_seconds for frame in reader] == pytest.approx([k / 10 for k in range(frames)])


@pytest.mark.parametrize(
    "rate, times, hold",
    [
        (Fraction(30000, 1001), [0, 1001 / 30000, 2002 / 30000], 90.0),  # an NTSC slide show
        (Fraction(1080000, 89399), [0.0, 0.0825, 0.166], 3.0),  # a phone's average rate
        (Fraction(30000, 1001), [0, 1001 / 30000, 30000.0], 40000.0),  # hours: longer than an MP4 sample
    ],
)
def test_a_frame_held_long_at_any_rate_is_written(tmp_path, rate, times, hold):
    """A slide, or a recording paused for hours: MP4 keeps a frame's duration in 32 bits of the track's
    timescale; a hold longer than that repeats the frame."""
    out = tmp_path / "held.mp4"
    with VideoWriter(out, rate, 64, 48) as writer:
        for index, (seconds, rgb) in enumerate(zip(times, numbered_frames(3))):
            writer.write(rgb, seconds=seconds, duration=hold if index == 2 else None)
    with VideoReader(out) as reader:
        assert reader.duration == pytest.approx(times[-1] + hold, abs=1e-4)
        for number, seconds in enumerate(times):
            shown = reader.frame_at(seconds)
            assert (shown.pts_seconds, grey_level_index(shown.rgb)) == (pytest.approx(seconds, abs=1e-5), number)
        assert grey_level_index(reader.frame_at(times[-1] - 1e-3).rgb) == 1  # shown until the next one
        assert grey_level_index(reader.frame_at(times[-1] + hold - 1e-3).rgb) == 2


def test_a_video_that_cannot_be_written_is_a_vidact_error_naming_it(tmp_path):
    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full, a device that is always out of space")
    with pytest.raises(VidactError) as raised:
        with VideoWriter("/dev/full", 10, 64, 48) as writer:
            for rgb in numbered_frames(30):
                writer.write(rgb)
    message = str(raised.value)
    assert message.startswith("/dev/full: ") and "No space left on device" in message and "\n" not in message


def test_a_matroska_video_whose_timestamps_start_late_lasts_from_its_first_frame(tmp_path):
    """``ffmpeg -output_ts_offset 1000`` or a cut with ``-copyts``: Matroska's duration counts from
    timestamp 0, yet the video is as long as the same MP4."""
    late = [10000 + k for k in range(8)]  # from 1000 s on, at 10 fps
    as_mp4 = make_video(tmp_path / "late.mp4", numbered_frames(8), pts=late)
    as_mkv = make_video(tmp_path / "late.mkv", numbered_frames(8), pts=late)
    with VideoReader(as_mp4) as reference, VideoReader(as_mkv) as reader:
        assert reference.duration == pytest.approx(0.8)
        assert reader.duration == pytest.approx(reference.duration, abs=0.002)
        assert reader.shown_frames() == reference.shown_frames() == 8
        assert [f.pts_seconds for f in reader] == pytest.approx([f.pts_seconds for f in reference])


def _bad_inputs(tmp: Path) -> dict[str, Path]:
    good = make_video(tmp / "good.mp4", numbered_frames(20))
    truncated = tmp / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # PyAV writes moov last: lost
    good_front = tmp / "good_front.mp4"
    noise_frames = [np.random.default_rng(i).integers(0, 256, (48, 64, 3), np.uint8) for i in range(20)]
    make_video(good_front, noise_frames, faststart=True)
    truncated_front = tmp / "truncated_front.mp4"  # the index survives, the frames it lists do not
    truncated_front.write_bytes(good_front.read_bytes()[: good_front.stat().st_size // 2])
    zero = tmp / "zero.mp4"
    zero.write_bytes(b"")
    noise = tmp / "noise.mp4"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    png = tmp / "picture.mp4"
    av.VideoFrame.from_ndarray(numbered_frames(1)[0], format="rgb24").save(str(tmp / "picture.png"))
    (tmp / "picture.png").rename(png)
    audio_only = tmp / "audio_only.mp4"
    with av.open(str(audio_only), "w") as container:
        sound = container.add_stream("aac", rate=16000)
        sound.layout = "mono"
        for start in range(0, 16000, 1024):
            chunk = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = 16000, start
            container.mux(sound.encode(chunk))
        container.mux(sound.encode(None))
    cover_art = tmp / "cover_art.mp4"  # a song with its album's picture: no video
    with av.open(str(cover_art), "w") as container:
        sound = container.add_stream("aac", rate=16000)
        sound.layout = "mono"
        picture = container.add_stream("mjpeg")
        picture.width, picture.height, picture.pix_fmt = 64, 48, "yuvj420p"
        picture.disposition = av.stream.Disposition.attached_pic
        cover = av.VideoFrame.from_ndarray(numbered_frames(1)[0], format="rgb24").reformat(format="yuvj420p")
        cover.pts = 0
        packets = picture.encode(cover) + picture.encode(None)
        for start in range(0, 16000, 1024):
            chunk = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = 16000, start
            container.mux(sound.encode(chunk))
        container.mux(sound.encode(None))
        container.mux(packets)
    unknown_codec = tmp / "unknown_codec.mp4"
    unknown_codec.write_bytes(good.read_bytes().replace(b"avc1", b"zzz9"))  # an unregistered sample fourcc
    empty_dir = tmp / "no_frames"
    empty_dir.mkdir()
    (empty_dir / "notes.txt").write_text("not a frame")
    return {
        "zero bytes": zero,
        "truncated": truncated,
        "truncated, index first": truncated_front,
        "random bytes": noise,
        "png renamed": png,
        "audio only": audio_only,
        "audio with cover art": cover_art,
        "missing": tmp / "missing.mp4",
        "empty dir": empty_dir,
        "unknown codec": unknown_codec,
    }


def test_bad_inputs_raise_one_line_error_naming_the_file(tmp_path):
    expected_words = {
        "zero bytes": "empty",
        "truncated, index first": "truncated",
        "png renamed": "image",
        "audio only": "audio only",
        "audio with cover art": "audio only; its only picture is cover art",
        "missing": "no such file",
        "empty dir": "no frames",
        "unknown codec": "codec",
    }
    for case, path in _bad_inputs(tmp_path).items():
        with pytest.raises(VidactError) as raised:
            VideoReader(path)
        message = str(raised.value)
        assert str(path) in message and "\n" not in message, case
        assert expected_words.get(case, "") in message, (case, message)


def test_writer_round_trip_keeps_fractional_rate_and_size(tmp_path):
    rate = Fraction(30000, 1001)
    frames = numbered_frames(12, height=48, width=64)
    out = tmp_path / "out.mp4"
    with VideoWriter(out, rate, 64, 48) as writer:
        for rgb in frames:
            writer.write(rgb)
    with VideoReader(out) as reader:
        assert (reader.fps, reader.num_frames, reader.width, reader.height) == (rate, 12, 64, 48)
        decoded = list(reader)
    assert [grey_level_index(f.rgb) for f in decoded] == list(range(12))
    assert decoded[-1].pts_seconds == pytest.approx(11 * 1001 / 30000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]  # no temporary left


def test_writer_pads_odd_size_by_one_pixel(tmp_path):
    rng = np.random.default_rng(0)
    # 16-pixel blocks: chroma (2x2) never straddles a colour edge
    image = np.repeat(np.repeat(rng.integers(0, 256, (16, 22, 3), dtype=np.uint8), 16, axis=0), 16, axis=1)[:255, :341]
    out = tmp_path / "odd.mp4"
    with VideoWriter(out, 25, 341, 255) as writer:
        writer.write(image)
        writer.write(image)
    with VideoReader(out) as reader:
        assert (reader.width, reader.height, reader.num_frames) == (342, 256, 2)
        rgb = next(iter(reader)).rgb
    assert np.abs(rgb[:255, :341].astype(int) - image).mean() < 6
    assert np.abs(rgb[:255, 341].astype(int) - image[:, 340]).mean() < 12  # the padding repeats the edge


def test_writer_copies_audio(tmp_path):
    source = make_video(tmp_path / "with_audio.mp4", numbered_frames(20), rate=10, audio=True)
    out = tmp_path / "out.mp4"
    with VideoReader(source) as reader:
        with VideoWriter(out, reader.fps, reader.width, reader.height, audio_from=source) as writer:
            for frame in reader:
                writer.write(frame.rgb)
    with av.open(str(source)) as src, av.open(str(out)) as dst:
        assert len(dst.streams.video) == 1 and len(dst.streams.audio) == 1
        assert dst.streams.audio[0].codec_context.name == "aac"
        assert dst.streams.audio[0].sample_rate == 16000
        src_packets = [bytes(p) for p in src.demux(src.streams.audio[0]) if p.size]
        dst_packets = [bytes(p) for p in dst.demux(dst.streams.audio[0]) if p.size]
    assert dst_packets == src_packets  # remuxed, not re-encoded


def test_writer_without_audio_in_source_writes_video_only(tmp_path):
    source = make_video(tmp_path / "silent.mp4", numbered_frames(3))
    out = tmp_path / "out.mp4"
    with VideoWriter(out, 10, 64, 48, audio_from=source) as writer:
        writer.write(numbered_frames(1)[0])
    with av.open(str(out)) as dst:
        assert len(dst.streams.audio) == 0 and dst.streams.video[0].frames == 1


def test_failed_write_leaves_nothing(tmp_path):
    out = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError):
        with VideoWriter(out, 10, 64, 48) as writer:
            writer.write(numbered_frames(1)[0])
            raise RuntimeError("caller failed mid-way")
    with pytest.raises(VidactError, match="expected"):
        with VideoWriter(out, 10, 64, 48) as writer:
            writer.write(np.zeros((48, 65, 3), np.uint8))
    with pytest.raises(VidactError, match="no frames"):
        with VideoWriter(out, 10, 64, 48):
            pass
    assert list(tmp_path.iterdir()) == []


def test_writer_takes_frames_converted_elsewhere_and_tags_bt601(tmp_path):
    frames = numbered_frames(6, height=48, width=64)
    out = tmp_path / "out.mp4"
    with VideoWriter(out, 10, 64, 48) as writer:
        for k, rgb in enumerate(frames):  # arrays and pre-converted frames mix freely
            writer.write(VideoWriter.frame_from_rgb(rgb) if k % 2 else rgb)
        with pytest.raises(VidactError, match="expected 64x48 yuv420p"):
            writer.write(VideoWriter.frame_from_rgb(np.zeros((50, 64, 3), np.uint8)))
    with VideoReader(out) as reader:
        assert [grey_level_index(f.rgb) for f in reader] == list(range(6))
    with av.open(str(out)) as container:
        frame = next(container.decode(video=0))
        # Untagged, players take HD video for BT.709 and shift the colours of what was converted as BT.601.
        assert (frame.colorspace, frame.color_range) == (5, 1)  # bt470bg (BT.601), limited ("tv") range
    odd = VideoWriter.frame_from_rgb(np.zeros((255, 341, 3), np.uint8))
    assert (odd.width, odd.height, odd.format.name) == (342, 256, "yuv420p")


def test_writer_converts_like_swscale_without_opencv(tmp_path, monkeypatch):
    pytest.importorskip("cv2")  # the detect extra brings it; compare the two conversions when present
    import vidact.io.video as video_module

    with VideoReader(video("mmaction2_test_video_structuralize.mp4")) as reader:
        rgb = reader.frame_at(5.0).rgb  # 426x240
    with_opencv = VideoWriter.frame_from_rgb(rgb).to_ndarray().astype(int)
    monkeypatch.setattr(video_module, "opencv", lambda: None)
    with_swscale = VideoWriter.frame_from_rgb(rgb).to_ndarray().astype(int)
    difference = np.abs(with_opencv - with_swscale)
    assert difference[:240].max() <= 1  # luma: the same BT.601 limited-range coefficients
    assert difference[240:].mean() < 0.5  # chroma: subsampled differently, apart only at colour edges
    with VideoWriter(tmp_path / "out.mp4", 10, 64, 48) as writer:
        for frame in numbered_frames(3):
            writer.write(frame)
    with VideoReader(tmp_path / "out.mp4") as reader:
        assert [grey_level_index(f.rgb) for f in reader] == [0, 1, 2]


def test_ava_frame_directory_reads_back(tmp_path):
    frames = numbered_frames(5, height=40, width=60)
    for number, rgb in enumerate(frames, start=1):
        path = ava_frame_path(tmp_path, "vid_A", number)
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rgb).save(path, quality=95)
    assert ava_frame_path(tmp_path, "vid_A", 3).name == "vid_A_000003.jpg"
    with VideoReader(tmp_path / "vid_A") as reader:
        assert (reader.num_frames, reader.fps, reader.width, reader.height) == (5, 30, 60, 40)
        decoded = list(reader)
        assert [f.index for f in decoded] == list(range(5))
        assert [f.pts_seconds for f in decoded] == pytest.approx([i / 30 for i in range(5)])
        assert [grey_level_index(f.rgb) for f in decoded] == list(range(5))
        assert reader.frame_at(2 / 30).index == 2 and reader.frame_at(2.5 / 30).index == 2
    clip = FrameDirectory(tmp_path / "vid_A").read_clip([0, 0, 4])
    assert clip.shape == (3, 40, 60, 3) and [grey_level_index(c) for c in clip] == [0, 0, 4]


def test_frame_directories_go_by_frame_number(tmp_path):
    """ffmpeg's unpadded %d.png names in numeric order, hidden files skipped; gaps and twins refused."""
    frames = numbered_frames(12, height=16, width=16)
    plain = tmp_path / "plain"
    plain.mkdir()
    for number, rgb in enumerate(frames, start=1):
        Image.fromarray(rgb).save(plain / f"{number}.png")
    (plain / "._1.png").write_bytes(b"macOS resource fork")
    with VideoReader(plain) as reader:
        assert [grey_level_index(f.rgb) for f in reader] == list(range(12))
    (plain / "5.png").unlink()
    with pytest.raises(VidactError, match="frame 5 is missing"):
        VideoReader(plain)
    Image.fromarray(frames[4]).save(plain / "5.png")
    Image.fromarray(frames[4]).save(plain / "5.jpg")
    with pytest.raises(VidactError, match="frame 5 is there twice"):
        VideoReader(plain)


def test_corrupt_frame_in_directory_is_a_vidact_error(tmp_path):
    folder = tmp_path / "vid"
    folder.mkdir()
    (folder / "vid_000001.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(VidactError, match="vid_000001.jpg"):
        VideoReader(folder)


def _swscale_rgb(i420: np.ndarray) -> np.ndarray:
    return av.VideoFrame.from_ndarray(np.ascontiguousarray(i420), format="yuv420p").to_ndarray(format="rgb24")


def test_frames_convert_to_rgb_on_first_use_and_give_their_planes():
    with VideoReader(video("mmaction2_test_video_structuralize.mp4")) as reader:
        frames = [frame for _, frame in zip(range(3), reader)]
    assert all(frame._rgb is None for frame in frames)  # nothing converted while decoding
    i420 = frames[1].i420()
    assert i420.shape == (360, 426) and i420.flags.writeable and i420.flags.c_contiguous
    assert np.array_equal(_swscale_rgb(i420), frames[1].rgb)  # the planes are the picture's own
    assert frames[1].rgb is frames[1].rgb  # converted once, then kept
    i420[:] = 0
    assert not np.array_equal(frames[1].i420(), i420)  # every call is a copy to draw on
    assert frames[1].colorspace == av.video.reformatter.Colorspace.ITU601  # untagged: BT.601, as swscale takes it


@pytest.mark.parametrize("rotation", [90, 180])
def test_frame_planes_are_rotated_like_its_rgb(tmp_path, rotation):
    image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    with VideoReader(make_video(tmp_path / "rot.mp4", [image] * 2, rotation=rotation)) as reader:
        frame = next(iter(reader))
    i420 = frame.i420()
    assert i420.shape == (3 * reader.height // 2, reader.width)
    assert np.array_equal(_swscale_rgb(i420), frame.rgb)


def test_frames_without_plain_i420_planes_give_none(tmp_path):
    odd = [np.zeros((47, 63, 3), np.uint8)] * 2
    path = tmp_path / "odd.mp4"
    with av.open(str(path), "w") as container:  # x264 takes odd sizes in 4:4:4 only
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 63, 47, "yuv444p"
        for i, rgb in enumerate(odd):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with VideoReader(path) as reader:
        frame = next(iter(reader))
    assert frame.i420() is None and frame.rgb.shape == (47, 63, 3)
    Image.fromarray(odd[0]).save(tmp_path / "frames_000001.png")
    with VideoReader(tmp_path) as reader:  # a frame folder: RGB only
        assert next(iter(reader)).i420() is None


def test_writer_encodes_i420_planes_with_their_colour_tag(tmp_path):
    with VideoReader(video("mmaction2_test_video_structuralize.mp4")) as reader:
        frames = [frame for _, frame in zip(range(4), reader)]
    out = tmp_path / "out.mp4"
    with VideoWriter(out, 10, 426, 240, colorspace=av.video.reformatter.Colorspace.ITU709) as writer:
        for frame in frames:
            writer.write(VideoWriter.frame_from_i420(frame.i420()))
    with av.open(str(out)) as container:
        decoded = [f for f in container.decode(video=0)]
    assert len(decoded) == 4 and decoded[0].colorspace == 1  # tagged BT.709 as asked
    # crf 18 on the decoder's own planes: the luma comes back within a few levels
    assert np.abs(decoded[2].to_ndarray()[:240].astype(int) - frames[2].i420()[:240]).mean() < 2


def test_threads_converting_one_frame_at_once_do_not_hang():
    """detect's stages convert the same frame (a keyframe, a clip frame, the drawing) from their own
    threads; a picture's one swscale context used by two at once hung FFmpeg's slice threads."""
    import threading

    with VideoReader(shared_path("data", "videos", "mmaction2_test_video_structuralize.mp4")) as reader:
        for _, frame in zip(range(200), reader):
            barrier = threading.Barrier(3)
            results = []

            def convert(frame=frame, barrier=barrier, results=results):
                barrier.wait()
                results.append((frame.rgb, frame.i420()))

            threads = [threading.Thread(target=convert, daemon=True) for _ in range(3)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(10)
            assert not any(thread.is_alive() for thread in threads), f"conversion hung on frame {frame.index}"
            assert all(rgb is results[0][0] and np.array_equal(planes, results[0][1]) for rgb, planes in results)


def test_frames_read_from_images_pickle():
    """Frames of a frame folder hold plain RGB arrays: they pickle (to DataLoader workers, say)."""
    import pickle

    from vidact.io.video import Frame

    frame = Frame(3, 0.1, np.zeros((4, 6, 3), np.uint8))
    copy = pickle.loads(pickle.dumps(frame))
    assert (copy.index, copy.pts_seconds) == (3, 0.1) and np.array_equal(copy.rgb, frame.rgb)


def test_a_phone_video_average_rate_is_written_and_raw_h264_is_no_live_source(tmp_path):
    """A variable-rate MP4 reports an average rate like 3360000/98933, whose numerator is the
    writer's timescale; a raw .h264 file has no duration but is a file, not a live stream."""
    from fractions import Fraction

    with VideoWriter(tmp_path / "phone.mp4", Fraction(3360000, 98933), 32, 24) as writer:
        for seconds in (0.0, 0.03, 0.07, 0.1):
            writer.write(np.zeros((24, 32, 3), np.uint8), seconds=seconds)
    with VideoReader(tmp_path / "phone.mp4") as reader:
        assert [round(f.pts_seconds, 3) for f in reader] == [0.0, 0.03, 0.07, 0.1]
    raw = tmp_path / "clip.h264"
    with av.open(str(raw), "w", format="h264") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv420p"
        for index in range(5):
            frame = av.VideoFrame.from_ndarray(np.zeros((24, 32, 3), np.uint8), format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with VideoReader(raw) as reader:
        assert reader.seekable and not reader.live
