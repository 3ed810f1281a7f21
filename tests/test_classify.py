"""``vidact classify`` / ``predict`` and :func:`vidact.classify`: views, timeline, JSON, rendering."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import shared_path, write_cut_video, write_vfr_video
from torch import nn

import vidact
from vidact.cli.main import main
from vidact.config.model import InputSpec
from vidact.config.pyslowfast import load_model_config
from vidact.errors import VidactError
from vidact.io.sampling import kinetics_clip_indices
from vidact.io.video import VideoReader
from vidact.pipeline.classify import _crops, _window_bounds, parse_views
from vidact.transforms import kinetics_test_clip, pack_pathways

VIDEO = ("data", "videos", "mmaction2_demo.mp4")  # 340x256, 28 fps, 280 frames, 10.0 s
TINY = ("fixtures", "parity", "tiny_k400_slowfast")


class RecordingModel(nn.Module):
    """Stands in for a classifier: softmax of per-channel input means, inputs recorded."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.inputs: list[list[torch.Tensor]] = []

    def forward(self, pathways):
        self.inputs.append([p.clone() for p in pathways])
        fast = pathways[-1]
        features = fast.mean(dim=(2, 3, 4))  # N x 3
        logits = torch.cat([features, -features, features.square(), features[:, :1]], dim=1)  # N x 10
        return logits.softmax(dim=1)


@pytest.fixture(scope="module")
def tiny_cli_result(tmp_path_factory):
    """One CLI run with the tiny Kinetics model: one view, 5 s windows, JSON and render.

    (Three crops x ten clips are checked with a stand-in model below: the tiny model takes
    seconds per view on a busy CPU.)
    """
    out = tmp_path_factory.mktemp("classify")
    video = shared_path(*VIDEO)
    argv = [
        "classify", str(video), "--cfg", str(shared_path(*TINY, "config.yaml")),
        "--weights", str(shared_path(*TINY, "model.pyth")), "--views", "1x1", "--window", "5", "--stride", "5",
        "--top-k", "3", "--json", str(out / "result.json"), "--render", str(out / "timeline.mp4"), "--no-progress",
    ]
    status = main(argv)
    return status, out, video


def test_classify_cli_json_views_and_timeline(tiny_cli_result):
    status, out, video = tiny_cli_result
    assert status == 0
    result = json.loads((out / "result.json").read_text())
    assert result["views"]["spatial_crops"] == 1 and result["views"]["temporal_clips"] == 1
    assert len(result["classes"]) == 10
    views = result["view_scores"]
    assert [v["crop"] for v in views] == [1]
    for view in views:
        assert len(view["scores"]) == 10
        assert sum(view["scores"]) == pytest.approx(1.0, abs=1e-5)
        assert 0.0 <= view["start"] < view["end"] <= result["duration"]
    # Whole video: the views' scores summed (reported divided by their number).
    mean = np.mean([v["scores"] for v in views], axis=0)
    np.testing.assert_allclose(result["scores"], mean, atol=1e-6)
    best = [c["index"] for c in result["top_k"]]
    assert best == list(np.argsort(-mean, kind="stable")[:3])
    assert [c["name"] for c in result["top_k"]] == [result["classes"][i] for i in best]

    # Timeline: 5 s windows covering the whole 10 s video without gaps.
    assert result["num_frames"] == 280 and result["duration"] == pytest.approx(10.0)
    windows = result["timeline"]["windows"]
    assert [(w["start"], w["end"]) for w in windows] == [(0.0, 5.0), (5.0, 10.0)]
    for window in windows:
        scores = [c["score"] for c in window["top_k"]]
        assert len(scores) == 3 and scores == sorted(scores, reverse=True)
        assert all(c["name"] == result["classes"][c["index"]] for c in window["top_k"])


def test_classify_render_keeps_frames_rate_and_size(tiny_cli_result):
    _, out, video = tiny_cli_result
    with VideoReader(video) as source, VideoReader(out / "timeline.mp4") as rendered:
        assert (rendered.num_frames, rendered.fps) == (source.num_frames, source.fps)
        assert (rendered.width, rendered.height) == (source.width, source.height)
        assert rendered.sample_aspect_ratio == source.sample_aspect_ratio is not None  # not drawn squashed
        drawn, plain = rendered.frame_at(2.0).rgb.astype(int), source.frame_at(2.0).rgb.astype(int)
    # The panel is drawn top-left; the rest of the frame is the source (up to re-encoding).
    assert np.abs(drawn[:20, :60] - plain[:20, :60]).mean() > 20
    assert np.abs(drawn[150:, 150:] - plain[150:, 150:]).mean() < 4


