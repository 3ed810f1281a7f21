"""AVA dataset: PySlowFast indexing, frames vs. video layouts, box transforms, labels, collate."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vidact.config.model import InputSpec
from vidact.config.run import AvaConfig
from vidact.data.ava_dataset import (
    AvaDataset,
    FrameListSource,
    ava_collate,
    ava_train_transform,
    clip_boxes,
    build_ava_dataset,
    keyframes_from_boxes,
    read_box_lists,
    read_frame_lists,
)
from vidact.data.synthetic_ava import ACTIONS, generate_synthetic_ava
from vidact.data.labels import read_label_map
from vidact.errors import VidactError
from vidact.io.video import VideoWriter

NUM_FRAMES = 150  # 5 s at 30 fps: seconds 900-904, keyframes 902 (frame 60) and 903 (frame 90)
H, W = 32, 48


def _counter_frame(k: int) -> np.ndarray:
    """Frame ``k`` of the counter video: every pixel holds ``k`` (readable after H.264)."""
    return np.full((H, W, 3), k, dtype=np.uint8)


@pytest.fixture(scope="module")
def counter(tmp_path_factory):
    """One video whose frame k has value k, as PNG frames + frame list and as MP4, with annotations."""
    root = tmp_path_factory.mktemp("counter")
    names = []
    for k in range(NUM_FRAMES):
        name = f"vid/vid_{k + 1:06d}.png"
        (root / "frames" / "vid").mkdir(parents=True, exist_ok=True)
        Image.fromarray(_counter_frame(k)).save(root / "frames" / name)
        names.append(name)
    (root / "lists").mkdir()
    lines = ["original_vido_id video_id frame_id path labels"] + [f'vid 0 {k} {n} ""' for k, n in enumerate(names)]
    (root / "lists" / "train.csv").write_text("\n".join(lines) + "\n")
    (root / "lists" / "val.csv").write_text("\n".join(lines) + "\n")
    with VideoWriter(root / "videos" / "vid.mp4", 30, W, H) as writer:
        for k in range(NUM_FRAMES):
            writer.write(_counter_frame(k))
    ann = root / "ann"
    ann.mkdir()
    # Two rows of the same box at 902 merge into one box with labels 3 and 7.
    (ann / "gt.csv").write_text(
        "vid,0902,0.100,0.200,0.500,0.900,3,0\n"
        "vid,0902,0.100,0.200,0.500,0.900,7,0\n"
        "vid,0902,0.600,0.100,0.900,0.800,1,1\n"
        "vid,0903,0.250,0.250,0.750,0.750,80,0\n"
        "vid,0901,0.1,0.1,0.2,0.2,1,0\n"  # outside AVA's valid seconds 902-1798: dropped
    )
    # Detections: below the threshold dropped; an empty action adds a box without labels.
    (ann / "det.csv").write_text(
        "vid,0903,0.000,0.000,0.400,0.400,,0.95\n"
        "vid,0903,0.500,0.500,0.600,0.600,5,0.50\n"
    )
    (ann / "boxes.csv").write_text("vid,0902,0.1,0.2,0.5,0.9,3,1.0\nvid,0903,0.1,0.2,0.5,0.9,3,1.0\n")
    return root


def _ava(root, **changes) -> AvaConfig:
    fields = dict(
        frame_dir=str(root / "frames"), frame_list_dir=str(root / "lists"), annotation_dir=str(root / "ann"),
        train_gt_box_lists=("gt.csv",), train_predict_box_lists=("det.csv",), test_predict_box_lists=("det.csv",),
        detection_score_threshold=0.9,
    )
    fields.update(changes)
    return AvaConfig(**fields)


def _frame_values(clip: torch.Tensor, spec: InputSpec) -> list[int]:
    """Undo the normalisation of a C x T x H x W clip: the counter value of each frame."""
    pixels = clip[0] * spec.std[0] + spec.mean[0]
    return [int(round(v * 255)) for v in pixels.mean(dim=(1, 2)).tolist()]


def test_box_lists_merge_labels_threshold_and_valid_seconds(counter):
    boxes = read_box_lists([(counter / "ann" / "gt.csv", True), (counter / "ann" / "det.csv", False)], 0.9)
    keyframes = keyframes_from_boxes(boxes, ["vid"])
    assert [(k.video_id, k.timestamp) for k in keyframes] == [("vid", 902), ("vid", 903)]
    assert keyframes[0].labels == ((3, 7), (1,))
    np.testing.assert_allclose(keyframes[0].boxes, [[0.1, 0.2, 0.5, 0.9], [0.6, 0.1, 0.9, 0.8]])
    assert keyframes[1].labels == ((80,), ())  # the 0.50 detection is gone, the 0.95 one has no label
    # PySlowFast validates on every 4th second only.
    assert read_box_lists([(counter / "ann" / "gt.csv", True)], 0.9, sample_rate=4) == {}


def test_box_list_saved_with_a_bom_reads_as_without(counter, tmp_path):
    """A BOM (Windows editors) stuck to the first video id dropped that row's keyframe."""
    bom = tmp_path / "gt.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + (counter / "ann" / "gt.csv").read_bytes().replace(b"\n", b"\r\n"))
    plain = read_box_lists([(counter / "ann" / "gt.csv", True)], 0.9)
    assert read_box_lists([(bom, True)], 0.9) == plain
    assert [k.timestamp for k in keyframes_from_boxes(read_box_lists([(bom, True)], 0.9), ["vid"])] == [902, 903]


