"""Reading and writing video through PyAV (FFmpeg).

:class:`VideoReader` opens a file, a directory of extracted frames, a webcam or
a stream URL and yields :class:`Frame` objects one at a time (memory stays
bounded whatever the length). Timestamps come from each frame's presentation
timestamp, so variable-frame-rate video is timed correctly, and the display
rotation stored in the container is applied, so ``width``/``height`` and the
arrays are what a player shows. A source's sample (pixel) aspect ratio is reported, not
applied: frames keep their stored pixels.

:class:`VideoWriter` writes H.264 MP4 at an exact (fractional) frame rate,
optionally copying the audio of a source file, atomically.
"""

from __future__ import annotations

import bisect
import itertools
import math
import os
import sys
import threading
from contextlib import ExitStack
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np
from av.codec.hwaccel import HWAccel
from av.video.frame import PictureType
from av.video.reformatter import ColorRange, Colorspace

from vidact.errors import VidactError
from vidact.fileutil import atomic_path
from vidact.io.frames import FrameDirectory
from vidact.optional import opencv

# Demuxers FFmpeg picks for still images when probing by content (a PNG renamed
# to .mp4 opens as a one-frame "video"); they are not videos for vidact.
_IMAGE_FORMATS = {"image2", "image2pipe"}
# Demuxers whose duration (without a stream's) is the end's timestamp, counted from 0 rather than
# from the first one (checked with ffmpeg -output_ts_offset; FLV's counts from the first).
_DURATION_FROM_ZERO = {"matroska,webm", "nut"}
# Seconds an open or a read may wait for data (a stream nobody sends, a sender gone).
_TIMEOUT_S = 30.0
# VideoReader's ``hwaccel`` choices (``vidact detect --decode``).
# Protocols that deliver frames in real time whatever the reader does (a URL of another kind,
# e.g. http of a finished video, is live only when it has no duration).
_LIVE_PROTOCOLS = {"rtsp", "rtsps", "rtmp", "rtmps", "rtp", "srt", "udp", "tcp"}
HWACCELS = ("auto", "cpu", "cuda")
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