def test_views_follow_the_kinetics_protocol(shared):
    """3x10: each clip's frames are PySlowFast's, each crop is kinetics_test_clip's."""
    video = shared_path(*VIDEO)
    config = load_model_config(shared_path(*TINY, "config.yaml"))
    model = RecordingModel(config)
    result = vidact.classify(video, model, views="3x10", top_k=4, precision="eager", progress=False)
    assert [(v.clip_index, v.spatial_index) for v in result.view_scores] == [(k, s) for k in range(10) for s in range(3)]
    assert len(model.inputs) == 10  # the three crops of a clip run as one batch
    for view in result.view_scores:
        assert view.scores.sum() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(result.scores, np.mean([v.scores for v in result.view_scores], axis=0), atol=1e-7)

    spec = config.input
    clip = 7
    indices = kinetics_clip_indices(280, 28.0, spec, clip, 10).tolist()
    with VideoReader(video) as reader:
        frames = np.stack([f.rgb for f in reader if f.index in set(indices)])
        frames = frames[[sorted(set(indices)).index(i) for i in indices]]
    expected = pack_pathways(torch.stack([kinetics_test_clip(frames, spec, s, 3) for s in range(3)]), spec)
    for got, want in zip(model.inputs[clip], expected):
        torch.testing.assert_close(got, want)
    view = result.view_scores[3 * clip]
    assert view.start == pytest.approx(indices[0] / 28) and view.end == pytest.approx(indices[-1] / 28)


def test_single_view_is_the_middle_centre_clip(shared):
    config = load_model_config(shared_path(*TINY, "config.yaml"))
    model = RecordingModel(config)
    result = vidact.classify(shared_path(*VIDEO), model, views="1x1", precision="eager", progress=False)
    (view,) = result.view_scores
    clip_seconds = config.input.clip_span / config.input.target_fps
    assert view.spatial_index == 1
    # Centred: as much of the video before the clip as after it (within a frame).
    assert view.start == pytest.approx(10.0 - (view.start + clip_seconds), abs=2 / 28)
    assert tuple(model.inputs[0][1].shape) == (1, 3, 32, 256, 256)


def test_three_crops_match_kinetics_test_clip():
    spec = InputSpec(num_frames=4, sampling_rate=2, test_crop_size=32, train_jitter_scales=(40, 48))
    frames = np.random.default_rng(0).integers(0, 256, size=(4, 50, 70, 3), dtype=np.uint8)
    for crops, spatial in ((3, (0, 1, 2)), (1, (1,))):
        expected = torch.stack([kinetics_test_clip(frames, spec, s, crops) for s in spatial])
        torch.testing.assert_close(_crops(frames, spec, spatial, crops), expected, rtol=0, atol=0)


@pytest.mark.parametrize(
    "duration, window, stride, expected",
    [
        (10.0, 5.0, 5.0, [(0, 5), (5, 10)]),
        (10.0, 4.0, 4.0, [(0, 4), (4, 8), (8, 10)]),
        (10.0, 4.0, 3.0, [(0, 4), (3, 7), (6, 10)]),
        (3.0, 5.0, 5.0, [(0, 3)]),
        (3.0, 1.0, 5.0, [(0, 1)]),  # a stride past the end starts no window there
        (8.0, 1.0, 5.0, [(0, 1), (5, 6)]),
    ],
)
def test_windows_cover_the_video(duration, window, stride, expected):
    np.testing.assert_allclose(_window_bounds(duration, window, stride), expected)