@pytest.mark.parametrize("num_frames, sampling_rate", [(8, 2), (32, 8)])
def test_clip_frames_follow_pyslowfast_indexing(counter, num_frames, sampling_rate):
    spec = InputSpec(num_frames=num_frames, sampling_rate=sampling_rate, test_crop_size=H)
    ava = _ava(counter, full_test_on_val=True, test_predict_box_lists=("boxes.csv",))
    frames = build_ava_dataset(ava, spec, "val")
    videos = build_ava_dataset(ava, spec, "val", video_dir=counter / "videos")
    for index, second in enumerate((902, 903)):
        centre = (second - 900) * 30
        half = num_frames * sampling_rate // 2
        expected = [min(max(i, 0), NUM_FRAMES - 1) for i in range(centre - half, centre + half, sampling_rate)]
        assert _frame_values(frames[index].inputs[0], spec) == expected
        # H.264 keeps a flat frame's value within a step or two; neighbours differ by sampling_rate.
        decoded = _frame_values(videos[index].inputs[0], spec)
        assert np.abs(np.array(decoded) - expected).max() <= 1
    if num_frames * sampling_rate > NUM_FRAMES:  # the clip was clamped at both ends
        assert expected[0] == 0 and expected[-1] == NUM_FRAMES - 1


def test_time_offset_shifts_the_keyframe(counter):
    spec = InputSpec(num_frames=2, sampling_rate=2, test_crop_size=H)
    keyframe = keyframes_from_boxes(read_box_lists([(counter / "ann" / "gt.csv", True)], 0.9), ["vid"])[:1]
    frames = read_frame_lists([counter / "lists" / "val.csv"], counter / "frames")
    shifted = AvaDataset(keyframe, FrameListSource(frames, time_offset=901), spec, split="test")
    assert _frame_values(shifted[0].inputs[0], spec) == [28, 30]  # second 902 is 1 s into a cut starting at 901


def test_test_transform_scales_boxes_and_makes_multi_hot_labels(counter):
    spec = InputSpec(num_frames=4, sampling_rate=2, test_crop_size=16)
    train = build_ava_dataset(_ava(counter), spec, "train", num_classes=80)
    sample = AvaDataset(train.keyframes, train.source, spec, split="test")[0]
    assert sample.inputs[0].shape == (3, 4, 16, 24)  # short side 32 -> 16, long 48 -> 24, no crop
    expected = np.array([[0.1, 0.2, 0.5, 0.9], [0.6, 0.1, 0.9, 0.8]]) * [W, H, W, H] * 0.5
    np.testing.assert_allclose(sample.boxes.numpy(), np.minimum(expected, [23, 15, 23, 15]), atol=1e-5)
    assert sample.labels.shape == (2, 80)
    assert sample.labels[0].nonzero().flatten().tolist() == [2, 6]  # labels 3 and 7
    assert sample.labels[1].nonzero().flatten().tolist() == [0]
    assert (sample.video_id, sample.timestamp) == ("vid", 902)
    np.testing.assert_allclose(sample.ori_boxes.numpy(), [[0.1, 0.2, 0.5, 0.9], [0.6, 0.1, 0.9, 0.8]], atol=1e-6)


