"""List-file classification dataset: parsing, training augmentation, multi-view test items."""

from __future__ import annotations

import pytest
import torch

from vidact.config.model import InputSpec
from vidact.data.synthetic import make_classification
from vidact.data.video_dataset import VideoClipDataset, read_list_file
from vidact.errors import VidactError

SPEC = InputSpec(num_frames=8, sampling_rate=2, train_crop_size=24, test_crop_size=32,
                 train_jitter_scales=(32, 40), alpha=4, num_pathways=2)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_classification(tmp_path_factory.mktemp("clips"), num_classes=2, videos_per_class=2,
                               val_per_class=1, height=32, width=48, num_frames=24)


def test_list_file_separator_prefix_and_errors(tmp_path):
    listing = tmp_path / "train.csv"
    listing.write_text("a dir/clip one.mp4,3\n\nb.mp4,0\n")
    entries = read_list_file(listing, separator=",", path_prefix="/videos")
    assert [(e.path, e.label) for e in entries] == [("/videos/a dir/clip one.mp4", 3), ("/videos/b.mp4", 0)]
    listing.write_text("ok.mp4 1\nbroken.mp4\n")
    with pytest.raises(VidactError, match=r"train.csv:2: expected 'path label'"):
        read_list_file(listing)
    listing.write_text("\n")
    with pytest.raises(VidactError, match="names no videos"):
        read_list_file(listing)
    with pytest.raises(VidactError, match="list file not found"):
        read_list_file(tmp_path / "missing.csv")
    listing.write_text("\ufeffa.mp4 2\r\nb.mp4 0\r\n", encoding="utf-8")  # saved with a BOM
    assert [(e.path, e.label) for e in read_list_file(listing)] == [("a.mp4", 2), ("b.mp4", 0)]


def test_a_whitespace_separator_splits_at_the_last_whitespace(tmp_path):
    listing = tmp_path / "test.csv"
    listing.write_text("/videos/with space.mp4 7\nclip\t two.mp4\t1\nc.mp4  0\n")
    assert [(e.path, e.label) for e in read_list_file(listing)] == [
        ("/videos/with space.mp4", 7), ("clip\t two.mp4", 1), ("c.mp4", 0)]
    assert [e.path for e in read_list_file(listing, separator="\t")][:2] == ["/videos/with space.mp4", "clip\t two.mp4"]


@pytest.mark.parametrize("label", ["\u00b2", "\u0663", "+3", "-1", "3.0"])
def test_labels_are_ascii_digits(tmp_path, label):
    listing = tmp_path / "test.csv"
    listing.write_text(f"a.mp4 {label}\n", encoding="utf-8")
    with pytest.raises(VidactError, match=r"test.csv:1: expected 'path label' with a 0-based integer label"):
        read_list_file(listing)