def test_timeline_tiles_the_video_and_windows_average_their_tiles(shared):
    config = load_model_config(shared_path(*TINY, "config.yaml"))
    model = RecordingModel(config)
    result = vidact.classify(shared_path(*VIDEO), model, views="1x1", window=5.0, stride=2.5, precision="eager", progress=False)
    assert [(w.start, w.end) for w in result.windows] == [(0.0, 5.0), (2.5, 7.5), (5.0, 10.0)]
    tiles = result.timeline_clips
    # 10 s at 64 / 30 s per clip: 5 back-to-back clips, the last one moved back to end with the video.
    assert len(tiles) == 5 and len(model.inputs) == 1 + 5
    assert tiles[0].start == 0.0 and tiles[-1].end == pytest.approx(279 / 28)
    assert all(b.start <= a.end + 1 / 28 + 1e-9 for a, b in zip(tiles, tiles[1:]))  # no gap between clips
    for window in result.windows:
        centred = [t for t in tiles if window.start <= (t.start + t.end) / 2 < window.end + 1e-9]
        assert centred
        np.testing.assert_allclose(window.scores, np.mean([t.scores for t in centred], axis=0), atol=1e-7)
        assert window.top_k[0].index == int(np.argmax(window.scores))


def test_predict_prints_top5_of_the_middle_clip(tiny_cli_result, capsys):
    """predict is classify's single middle view: same clip, same top-5."""
    _, out, _ = tiny_cli_result
    view = json.loads((out / "result.json").read_text())["view_scores"][0]
    status = main([
        "predict", str(shared_path(*VIDEO)), "--cfg", str(shared_path(*TINY, "config.yaml")),
        "--weights", str(shared_path(*TINY, "model.pyth")),
    ])
    assert status == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert f"clip {view['start']:.2f}-{view['end']:.2f} s" in lines[0] and "clip 3.9" in lines[0]  # (10 - 64/30) / 2
    ranked = lines[1:]
    assert [line.split(".")[0] for line in ranked] == ["1", "2", "3", "4", "5"]
    scores = [float(line.split()[1]) for line in ranked]
    expected = sorted(view["scores"], reverse=True)[:5]
    np.testing.assert_allclose(scores, expected, atol=6e-4)  # printed with 3 decimals
    assert [line.split(maxsplit=2)[2] for line in ranked] == [
        f"class {i}" for i in np.argsort(-np.array(view["scores"]), kind="stable")[:5]
    ]


@pytest.mark.parametrize("views", ["3x0", "2x10", "ten", "3x10x1"])
def test_bad_views_are_refused(views):
    with pytest.raises(VidactError, match="views"):
        parse_views(views)


def test_detection_models_are_refused_before_building(shared):
    with pytest.raises(VidactError, match="detection model"):
        vidact.classify(
            shared_path(*VIDEO), shared_path("fixtures", "parity", "tiny_ava_slowfast_r101_nln", "config.yaml"),
            weights="unused.pyth", progress=False,
        )


def test_weights_for_a_built_model_are_refused(shared):
    """A built model already has its weights: classify would report weights it never loaded."""
    model = RecordingModel(load_model_config(shared_path(*TINY, "config.yaml")))
    with pytest.raises(VidactError, match="already built.*create_model"):
        vidact.classify(
            shared_path(*VIDEO), model, weights=shared_path(*TINY, "model.pyth"), views="1x1", progress=False,
            device="cpu",
        )


def test_config_without_weights_is_refused(shared, capsys):
    status = main(["classify", str(shared_path(*VIDEO)), "--cfg", str(shared_path(*TINY, "config.yaml"))])
    assert status == 2
    assert "--weights" in capsys.readouterr().err


def test_needed_frames_seek_by_timestamp_at_a_variable_frame_rate(tmp_path):
    """The seek to a far frame goes to its own time: index / average fps lands past it at a variable rate."""
    from test_video_io import make_video

    from vidact.pipeline.classify import _needed_frames

    # 600 frames at 30 fps, then 200 at 3 fps: an average of 9.3 fps over 86.6 s.
    pts = list(range(600)) + [600 + 10 * k for k in range(200)]
    images = [np.full((16, 16, 3), 4 + (i % 80) * 3, np.uint8) for i in range(800)]
    path = make_video(tmp_path / "vfr.mp4", images, rate=30, pts=pts, gop=30)
    needed = [0, 2, 260, 262, 278, 520, 538]
    with VideoReader(path) as reader:
        fps = reader.num_frames / reader.duration
        delivered = [(index, round((float(rgb.mean()) - 4) / 3)) for index, _, rgb in _needed_frames(reader, needed, fps)]
    assert delivered == [(index, index % 80) for index in needed]


