"""`vidact detect`: schedule, tracking, parity with a direct model call, outputs, failures."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import threading
import time
import warnings
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch
from conftest import shared_path, write_vfr_video
from PIL import Image

import vidact
from vidact.cli.main import main
from vidact.config.pyslowfast import load_model_config
from vidact.data.ava_csv import read_ava_csv
from vidact.data.label_sets import AVA80
from vidact.data.labels import LabelMap
from vidact.detectors.precomputed import PrecomputedDetector
from vidact.evaluation.ava import evaluate_ava
from vidact.io.sampling import centered_clip_indices_at_time
from vidact.io.video import VideoReader
from vidact.pipeline import outputs
from vidact.pipeline.detect import (
    ActionModel,
    ActionThresholds,
    DetectNotice,
    default_class_names,
    detect,
    detect_video,
    load_action_model,
)
from vidact.pipeline.render import PASTEL2, class_color, draw_box, draw_text_panel
from vidact.transforms import ava_test_clip, pack_pathways, scale_boxes, scale_short_side_cv2

INTEL = "intel_one-by-one-person-detection.mp4"  # 10 fps, 768x432; empty until ~6 s, a woman 7-19 s
STRUCTURALIZE = "mmaction2_test_video_structuralize.mp4"  # 29.97 fps, 300 frames, 426x240
# Person boxes (normalised) for the parity run: a keyframe whose clip is clamped at the start,
# and one clamped at the end with two persons (batched in one call).
PARITY_BOXES = {
    0.0: [(0.10, 0.15, 0.45, 0.95)],
    10.0: [(0.05, 0.10, 0.40, 0.90), (0.50, 0.20, 0.90, 0.99)],
}


def _tiny_case() -> Path:
    return shared_path("fixtures", "parity", "tiny_ava_slowfast_r101_nln")


def _fastestdet() -> str:
    return str(shared_path("data", "weights", "fastestdet", "FastestDet.onnx"))


def _schema_errors(path: Path) -> list[str]:
    validator = jsonschema.Draft202012Validator(outputs.jsonl_schema())
    return [e.message for line in path.read_text().splitlines() for e in validator.iter_errors(json.loads(line))]


@pytest.fixture(scope="module")
def micro_model() -> ActionModel:
    """The tiny AVA parity model fed 8 frames (stride 8) instead of 32: same weights, 4x cheaper."""
    case = _tiny_case()
    config = load_model_config(case / "config.yaml")
    config = config.replace(input=dataclasses.replace(config.input, num_frames=8, sampling_rate=8))
    model = vidact.create_model(config, weights=case / "model.pyth")
    return ActionModel(model, default_class_names(model), "cpu")


@pytest.fixture(scope="module")
def intel_run(micro_model, tmp_path_factory):
    """FastestDet + tracker + the micro model on the intel clip's first 19 s, data outputs only."""
    out = tmp_path_factory.mktemp("intel")
    found = []
    result = detect_video(
        shared_path("data", "videos", INTEL), out, model=micro_model, detector=_fastestdet(), end=19.0,
        video=False, timeline=False, on_keyframe=found.append,
    )
    return result, found


def test_persons_found_where_visible_and_not_on_empty_opening(intel_run):
    result, keyframes = intel_run
    assert [k.time for k in keyframes] == [float(t) for t in range(20)]
    assert all(len(k.persons) == 0 for k in keyframes[:6])  # 0-5 s: an empty room
    assert all(len(k.persons) >= 1 for k in keyframes[7:20])
    assert result.persons == sum(len(k.persons) for k in keyframes)
    assert [k.frame_index for k in keyframes] == [10 * t for t in range(20)]  # the frame shown at each second


def test_a_person_crossing_keeps_one_track_id(intel_run):
    _, keyframes = intel_run
    ids = {p.track_id for k in keyframes[8:20] for p in k.persons}  # walks in, stands, walks out
    assert len(ids) == 1 and -1 not in ids
    xs = [k.persons[0].box[0] for k in keyframes[8:20]]
    assert max(xs) - min(xs) > 40  # she does move across the frame meanwhile


def test_memory_stays_within_one_clip_and_a_margin(intel_run, micro_model):
    result, _ = intel_run
    clip_frames = math.ceil(micro_model.spec.clip_span / micro_model.spec.target_fps * 10)  # 10 fps source
    keyframe_frames = 10  # 1 keyframe a second: the decoder may run one keyframe ahead
    assert result.metrics["peak_frames_held"] <= result.metrics["frame_capacity"] <= clip_frames + keyframe_frames + 10
    assert result.metrics["dropped_frames"] == 0


def test_outputs_agree_with_the_keyframe_results(intel_run):
    result, keyframes = intel_run
    assert _schema_errors(result.jsonl) == []
    lines = [json.loads(line) for line in result.jsonl.read_text().splitlines()]
    assert len(lines) == len(keyframes)
    for line, keyframe in zip(lines, keyframes):
        assert [p["track_id"] for p in line["persons"]] == [p.track_id for p in keyframe.persons]
        for written, person in zip(line["persons"], keyframe.persons):
            assert [(a["id"], a["score"]) for a in written["actions"]] == [(a.index + 1, a.score) for a in person.actions]
    tracks = [row.split(",") for row in result.tracks_csv.read_text().splitlines()]
    assert len(tracks) == result.persons
    assert [int(row[6]) for row in tracks] == [p.track_id for k in keyframes for p in k.persons]
    rows = read_ava_csv(result.actions_csv, eighth_column="score")
    assert len(rows) == result.persons * 80


@pytest.fixture(scope="module")
def parity_run(tmp_path_factory):
    """`vidact detect` on a whole video with precomputed boxes and the tiny parity model, every class kept
    (the eager path: the optimised ones are held to their tolerances in tests/test_optimize.py)."""
    out = tmp_path_factory.mktemp("parity")
    boxes = out / "boxes.csv"
    boxes.write_text(
        "".join(f"structuralize,{t},{x1},{y1},{x2},{y2},,0.99\n" for t, bs in PARITY_BOXES.items() for x1, y1, x2, y2 in bs)
    )
    case = _tiny_case()
    video = shared_path("data", "videos", STRUCTURALIZE)
    argv = ["detect", str(video), "--cfg", str(case / "config.yaml"), "--weights", str(case / "model.pyth"),
            "--detector", f"csv:{boxes}", "--rate", "0.5", "--threshold", "0", "--precision", "eager", "--out", str(out / "results")]
    assert main(argv) == 0
    return out / "results", Path(video).stem, boxes


def test_written_scores_equal_a_direct_model_call(parity_run):
    results, video_id, boxes_csv = parity_run
    case = _tiny_case()
    model = vidact.create_model(case / "config.yaml", weights=case / "model.pyth").eval()
    spec = model.config.input
    with VideoReader(shared_path("data", "videos", STRUCTURALIZE)) as reader:
        frames = np.stack([frame.rgb for frame in reader])
        fps, height, width = float(reader.fps), reader.height, reader.width
    lines = {line["time"]: line for line in map(json.loads, (results / f"{video_id}.keyframes.jsonl").open())}
    assert sorted(lines) == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    boxes = PrecomputedDetector(boxes_csv)
    for seconds, expected_boxes in PARITY_BOXES.items():
        pixel_boxes = boxes.detections_at(seconds, width, height).boxes
        indices = centered_clip_indices_at_time(seconds, spec, fps, len(frames))
        inputs = pack_pathways(ava_test_clip(frames[indices.numpy()], spec), spec)
        rois = torch.from_numpy(np.c_[np.zeros(len(pixel_boxes)), scale_boxes(pixel_boxes, height, width, 256)])
        with torch.no_grad():
            direct = model(inputs, rois.float()).numpy()
        persons = lines[seconds]["persons"]
        assert len(persons) == len(expected_boxes)
        for person, row in zip(persons, direct):
            written = np.zeros(80, np.float32)
            for action in person["actions"]:
                written[action["id"] - 1] = action["score"]
            assert len(person["actions"]) == 80  # threshold 0: every class
            np.testing.assert_array_equal(written, row)
    assert all(not lines[t]["persons"] for t in (2.0, 4.0, 6.0, 8.0))