def test_missing_videos_are_refused_when_the_dataset_is_built(tmp_path):
    (tmp_path / "here.mp4").touch()  # existence is all that is checked when the list is read
    names = ["here.mp4", "gone1.mp4", "here.mp4", "gone2.mp4", "gone3.mp4", "gone4.mp4"]
    lines = [f"{name} 0" for name in names] + ["http://example.com/clip.mp4 1"]  # URLs are left to FFmpeg
    (tmp_path / "test.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(VidactError) as caught:
        VideoClipDataset(tmp_path / "test.csv", SPEC, "test", path_prefix=str(tmp_path))
    message, listing = str(caught.value), tmp_path / "test.csv"
    assert "\n" not in message and "4 of 7 listed videos not found" in message
    assert f"{listing}:2 ({tmp_path / 'gone1.mp4'}), {listing}:4 (" in message and f"{listing}:5 (" in message
    assert "gone4" not in message and "example.com" not in message and "DATA.PATH_PREFIX" in message
    (tmp_path / "test.csv").write_text("here.mp4 0\nhttp://example.com/clip.mp4 1\n")
    assert VideoClipDataset(tmp_path / "test.csv", SPEC, "test", path_prefix=str(tmp_path)).labels == [0, 1]


def test_training_items_are_augmented_reproducibly_per_epoch(data):
    dataset = VideoClipDataset(data.train_list, SPEC, "train", seed=5)
    item = dataset[1]
    slow, fast = item["inputs"]
    assert fast.shape == (3, 8, 24, 24) and slow.shape == (3, 2, 24, 24)
    assert torch.equal(slow, fast[:, [0, 7]])  # linspace(0, 7, 2) of the fast frames
    assert item["label"] == 0 and item["video_index"] == 1
    again = VideoClipDataset(data.train_list, SPEC, "train", seed=5)[1]
    assert torch.equal(again["inputs"][1], fast)
    dataset.set_epoch(1)
    assert not torch.equal(dataset[1]["inputs"][1], fast)


def test_flip_can_be_disabled(data):
    # Without flips only the crop and the temporal window vary; with the frame fully kept
    # (crop = scale = frame height, no jitter) a flip is the only difference left.
    spec = InputSpec(num_frames=24, sampling_rate=1, train_crop_size=32, train_jitter_scales=(32, 32))
    flipped = [VideoClipDataset(data.train_list, spec, "train", seed=s)[0]["inputs"][0] for s in range(8)]
    plain = [VideoClipDataset(data.train_list, spec, "train", seed=s, random_flip=False)[0]["inputs"][0] for s in range(8)]
    assert any(torch.equal(f, p.flip(-1)) and not torch.equal(f, p) for f, p in zip(flipped, plain))
    assert not any(torch.equal(a.flip(-1), b) for a in plain for b in plain)


def test_test_views_cover_every_clip_and_crop(data):
    dataset = VideoClipDataset(data.test_list, SPEC, "test", num_ensemble_views=2, num_spatial_crops=3)
    assert len(dataset) == 2 * 6 and dataset.views_per_video == 6
    views = [dataset[i] for i in range(6)]
    assert {v["video_index"] for v in views} == {0} and [v["view_index"] for v in views] == list(range(6))
    fast = [v["inputs"][1] for v in views]
    assert all(f.shape == (3, 8, 32, 32) for f in fast)
    # Crops 0/1/2 of one clip differ (48 px wide frames); the two clips differ in time.
    assert not torch.equal(fast[0], fast[1]) and not torch.equal(fast[1], fast[2])
    assert not torch.equal(fast[1], fast[4])
    single = VideoClipDataset(data.test_list, SPEC, "test", num_ensemble_views=1, num_spatial_crops=1)
    assert len(single) == 2 and single[1]["video_index"] == 1 and single[1]["label"] == 1


def test_undecodable_video_names_the_list_file(tmp_path):
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    (tmp_path / "train.csv").write_text(f"{tmp_path / 'bad.mp4'} 0\n")
    dataset = VideoClipDataset(tmp_path / "train.csv", SPEC, "train")
    with pytest.raises(VidactError, match=r"train.csv: video .*bad.mp4 cannot be decoded"):
        dataset[0]


def test_test_views_decode_the_frames_their_clip_names(tmp_path):
    """Each of 10 uniform test clips holds the frames kinetics_clip_indices names for the whole video
    (not those of a video cut at the clip's last frame)."""
    import numpy as np
    from test_video_io import make_video

    from vidact.io.sampling import kinetics_clip_indices

    video = make_video(tmp_path / "numbered.mp4", [np.full((48, 64, 3), 4 + 3 * i, np.uint8) for i in range(80)], rate=30)
    (tmp_path / "list.txt").write_text(f"{video} 0\n")
    spec = InputSpec(num_frames=4, sampling_rate=4, test_crop_size=48)
    dataset = VideoClipDataset(tmp_path / "list.txt", spec, "test", num_ensemble_views=10, num_spatial_crops=1)
    for clip_index in (0, 5, 9):
        frames = dataset._decode(dataset.entries[0], clip_index=clip_index, num_clips=10)
        numbers = [round((float(frame.mean()) - 4) / 3) for frame in frames]
        assert numbers == kinetics_clip_indices(80, 30.0, spec, clip_index, 10).tolist()


def test_test_views_of_a_cut_video_count_the_frames_it_shows(tmp_path):
    """``ffmpeg -ss 1 -c copy``: the header counts 80 frames, 50 play; views are placed over those 50
    (as ``vidact classify`` places them), not over the header's count."""
    import numpy as np
    from conftest import write_cut_video
    from test_video_io import make_video

    from vidact.io.sampling import kinetics_clip_indices
    from vidact.io.video import VideoReader

    video = make_video(tmp_path / "numbered.mp4", [np.full((48, 64, 3), 4 + 3 * i, np.uint8) for i in range(80)], rate=30)
    cut = write_cut_video(tmp_path / "cut.mp4", video, 1.0)
    with VideoReader(cut) as reader:
        assert (reader.num_frames, reader.shown_frames()) == (80, 50)
    (tmp_path / "list.txt").write_text(f"{cut} 0\n")
    spec = InputSpec(num_frames=4, sampling_rate=4, test_crop_size=48)
    dataset = VideoClipDataset(tmp_path / "list.txt", spec, "test", num_ensemble_views=10, num_spatial_crops=1)
    for clip_index in (0, 5, 9):
        frames = dataset._decode(dataset.entries[0], clip_index=clip_index, num_clips=10)
        numbers = [round((float(frame.mean()) - 4) / 3) - 30 for frame in frames]
        assert numbers == kinetics_clip_indices(50, 30.0, spec, clip_index, 10).tolist()


@pytest.mark.parametrize("header", ["right", "too long", "unknown"])
def test_test_views_hold_only_the_frames_their_clip_names(tmp_path, monkeypatch, header):
    """A late view of a long video must not keep every frame up to the clip in memory, whether
    the header's frame count is right, too high (the clip is placed again over the frames the
    stream delivers) or missing."""
    import weakref

    import numpy as np
    from test_video_io import make_video

    from vidact.data import video_dataset
    from vidact.io.sampling import kinetics_clip_indices
    from vidact.io.video import Frame, VideoReader

    class Counted(Frame):  # unlike Frame, weakly referenceable
        pass

    alive, peak = weakref.WeakSet(), [0]

    class CountingReader(VideoReader):
        def shown_frames(self):
            return {"right": super().shown_frames(), "too long": 100, "unknown": None}[header]

        def __iter__(self):
            for frame in super().__iter__():
                counted = Counted(frame.index, frame.pts_seconds, frame.rgb)
                alive.add(counted)
                peak[0] = max(peak[0], len(alive))
                yield counted

    monkeypatch.setattr(video_dataset, "VideoReader", CountingReader)
    video = make_video(tmp_path / "numbered.mp4", [np.full((48, 64, 3), 4 + 3 * i, np.uint8) for i in range(80)], rate=30)
    (tmp_path / "list.txt").write_text(f"{video} 0\n")
    spec = InputSpec(num_frames=4, sampling_rate=4, test_crop_size=48)
    dataset = VideoClipDataset(tmp_path / "list.txt", spec, "test", num_ensemble_views=10, num_spatial_crops=1)
    frames = dataset._decode(dataset.entries[0], clip_index=9, num_clips=10)
    assert [round((float(frame.mean()) - 4) / 3) for frame in frames] == kinetics_clip_indices(80, 30.0, spec, 9, 10).tolist()
    assert peak[0] <= 4 + 1  # the clip's frames and the one just decoded