def test_weights_of_another_number_of_classes_are_refused_for_scoring(shared, tmp_path, capsys):
    """create_model gives them a fresh random head (for fine-tuning): predict printed its noise
    under real class names, exit 0."""
    config = shared_path(*TINY, "config.yaml").read_text().replace("  NUM_CLASSES: 10", "  NUM_CLASSES: 3")
    (tmp_path / "three.yaml").write_text(config)
    status = main([
        "predict", str(shared_path(*VIDEO)), "--cfg", str(tmp_path / "three.yaml"),
        "--weights", str(shared_path(*TINY, "model.pyth")),
    ])
    assert status == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "model.pyth: the checkpoint's classifier has 10 classes, the config's MODEL.NUM_CLASSES 3" in err[0]


def test_a_gap_between_windows_shows_the_window_before_it():
    from vidact.pipeline.classify import WindowPrediction, _window_at

    windows = [WindowPrediction(0.0, 1.0, np.zeros(2), ()), WindowPrediction(5.0, 6.0, np.zeros(2), ())]
    assert [_window_at(windows, t).start for t in (0.5, 4.0, 5.5, 7.0)] == [0.0, 0.0, 5.0, 5.0]
    with pytest.raises(VidactError, match="window must be a positive"):
        vidact.classify(shared_path(*VIDEO), shared_path(*TINY, "config.yaml"), weights=shared_path(*TINY, "model.pyth"),
                        window=float("inf"), progress=False)


def test_the_rendered_timeline_keeps_a_variable_frame_rate(shared, tmp_path):
    from vidact.pipeline.classify import render_timeline

    times_ms = [100 * k for k in range(20)] + [2000 + 10 * k for k in range(1, 41)]
    source = write_vfr_video(tmp_path / "vfr.mp4", times_ms, 64, 48)
    model = RecordingModel(load_model_config(shared_path(*TINY, "config.yaml")))
    result = vidact.classify(source, model, views="1x1", window=1.0, precision="eager", progress=False)
    render_timeline(result, tmp_path / "timeline.mp4", progress=False)
    with VideoReader(source) as src, VideoReader(tmp_path / "timeline.mp4") as out:
        np.testing.assert_allclose([f.pts_seconds for f in out], [f.pts_seconds for f in src], atol=2e-3)


def test_the_rendered_timeline_holds_a_held_last_frame(shared, tmp_path):
    """A slide or a paused recording ends on a frame shown for seconds: the render shows it as long."""
    from vidact.io.video import VideoWriter
    from vidact.pipeline.classify import render_timeline

    source = tmp_path / "held.mp4"
    with VideoWriter(source, 10, 64, 48) as writer:
        for index in range(20):
            writer.write(np.full((48, 64, 3), index * 10, np.uint8), duration=3.0 if index == 19 else None)
    model = RecordingModel(load_model_config(shared_path(*TINY, "config.yaml")))
    result = vidact.classify(source, model, views="1x1", window=1.0, precision="eager", progress=False)
    render_timeline(result, tmp_path / "timeline.mp4", progress=False)
    with VideoReader(source) as src, VideoReader(tmp_path / "timeline.mp4") as out:
        assert src.duration == pytest.approx(4.9)
        assert out.duration == pytest.approx(src.duration, abs=1e-3)
        assert out.num_frames == src.num_frames == 20


def test_a_video_cut_without_reencoding_is_as_long_as_it_plays(shared, tmp_path):
    """``ffmpeg -ss 1.5 -c copy``: the header still counts the hidden frames of the first GOP (280)."""
    source = write_cut_video(tmp_path / "cut.mp4", shared_path(*VIDEO), 1.5)
    with VideoReader(source) as reader:
        shown = sum(1 for _ in reader)
        assert reader.num_frames == 280 and shown == reader.shown_frames() < 280
    model = RecordingModel(load_model_config(shared_path(*TINY, "config.yaml")))
    result = vidact.classify(source, model, views="1x1", window=5.0, precision="eager", progress=False)
    assert result.num_frames == shown and result.windows[-1].end == pytest.approx(shown / 28, abs=0.04)