def test_val_split_takes_the_centre_square_as_pyslowfast(counter):
    """PySlowFast's Ava crops val clips (spatial_shift_crop_list at 1), not test clips; boxes shift with it."""
    spec = InputSpec(num_frames=4, sampling_rate=2, test_crop_size=16)
    train = build_ava_dataset(_ava(counter), spec, "train", num_classes=80)
    test = AvaDataset(train.keyframes, train.source, spec, split="test")[0]
    val = AvaDataset(train.keyframes, train.source, spec, split="val")[0]
    assert val.inputs[0].shape == (3, 4, 16, 16)  # 16x24 scaled, then x from ceil((24 - 16) / 2) = 4
    torch.testing.assert_close(val.inputs[0], test.inputs[0][..., 4:20])
    expected = np.array([[0.1, 0.2, 0.5, 0.9], [0.6, 0.1, 0.9, 0.8]]) * [W, H, W, H] * 0.5 - [4, 0, 4, 0]
    np.testing.assert_allclose(val.boxes.numpy(), np.clip(expected, 0, 15), atol=1e-5)


def test_train_flip_follows_random_flip():
    spec = InputSpec(num_frames=2, train_crop_size=48, train_jitter_scales=(48, 48))
    frames = np.zeros((2, 48, 48, 3), dtype=np.uint8)
    box = np.array([[4.0, 8.0, 14.0, 40.0]])  # left half; no scaling or cropping at these sizes
    def lefts(random_flip: bool) -> list[float]:
        return [float(ava_train_transform(frames, box, spec, torch.Generator().manual_seed(seed), random_flip)[1][0, 0])
                for seed in range(12)]
    assert set(lefts(False)) == {4.0}
    assert set(lefts(True)) == {4.0, 48 - 14.0 - 1}


def test_train_augmentation_moves_boxes_with_the_pixels():
    spec = InputSpec(num_frames=2, train_crop_size=48, train_jitter_scales=(64, 80))
    frames = np.zeros((2, 64, 96, 3), dtype=np.uint8)
    frames[:, 16:48, 10:30] = 255  # the box x 10..30, y 16..48 (PySlowFast's inclusive-ish pixel boxes)
    box = np.array([[10.0, 16.0, 29.0, 47.0]])
    flips = 0
    for seed in range(12):
        out, moved = ava_train_transform(frames, box, spec, torch.Generator().manual_seed(seed))
        assert out.shape[1:3] == (48, 48)
        x1, y1, x2, y2 = clip_boxes(moved, 48, 48)[0]
        if x2 - x1 < 6 or y2 - y1 < 6:
            continue  # the crop cut the box away
        inside = out[0, int(np.ceil(y1)) + 1 : int(y2) - 1, int(np.ceil(x1)) + 1 : int(x2) - 1]
        assert inside.min() > 200, seed
        outside = out[0].copy()
        outside[max(int(y1) - 2, 0) : int(y2) + 3, max(int(x1) - 2, 0) : int(x2) + 3] = 0
        assert outside.max() < 50, seed
        flips += int(x1 > 48 / 2)
    assert flips > 0  # some draws flipped the box to the right half


def test_frames_and_videos_give_identical_samples(tmp_path):
    root = generate_synthetic_ava(
        tmp_path, num_train_videos=1, num_val_videos=1, seconds=5, width=48, height=32, frame_format="png"
    )
    ava = AvaConfig(
        frame_dir=str(root / "frames"), frame_list_dir=str(root / "frame_lists"), annotation_dir=str(root / "annotations"),
        full_test_on_val=True,
    )
    assert len(read_label_map(root / "annotations" / "ava_action_list_v2.2.pbtxt")) == len(ACTIONS)
    spec = InputSpec(num_frames=4, sampling_rate=4, test_crop_size=24, train_crop_size=24, train_jitter_scales=(24, 30))
    for split in ("train", "val"):
        frames = build_ava_dataset(ava, spec, split, num_classes=4)
        videos = build_ava_dataset(ava, spec, split, num_classes=4, video_dir=root / "videos")
        assert len(frames) == len(videos) == 2  # keyframes 902 and 903
        for a, b in zip(frames, videos):  # PNG frames were decoded from the same MP4: exact
            assert torch.equal(a.inputs[0], b.inputs[0]) and torch.equal(a.boxes, b.boxes)
            assert torch.equal(a.labels, b.labels) and a.labels.sum(1).eq(1).all()


