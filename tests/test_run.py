"""``vidact run --cfg``: PySlowFast configs run unmodified; the Kinetics demo."""

from __future__ import annotations

import pickle
from fractions import Fraction

import numpy as np
import pytest
from conftest import shared_path

from vidact.api import create_model
from vidact.cli.main import main
from vidact.config.run import CheckpointConfig, DemoConfig, RunConfig
from vidact.io.video import VideoReader, VideoWriter
from vidact.engine.checkpoint import demo_checkpoint
from vidact.pipeline.kinetics_demo import predicted_classes
from vidact.weights.caffe2 import pytorch_to_c2_names

VIDEO = ("data", "videos", "mmaction2_demo.mp4")  # 340x256, 28 fps
TINY = ("fixtures", "parity", "tiny_k400_slowfast")


def cut_video(path, num_frames: int):
    """The first ``num_frames`` frames of the shared demo video, as a new file."""
    with VideoReader(shared_path(*VIDEO)) as reader, VideoWriter(
        path, reader.fps, reader.width, reader.height, sample_aspect_ratio=reader.sample_aspect_ratio
    ) as writer:
        for frame in reader:
            if frame.index == num_frames:
                break
            writer.write(frame.rgb)
    return path


@pytest.fixture(scope="module")
def c2_checkpoint(tmp_path_factory):
    """A random-weight SlowFast 8x8 R50 as the Caffe2 .pkl c2.yaml expects (latin-1 pickle of blobs)."""
    model = create_model(shared_path("configs", "pyslowfast", "fork", "c2.yaml"))
    state = model.state_dict()
    blobs = {c2: state[name].numpy() for name, c2 in pytorch_to_c2_names(state).items()}
    path = tmp_path_factory.mktemp("c2") / "SLOWFAST_8x8_R50.pkl"
    with open(path, "wb") as f:
        pickle.dump({"blobs": blobs}, f, protocol=2)
    return path


def test_run_c2_yaml_writes_the_whole_video(tmp_path, monkeypatch, c2_checkpoint, capsys):
    """The fork's c2.yaml with only the video and checkpoint paths overridden."""
    monkeypatch.chdir(tmp_path)  # OUTPUT_DIR is "."; no checkpoints/ folder here
    # 40 frames: less than one 64-frame task, which PySlowFast would drop; one full-size forward.
    source = cut_video(tmp_path / "in.mp4", 40)
    status = main([
        "run", "--cfg", str(shared_path("configs", "pyslowfast", "fork", "c2.yaml")), "--no-progress", "--opts",
        "DEMO.INPUT_VIDEO", str(source), "DEMO.OUTPUT_FILE", str(tmp_path / "out.mp4"),
        "DEMO.LABEL_FILE_PATH", str(shared_path("configs", "pyslowfast", "fork", "class_ids.json")),
        "TRAIN.CHECKPOINT_FILE_PATH", str(c2_checkpoint),
    ])
    assert status == 0
    assert str(c2_checkpoint) in capsys.readouterr().out
    with VideoReader(source) as src, VideoReader(tmp_path / "out.mp4") as out:
        assert (out.num_frames, out.fps, out.width, out.height) == (40, src.fps, src.width, src.height)
        assert out.sample_aspect_ratio == src.sample_aspect_ratio == Fraction(64, 51)  # not drawn squashed


def test_kinetics_demo_tasks_buffer_and_drawing(tmp_path, monkeypatch):
    """Tiny model: 70 frames with a 20-frame buffer are two tasks; labels drawn around each keyframe only."""
    monkeypatch.chdir(tmp_path)
    source = cut_video(tmp_path / "in.mp4", 70)
    status = main([
        "run", "--cfg", str(shared_path(*TINY, "config.yaml")), "--no-progress", "--opts",
        "DEMO.INPUT_VIDEO", str(source), "DEMO.OUTPUT_FILE", "out.mp4", "DEMO.LABEL_FILE_PATH", "",
        "TRAIN.CHECKPOINT_FILE_PATH", str(shared_path(*TINY, "model.pyth")),
        "DEMO.VIS_MODE", "top-k", "DEMO.BUFFER_SIZE", "20",
    ])
    assert status == 0
    with VideoReader(source) as src, VideoReader(tmp_path / "out.mp4") as out:
        assert (out.num_frames, out.fps, out.width, out.height) == (70, src.fps, src.width, src.height)
        source_frames = [f.rgb.astype(int) for f in src]
        output_frames = [f.rgb.astype(int) for f in out]

    def labelled(index: int) -> bool:
        return np.abs(output_frames[index][:12, :40] - source_frames[index][:12, :40]).mean() > 20

    # Task 1: frames 0-63, keyframe 32, CLIP_VIS_SIZE 10 -> 22..42 drawn.
    # Task 2: frames 44-63 buffered (not rewritten) + 64-69 new; its keyframe is new frame
    # 32 - 20 = 12, so new frames 2..22 are in range: of the six that exist, 66-69.
    drawn = [i for i in range(70) if labelled(i)]
    assert drawn == [*range(22, 43), *range(66, 70)]