def test_csv_loads_in_the_ava_evaluator(parity_run, tmp_path):
    results, video_id, _ = parity_run
    pred = results / f"{video_id}.actions.csv"
    rows = read_ava_csv(pred, eighth_column="score")
    assert len(rows) == 3 * 80 and set(rows.timestamps) == {0, 10}
    # Ground truth: each person does the action the model scores highest for them.
    gt = tmp_path / "gt.csv"
    best = rows.scores.reshape(-1, 80).argmax(axis=1)
    boxes = rows.boxes[::80]
    gt.write_text("".join(
        f"{video_id},{t:04d},{b[0]:.3f},{b[1]:.3f},{b[2]:.3f},{b[3]:.3f},{c + 1},{i}\n"
        for i, (t, b, c) in enumerate(zip(rows.timestamps[::80], boxes, best))
    ))
    labelmap = LabelMap({i + 1: name for i, name in enumerate(AVA80)})
    result = evaluate_ava(gt, pred, labelmap)
    assert sum(result.num_groundtruth.values()) == 3
    assert 0.0 < result.map <= 1.0


def test_video_keeps_frame_count_rate_and_size(parity_run):
    results, video_id, _ = parity_run
    with VideoReader(shared_path("data", "videos", STRUCTURALIZE)) as source:
        expected = (sum(1 for _ in source), source.fps, source.width, source.height)
    with VideoReader(results / f"{video_id}.detect.mp4") as drawn:
        assert (sum(1 for _ in drawn), drawn.fps, drawn.width, drawn.height) == expected
    assert _schema_errors(results / f"{video_id}.keyframes.jsonl") == []
    with Image.open(results / f"{video_id}.timeline.png") as png:
        assert png.format == "PNG" and png.width > 200
    metrics = json.loads((results / f"{video_id}.metrics.json").read_text())
    assert metrics["frames"] == expected[0] and metrics["keyframes"] == 6


def test_drawing_on_the_decoded_planes_looks_like_drawing_on_rgb(micro_model, tmp_path, monkeypatch):
    """The drawn video is made on the decoder's YUV planes where it can; it must look as the RGB path's does."""
    pytest.importorskip("cv2")
    from vidact.pipeline import render

    boxes = tmp_path / "boxes.csv"
    boxes.write_text("structuralize,0,0.10,0.15,0.45,0.95,,0.99\nstructuralize,1,0.12,0.15,0.47,0.95,,0.99\n")
    video = shared_path("data", "videos", STRUCTURALIZE)

    def drawn(name: str) -> np.ndarray:
        detect_video(video, tmp_path / name, model=micro_model, detector=f"csv:{boxes}", end=1.0, timeline=False)
        with VideoReader(tmp_path / name / f"{video.stem}.detect.mp4") as reader:
            return np.stack([frame.rgb for frame in reader]).astype(np.int16)

    on_planes = drawn("planes")
    monkeypatch.setattr(render.I420Painter, "create", classmethod(lambda cls, height, width: None))
    on_rgb = drawn("rgb")
    assert on_planes.shape == on_rgb.shape and len(on_planes) >= 30
    with VideoReader(video) as reader:
        source = np.stack([frame.rgb for _, frame in zip(range(len(on_rgb)), reader)]).astype(np.int16)
    drawing = np.abs(on_rgb - source).max(axis=-1) > 40  # the box, its label and the time panel
    assert 0.01 < drawing.mean() < 0.2
    # Drawn alike; elsewhere the planes path is nearer the source (no round trip through RGB:
    # 2.1 against 2.4 levels on average here, with x264's loss; drawn pixels 2.0 apart).
    assert np.abs(on_planes - on_rgb)[drawing].mean() < 3
    assert np.abs(on_planes - source)[~drawing].mean() < np.abs(on_rgb - source)[~drawing].mean()