def test_collate_prefixes_batch_index_and_slowfast_pathways(counter):
    spec = InputSpec(num_frames=8, sampling_rate=2, test_crop_size=H, alpha=4, num_pathways=2)
    dataset = build_ava_dataset(_ava(counter), spec, "train", num_classes=80)
    dataset = AvaDataset(dataset.keyframes, dataset.source, spec, split="test")
    batch = ava_collate([dataset[0], dataset[1]])
    assert [x.shape for x in batch["inputs"]] == [(2, 3, 2, H, W), (2, 3, 8, H, W)]
    assert batch["boxes"].shape == (4, 5) and batch["boxes"][:, 0].tolist() == [0, 0, 1, 1]
    assert batch["video_ids"] == ["vid"] * 4 and batch["timestamps"].tolist() == [902, 902, 903, 903]
    assert batch["labels"].shape == (4, 80)


def test_bad_input_raises_one_line_errors(counter, tmp_path):
    spec = InputSpec(num_frames=2, sampling_rate=2, test_crop_size=H)
    with pytest.raises(VidactError, match="in the train box lists is outside 1..10; set MODEL.NUM_CLASSES"):
        build_ava_dataset(_ava(counter), spec, "train", num_classes=10)  # label 80
    (tmp_path / "ann").mkdir()  # ids from 0, as a Kinetics-style map: NUM_CLASSES is no fix
    (tmp_path / "ann" / "zero.csv").write_text("vid,0902,0.100,0.200,0.500,0.900,0,0\n")
    zero_based = _ava(counter, annotation_dir=str(tmp_path / "ann"), train_gt_box_lists=("zero.csv",),
                      train_predict_box_lists=())
    with pytest.raises(VidactError, match="action id 0 .* AVA action ids count from 1"):
        build_ava_dataset(zero_based, spec, "train", num_classes=80)
    with pytest.raises(VidactError, match="no video for vid"):
        build_ava_dataset(_ava(counter), spec, "train", video_dir=tmp_path)[0]
    bad = tmp_path / "bad.csv"
    bad.write_text("header\nvid 0 frame.png\n")
    with pytest.raises(VidactError, match="bad.csv:2: expected 5"):
        read_frame_lists([bad], tmp_path)


def test_validation_without_keyframes_on_every_4th_second_says_why(counter):
    spec = InputSpec(num_frames=2, sampling_rate=2, test_crop_size=H)
    # Boxes at 902 and 903 only: periodic validation (seconds divisible by 4) finds none.
    with pytest.raises(VidactError, match=r"at a second divisible by 4, .*set AVA.FULL_TEST_ON_VAL True"):
        build_ava_dataset(_ava(counter, test_predict_box_lists=("boxes.csv",)), spec, "val")
    full = build_ava_dataset(_ava(counter, full_test_on_val=True, test_predict_box_lists=("boxes.csv",)), spec, "val")
    assert [k.timestamp for k in full.keyframes] == [902, 903]
    # No boxes at any second: the subsampling is not to blame.
    with pytest.raises(VidactError, match="give no keyframe with boxes; check the box lists"):
        build_ava_dataset(_ava(counter, detection_score_threshold=1.0), spec, "val")


def test_a_keyframe_near_the_end_of_a_cut_video_repeats_its_last_frame(tmp_path):
    """``ffmpeg -ss 1 -c copy`` keeps 80 frames in the header and shows 50: the clip is clamped to
    those 50, as PySlowFast's get_sequence clamps (it failed, "frames did not decode")."""
    from conftest import write_cut_video
    from test_video_io import make_video

    from vidact.data.ava_dataset import VideoFileSource
    from vidact.io.sampling import centered_clip_indices_at_time

    video = make_video(tmp_path / "numbered.mp4", [np.full((32, 48, 3), 4 + 3 * i, np.uint8) for i in range(80)], rate=30)
    (tmp_path / "videos").mkdir()
    write_cut_video(tmp_path / "videos" / "vid.mp4", video, 1.0)
    spec = InputSpec(num_frames=4, sampling_rate=4, target_fps=30)
    clip = VideoFileSource(tmp_path / "videos", time_offset=0).clip("vid", 1.6, spec)
    numbers = [round((float(frame.mean()) - 4) / 3) - 30 for frame in clip]
    expected = centered_clip_indices_at_time(1.6, spec, 30.0, 50).tolist()
    assert numbers == expected and expected[-1] == 49