def test_predicted_classes_follow_vis_mode():
    names = ("walk", "run", "sit")
    scores = np.array([0.5, 0.35, 0.15])
    thres = DemoConfig(common_class_names=("walk",), label_file="labels.json")
    assert predicted_classes(scores, names, thres) == [(1, 0.35)]  # "walk" needs 0.7 as a common class
    no_labels = DemoConfig(common_class_names=("walk",))  # common names only count with a label file
    assert predicted_classes(scores, names, no_labels) == [(0, 0.5), (1, 0.35)]
    top2 = DemoConfig(vis_mode="top-k", top_k=2)
    assert predicted_classes(scores, names, top2) == [(0, 0.5), (1, 0.35)]


def test_demo_checkpoint_order(tmp_path):
    train, test = tmp_path / "train.pkl", tmp_path / "test.pyth"
    for path in (train, test):
        path.write_bytes(b"")
    run = RunConfig(output_dir=str(tmp_path), checkpoint=CheckpointConfig(train_path=str(train), test_path=str(test)))
    assert demo_checkpoint(run) == test
    run = run.replace(checkpoint=CheckpointConfig(train_path=str(train)))
    assert demo_checkpoint(run) == train
    (tmp_path / "checkpoints").mkdir()
    for epoch in (2, 10):
        (tmp_path / "checkpoints" / f"checkpoint_epoch_{epoch:05d}.pyth").write_bytes(b"")
    assert demo_checkpoint(run) == tmp_path / "checkpoints" / "checkpoint_epoch_00010.pyth"
    assert demo_checkpoint(RunConfig(output_dir=str(tmp_path / "none"))) is None


def test_run_refuses_a_config_that_enables_nothing(tmp_path, capsys):
    # Bare KEY VALUE pairs, as PySlowFast's run_net.py takes them.
    status = main(["run", "--cfg", str(shared_path("configs", "pyslowfast", "fork", "c2.yaml")), "DEMO.ENABLE", "False"])
    assert status == 2
    assert "ENABLE" in capsys.readouterr().err


def test_demo_without_weights_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    status = main([
        "run", "--cfg", str(shared_path(*TINY, "config.yaml")), "--opts", "TRAIN.CHECKPOINT_FILE_PATH", "",
        "DEMO.INPUT_VIDEO", str(shared_path(*VIDEO)), "DEMO.OUTPUT_FILE", "out.mp4",
    ])
    assert status == 2
    assert "CHECKPOINT_FILE_PATH" in capsys.readouterr().err
    assert not (tmp_path / "out.mp4").exists()


@pytest.mark.parametrize(
    "opts, key",
    [
        (["DEMO.VIS_MODE", "top-k", "TENSORBOARD.MODEL_VIS.TOPK_PREDS", "0"], "TENSORBOARD.MODEL_VIS.TOPK_PREDS 0"),
        (["DEMO.CLIP_VIS_SIZE", "-5"], "DEMO.CLIP_VIS_SIZE -5"),
    ],
)
def test_kinetics_demo_refuses_settings_that_draw_nothing(tmp_path, monkeypatch, capsys, opts, key):
    monkeypatch.chdir(tmp_path)
    source = cut_video(tmp_path / "in.mp4", 10)
    status = main([
        "run", "--cfg", str(shared_path(*TINY, "config.yaml")), "--no-progress", "--opts",
        "DEMO.INPUT_VIDEO", str(source), "DEMO.OUTPUT_FILE", "out.mp4", "DEMO.LABEL_FILE_PATH", "",
        "TRAIN.CHECKPOINT_FILE_PATH", str(shared_path(*TINY, "model.pyth")), *opts,
    ])
    err = capsys.readouterr().err
    assert status == 2
    assert key in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out.mp4").exists()


