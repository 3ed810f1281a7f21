import pytest

from vidact.fileutil import atomic_open


def test_atomic_open_replaces_on_success(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with atomic_open(target) as f:
        f.write("new")
        assert target.read_text() == "old"  # not visible until the block ends
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_open_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_open(target) as f:
            f.write("partial")
            raise RuntimeError("boom")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []  # nor the folder made for it


def test_a_failed_output_removes_only_the_empty_folders_it_made(tmp_path):
    from vidact.fileutil import atomic_paths

    out = tmp_path / "runs" / "clip"  # vidact detect --out runs/clip, then a full disk
    with pytest.raises(OSError):
        with atomic_paths({"csv": out / "a.csv", "video": out / "a.mp4"}) as tmp:
            tmp["csv"].write_text("rows")
            raise OSError(28, "No space left on device")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "other.txt").write_text("kept")
    with pytest.raises(RuntimeError):
        with atomic_open(out / "a.csv"):
            raise RuntimeError("boom")
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["other.txt"]


def test_atomic_output_gets_the_umask_mode(tmp_path):
    import os

    target = tmp_path / "shared.txt"
    umask = os.umask(0o022)
    try:
        with atomic_open(target) as f:
            f.write("x")
    finally:
        os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o644


def test_atomic_paths_rename_all_or_none(tmp_path):
    from vidact.fileutil import atomic_paths

    targets = {"a": tmp_path / "a.csv", "b": tmp_path / "b.json"}
    targets["a"].write_text("old a")
    with pytest.raises(OSError):
        with atomic_paths(targets) as tmp:
            tmp["a"].write_text("new a")
            raise OSError(28, "No space left on device")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv"] and targets["a"].read_text() == "old a"
    with atomic_paths(targets) as tmp:
        tmp["a"].write_text("new a")
        tmp["b"].write_text("new b")
        assert not targets["b"].exists()
    assert targets["a"].read_text() == "new a" and targets["b"].read_text() == "new b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.json"]


def test_atomic_text_is_utf8_whatever_the_locale(tmp_path):
    """Outputs hold video names: under the C locale (ASCII) a Cyrillic id must not fail the write."""
    import subprocess
    import sys
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "src"
    code = ("import sys; from vidact.fileutil import atomic_open\n"
            "with atomic_open(sys.argv[1]) as f: f.write('caf\\u00e9_\\u0438\\u043d\\u0442')")
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0",
           "PYTHONPATH": str(src)}
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "id.csv")], check=True, env=env)
    assert (tmp_path / "id.csv").read_bytes() == "café_инт".encode("utf-8")


def test_an_output_named_like_a_folder_is_refused_before_writing(tmp_path):
    from vidact.errors import VidactError

    (tmp_path / "out.csv").mkdir()
    with pytest.raises(VidactError, match="out.csv: is a folder"):
        with atomic_open(tmp_path / "out.csv") as f:
            f.write("never")
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_a_symlinked_output_updates_the_target_and_keeps_the_link(tmp_path):
    target = tmp_path / "real.txt"
    target.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    with atomic_open(link) as f:
        f.write("new")
    assert link.is_symlink() and link.resolve() == target
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.txt", "real.txt"]


def test_a_device_output_is_written_into_not_replaced(tmp_path):
    import os
    import stat

    from vidact.fileutil import atomic_path, check_writable_file

    check_writable_file(os.devnull)
    with atomic_path(os.devnull) as p:
        assert str(p) == os.devnull
    with atomic_open(os.devnull) as f:
        f.write("discarded")
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)  # still the device, not a regular file


def test_a_fifo_output_is_written_into_not_replaced(tmp_path):
    import os
    import stat
    import threading

    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()), daemon=True)
    reader.start()
    with atomic_open(fifo) as f:
        f.write("streamed")
    reader.join(timeout=10)
    assert got == ["streamed"]
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["out.fifo"]


def test_an_error_on_the_temporary_file_names_the_output(tmp_path):
    from vidact.fileutil import atomic_path

    target = tmp_path / "x.mp4"
    with pytest.raises(OSError) as info:
        with atomic_path(target) as tmp:
            raise OSError(28, "No space left on device", str(tmp))
    assert info.value.filename == str(target) and info.value.errno == 28
    assert "part" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_a_temporary_file_that_cannot_be_made_is_named_as_the_output(tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    with pytest.raises(OSError) as caught:
        with atomic_open(tmp_path / "afile" / "out.csv"):
            pass
    assert caught.value.filename == str(tmp_path / "afile" / "out.csv")


def test_same_file_through_links_and_file_urls_and_not_streams(tmp_path):
    import os

    from vidact.fileutil import same_file

    video = tmp_path / "in.mp4"
    video.write_bytes(b"x")
    (tmp_path / "link.mp4").symlink_to(video)
    os.link(video, tmp_path / "hard.mp4")
    assert same_file(video, tmp_path / "link.mp4") and same_file(video, tmp_path / "hard.mp4")
    assert same_file(f"file://{video}", video)  # VideoReader reads file:// as the file
    assert not same_file(f"rtsp://host{video}", video) and not same_file(video, tmp_path / "other.mp4")
    (tmp_path / "loop.mp4").symlink_to(tmp_path / "loop.mp4")
    assert not same_file(tmp_path / "loop.mp4", video)


def test_only_plain_files_count_as_rewritable(tmp_path):
    import os

    from vidact.fileutil import is_regular_file_path

    os.mkfifo(tmp_path / "fifo")
    assert is_regular_file_path(tmp_path / "new.json") and not is_regular_file_path(tmp_path / "fifo")
    assert not is_regular_file_path("/dev/stdout") and not is_regular_file_path("/proc/self/fd/1")