class Frame:
    """One decoded frame: its 0-based position, its presentation time (seconds from the first
    frame's, as a player shows it), its pixels.

    :attr:`rgb` is made from the decoded picture on first use and then kept, so a reader that
    skips frames (clip sampling keeps every other one) pays only for decoding them.
    :meth:`i420` gives the decoder's own YUV planes, for re-encoding without a round trip
    through RGB.
    """

    __slots__ = ("index", "pts_seconds", "_rgb", "_picture", "_quarter_turns", "_convert_lock")

    def __init__(
        self,
        index: int,
        pts_seconds: float,
        rgb: np.ndarray | None = None,
        *,
        picture: av.VideoFrame | None = None,
        quarter_turns: int = 0,
    ):
        if (rgb is None) == (picture is None):
            raise ValueError("give a Frame either its RGB array or its decoded picture")
        self.index, self.pts_seconds = index, pts_seconds
        self._rgb, self._picture, self._quarter_turns = rgb, picture, quarter_turns
        # A picture converts through its one swscale context: two threads in it at once (the
        # detector's and the clip's, say) deadlock FFmpeg's slice threads. (RGB frames need no
        # lock, and stay picklable.)
        self._convert_lock = threading.Lock() if picture is not None else None

    def __repr__(self) -> str:
        return f"Frame(index={self.index}, pts_seconds={self.pts_seconds:.3f})"

    @property
    def rgb(self) -> np.ndarray:
        """``HxWx3`` uint8 RGB, rotation applied."""
        if self._rgb is None:
            with self._convert_lock:
                if self._rgb is None:  # not converted by another thread meanwhile
                    picture = self._picture
                    if picture.format.name == "nv12":
                        # NVDEC's frames arrive as NV12, whose RGB conversion in swscale upsamples
                        # chroma differently (up to 35 levels off on the shared clips); repacked
                        # losslessly to the software decoder's yuv420p, the RGB is the CPU path's exactly.
                        picture = picture.reformat(format="yuv420p")
                    self._rgb = _rotated(picture.to_ndarray(format="rgb24"), self._quarter_turns)
        return self._rgb

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` as :attr:`rgb` has them (rotation applied), without converting to RGB."""
        if self._picture is None:
            height, width = self._rgb.shape[:2]
            return width, height
        picture = self._picture
        return (picture.height, picture.width) if self._quarter_turns % 2 else (picture.width, picture.height)

    @property
    def colorspace(self) -> Colorspace:
        """The YUV matrix of :meth:`i420`'s planes: ITU709 or ITU601 (FFmpeg's choice for untagged video)."""
        return Colorspace.ITU709 if self._picture is not None and self._picture.colorspace == 1 else Colorspace.ITU601

    def i420(self) -> np.ndarray | None:
        """A new ``(3H/2) x W`` uint8 array of the decoded planes (Y, then U, then V, each row-major;
        limited range), rotation applied, or None where there are none such: a picture that is
        not 8-bit limited-range 4:2:0 with even sides, or a frame read as RGB (frame folders)."""
        picture = self._picture
        if picture is None or picture.width % 2 or picture.height % 2 or picture.color_range == 2:
            return None
        if picture.colorspace not in _I420_MATRICES:
            return None
        with self._convert_lock:
            if picture.format.name == "nv12":
                picture = picture.reformat(format="yuv420p")  # lossless: the chroma planes unpacked
            if picture.format.name != "yuv420p":
                return None
            planes = picture.to_ndarray()
        if not self._quarter_turns:
            return planes
        turned = [np.rot90(plane, self._quarter_turns) for plane in i420_planes(planes)]
        return np.concatenate([plane.ravel() for plane in turned]).reshape(3 * turned[0].shape[0] // 2, -1)


# FFmpeg's colorspace codes of the YUV matrices passed through: BT.709, unspecified (BT.601 to
# swscale), BT.470BG and SMPTE 170M (both BT.601).
_I420_MATRICES = (1, 2, 5, 6)


def is_url(source: str | int | os.PathLike) -> bool:
    """Whether ``source`` is a URL FFmpeg opens (``file://`` names a file)."""
    return isinstance(source, str) and "://" in source and not source.startswith("file://")


def _rotated(array: np.ndarray, quarter_turns: int) -> np.ndarray:
    return np.ascontiguousarray(np.rot90(array, quarter_turns)) if quarter_turns else array


def i420_planes(i420: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of the Y (HxW), U and V (H/2 x W/2) planes of a contiguous ``(3H/2) x W`` I420 array."""
    height, width = i420.shape[0] * 2 // 3, i420.shape[1]
    flat = i420.reshape(-1)
    luma, chroma = height * width, (height // 2) * (width // 2)
    return (
        flat[:luma].reshape(height, width),
        flat[luma : luma + chroma].reshape(height // 2, width // 2),
        flat[luma + chroma :].reshape(height // 2, width // 2),
    )


def _first_line(error: BaseException) -> str:
    """FFmpeg's reason without the errno and file name PyAV adds around it; its timeout's
    "Immediate exit requested", which says nothing, in words."""
    if isinstance(error, av.error.ExitError):
        return f"no data for {_TIMEOUT_S:g} s"
    text = str(getattr(error, "strerror", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _webcam(index: int) -> tuple[str, str]:
    """The FFmpeg input (url, format) of webcam ``index`` on this platform."""
    if sys.platform.startswith("linux"):
        return f"/dev/video{index}", "v4l2"
    if sys.platform == "darwin":
        return str(index), "avfoundation"
    raise VidactError(f"webcam {index}: webcams are supported on Linux and macOS only; pass a file or stream URL")


def _cuda_available() -> bool:
    import torch  # only here: importing vidact.io.video stays cheap

    return torch.cuda.is_available()


class _AVSource:
    """A file, webcam or stream opened with PyAV; the first frame is decoded up front.

    ``hwaccel`` is one of :data:`HWACCELS`; :attr:`decoder` says what decodes ("nvdec" or "cpu").
    """

    def __init__(self, source: str | int | os.PathLike, hwaccel: str = "cpu"):
        fmt = None
        if isinstance(source, int) or (isinstance(source, str) and source.isdigit()):
            url, fmt = _webcam(int(source))
            self.name, self.seekable, self.live = f"webcam {source} ({url})", False, True
            hint = "check that the camera is connected and not in use"
        elif is_url(source):
            url = source
            self.name, self.seekable = source, False
            self.live = source.split("://", 1)[0].lower() in _LIVE_PROTOCOLS  # else: told by the duration below
            hint = "check the URL and that the stream is live"
        else:
            path = Path(source.removeprefix("file://") if isinstance(source, str) else source)
            if not path.exists():
                raise VidactError(f"{path}: no such file; check the path")
            if path.stat().st_size == 0:
                raise VidactError(f"{path}: file is empty (0 bytes); pass a video file")
            url = str(path)
            self.name, self.seekable, self.live = str(path), True, False
            hint = "the file is truncated, corrupt or not a video"
        self.url, self.format, self._hint = url, fmt, hint
        # "auto" tries NVDEC on files and streams (a webcam's raw or MJPEG frames gain nothing).
        use_gpu = hwaccel == "cuda" or (hwaccel == "auto" and fmt is None and _cuda_available())
        if use_gpu and (failure := self._try_nvdec()) is None:
            return
        self._open()  # also when NVDEC failed: a file that is no video is reported as such
        if hwaccel == "cuda":
            self.close()
            reason = f"cannot decode with NVDEC (hwaccel cuda) here ({failure})"
            raise VidactError(f"{self.name}: {reason}; use --decode cpu")

    def _open(self) -> None:
        """Open the container for decoding on the CPU and probe the first frame."""
        try:
            self.container = av.open(self.url, format=self.format, timeout=_TIMEOUT_S)
        except av.error.FFmpegError as error:
            raise VidactError(f"{self.name}: cannot open as video ({_first_line(error)}); {self._hint}") from None
        self._probe()

    def _try_nvdec(self) -> str | None:
        """Open with NVDEC decoding: None if NVDEC decoded the first frame, else why not (nothing left open)."""
        # Frames are downloaded to system memory after decoding, so everything downstream is unchanged.
        hwaccel = HWAccel("cuda", allow_software_fallback=True)
        try:
            self.container = av.open(self.url, format=self.format, timeout=_TIMEOUT_S, hwaccel=hwaccel)
        except av.error.FFmpegError as error:  # no GPU or driver here, or not a video (the CPU open says so)
            return _first_line(error)
        try:
            self._probe()
        except VidactError as error:  # a bad file: the CPU open says so
            return str(error).removeprefix(f"{self.name}: ")
        if self.decoder == "nvdec":
            return None
        # FFmpeg fell back to software decoding (a profile NVDEC lacks): reopen with CPU threads.
        codec = self.stream.codec_context
        reason = f"NVDEC has no {codec.name} {codec.pix_fmt}"
        self.close()
        return reason

    def _probe(self) -> None:
        """Read the stream's facts and decode its first frame; closes the container on failure."""
        try:
            self._init_stream()
        except BaseException:
            self.container.close()
            raise

    def _init_stream(self) -> None:
        if self.container.format.name in _IMAGE_FORMATS or self.container.format.name.endswith("_pipe"):
            kind = self.container.format.name.removesuffix("_pipe")
            raise VidactError(f"{self.name}: is a still image ({kind}), not a video; pass a video file")
        # A song's album art (MP3, M4A) is a one-picture "video" stream: not a video.
        videos = [s for s in self.container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
        if not videos:
            found = ["audio only"] if self.container.streams.audio else []
            found += ["its only picture is cover art"] if self.container.streams.video else []
            what = f" ({'; '.join(found)})" if found else ""
            raise VidactError(f"{self.name}: no video stream{what}; pass a file with video")
        self.stream = videos[0]
        if self.stream.codec_context is None:  # FFmpeg has no decoder for this codec
            raise VidactError(
                f"{self.name}: unknown or unsupported video codec; convert it, e.g. ffmpeg -i IN -c:v libx264 OUT.mp4"
            )
        if not self.stream.codec_context.is_hwaccel:
            # Frame + slice threads. Not with NVDEC: with frame threads FFmpeg silently decoded on the
            # CPU instead (PyAV 18.1, H200), and NVDEC needs no CPU threads.
            self.stream.thread_type = "AUTO"
        self._check_complete()
        rate = self.stream.average_rate or self.stream.guessed_rate
        self.fps: Fraction | None = Fraction(rate) if rate else None
        self.num_frames: int | None = self.stream.frames or None
        self._decoder = self._decode()
        self._first = next(self._decoder, None)
        if self._first is None:
            raise VidactError(f"{self.name}: no decodable video frames; the file may be truncated or corrupt")
        # Times count from the first frame, as players show them: MPEG-TS, edited MP4 and live
        # sources (a webcam's clock) start their timestamps elsewhere than 0.
        self.start_pts: int | None = self._first.pts
        self.duration: float | None = self._duration()
        if self.duration is None and not self.seekable:  # a stream with no end: a camera, live HLS
            self.live = True
        # The decoder picks its output format on the first frame: "cuda" means NVDEC decodes. With a
        # hwaccel FFmpeg may fall back to software (a profile NVDEC lacks); then it is the codec's own.
        self.decoder = "nvdec" if self.stream.codec_context.pix_fmt == "cuda" else "cpu"
        # Rotation is counter-clockwise degrees from the display matrix; quarter turns only.
        self.quarter_turns = round((self._first.rotation or 0) / 90) % 4
        height, width = self._first.height, self._first.width
        self.width, self.height = (height, width) if self.quarter_turns % 2 else (width, height)
        # Pixels' width over height (anamorphic video, DV); frames come out turned, and so are their pixels.
        sar = self.stream.sample_aspect_ratio
        self.sample_aspect_ratio: Fraction | None = (1 / sar if self.quarter_turns % 2 else sar) if sar else None
        self._pts_table: list[int] | None = None

    def _duration(self) -> float | None:
        """Seconds from the first frame's time to the video's end, as the stream or container states it."""
        if self.stream.duration:  # counted from the stream's start
            return float(self.stream.duration * self.stream.time_base)
        if not self.container.duration:
            return None
        end = Fraction(self.container.duration, av.time_base)
        if self.container.format.name not in _DURATION_FROM_ZERO:  # else counted from the container's start
            return float(end)
        # Matroska's (and NUT's) is the end's timestamp: a file made with ffmpeg -output_ts_offset 1000, or
        # cut with -copyts, would last a thousand seconds more than it plays.
        first = self.start_pts * self.stream.time_base if self.start_pts is not None else 0
        return float(end - first) if end > first else None

    def _check_complete(self) -> None:
        """Fail on a file cut short whose index (MP4 ``moov`` at the front) points past its end.

        Without this the first frames decode and the video silently ends early.
        """
        if not self.seekable:
            return
        entries = self.stream.index_entries
        tail = [entries[i] for i in range(max(0, len(entries) - 16), len(entries))]
        expected = max((e.pos + e.size for e in tail if e.pos >= 0), default=0)
        actual = Path(self.url).stat().st_size
        if expected > actual:
            raise VidactError(
                f"{self.name}: file is truncated ({actual} of at least {expected} bytes); copy or download it again"
            )

    def _decode(self) -> Iterator[av.VideoFrame]:
        try:
            yield from self.container.decode(self.stream)
        except av.error.EOFError:
            return
        except av.error.FFmpegError as error:
            raise VidactError(
                f"{self.name}: decoding failed ({_first_line(error)}); the file may be truncated or corrupt"
            ) from None

    def frame(self, picture: av.VideoFrame, index: int) -> Frame:
        return Frame(index, self.seconds(picture, index), picture=picture, quarter_turns=self.quarter_turns)

    def seconds(self, frame: av.VideoFrame, index: int) -> float:
        """The frame's time from the first frame's: from its timestamp, else from its index."""
        if frame.pts is None or self.start_pts is None:  # raw elementary streams carry no timestamps
            return index / float(self.fps) if self.fps else float(index)
        return float((frame.pts - self.start_pts) * frame.time_base)

    def presentation_pts(self) -> list[int]:
        """Sorted pts of every frame, read from the packets without decoding (cached)."""
        if self._pts_table is None:
            with av.open(self.url, format=self.format) as container:
                stream = container.streams[self.stream.index]
                self._pts_table = sorted(
                    p.pts for p in container.demux(stream) if p.pts is not None and not p.is_discard
                )
        return self._pts_table

    def close(self) -> None:
        self.container.close()


class VideoReader:
    """Decoded frames of a video file, frame directory, webcam or stream.

    ``source`` is a path to a video file, a directory of numbered images (AVA
    layout; ``frames_fps`` gives their rate), a webcam index (``0`` or ``"0"``:
    ``/dev/video0`` through v4l2 on Linux) or any URL FFmpeg opens. Opening
    decodes the first frame, so unreadable input fails here with a
    :class:`VidactError` before the caller writes anything. :attr:`live` says whether
    frames arrive in real time (a webcam, an RTSP/UDP/... stream, or a URL with no
    duration), so that a slow consumer must drop frames rather than hold the source back.

    Iterating yields :class:`Frame` from the start; :meth:`frames` starts at a
    time; :meth:`frame_at` random-accesses one frame. Use as a context manager or
    call :meth:`close`.

    ``hwaccel`` picks the video decoder: ``"cpu"`` (FFmpeg's software decoders),
    ``"cuda"`` (NVDEC on the GPU; a :class:`VidactError` if it cannot decode this
    source here) or ``"auto"`` (NVDEC when PyTorch sees a CUDA GPU and it can decode
    the file or stream, else the CPU, silently). Frames are the same RGB arrays either
    way, up to rounding. :attr:`decoder` says which one decodes: ``"nvdec"`` or
    ``"cpu"`` (always ``"cpu"`` for frame directories).

    :attr:`sample_aspect_ratio` is the width over height of one pixel as a player shows it,
    turned with the frames (None: square, or not stated). Frames are not stretched to it.
    """

    def __init__(self, source: str | int | os.PathLike, *, frames_fps: float = 30.0, hwaccel: str = "cpu"):
        if hwaccel not in HWACCELS:
            raise VidactError(f"{source}: unknown decoder {hwaccel!r}; use one of {', '.join(HWACCELS)} (--decode)")
        self._dir: FrameDirectory | None = None
        self._av: _AVSource | None = None
        if not isinstance(source, int) and Path(source).is_dir():
            self._dir = FrameDirectory(source, fps=frames_fps)
            self.name = str(source)
            self.fps: Fraction | None = Fraction(frames_fps).limit_denominator(1001)
            self.num_frames: int | None = len(self._dir)
            self.duration: float | None = self._dir.duration
            self.width, self.height = self._dir.width, self._dir.height
            self.seekable, self.live = True, False
            self.decoder = "cpu"
            self.sample_aspect_ratio: Fraction | None = None
        else:
            self._av = _AVSource(source, hwaccel)
            self.decoder = self._av.decoder
            self.name = self._av.name
            self.fps, self.num_frames, self.duration = self._av.fps, self._av.num_frames, self._av.duration
            self.width, self.height = self._av.width, self._av.height
            self.seekable, self.live = self._av.seekable, self._av.live
            self.sample_aspect_ratio = self._av.sample_aspect_ratio
        self._fresh = True  # nothing consumed yet: the probed first frame can be reused

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._av is not None:
            self._av.close()

    def __iter__(self) -> Iterator[Frame]:
        return self.frames()

    def frames(self, start: float | None = None) -> Iterator[Frame]:
        """Frames in presentation order, beginning with the frame shown at ``start`` seconds.

        ``start=None`` begins at the first frame. Seeking (``start`` given) goes to
        the keyframe before ``start`` and decodes forward from there.
        """
        if self._dir is not None:
            first = 0 if start is None else self._dir.index_at(start)
            for index, seconds, rgb in self._dir.iter_frames(first):
                yield Frame(index, seconds, rgb)
            return
        source = self._av
        if start is None and self._fresh:
            self._fresh = False
            decoded = itertools.chain([source._first], source._decoder)
            for index, frame in enumerate(decoded):
                yield source.frame(frame, index)
            return
        if not self.seekable:
            raise VidactError(f"{self.name}: a live source cannot be rewound or seeked; open it again")
        self._fresh = False
        table = source.presentation_pts()
        for frame in self._seek(0.0 if start is None else start):
            index = bisect.bisect_left(table, frame.pts) if frame.pts is not None else 0
            yield source.frame(frame, index)

    def shown_frames(self) -> int | None:
        """How many frames a player shows, counted from a file's packets: a file cut with
        ``ffmpeg -ss -c copy`` keeps the frames its edit list hides, and its header counts them.
        For other sources, :attr:`num_frames`."""
        if self._av is not None and self.seekable:
            return len(self._av.presentation_pts()) or self.num_frames
        return self.num_frames

    def frame_time(self, index: int) -> float:
        """Frame ``index``'s :attr:`Frame.pts_seconds`, read from the packets without decoding
        (``index / fps`` for frame folders and live sources); past the end, the last frame's."""
        source = self._av
        timed = source is not None and self.seekable and source.start_pts is not None
        table = source.presentation_pts() if timed else []
        if not table:
            return index / float(self.fps) if self.fps else float(index)
        return float((table[min(max(index, 0), len(table) - 1)] - source.start_pts) * source.stream.time_base)

    def frame_at(self, t: float) -> Frame:
        """The last frame whose timestamp is ``<= t`` seconds.

        Before the first frame this is the first frame; past the end, the last.
        Only the frames from the preceding keyframe to ``t`` are decoded.
        """
        frames = self.frames(start=t)
        try:
            return next(frames)
        finally:
            frames.close()

    def _seek(self, t: float) -> Iterator[av.VideoFrame]:
        """Decoded frames from the last one with time <= ``t`` (or the first frame) on."""
        source = self._av
        stream, container = source.stream, source.container
        stream_start = stream.start_time or 0
        origin = source.start_pts or 0  # times count from the first frame's timestamp
        margin = 0.0
        while True:
            target = max(stream_start, origin + math.floor((t - margin) / stream.time_base))
            try:
                container.seek(target, stream=stream, backward=True, any_frame=False)
            except av.error.FFmpegError as error:
                raise VidactError(f"{self.name}: seeking to {t:.3f} s failed ({_first_line(error)})") from None
            decoded = source._decode()
            first = next(decoded, None)
            landed_late = first is not None and first.pts is not None and source.seconds(first, 0) > t
            # Some demuxers land after the requested time; back off until the landing frame is not later than t.
            if (first is None or landed_late) and target > stream_start:
                margin = max(1.0, 2 * margin)
                continue
            break
        if first is None:
            raise VidactError(f"{self.name}: no frame decodes after seeking to {t:.3f} s; the file may be truncated")
        previous = first
        for frame in decoded:
            # Compare as floats so that passing a frame's own pts_seconds returns that frame.
            if frame.pts is not None and source.seconds(frame, 0) > t:
                yield previous
                yield frame
                yield from decoded
                return
            previous = frame
        yield previous


def _yuv420_frame(rgb: np.ndarray) -> av.VideoFrame:
    """An even-sized RGB array as a yuv420p frame (BT.601, limited range), ready for x264."""
    cv2 = opencv()
    if cv2 is None:
        return av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
    # OpenCV converts 1080p 16x faster than swscale's rgb24 path (0.8 vs 12 ms a frame, one core)
    # with the same coefficients: luma within 1 level; chroma, subsampled differently, apart at
    # colour edges only (up to 14 levels, 0.1-0.2 on average on the shared videos).
    return av.VideoFrame.from_ndarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420), format="yuv420p")


# VideoWriter's clock runs at least this many ticks a second: MPEG's 90 kHz, that of phones' MP4 and of
# MPEG-TS, so that their frame times are kept.
_CLOCK = 90_000
# The longest an MP4 sample may show, in ticks: its duration is an int32 of the track's timescale, and
# a frame x264 reorders has a composition offset spanning up to 10 samples (8 B-frames in veryslow).
_LONGEST_SAMPLE = 2**31 // 16


def _timescale(rate: Fraction) -> int:
    """VideoWriter's ticks a second at ``rate``: a multiple of its numerator, so that a frame lasts a
    whole number of them (3003 at 30000/1001 fps), and no more than needed, so that a frame held
    for hours fits in a sample or a few (a phone's average rate, such as 3360000/98933, makes it
    the numerator)."""
    return rate.numerator * math.ceil(_CLOCK / rate.numerator)


class VideoWriter:
    """Write RGB frames as H.264 MP4 (libx264, yuv420p) at an exact frame rate.

    ``fps`` may be a :class:`~fractions.Fraction` (e.g. ``Fraction(30000, 1001)``)
    and is kept exactly as the stream's rate. yuv420p subsamples chroma 2x2 and
    libx264 rejects odd sizes (checked: 341x255 fails ``avcodec_open2``, and
    x264's ``crop-rect`` is not accepted through FFmpeg), so an odd width or
    height is padded by one pixel, repeating the last column/row, and the file
    is one pixel larger in that dimension. With ``audio_from``, the audio stream
    of that file (if any) is copied without re-encoding. The file appears at
    ``path`` only when :meth:`close` succeeds; on an exception inside the
    ``with`` block nothing is left behind.

    ``preset`` is libx264's speed/size trade-off. The default, ``veryfast``, encoded
    1080p 2.6x faster than x264's own default (``medium``), into a file of the same
    size at the same ``crf`` (docs/performance.md).

    ``colorspace`` tags the YUV matrix: RGB arrays are converted with :attr:`RGB_COLORSPACE`,
    the default; pass :attr:`Frame.colorspace` when writing a source's own planes
    (:meth:`frame_from_i420`). ``sample_aspect_ratio`` tags the pixels' shape (pass a source's
    :attr:`VideoReader.sample_aspect_ratio` when writing its frames, or the video plays squashed).
    """

    RGB_COLORSPACE = Colorspace.ITU601  # the matrix RGB arrays are converted with

    def __init__(
        self,
        path: str | os.PathLike,
        fps: float | Fraction,
        width: int,
        height: int,
        audio_from: str | os.PathLike | None = None,
        crf: int = 18,
        preset: str = "veryfast",
        colorspace: Colorspace | None = None,
        sample_aspect_ratio: Fraction | None = None,
    ):
        if width <= 0 or height <= 0:
            raise VidactError(f"{path}: frame size must be positive, got {width}x{height}")
        if not fps or fps <= 0:
            raise VidactError(f"{path}: frame rate must be positive, got {fps}")
        if preset not in X264_PRESETS:
            raise VidactError(f"{path}: unknown x264 preset {preset!r}; use one of {', '.join(X264_PRESETS)}")
        self.path = Path(path)
        self.width, self.height = width, height
        self.rate = Fraction(fps).limit_denominator(1_000_000) if not isinstance(fps, Fraction) else fps
        if max(_timescale(self.rate), self.rate.denominator) > 2**31 - 1:
            # FFmpeg's time bases are int32 fractions. Such a rate is nominal anyway.
            self.rate = self.rate.limit_denominator(1001)
        self._timescale = _timescale(self.rate)  # ticks a second; the MP4 track's timescale
        self._frame_ticks = int(self._timescale / self.rate)
        self._count = 0
        self._last_pts = -1
        self._shown: av.VideoFrame | None = None  # the last frame written, repeated across a long gap
        self._timed: tuple[int, int] | None = None  # (pts, duration) of a frame given its duration
        self._delay: int | None = None
        self._stack = ExitStack()
        try:
            tmp = self._stack.enter_context(atomic_path(self.path))
            self._container = av.open(str(tmp), mode="w", format="mp4")
            self._stack.callback(self._container.close)
            self._video = self._container.add_stream("libx264", rate=self.rate)
            self._video.width, self._video.height = width + width % 2, height + height % 2
            self._video.pix_fmt = "yuv420p"
            self._video.options = {"crf": str(crf), "preset": preset}
            # PyAV opens encoders with slice threads; x264's frame threads are faster at every size.
            self._video.thread_type = "FRAME"
            # Limited range, and BT.601 as the RGB conversion below makes it (or the matrix of the
            # I420 frames given). Untagged, players would take an HD video for BT.709.
            self._video.codec_context.colorspace = colorspace or self.RGB_COLORSPACE
            self._video.codec_context.color_range = ColorRange.MPEG
            if sample_aspect_ratio:
                self._video.codec_context.sample_aspect_ratio = sample_aspect_ratio
            # A frame given its source time keeps it (variable frame rate) while frames of a
            # constant rate stay exactly _frame_ticks apart.
            self._video.codec_context.time_base = Fraction(1, self._timescale)
            self._audio_packets = self._open_audio(audio_from) if audio_from is not None else None
        except BaseException:
            self._stack.__exit__(*sys.exc_info())
            raise

    def _open_audio(self, source: str | os.PathLike) -> Iterator[av.Packet] | None:
        try:
            audio_in = self._stack.enter_context(av.open(str(source)))
        except (av.error.FFmpegError, FileNotFoundError) as error:
            reason = _first_line(error)
            raise VidactError(f"{source}: cannot open for its audio ({reason}); pass audio_from=None") from None
        if not audio_in.streams.audio:
            return None
        in_stream = audio_in.streams.audio[0]
        codec = in_stream.codec_context.name if in_stream.codec_context else "unknown"
        if codec not in self._container.supported_codecs:
            raise VidactError(f"{source}: its {codec} audio cannot be copied into MP4; pass audio_from=None")
        self._audio = self._container.add_stream_from_template(in_stream)
        return (p for p in audio_in.demux(in_stream) if p.dts is not None)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._stack.__exit__(exc_type, exc, tb)

    @staticmethod
    def frame_from_rgb(rgb: np.ndarray) -> av.VideoFrame:
        """An ``HxWx3`` uint8 RGB array as the yuv420p frame :meth:`write` encodes.

        Call it in another thread than the one that writes to share the work (``vidact detect``
        converts in its drawing thread). An odd width or height is padded, repeating the last
        column or row.
        """
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise VidactError(f"a frame to encode must be HxWx3 uint8 RGB, got {rgb.shape} {rgb.dtype}")
        pad = ((0, rgb.shape[0] % 2), (0, rgb.shape[1] % 2), (0, 0))
        if pad[0][1] or pad[1][1]:
            rgb = np.pad(rgb, pad, mode="edge")
        return _yuv420_frame(np.ascontiguousarray(rgb))

    @staticmethod
    def frame_from_i420(i420: np.ndarray) -> av.VideoFrame:
        """A ``(3H/2) x W`` I420 array (:meth:`Frame.i420`) as the frame :meth:`write` encodes."""
        return av.VideoFrame.from_ndarray(i420, format="yuv420p")

    def write(
        self, frame: np.ndarray | av.VideoFrame, seconds: float | None = None, duration: float | None = None
    ) -> None:
        """Append one frame: an ``HxWx3`` uint8 RGB array of the size given at construction, or
        :meth:`frame_from_rgb`'s or :meth:`frame_from_i420`'s result. ``seconds`` places it at
        that time (a source frame's, for video of a variable frame rate); by default frames
        follow each other at the writer's rate. ``duration`` (seconds) is how long the frame
        shows if it is the last one written, i.e. where the video ends (default: one frame at
        the writer's rate, as players take it; such a frame is encoded as a key frame); earlier
        frames show until the next one's time. A frame shown longer than an MP4 sample can last
        (some 20 minutes at common rates) is written again every such interval."""
        if isinstance(frame, np.ndarray):
            if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
                raise VidactError(
                    f"{self.path}: frame {self._count} is {frame.shape} {frame.dtype}, "
                    f"expected ({self.height}, {self.width}, 3) uint8"
                )
            frame = self.frame_from_rgb(frame)
        elif (frame.width, frame.height) != (self._video.width, self._video.height) or frame.format.name != "yuv420p":
            raise VidactError(
                f"{self.path}: frame {self._count} is {frame.width}x{frame.height} {frame.format.name}, "
                f"expected {self._video.width}x{self._video.height} yuv420p (VideoWriter.frame_from_rgb or frame_from_i420)"
            )
        pts = self._count * self._frame_ticks if seconds is None else round(seconds * self._timescale)
        pts = max(pts, self._last_pts + 1)
        frame.time_base = Fraction(1, self._timescale)
        try:
            if self._shown is not None:  # shown longer than a sample lasts: repeated, a sample apart
                self._encode(self._shown, range(self._last_pts + _LONGEST_SAMPLE, pts, _LONGEST_SAMPLE))
            if duration is None:
                ticks, starts = self._frame_ticks, range(pts, pts + 1)
            else:
                ticks = max(1, round(duration * self._timescale))
                starts = range(pts, pts + ticks, _LONGEST_SAMPLE)
                self._encode(frame, starts[:-1])
                # x264 drops frame durations (FFmpeg 8.1), so the packet gets it; the MP4 muxer ends the
                # track after the last packet in decode order. With B-frames the last frame shown is
                # often decoded before others; made a key frame, it is decoded last.
                frame.pict_type = PictureType.I
                self._timed = (starts[-1], pts + ticks - starts[-1])
            self._encode(frame, starts[-1:])
            self._mux_audio_until(Fraction(pts + ticks, self._timescale))
        except av.error.FFmpegError as error:
            raise self._failed(error) from None
        self._shown, self._last_pts = frame, starts[-1]
        self._count += 1

    def _encode(self, frame: av.VideoFrame, starts: range) -> None:
        """Encode ``frame`` once for each tick of ``starts``, shown from there (the encoder takes
        the timestamp when it is given the frame)."""
        for start in starts:
            frame.pts = start
            self._mux_video(self._video.encode(frame))

    def _mux_video(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            if self._delay is None:  # x264's decoding delay: the first frame's pts minus its dts
                self._delay = packet.pts - packet.dts
            if self._timed is not None and packet.pts == self._timed[0]:
                packet.duration = self._timed[1]
                # The track's length is its last packet's dts plus duration (the MP4 stts). x264 puts
                # a frame's dts its last few intervals before its pts, which after a long hold (copies
                # a sample apart) is more than the first frame's delay: the video would end early.
                packet.dts = max(packet.dts, packet.pts - self._delay)
        self._container.mux(packets)

    def _mux_audio_until(self, seconds: Fraction | None) -> None:
        """Copy source audio packets up to ``seconds`` (all of them for None), keeping streams interleaved."""
        if self._audio_packets is None:
            return
        for packet in self._audio_packets:
            packet.stream = self._audio
            self._container.mux(packet)
            if seconds is not None and packet.pts is not None and packet.pts * packet.time_base >= seconds:
                return

    def _failed(self, error: av.error.FFmpegError) -> VidactError:
        return VidactError(
            f"{self.path}: writing the video failed ({_first_line(error)}); "
            "check that its disk has space, else report this with the source video"
        )

    def close(self) -> None:
        """Flush the encoder, finish the file and move it into place."""
        try:
            with self._stack:
                if self._count == 0:
                    raise VidactError(f"{self.path}: no frames were written; nothing to save")
                self._mux_video(self._video.encode(None))
                self._mux_audio_until(None)
        except av.error.FFmpegError as error:  # the muxer's, or the file's end failing to write
            raise self._failed(error) from None