def test_odd_sized_4_4_4_video_is_drawn_on_rgb(micro_model, tmp_path):
    """Video without 4:2:0 planes of even sides takes the RGB drawing path; the writer pads it by a pixel."""
    import av

    source = tmp_path / "odd.mp4"
    rgb = np.random.default_rng(0).integers(0, 256, (97, 171, 3), dtype=np.uint8)
    with av.open(str(source), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 171, 97, "yuv444p"
        for index in range(25):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("odd,0,0.2,0.2,0.8,0.9,,0.99\nodd,1,0.2,0.2,0.8,0.9,,0.99\n")
    result = detect_video(source, tmp_path / "out", model=micro_model, detector=f"csv:{boxes}", timeline=False)
    with VideoReader(result.video) as drawn:
        frames = [frame.rgb for frame in drawn]
    assert len(frames) == 25 and frames[0].shape == (98, 172, 3)
    assert result.persons == 2 and result.metrics["frames"] == 25
    # The box outline is drawn in its track colour: a column of the left edge differs from the source.
    assert np.abs(frames[5][30:80, 34].astype(int) - rgb[30:80, 34]).mean() > 40


def test_no_person_gives_valid_empty_outputs_and_a_notice(micro_model, tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = detect_video(shared_path("data", "videos", INTEL), tmp_path, model=micro_model,
                              detector=_fastestdet(), end=3.0)
    assert any(issubclass(w.category, DetectNotice) and "no person" in str(w.message) for w in caught)
    assert result.persons == 0 and result.keyframes == 4
    assert result.actions_csv.read_text() == "" and result.tracks_csv.read_text() == ""
    assert _schema_errors(result.jsonl) == [] and len(result.jsonl.read_text().splitlines()) == 4
    with VideoReader(result.video) as drawn:
        assert sum(1 for _ in drawn) == 31  # frames 0.0 .. 3.0 s
    assert result.timeline.stat().st_size > 0


def test_labels_come_from_the_keyframe_whose_box_is_drawn(micro_model, tmp_path, monkeypatch):
    """Midway between keyframes (30 fps, rate 3: frame 75 at 2.5 s) the box and its labels come from
    the same keyframe, so no frame shows a box without its actions."""
    import av

    from vidact.pipeline import detect as detect_module

    source = tmp_path / "syn30.mp4"
    with av.open(str(source), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        noise = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
        for index in range(90):
            frame = av.VideoFrame.from_ndarray(noise, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    boxes = tmp_path / "boxes.csv"  # untracked persons (score 0.3) moving right: nearer keyframe's box
    boxes.write_text("".join(f"syn30,{k / 3:.4f},{0.05 + 0.05 * k:.3f},0.1,{0.4 + 0.05 * k:.3f},0.9,,0.30\n"
                             for k in range(9)))
    drawn = {}
    draw = detect_module.DetectionRun._draw

    def recording_draw(self, frame, overlays, painter):
        drawn[frame.index] = [overlay.label_lines for overlay in overlays if hasattr(overlay, "box")]
        return draw(self, frame, overlays, painter)

    monkeypatch.setattr(detect_module.DetectionRun, "_draw", recording_draw)
    run = detect_module.detect(source, model=micro_model, detector=f"csv:{boxes}", rate=3.0, thresholds=0.0,
                               video_path=tmp_path / "drawn.mp4")
    list(run)
    assert len(drawn) == 90 and all(len(boxes) == 1 for boxes in drawn.values())
    label_counts = {len(boxes[0]) for boxes in drawn.values()}
    assert label_counts == {len(drawn[0][0])} and len(drawn[0][0]) > 1  # "person" + every action


def test_a_finished_video_over_http_is_read_whole_like_a_file(micro_model, tmp_path):
    """An http URL with a duration is no live stream: no frame is dropped, whatever the pace."""
    import functools
    import http.server
    import threading

    import av

    from vidact.detectors.base import Detections
    from vidact.io.video import VideoReader

    video = tmp_path / "clip.mp4"
    with av.open(str(video), "w", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        for index in range(120):
            frame = av.VideoFrame.from_ndarray(np.full((120, 160, 3), index * 2, np.uint8), format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))

    def slow_detector(frames):  # slower than decoding: a live source would drop frames meanwhile
        time.sleep(0.3)
        return [Detections(np.array([[20, 10, 80, 110]], np.float32), np.array([0.9], np.float32)) for _ in frames]

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/clip.mp4"
        with VideoReader(url) as reader:
            assert not reader.live and not reader.seekable
        result = detect_video(url, tmp_path / "out", model=micro_model, detector=slow_detector, timeline=False)
    finally:
        server.shutdown()
    assert result.keyframes == 4 and result.metrics["dropped_frames"] == 0
    with VideoReader(result.video) as drawn:
        assert sum(1 for _ in drawn) == 120


def test_without_a_drawn_video_no_keyframe_is_kept_after_its_result(micro_model):
    """Only the drawing reads keyframes back; a webcam run without it must not hold them all."""
    from vidact.pipeline.detect import detect

    run = detect(shared_path("data", "videos", INTEL), model=micro_model, detector=_fastestdet(), end=5.0)
    assert len(list(run)) == 6
    assert run._shared.tracked == {} and run._shared.results == {}
    assert run.metrics["frames"] == 51  # 0.0 .. 5.0 s at 10 fps, as a drawn video has: not the last clip's tail
    with pytest.raises(vidact.VidactError, match="--end"):
        detect(shared_path("data", "videos", INTEL), model=micro_model, detector=_fastestdet(), end=-1.0)


def test_the_drawn_video_keeps_a_variable_frame_rate_in_step(micro_model, tmp_path):
    """Frames 0.1 s apart, then a burst 0.01 s apart: each drawn frame shows at its source time."""
    from vidact.detectors.base import Detections
    from vidact.io.video import VideoReader

    times_ms = [100 * k for k in range(20)] + [2000 + 10 * k for k in range(1, 41)] + [2400 + 100 * k for k in range(1, 11)]
    source = write_vfr_video(tmp_path / "vfr.mp4", times_ms, 160, 120)
    with VideoReader(source) as reader:
        source_times = [frame.pts_seconds for frame in reader]

    def person(frames):
        return [Detections(np.array([[20, 10, 80, 110]], np.float32), np.array([0.9], np.float32)) for _ in frames]

    result = detect_video(source, tmp_path / "out", model=micro_model, detector=person, timeline=False)
    with VideoReader(result.video) as drawn:
        drawn_times = [frame.pts_seconds for frame in drawn]
    assert len(drawn_times) == len(source_times) == 70
    np.testing.assert_allclose(drawn_times, source_times, atol=2e-3)


def _flat_video(path: Path, frames: int, sample_aspect_ratio=None, last_frame_s: float | None = None) -> Path:
    """A 160x120 10 fps H.264 MP4; optionally of non-square pixels, or with its last frame shown ``last_frame_s``."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)  # time base 1/10: a packet's pts is its frame number
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        if sample_aspect_ratio is not None:
            stream.codec_context.sample_aspect_ratio = sample_aspect_ratio
        packets = []
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((120, 160, 3), index * 8 % 256, np.uint8), format="rgb24")
            frame.pts = index
            packets += stream.encode(frame)
        packets += stream.encode(None)
        for packet in packets:
            if last_frame_s is not None and packet.pts == frames - 1:
                packet.duration = round(last_frame_s * 10)
            container.mux(packet)
    return path


def _fixed_person(frames):
    from vidact.detectors.base import Detections

    return [Detections(np.array([[20, 10, 80, 110]], np.float32), np.array([0.9], np.float32)) for _ in frames]


def test_the_drawn_video_keeps_the_pixel_aspect_ratio(micro_model, tmp_path):
    """Anamorphic video (SAR 64:51) must not play squashed; the data stay in stored pixels."""
    import av
    from fractions import Fraction

    source = _flat_video(tmp_path / "sar.mp4", 5, sample_aspect_ratio=Fraction(64, 51))
    result = detect_video(source, tmp_path / "out", model=micro_model, detector=_fixed_person, timeline=False)
    with av.open(str(result.video)) as drawn:
        assert drawn.streams.video[0].sample_aspect_ratio == Fraction(64, 51)
    line = json.loads(result.jsonl.read_text().splitlines()[0])
    assert (line["width"], line["height"], line["persons"][0]["box"]) == (160, 120, [20, 10, 80, 110])


def test_a_held_last_frame_gets_keyframes_and_is_drawn_to_the_end(micro_model, tmp_path):
    """Ten frames, the last (0.9 s) shown until 3.5 s, as a player shows it: keyframes up to 3 s."""
    source = _flat_video(tmp_path / "held.mp4", 10, last_frame_s=2.6)
    found = []
    result = detect_video(source, tmp_path / "out", model=micro_model, detector=_fixed_person, timeline=False,
                          on_keyframe=found.append)
    assert [(k.time, k.frame_index) for k in found] == [(0.0, 0), (1.0, 9), (2.0, 9), (3.0, 9)]
    with VideoReader(result.video) as drawn:
        assert drawn.duration == pytest.approx(3.5, abs=1e-3)
        assert [frame.index for frame in drawn] == list(range(10))


@pytest.mark.parametrize("option", [("--rate", "inf"), ("--rate", "nan"), ("--end", "nan"), ("--end", "inf")])
def test_a_rate_or_end_not_finite_is_one_line_exit_2(tmp_path, capsys, option):
    out, boxes = tmp_path / "out", tmp_path / "boxes.csv"
    boxes.write_text("flat,0,0.1,0.1,0.5,0.9,,0.99\n")
    case = _tiny_case()
    argv = ["detect", str(_flat_video(tmp_path / "flat.mp4", 5)), "--cfg", str(case / "config.yaml"),
            "--weights", str(case / "model.pyth"), "--detector", f"csv:{boxes}", *option, "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and option[0] in err and option[1] in err
    assert not out.exists()


def test_the_api_refuses_a_rate_or_end_not_finite(micro_model, tmp_path):
    source = _flat_video(tmp_path / "flat.mp4", 5)
    for option in ({"rate": math.inf}, {"rate": math.nan}, {"end": math.nan}, {"end": math.inf}):
        with pytest.raises(vidact.VidactError, match="finite"):
            detect(source, model=micro_model, detector=_fixed_person, **option)


def test_ctrl_c_ends_a_live_source_and_the_run_finishes(micro_model, tmp_path, monkeypatch):
    """A webcam has no end but Ctrl-C: the first ends the input, and what was found is kept."""
    import signal

    from vidact.detectors.base import Detections
    from vidact.io.video import VideoReader
    from vidact.pipeline import detect as detect_module

    class Webcam(VideoReader):  # a file standing in for a webcam
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.live = True

    monkeypatch.setattr(detect_module, "VideoReader", Webcam)
    calls = []

    def person_then_ctrl_c(frames):
        calls.append(1)
        if len(calls) == 3:
            signal.raise_signal(signal.SIGINT)
        return [Detections(np.array([[100, 50, 300, 400]], np.float32), np.array([0.9], np.float32)) for _ in frames]

    previous = signal.getsignal(signal.SIGINT)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = detect_module.detect(shared_path("data", "videos", INTEL), model=micro_model,
                                   detector=person_then_ctrl_c, video_path=tmp_path / "live.mp4")
        results = list(run)
    assert signal.getsignal(signal.SIGINT) is previous
    assert any("stopping the input" in str(w.message) for w in caught)
    assert 3 <= len(results) < 10 and run.metrics["frames"] > 0  # the video has 95 s
    with VideoReader(tmp_path / "live.mp4") as drawn:
        assert sum(1 for _ in drawn) == run.metrics["frames"]


class _Stream(VideoReader):
    """A file standing in for a live stream: frames counted as read; ``fail_after`` frames, if
    set, it fails as a stream whose sender has gone does."""

    fail_after: int | None = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.live, self.read = True, 0

    def __iter__(self):
        for frame in super().__iter__():
            if self.read == self.fail_after:
                raise vidact.VidactError(f"{self.name}: decoding failed (no data for 30 s); the file may be corrupt")
            self.read += 1
            yield frame


def test_an_error_in_a_stage_stops_a_live_source_at_once(micro_model, monkeypatch):
    """A live source drops frames rather than wait: its decoder never noticed the abort and read
    on until the stream ended (SIGTERM, a break out of the loop, any error: hung for as long)."""
    from vidact.pipeline import detect as detect_module

    def broken_detector(frames):
        raise vidact.VidactError("the detector broke")

    monkeypatch.setattr(detect_module, "VideoReader", _Stream)
    run = detect_module.detect(shared_path("data", "videos", INTEL), model=micro_model, detector=broken_detector)
    with pytest.raises(vidact.VidactError, match="the detector broke"):
        list(run)
    assert run.reader.read < run.reader.num_frames / 2  # 139 s: the decoder stopped, not read it all


def test_a_live_stream_that_stops_ends_the_input_and_keeps_the_outputs(micro_model, tmp_path, monkeypatch):
    """A sender gone (FFmpeg's read timeout) failed the run: every keyframe seen was lost."""
    from vidact.pipeline import detect as detect_module

    monkeypatch.setattr(_Stream, "fail_after", 30)  # 3 s of the 10 fps clip
    monkeypatch.setattr(detect_module, "VideoReader", _Stream)
    with pytest.warns(DetectNotice, match=r"decoding failed \(no data for 30 s\); the input ends here"):
        written = detect_video(shared_path("data", "videos", INTEL), tmp_path / "out", model=micro_model,
                               detector=_fixed_person, timeline=False)
    assert written.keyframes == 3 and written.jsonl.exists() and written.video.exists()


def test_csv_boxes_of_an_ava_movie_start_at_the_given_second(micro_model, tmp_path):
    """AVA files time boxes from the movie's start (902 = 2 s into a clip cut at 900 s)."""
    from vidact.pipeline.detect import detect

    video_id = Path(INTEL).stem
    boxes = tmp_path / "ava_boxes.csv"
    boxes.write_text(f"{video_id},0902,0.2,0.1,0.6,0.9,,0.95\n")
    source = shared_path("data", "videos", INTEL)
    found = [len(r.persons) for r in detect(source, model=micro_model, detector=f"csv:{boxes}", boxes_start=900, end=3)]
    assert found == [0, 0, 1, 0]
    assert [len(r.persons) for r in detect(source, model=micro_model, detector=f"csv:{boxes}", end=3)] == [0, 0, 0, 0]
    with pytest.raises(vidact.VidactError, match="csv: boxes"):
        detect(source, model=micro_model, detector=_fastestdet(), boxes_start=900)


def test_frames_a_live_source_dropped_are_not_counted_as_processed(micro_model, monkeypatch):
    from vidact.detectors.base import Detections
    from vidact.io.video import VideoReader
    from vidact.pipeline import detect as detect_module

    class Webcam(VideoReader):  # a file standing in for a webcam: frames come faster than detection
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.live = True

    def slow_detector(frames):
        time.sleep(0.3)
        return [Detections.empty() for _ in frames]

    monkeypatch.setattr(detect_module, "VideoReader", Webcam)
    run = detect_module.detect(shared_path("data", "videos", INTEL), model=micro_model, detector=slow_detector, end=20.0)
    list(run)
    assert run.metrics["dropped_frames"] > 0
    assert 0 < run.metrics["frames"] <= run._shared.decoded_frames  # kept ones only


def test_a_write_failing_on_the_last_file_leaves_none_of_the_outputs(micro_model, tmp_path, monkeypatch):
    """The video and data files are one result: a full disk on metrics.json leaves no video."""
    from vidact.pipeline import outputs

    def disk_full(path, data):
        Path(path).write_text("{")
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(outputs, "write_json", disk_full)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("earlier")
    with pytest.raises(OSError, match="No space"), pytest.warns(DetectNotice, match="no person"):
        detect_video(shared_path("data", "videos", INTEL), out, model=micro_model, detector=_fastestdet(), end=1.0)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_an_unreadable_source_creates_no_output_folder(micro_model, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 definitely not a video" * 20)
    with pytest.raises(vidact.errors.VidactError):
        detect_video(bad, tmp_path / "out" / "sub", model=micro_model, detector=_fastestdet())
    assert not (tmp_path / "out").exists()


def test_unreadable_input_is_one_line_exit_2_and_leaves_nothing(tmp_path, capsys):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 definitely not a video" * 20)
    out = tmp_path / "out"
    assert main(["detect", str(bad), "--cfg", str(_tiny_case() / "config.yaml"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err
    assert not out.exists()


def test_thresholds_follow_pyslowfast_and_top_k():
    names = ("stand", "sit", "dance")
    rule = ActionThresholds.pyslowfast(names, common_names=("stand", "sit"))
    assert rule.per_class == (0.7, 0.7, 0.3)
    scores = np.array([0.69, 0.71, 0.31], np.float32)
    assert rule.select(scores) == [1, 2]
    assert ActionThresholds(top_k=2).select(scores) == [1, 0]
    assert ActionThresholds.uniform(0.0, 3).select(scores) == [1, 0, 2]


def test_render_primitives_draw_in_place_and_use_pastel2():
    frame = np.zeros((120, 160, 3), np.uint8)
    assert draw_box(frame, (20, 40, 100, 110), (255, 0, 0), label_lines=["#1", ("0.9 stand", (0, 0, 255))]) is frame
    assert (frame[40:111, 20] == (255, 0, 0)).all() and frame[75, 60].sum() == 0  # outline only
    assert (frame[:40, 20:60] == (0, 0, 255)).all(axis=-1).any()  # a label above the box
    faded = np.zeros_like(frame)
    draw_box(faded, (20, 40, 100, 110), (200, 200, 200), alpha=0.5)
    assert faded[40, 50, 0] == 100
    draw_text_panel(frame, ["hello"], origin=(150, 110))  # kept inside the frame
    assert class_color(0, 80) == PASTEL2[0] and class_color(79, 80) == PASTEL2[7] and class_color(40, 80) == PASTEL2[4]


def test_pyslowfast_demo_config_runs_with_preds_boxes(tmp_path):
    """DEMO.* keys drive `run_ava_demo`: input, output file, precomputed boxes, label file, checkpoint."""
    from vidact.config.pyslowfast import load_run_config
    from vidact.pipeline.detect import run_ava_demo

    case = _tiny_case()
    boxes = tmp_path / "boxes.csv"
    # DEMO.STARTING_SECOND 900: 0903 is the keyframe at 3 s. As PySlowFast's load_boxes_labels:
    # the input video's rows only (named as its file), none under AVA.DETECTION_SCORE_THRESH 0.9.
    video = Path(STRUCTURALIZE).stem
    boxes.write_text(f"{video},0903,0.1,0.1,0.5,0.9,,0.95\n{video},0905,0.1,0.1,0.5,0.9,,0.30\n"
                     "other,0904,0.1,0.1,0.5,0.9,,0.99\n")
    opts = [
        "DEMO.ENABLE", "True", "DEMO.INPUT_VIDEO", str(shared_path("data", "videos", STRUCTURALIZE)),
        "DEMO.OUTPUT_FILE", str(tmp_path / "out" / "demo.mp4"), "DEMO.PREDS_BOXES", str(boxes),
        "DEMO.LABEL_FILE_PATH", str(shared_path("configs", "pyslowfast", "fork", "ava_classids.json")),
        "TEST.CHECKPOINT_FILE_PATH", str(case / "model.pyth"), "NUM_GPUS", "0",
        "DATA.NUM_FRAMES", "8", "DATA.SAMPLING_RATE", "8",  # the micro model, to keep the test fast
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DetectNotice)
        result = run_ava_demo(load_run_config(case / "config.yaml", opts))
    assert result.video == tmp_path / "out" / "demo.mp4" and result.video.is_file()
    assert result.keyframes == 11 and result.persons == 1
    lines = [json.loads(line) for line in result.jsonl.read_text().splitlines()]
    assert [line["time"] for line in lines if line["persons"]] == [3.0]


def test_many_videos_are_shared_out_by_rank(tmp_path):
    from vidact.pipeline.detect import _video_id, read_video_list, shard

    (tmp_path / "list.txt").write_text("# clips\na.mp4\n\nsub/b.mp4\nfile:///abs/c.mp4\nhttp://host:8000/v/d.mp4\n")
    videos = read_video_list(tmp_path / "list.txt")
    assert videos[:3] == [tmp_path / "a.mp4", tmp_path / "sub" / "b.mp4", Path("/abs/c.mp4")]
    assert videos[3] == "http://host:8000/v/d.mp4"  # a URL stays whole
    assert [_video_id(video) for video in videos] == ["a", "b", "c", "d"]
    assert _video_id("rtsp://cam.local/live/") == "live" and _video_id("udp://239.0.0.1:1234") == "stream"
    videos = videos[:3]
    shares = [shard(videos, rank, 2) for rank in range(2)]
    assert shares == [[videos[0], videos[2]], [videos[1]]]
    (tmp_path / "dup.txt").write_text("x/a.mp4\ny/a.mp4\n")
    with pytest.raises(vidact.VidactError, match="collide"):
        read_video_list(tmp_path / "dup.txt")


def test_torchrun_ranks_write_what_one_process_writes(tmp_path):
    """`vidact detect --list` under torchrun with two ranks: the same files as one process."""
    import socket
    import subprocess
    import sys

    videos = tmp_path / "videos.txt"
    videos.write_text(f"{shared_path('data', 'videos', STRUCTURALIZE)}\n{shared_path('data', 'videos', INTEL)}\n")
    case = _tiny_case()
    common = ["detect", "--list", str(videos), "--cfg", str(case / "config.yaml"), "--weights", str(case / "model.pyth"),
              "--detector", _fastestdet(), "--end", "1", "--precision", "eager", "--no-video", "--no-timeline"]
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(port),
                "-m", "vidact.cli.main"]
    for argv, out in ((torchrun, "ranks"), ([sys.executable, "-m", "vidact.cli.main"], "single")):
        done = subprocess.run([*argv, *common, "--out", str(tmp_path / out)], capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr[-2000:]
        # One summary line per video in all: each rank took its share, not every video.
        assert done.stdout.count(" keyframes, ") == 2, done.stdout
    single = sorted(p.name for p in (tmp_path / "single").iterdir())
    assert sorted(p.name for p in (tmp_path / "ranks").iterdir()) == single
    assert any(name.endswith(".actions.csv") for name in single)
    for name in single:
        if name.endswith((".csv", ".jsonl")):
            assert (tmp_path / "ranks" / name).read_text() == (tmp_path / "single" / name).read_text(), name


def test_onnx_detector_falls_back_to_the_cpu_without_onnxruntime_gpu(monkeypatch):
    import onnxruntime

    from vidact.pipeline.detect import build_detector

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.warns(DetectNotice, match="install onnxruntime-gpu"):
        detector = build_detector(_fastestdet(), device="cuda:0")
    assert detector.session.get_providers() == ["CPUExecutionProvider"]
    assert len(detector([np.zeros((240, 320, 3), np.uint8)])[0]) == 0  # it runs: a black frame has no person


def test_weights_for_a_built_action_model_are_refused():
    """A built model already has its weights: loading others into it is create_model's job."""
    model = vidact.create_model(_tiny_case() / "config.yaml")
    with pytest.raises(vidact.VidactError, match="already built.*create_model"):
        load_action_model(model, weights=_tiny_case() / "model.pyth", device="cpu", precision="eager")
    loaded = load_action_model(model, device="cpu", precision="eager")
    with pytest.raises(vidact.VidactError, match="already loaded.*load_action_model"):
        detect(shared_path("data", "videos", "mmaction2_demo.mp4"), model=loaded, weights=_tiny_case() / "model.pyth")


def test_random_weights_notice_only_for_a_model_without_weights():
    checkpoint = _tiny_case() / "model.pyth"  # stores its config: its own weights are loaded
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        action_model = load_action_model(checkpoint, device="cpu", precision="eager")
    assert not [w for w in caught if "random weights" in str(w.message)]
    loaded = action_model.model.state_dict()["head.projection.weight"]
    assert torch.equal(loaded, vidact.create_model(checkpoint).state_dict()["head.projection.weight"])
    with pytest.warns(DetectNotice, match="random weights"):
        load_action_model(_tiny_case() / "config.yaml", device="cpu", precision="eager")


def test_warm_up_calls_the_model_with_the_shapes_of_the_video(micro_model, monkeypatch):
    """The warm-up must hit the same CUDA graph and cuDNN choices as the keyframes: same shapes and types."""
    calls = []
    network = micro_model.model
    monkeypatch.setattr(micro_model, "model", lambda inputs, rois: calls.append((inputs, rois)) or network(inputs, rois))
    micro_model.warm_up(240, 426)
    with VideoReader(shared_path("data", "videos", STRUCTURALIZE)) as reader:
        frames = np.stack([frame.rgb for _, frame in zip(range(len(micro_model.clip_offsets())), reader)])
    clip = scale_short_side_cv2(frames, micro_model.spec.test_crop_size)
    micro_model(*micro_model.prepare(clip, np.array([[10.0, 20.0, 200.0, 230.0]]), 240, 426))
    (warm_inputs, warm_rois), (real_inputs, real_rois) = calls
    assert [(x.shape, x.dtype, x.stride()) for x in warm_inputs] == [(x.shape, x.dtype, x.stride()) for x in real_inputs]
    assert (warm_rois.shape, warm_rois.dtype) == (real_rois.shape, real_rois.dtype)


def test_a_uint8_clip_is_normalised_in_the_call_as_prepare_does_it(micro_model):
    """What a GPU model gets: the raw clip, normalised on the device, to the same scores."""
    frames = np.random.default_rng(0).integers(0, 256, (micro_model.spec.num_frames, 256, 341, 3), dtype=np.uint8)
    inputs, rois = micro_model.prepare(frames, np.array([[10, 20, 200, 240.0], [150, 30, 330, 250]]), 256, 341)
    assert isinstance(inputs, list)  # on the CPU, prepare normalises
    np.testing.assert_array_equal(micro_model(torch.from_numpy(frames), rois), micro_model(inputs, rois))


def test_a_kinetics_model_is_refused_before_its_weights_are_fetched(monkeypatch):
    """detect --model slowfast_8x8_r50 downloaded 270 MB (or, offline, asked the user to) and then refused it."""
    import vidact.api
    from vidact.errors import VidactError
    from vidact.pipeline.detect import load_action_model

    monkeypatch.setattr(vidact.api, "fetch_weights", lambda *a, **k: pytest.fail("weights fetched first"))
    with pytest.raises(VidactError, match="slowfast_8x8_r50: a Kinetics classifier.*detect needs an AVA model"):
        load_action_model("slowfast_8x8_r50")
    with pytest.raises(VidactError, match="a Kinetics classifier"):
        load_action_model(shared_path("fixtures", "parity", "tiny_k400_slowfast", "config.yaml"))


def test_action_weights_of_another_number_of_classes_are_refused(tmp_path):
    from vidact.errors import VidactError
    from vidact.pipeline.detect import load_action_model

    config = (_tiny_case() / "config.yaml").read_text().replace("  NUM_CLASSES: 80", "  NUM_CLASSES: 60")
    (tmp_path / "sixty.yaml").write_text(config)
    with pytest.raises(VidactError, match="classifier has 80 classes, the config's MODEL.NUM_CLASSES 60"):
        load_action_model(tmp_path / "sixty.yaml", _tiny_case() / "model.pyth", device="cpu")


def test_clips_of_a_millisecond_time_base_are_get_sequence(micro_model, tmp_path, monkeypatch):
    """MKV keeps 30 fps frame times in whole ms (frame 14 at 0.467 s, after 14/30 s): each instant
    takes the nearest frame, so the clip is PySlowFast's get_sequence whatever the container."""
    import av

    from vidact.io.sampling import centered_clip_indices

    source = tmp_path / "numbered.mkv"
    with av.open(str(source), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(60):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 4 + 3 * index, np.uint8), format="rgb24")
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    clips = []
    prepare = micro_model.prepare
    monkeypatch.setattr(micro_model, "prepare", lambda clip, *a: clips.append(clip) or prepare(clip, *a))
    detect_video(source, tmp_path / "out", model=micro_model, detector=_fixed_person, video=False, timeline=False)
    numbers = [round((float(frame.mean()) - 4) / 3) for frame in clips[1]]  # the keyframe at 1 s
    spec = micro_model.spec
    assert numbers == centered_clip_indices(30, spec.num_frames, spec.sampling_rate, 60).tolist()


def test_an_instant_between_frames_takes_the_nearest_as_ffmpeg_r_30_does():
    """A 29.97 fps source sampled at 30 fps instants: frame j shows 0.03 j ms late, the nearest is j."""
    from vidact.config.model import InputSpec
    from vidact.io.sampling import centered_clip_indices_at_time

    spec = InputSpec(num_frames=4, sampling_rate=1, target_fps=30)
    indices = centered_clip_indices_at_time(10.0, spec, 30000 / 1001, 1000).tolist()
    assert indices == [298, 299, 300, 301]  # the last frame shown at or before gave 297-300


def _ts_video(path: Path, width: int, height: int, frames: int, start_s: float = 0.0) -> Path:
    """A 10 fps H.264 MPEG-TS video from ``start_s``: such files play on when joined with ``cat``."""
    import av
    from fractions import Fraction

    with av.open(str(path), "w", format="mpegts") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), index * 8, np.uint8), format="rgb24")
            frame.pts, frame.time_base = round((start_s + index / 10) * 90000), Fraction(1, 90000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def _cat(path: Path, *parts: Path) -> Path:
    path.write_bytes(b"".join(part.read_bytes() for part in parts))
    return path


def _within(seconds: float, fn):
    """``fn()``'s result or the exception it raised; the test fails, rather than hangs, past ``seconds``."""
    import threading

    outcome = []

    def target():
        try:
            outcome.append(fn())
        except BaseException as error:  # noqa: BLE001 - handed to the test
            outcome.append(error)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s: a hang"
    return outcome[0]


def _pipeline_threads() -> list[str]:
    import threading

    return [thread.name for thread in threading.enumerate() if thread.name.startswith("vidact-")]


@pytest.mark.parametrize("video", [True, False])
def test_timestamps_going_back_are_a_one_line_error_not_a_hang(micro_model, tmp_path, video):
    """Two MPEG-TS files joined with cat: the second's times start at 0 again."""
    part = _ts_video(tmp_path / "a.ts", 160, 120, 30)
    source, out = _cat(tmp_path / "aa.ts", part, part), tmp_path / "out"
    error = _within(30, lambda: detect_video(source, out, model=micro_model, detector=_fixed_person, video=video,
                                             timeline=False))
    assert isinstance(error, vidact.VidactError), error
    message = str(error)
    assert len(message.splitlines()) == 1 and "aa.ts" in message and "frame 30" in message
    assert "ffmpeg -i" in message and "concat" in message
    assert _pipeline_threads() == [] and (not out.exists() or list(out.iterdir()) == [])


def test_timestamps_going_back_are_exit_2_on_the_command_line(tmp_path, capsys):
    part = _ts_video(tmp_path / "a.ts", 160, 120, 30)
    source, out, boxes = _cat(tmp_path / "aa.ts", part, part), tmp_path / "out", tmp_path / "boxes.csv"
    boxes.write_text("aa,0,0.1,0.1,0.5,0.9,,0.99\n")
    case = _tiny_case()
    argv = ["detect", str(source), "--cfg", str(case / "config.yaml"), "--weights", str(case / "model.pyth"),
            "--detector", f"csv:{boxes}", "--out", str(out)]
    assert _within(60, lambda: main(argv)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "frame 30" in err
    assert not out.exists() or list(out.iterdir()) == []


def test_waiting_for_a_keyframe_already_forgotten_returns_at_once():
    """Any frame that asks for a keyframe the renderer has let go must not wait for ever."""
    from vidact.pipeline.detect import _Shared
    from vidact.track import TrackedDetections

    shared = _Shared(10, live=False, rendering=True)
    for number in range(3):
        shared.publish_tracked(number, float(number), TrackedDetections.empty())
    shared.forget_keyframes_before(2)
    assert _within(5, lambda: shared.wait_keyframe(0, need_result=False)) is False
    assert shared.wait_keyframe(2, need_result=False) is True


def test_a_frame_size_change_is_a_one_line_error(micro_model, tmp_path):
    """cat of a 160x120 and a 96x72 MPEG-TS file: the outputs would mix two frame sizes."""
    source = _cat(tmp_path / "ab.ts", _ts_video(tmp_path / "a.ts", 160, 120, 20),
                  _ts_video(tmp_path / "b.ts", 96, 72, 20, start_s=5.0))
    for video in (True, False):
        out = tmp_path / f"out{video}"
        error = _within(30, lambda: detect_video(source, out, model=micro_model, detector=_fixed_person,
                                                 video=video, timeline=False))
        assert isinstance(error, vidact.VidactError), error
        assert len(str(error).splitlines()) == 1
        assert "frame size changes from 160x120 to 96x72 at frame 20" in str(error) and "scale=160:120" in str(error)
        assert not out.exists() or list(out.iterdir()) == []


def test_nan_action_scores_are_an_error_not_written(micro_model, tmp_path, monkeypatch):
    """fp16 overflow gives NaN scores: they must not be written as results (nor as invalid JSON)."""
    def overflowing(self, inputs, rois):
        return np.full((len(rois), self.num_classes), np.nan, np.float32)

    monkeypatch.setattr(ActionModel, "__call__", overflowing)
    out = tmp_path / "out"
    with pytest.raises(vidact.VidactError, match=r"NaN/inf scores.*--precision fp32"):
        detect_video(_flat_video(tmp_path / "flat.mp4", 10), out, model=micro_model, detector=_fixed_person,
                     video=False, timeline=False)
    assert not out.exists() or list(out.iterdir()) == []


def test_the_json_lines_refuse_nan_rather_than_write_invalid_json(tmp_path):
    from vidact.pipeline.detect import Action, KeyframeResult, PersonActions

    person = PersonActions(1, (1.0, 2.0, 3.0, 4.0), 0.9, (Action(0, "stand", math.nan),), np.zeros(1, np.float32))
    with pytest.raises(ValueError):
        outputs.write_jsonl(tmp_path / "k.jsonl", "v", [KeyframeResult(0.0, 0, 10, 10, (person,))])
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_again_while_the_stages_stop_still_ends_them_all(micro_model, tmp_path, monkeypatch):
    """The second Ctrl-C lands in the join of the stages: leaving then would shut the interpreter
    down under stages still in native code (SIGABRT) and writing their files."""
    import threading

    from vidact.pipeline import detect as detect_module

    real_get, real_join = detect_module._get, threading.Thread.join
    interrupts = []

    def get(shared, q):
        if threading.current_thread() is threading.main_thread() and not interrupts:
            interrupts.append("first")  # while waiting for the first result
            raise KeyboardInterrupt
        return real_get(shared, q)

    def join(thread, timeout=None):
        if thread.name.startswith("vidact-") and interrupts == ["first"]:
            interrupts.append("second")
            raise KeyboardInterrupt
        return real_join(thread, timeout)

    def slow_person(frames):  # the detect stage is still busy when the second Ctrl-C comes
        time.sleep(0.5)
        return _fixed_person(frames)

    monkeypatch.setattr(detect_module, "_get", get)
    monkeypatch.setattr(threading.Thread, "join", join)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        detect_video(_flat_video(tmp_path / "flat.mp4", 30), out, model=micro_model, detector=slow_person,
                     timeline=False)
    assert interrupts == ["first", "second"]
    assert _pipeline_threads() == []
    assert not out.exists() or list(out.iterdir()) == []


def test_a_signal_while_the_stages_start_still_stops_and_joins_them(micro_model, tmp_path, monkeypatch):
    """The output files exist before the stages start: a SIGTERM landing between two start()s
    left the started stages running, and the interpreter aborted under them at exit (SIGABRT)."""
    import threading

    real_start = threading.Thread.start

    def start(thread):
        real_start(thread)
        if thread.name == "vidact-prepare":
            raise KeyboardInterrupt

    monkeypatch.setattr(threading.Thread, "start", start)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        detect_video(_flat_video(tmp_path / "flat.mp4", 30), out, model=micro_model, detector=_fixed_person,
                     timeline=False)
    assert _pipeline_threads() == []
    assert not out.exists()


def test_a_run_left_unfinished_is_stopped_at_exit_not_aborted(tmp_path):
    """A script taking the first keyframe and exiting: the interpreter shut down under the stages
    still decoding, detecting (ONNX Runtime) and encoding, and the process died of SIGABRT."""
    import subprocess
    import sys

    case = _tiny_case()
    script = f"""
import vidact
run = vidact.detect({str(shared_path("data", "videos", "mmaction2_demo.mp4"))!r}, model={str(case / "config.yaml")!r},
                    weights={str(case / "model.pyth")!r}, detector={_fastestdet()!r},
                    video_path={str(tmp_path / "drawn.mp4")!r})
keyframes = iter(run)  # kept: the run is not closed on leaving next()
print(next(keyframes).frame_index)
"""
    source = Path(__file__).resolve().parents[1] / "src"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(source)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"
    assert list(tmp_path.iterdir()) == []  # no drawn video, nor its temporary file


def test_class_names_the_label_font_lacks_are_told_and_vidact_font_draws_both_outputs(micro_model, tmp_path,
                                                                                        monkeypatch):
    import importlib.util

    from vidact.pipeline.detect import DetectNotice

    fonts = Path(importlib.util.find_spec("matplotlib").submodule_search_locations[0]) / "mpl-data" / "fonts" / "ttf"
    monkeypatch.setenv("VIDACT_FONT", str(fonts / "DejaVuSans-Bold.ttf"))
    model = ActionModel(micro_model.model, ("跑步", *micro_model.class_names[1:]), "cpu")
    with pytest.warns(DetectNotice, match=r"DejaVuSans-Bold.ttf\) lacks characters of the class names \(步跑\)"):
        written = detect_video(_flat_video(tmp_path / "flat.mp4", 10), tmp_path / "out", model=model,
                               detector=_fixed_person, thresholds=0.0)
    assert written.video.stat().st_size > 0 and written.timeline.stat().st_size > 0


def test_ctrl_c_right_after_the_main_thread_takes_a_lock_does_not_hang_the_run(tmp_path):
    """Python raises a signal's KeyboardInterrupt between bytecodes, also just after a ``with``
    has taken its lock and before it can release it (bpo-29988). Waiting for results on a
    queue.Queue, the main thread could so keep the queue's mutex: the act stage then blocked on it
    for ever, the join waited for the act stage, and the process ignored every further signal.
    Here the interrupt is raised at the first C call's return in that wait or in a lock's
    ``__enter__`` below it, two seconds late (the act stage comes to hand over a result)."""
    import subprocess
    import sys

    case = _tiny_case()
    script = f"""
import sys
import time
from vidact.pipeline import detect

real_get, raised = detect._get, []

def waiting_for_results(frame):  # in _get, or a lock's __enter__ below it
    if frame.f_code.co_name == "__enter__" and frame.f_code.co_filename.endswith("threading.py"):
        while frame is not None and frame.f_code is not real_get.__code__:
            frame = frame.f_back
    return frame is not None and frame.f_code is real_get.__code__

def profile(frame, event, arg):
    if event == "c_return" and not raised and waiting_for_results(frame):
        raised.append(frame.f_code.co_name)
        time.sleep(2)  # (holding whatever the call took) the act stage comes to hand over a result
        raise KeyboardInterrupt

sys.setprofile(profile)
try:
    detect.detect_video({str(shared_path("data", "videos", "mmaction2_demo.mp4"))!r}, {str(tmp_path / "out")!r},
                        model={str(case / "config.yaml")!r}, weights={str(case / "model.pyth")!r},
                        detector={_fastestdet()!r}, timeline=False)
except KeyboardInterrupt:
    sys.setprofile(None)
    print("interrupted in", raised)
"""
    source = Path(__file__).resolve().parents[1] / "src"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=90,
                          env={**os.environ, "PYTHONPATH": str(source)})  # the hang: killed here
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("interrupted in"), done.stdout
    assert not (tmp_path / "out").exists()


def test_a_list_goes_on_past_a_video_that_fails_and_names_it(tmp_path, capsys, monkeypatch):
    """--list stopped at the first video that failed mid-decode; the finished ones' summaries were lost."""
    from vidact.cli.main import main
    from vidact.pipeline import detect as pipeline

    videos = [_flat_video(tmp_path / f"{name}.mp4", 12) for name in ("a", "b", "c")]
    (tmp_path / "list.txt").write_text("".join(f"{video.name}\n" for video in videos))
    (tmp_path / "boxes.csv").write_text("".join(f"{n},0,0.1,0.1,0.5,0.9,,0.95\n" for n in "abc"))
    real = pipeline.detect_video

    def failing_b(source, *args, **kwargs):
        if Path(source).stem == "b":
            raise vidact.VidactError(f"{source}: decoding failed (corrupt); the file may be truncated or corrupt")
        return real(source, *args, **kwargs)

    monkeypatch.setattr(pipeline, "detect_video", failing_b)
    case = _tiny_case()
    status = main(["detect", "--list", str(tmp_path / "list.txt"), "--cfg", str(case / "config.yaml"),
                   "--weights", str(case / "model.pyth"), "--detector", f"csv:{tmp_path / 'boxes.csv'}",
                   "--no-video", "--no-timeline", "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert status == 2
    assert [line.split(":")[0] for line in captured.out.splitlines()] == [f"{tmp_path / 'out'}/a.*", f"{tmp_path / 'out'}/c.*"]
    assert "b.mp4: decoding failed (corrupt); the file may be truncated or corrupt; going on with the next video" in captured.err
    assert captured.err.strip().splitlines()[-1].endswith("1 of 3 videos failed (b); the others' outputs are written, "
                                                           "each failure's reason is above")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        f"{n}.{kind}" for n in "ac" for kind in ("actions.csv", "keyframes.jsonl", "metrics.json", "tracks.csv")]


@pytest.mark.parametrize(("returned", "message"), [
    ([], "returned 0 results for 1 frame at 0 s"),
    ("nan", "boxes that are not finite"),
])
def test_a_detector_breaking_its_contract_is_named(micro_model, tmp_path, returned, message):
    """A detector of one's own returning nothing gave a bare IndexError; NaN boxes supervision's message."""
    from vidact.detectors.base import Detections

    def detector(frames):
        if returned == "nan":
            return [Detections(np.array([[np.nan, 10, 80, 110]], np.float32), np.array([0.9], np.float32))]
        return returned

    with pytest.raises(vidact.VidactError, match=message):
        detect_video(_flat_video(tmp_path / "v.mp4", 12), tmp_path / "out", model=micro_model, detector=detector,
                     video=False, timeline=False)
    assert not (tmp_path / "out").exists()


class _WarmingModel(ActionModel):
    """Says it runs on CUDA (its clips stay uint8, its first call warms up); it answers at once, and
    its warm-up lasts until ``clips`` clips are prepared, or 3 s."""

    def __init__(self, base: ActionModel, clips: int):
        super().__init__(base.model, base.class_names, "cpu")
        self.device = torch.device("cuda")
        self.clips, self.prepared, self.prepared_in_warm_up = clips, 0, None
        self._counted = threading.Event()

    def prepare(self, *args):
        if self.prepared == self.clips:  # none past ``clips`` before the warm-up has counted them
            self._counted.wait(3.0)
        self.prepared += 1
        return super().prepare(*args)

    def warm_up(self, height, width):
        deadline = time.monotonic() + 3.0
        while self.prepared < self.clips and time.monotonic() < deadline:
            time.sleep(0.01)
        self.prepared_in_warm_up = self.prepared
        self._counted.set()

    def __call__(self, inputs, rois):
        return np.zeros((len(rois), self.num_classes), np.float32)


def test_clips_are_prepared_and_frames_decoded_while_a_cuda_model_warms_up(micro_model):
    """A CUDA model's first call takes seconds: the stages before it must not wait for it (a queue of two
    prepared clips stopped preparing, and decoding with it, for the whole warm-up)."""
    model = _WarmingModel(micro_model, clips=12)
    run = detect(shared_path("data", "videos", STRUCTURALIZE), model=model, detector=_fixed_person, rate=2.0,
                 decode="cpu")
    assert len(list(run)) == 21  # 0, 0.5, ..., 10 s
    assert model.prepared_in_warm_up == 12
    assert run.metrics["peak_frames_held"] <= run.capacity


def test_a_live_source_keeps_two_clips_waiting_for_a_cuda_model(micro_model, monkeypatch):
    """Clips waiting are delay on a live source: a GPU slower than the stream would lag further and further."""
    from vidact.pipeline import detect as detect_module

    model = _WarmingModel(micro_model, clips=0)
    video = shared_path("data", "videos", STRUCTURALIZE)
    runs = [detect(video, model=model, detector=_fixed_person, decode="cpu")]
    monkeypatch.setattr(detect_module, "VideoReader", _Stream)
    runs.append(detect(video, model=model, detector=_fixed_person, decode="cpu"))
    for run in runs:
        run.reader.close()
    assert [run.reader.live for run in runs] == [False, True]
    assert runs[0]._prepared_clips() > 2 and runs[1]._prepared_clips() == 2


def test_frames_scaled_by_several_threads_give_the_same_scores(micro_model, monkeypatch):
    """A many-core machine scales a clip's frames in a few threads; the clips must be the one thread's."""
    from vidact.pipeline import detect as pipeline

    def keyframes():
        run = detect(shared_path("data", "videos", STRUCTURALIZE), model=micro_model, detector=_fixed_person,
                     rate=2.0, thresholds=0.0)
        return [[person.scores for person in result.persons] for result in run]

    threads = set()

    def scale(frames, size):
        threads.add(pipeline.threading.current_thread().name.split("_")[0])
        return scale_short_side_cv2(frames, size)

    monkeypatch.setattr(pipeline, "scale_short_side_cv2", scale)
    monkeypatch.setattr(pipeline, "_scaling_workers", lambda: 1)
    one = keyframes()
    monkeypatch.setattr(pipeline, "_scaling_workers", lambda: 3)
    several = keyframes()
    assert threads == {"vidact-scale"}
    np.testing.assert_array_equal(np.array(several), np.array(one))


def test_detect_asks_for_its_model_without_cudnn_autotuning(monkeypatch):
    """On CUDA the autotuner's first call took 3-5 s of a 6 s run; detect turns it off (tests/test_cuda.py
    checks the flag itself on a GPU)."""
    from vidact.models import optimize

    asked = {}
    plain = optimize.inference_model
    monkeypatch.setattr(optimize, "inference_model", lambda model, **options: asked.update(options) or plain(model, **options))
    case = _tiny_case()
    load_action_model(case / "config.yaml", case / "model.pyth", device="cpu")
    assert asked["cudnn_benchmark"] is False


def _detect_argv(video: Path, detector: str, out: Path, *options: str) -> list[str]:
    case = _tiny_case()
    return ["detect", str(video), "--cfg", str(case / "config.yaml"), "--weights", str(case / "model.pyth"),
            "--detector", detector, "--no-video", "--no-timeline", *options, "--out", str(out)]


@pytest.mark.parametrize("start", ["nan", "inf", "-1"])
def test_a_boxes_start_not_a_finite_second_is_one_line_exit_2(tmp_path, capsys, start):
    """NaN made every keyframe match the file's first row: the run went on and wrote those boxes everywhere."""
    boxes, out = tmp_path / "boxes.csv", tmp_path / "out"
    boxes.write_text("flat,900,0.1,0.1,0.5,0.9,,0.99\n")
    video = _flat_video(tmp_path / "flat.mp4", 5)
    assert main(_detect_argv(video, f"csv:{boxes}", out, "--boxes-start", start)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--boxes-start" in err and start in err
    assert not out.exists()
    with pytest.raises(vidact.VidactError, match="--boxes-start"):
        PrecomputedDetector(boxes, starting_second=float(start))


def test_a_time_that_cannot_be_compared_matches_no_row(tmp_path):
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("flat,0,0.1,0.1,0.5,0.9,,0.99\n")
    detector = PrecomputedDetector(boxes)
    assert len(detector.detections_at(0.0, 160, 120)) == 1
    assert len(detector.detections_at(math.nan, 160, 120)) == 0


def test_csv_boxes_without_rows_for_the_video_are_one_line_exit_2(tmp_path, capsys):
    """A file of other videos' boxes ran to "no person found on any keyframe" and exit 0."""
    boxes, out = tmp_path / "boxes.csv", tmp_path / "out"
    boxes.write_text("vidA,0,0.1,0.1,0.5,0.9,1,0.9\nvidB,0,0,0,1,1,1,0.99\n")
    video = _flat_video(tmp_path / "flat.mp4", 5)
    assert main(_detect_argv(video, f"csv:{boxes}", out)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"{boxes} has no rows for video 'flat' (it has vidA, vidB)" in err
    assert not out.exists()


def test_a_list_goes_on_past_a_video_the_csv_has_no_rows_for(tmp_path, capsys):
    videos = [_flat_video(tmp_path / f"{name}.mp4", 5) for name in ("a", "b", "c")]
    (tmp_path / "list.txt").write_text("".join(f"{video.name}\n" for video in videos))
    boxes, out = tmp_path / "boxes.csv", tmp_path / "out"
    boxes.write_text("a,0,0.1,0.1,0.5,0.9,,0.95\nc,0,0.1,0.1,0.5,0.9,,0.95\n")
    case = _tiny_case()
    status = main(["detect", "--list", str(tmp_path / "list.txt"), "--cfg", str(case / "config.yaml"),
                   "--weights", str(case / "model.pyth"), "--detector", f"csv:{boxes}", "--no-video",
                   "--no-timeline", "--out", str(out)])
    captured = capsys.readouterr()
    assert status == 2
    assert f"{boxes} has no rows for video 'b' (it has a, c)" in captured.err
    assert "1 of 3 videos failed (b)" in captured.err.strip().splitlines()[-1]
    assert sorted(p.name for p in out.iterdir() if p.name.endswith(".actions.csv")) == ["a.actions.csv", "c.actions.csv"]


def test_an_upper_case_csv_path_is_read_as_boxes_of_the_named_video(tmp_path, capsys):
    """``BOXES.CSV`` of two videos was taken as a file of one video (no video id given) and refused."""
    boxes, out = tmp_path / "BOXES.CSV", tmp_path / "out"
    boxes.write_text("flat,0,0.1,0.1,0.5,0.9,,0.95\nother,0,0,0,1,1,,0.9\n")
    video = _flat_video(tmp_path / "flat.mp4", 5)
    assert main(_detect_argv(video, str(boxes), out, "--end", "0")) == 0, capsys.readouterr().err
    assert "1 person boxes" in capsys.readouterr().out


def test_a_person_threshold_for_a_built_detector_is_refused(micro_model, tmp_path):
    """It was checked, then dropped: the detector kept its own threshold, with no word said."""
    source = _flat_video(tmp_path / "flat.mp4", 5)
    with pytest.raises(vidact.VidactError, match="detector-threshold"):
        detect(source, model=micro_model, detector=_fixed_person, detector_threshold=0.99)


def test_a_list_with_a_boxes_start_not_finite_fails_once_not_per_video(tmp_path, capsys):
    videos = [_flat_video(tmp_path / f"{name}.mp4", 5) for name in ("a", "b")]
    (tmp_path / "list.txt").write_text("".join(f"{video.name}\n" for video in videos))
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("a,900,0.1,0.1,0.5,0.9,,0.95\nb,900,0.1,0.1,0.5,0.9,,0.95\n")
    case = _tiny_case()
    assert main(["detect", "--list", str(tmp_path / "list.txt"), "--cfg", str(case / "config.yaml"),
                 "--weights", str(case / "model.pyth"), "--detector", f"csv:{boxes}", "--boxes-start", "nan",
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--boxes-start" in err