def test_a_finished_video_over_http_classifies_like_the_file(shared, tmp_path):
    import functools
    import http.server
    import threading

    import av

    # Remuxed with the index first: Python's http.server cannot serve the byte ranges a trailing index needs.
    with av.open(str(shared_path(*VIDEO))) as original, av.open(str(tmp_path / "clip.mp4"), "w",
                                                                  options={"movflags": "+faststart"}) as copy:
        stream = copy.add_stream_from_template(original.streams.video[0])
        for packet in original.demux(original.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                copy.mux(packet)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    config = load_model_config(shared_path(*TINY, "config.yaml"))
    try:
        url = f"http://127.0.0.1:{server.server_port}/clip.mp4"
        remote = vidact.classify(url, RecordingModel(config), views="1x3", precision="eager", progress=False)
    finally:
        server.shutdown()
    local = vidact.classify(tmp_path / "clip.mp4", RecordingModel(config), views="1x3", precision="eager", progress=False)
    np.testing.assert_array_equal(remote.scores, local.scores)


@pytest.mark.parametrize("option", ["--json", "--render"])
def test_an_output_that_is_the_input_video_is_refused_before_the_work(tmp_path, capsys, option):
    """It was renamed over the source: the video became JSON or the render, exit 0."""
    import shutil

    video = tmp_path / "clip.mp4"
    shutil.copy(shared_path(*VIDEO), video)
    original = video.read_bytes()
    (tmp_path / "link.mp4").symlink_to(video)
    tiny = [str(shared_path(*TINY, "config.yaml")), "--weights", str(shared_path(*TINY, "model.pyth"))]
    for output in (video, tmp_path / "link.mp4"):
        assert main(["classify", str(video), "--cfg", *tiny, "--views", "1x1", option, str(output)]) == 2
        assert f"{option} {output} is the input video" in capsys.readouterr().err
    assert video.read_bytes() == original
    both = tmp_path / "out.file"
    assert main(["classify", str(video), "--cfg", *tiny, "--json", str(both), "--render", str(both)]) == 2
    assert "--json and --render are one file" in capsys.readouterr().err and not both.exists()


def test_a_checkpoint_without_its_classifier_is_refused_for_scoring(shared, tmp_path, capsys):
    """It loaded with the head left random, and predict printed that head's top-5, exit 0."""
    state = torch.load(shared_path(*TINY, "model.pyth"), weights_only=True)
    state["model_state"] = {k: v for k, v in state["model_state"].items() if not k.startswith("head.projection.")}
    torch.save(state, tmp_path / "backbone.pyth")
    status = main(["predict", str(shared_path(*VIDEO)), "--cfg", str(shared_path(*TINY, "config.yaml")),
                   "--weights", str(tmp_path / "backbone.pyth")])
    assert status == 2
    assert "backbone.pyth: the checkpoint has no classifier" in capsys.readouterr().err


def test_scoring_refuses_layers_left_random_but_takes_a_batchnorm_left_out(tmp_path):
    """A conv the checkpoint lacks would score with random weights; a BatchNorm left out stays the
    identity, as in the hub's X3D files (no BatchNorm after the stage-2 shortcut)."""
    from pathlib import Path

    from vidact.api import create_inference_model
    from vidact.errors import VidactError

    def without(case: str, prefix: str) -> Path:
        state = torch.load(shared_path("fixtures", "parity", case, "model.pyth"), weights_only=True)
        state["model_state"] = {k: v for k, v in state["model_state"].items() if not k.startswith(prefix)}
        torch.save(state, tmp_path / f"{case}.pyth")
        return tmp_path / f"{case}.pyth"

    slowfast = without("tiny_k400_slowfast", "s5.pathway0_res0.branch2.a.")
    with pytest.raises(VidactError, match=r"lacks 1 tensors of this model \(s5.pathway0_res0.branch2.a.weight\)"):
        create_inference_model(shared_path(*TINY, "config.yaml"), weights=slowfast)
    x3d = without("tiny_x3d", "s2.pathway0_res0.branch1_bn.")
    model = create_inference_model(shared_path("fixtures", "parity", "tiny_x3d", "config.yaml"), weights=x3d)
    assert sorted(model.load_report.missing) == [f"s2.pathway0_res0.branch1_bn.{leaf}" for leaf in
                                                 ("bias", "running_mean", "running_var", "weight")]