AVA_TINY = ("fixtures", "parity", "tiny_ava_slowfast_r101_nln")


@pytest.mark.parametrize("fixture", [TINY, AVA_TINY], ids=["kinetics", "ava"])
def test_demo_refuses_to_overwrite_its_input(tmp_path, monkeypatch, capsys, fixture):
    monkeypatch.chdir(tmp_path)
    source = cut_video(tmp_path / "in.mp4", 10)
    before = source.read_bytes()
    # Person boxes for the AVA demo, so that it would run without a detector.
    (tmp_path / "boxes.csv").write_text("".join(f"in,{900 + s},0.1,0.1,0.5,0.9,,0.95\n" for s in range(2)))
    status = main([
        "run", "--cfg", str(shared_path(*fixture, "config.yaml")), "--no-progress", "--opts",
        "DEMO.ENABLE", "True", "DEMO.INPUT_VIDEO", "in.mp4", "DEMO.OUTPUT_FILE", str(source),
        "DEMO.LABEL_FILE_PATH", "", "DEMO.PREDS_BOXES", "boxes.csv",
        "TRAIN.CHECKPOINT_FILE_PATH", str(shared_path(*fixture, "model.pyth")),
    ])
    err = capsys.readouterr().err
    assert status == 2
    assert "DEMO.OUTPUT_FILE" in err and len(err.strip().splitlines()) == 1
    assert source.read_bytes() == before


@pytest.mark.parametrize("fixture", [TINY, AVA_TINY], ids=["kinetics", "ava"])
def test_demo_output_that_cannot_be_written_is_refused_first(tmp_path, monkeypatch, capsys, fixture):
    """Checked before the demo (and any training before it) runs, and named as the user wrote it."""
    monkeypatch.chdir(tmp_path)
    cut_video(tmp_path / "in.mp4", 10)
    (tmp_path / "afile").write_text("not a folder")
    (tmp_path / "boxes.csv").write_text("".join(f"in,{900 + s},0.1,0.1,0.5,0.9,,0.95\n" for s in range(2)))
    status = main([
        "run", "--cfg", str(shared_path(*fixture, "config.yaml")), "--no-progress", "--opts",
        "DEMO.ENABLE", "True", "DEMO.INPUT_VIDEO", "in.mp4", "DEMO.OUTPUT_FILE", "afile/out.mp4",
        "DEMO.LABEL_FILE_PATH", "", "DEMO.PREDS_BOXES", "boxes.csv",
        "TRAIN.CHECKPOINT_FILE_PATH", str(shared_path(*fixture, "model.pyth")),
    ])
    err = capsys.readouterr().err
    assert status == 2
    assert "afile: cannot write output there (afile is not a folder)" in err
    assert ".part" not in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "boxes.csv", "in.mp4"]


def test_a_model_given_to_the_kinetics_demo_needs_no_checkpoint_file(tmp_path):
    """The config's TRAIN.CHECKPOINT_FILE_PATH (upstream's name of a zoo file) is not read then."""
    import vidact
    from vidact.config.run_io import load_run_config
    from vidact.pipeline.kinetics_demo import run_kinetics_demo

    source = cut_video(tmp_path / "in.mp4", 40)
    run = load_run_config(shared_path(*TINY, "config.yaml"), [
        "DEMO.ENABLE", "True", "DEMO.INPUT_VIDEO", str(source), "DEMO.OUTPUT_FILE", str(tmp_path / "out.mp4"),
        "DEMO.LABEL_FILE_PATH", "", "TRAIN.CHECKPOINT_FILE_PATH", str(tmp_path / "SLOWFAST_8x8_R50.pkl")])
    model = vidact.create_model(shared_path(*TINY, "config.yaml"), weights=shared_path(*TINY, "model.pyth"))
    assert run_kinetics_demo(run, model=model, device="cpu", progress=False).num_frames == 40
