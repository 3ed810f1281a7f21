"""The download cache against a local HTTP server serving real checkpoint files."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from conftest import shared_path

from vidact.errors import VidactError
from vidact.paths import weights_dir
from vidact.weights.checkpoint import read_checkpoint
from vidact.weights.download import cache_path, download

PARITY = ("fixtures", "parity", "tiny_k400_slowfast")
FILES = {"SLOWFAST_TINY.pyth": "model.pyth", "SLOWFAST_TINY.pkl": "model_c2.pkl"}


class Server:
    """A threaded HTTP server on 127.0.0.1 serving ``files`` by name; a folder in the URL changes
    what it sends: ``/drop/NAME`` half of NAME under its whole Content-Length, ``/cut/NAME`` half
    and no Content-Length, ``/short/NAME`` all of it under half its length (urllib reads that
    half), ``/nolen/NAME`` all of it and no Content-Length, ``/v2/NAME`` another checkpoint under
    the same file name."""

    def __init__(self):
        self.files = {name: shared_path(*PARITY, source).read_bytes() for name, source in FILES.items()}
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                mode, _, name = self.path.lstrip("/").rpartition("/")
                body = server.files.get(name)
                if body is not None and mode == "v2":
                    body = server.files[next(other for other in FILES if other != name)]
                if body is None or mode not in ("", "v2", "drop", "cut", "short", "nolen"):
                    self.send_error(404)
                    return
                half = len(body) // 2
                self.send_response(200)
                if mode not in ("cut", "nolen"):
                    self.send_header("Content-Length", str(half if mode == "short" else len(body)))
                if self.path.endswith(".html"):
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                self.end_headers()
                self.wfile.write(body[:half] if mode in ("drop", "cut") else body)
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = Server()
    yield srv
    srv.close()


def cache_files() -> list[Path]:
    folder = weights_dir()
    return sorted(folder.iterdir()) if folder.exists() else []


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("name", sorted(FILES))
def test_download_into_cache_with_progress(server, name, monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    path = download(f"{server.url}/{name}")
    assert path == cache_path(f"{server.url}/{name}") and path.parent == weights_dir() and path.name.endswith(name)
    assert path.read_bytes() == server.files[name]
    assert cache_files() == [path]
    assert "100%" in terminal.getvalue()  # tqdm reached the Content-Length
    checkpoint = read_checkpoint(path)
    assert checkpoint.format == ("pyslowfast" if name.endswith(".pyth") else "caffe2")


def test_no_progress_bar_off_a_terminal(server, capsys):
    """`vidact download M 2> log`: carriage returns and block characters would fill the log."""
    download(f"{server.url}/SLOWFAST_TINY.pyth")
    assert capsys.readouterr().err == ""


def test_cached_file_is_reused_without_a_request(server):
    url = f"{server.url}/SLOWFAST_TINY.pyth"
    first = download(url, progress=False)
    assert len(server.requests) == 1
    assert download(url, progress=False) == first
    assert len(server.requests) == 1


def test_urls_ending_in_one_name_are_two_files_readable_by_others(server):
    import os
    import stat

    first = download(f"{server.url}/SLOWFAST_TINY.pyth", progress=False)
    second = download(f"{server.url}/v2/SLOWFAST_TINY.pyth", progress=False)
    assert first != second and second.read_bytes() == server.files["SLOWFAST_TINY.pkl"]
    assert first.read_bytes() == server.files["SLOWFAST_TINY.pyth"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(first.stat().st_mode) == 0o666 & ~umask  # not mkstemp's private 0600


def test_connection_dropped_half_way_leaves_nothing(server):
    url = f"{server.url}/drop/SLOWFAST_TINY.pkl"
    with pytest.raises(VidactError) as excinfo:
        download(url, progress=False)
    message = str(excinfo.value)
    assert url in message and str(cache_path(url)) in message and "\n" not in message
    assert cache_files() == []


def test_sha256_is_checked(server, tmp_path):
    url = f"{server.url}/SLOWFAST_TINY.pyth"
    with pytest.raises(VidactError, match="sha256"):
        download(url, sha256="0" * 64, progress=False)
    assert cache_files() == []
    good = hashlib.sha256(server.files["SLOWFAST_TINY.pyth"]).hexdigest()
    dest = tmp_path / "pinned.pyth"
    assert download(url, dest, sha256=good.upper(), progress=False) == dest
    assert torch.equal(read_checkpoint(dest).state_dict["head.projection.bias"], read_checkpoint(shared_path(*PARITY, "model.pyth")).state_dict["head.projection.bias"])


def test_http_error_names_url_and_cache_path(server):
    url = f"{server.url}/MISSING.pyth"
    with pytest.raises(VidactError, match="HTTP 404") as excinfo:
        download(url, progress=False)
    assert str(cache_path(url)) in str(excinfo.value)
    assert cache_files() == []


def test_offline_error_names_url_and_cache_path():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/SLOWFAST_8x8_R50.pkl"
    with pytest.raises(VidactError) as excinfo:
        download(url, progress=False)
    message = str(excinfo.value)
    assert url in message and str(cache_path(url)) in message and "\n" not in message
    assert cache_files() == []


def test_a_broken_cached_zoo_download_says_to_delete_it(tmp_path, monkeypatch):
    """A body cut short without a Content-Length is only found when loading; the cache would serve it again."""
    import vidact
    import vidact.api

    broken = tmp_path / "X3D_XS.pyth"
    broken.write_bytes(shared_path(*PARITY, "model.pyth").read_bytes()[:1000])
    monkeypatch.setattr(vidact.api, "fetch_weights", lambda entry, progress=True: broken)
    with pytest.raises(VidactError, match="cached download of https://.*: delete the file and run again") as excinfo:
        vidact.create_model("x3d_xs", weights="default")
    assert str(broken) in str(excinfo.value) and "\n" not in str(excinfo.value)


def test_a_web_page_or_an_empty_body_is_no_checkpoint(server):
    """A login or error page served with status 200, or nothing at all, is not cached."""
    server.files["login.html"] = b"<html><body>Sign in</body></html>"
    server.files["empty.pyth"] = b""
    with pytest.raises(VidactError, match="sent a web page, not a checkpoint"):
        download(f"{server.url}/login.html", progress=False)
    with pytest.raises(VidactError, match="sent an empty file"):
        download(f"{server.url}/empty.pyth", progress=False)
    assert cache_files() == []


def test_download_of_several_models_goes_on_past_a_failure(monkeypatch, capsys):
    import vidact.api
    from vidact.cli.main import main

    def fetch(entry, progress=True):
        if entry.name == "x3d_s":
            raise VidactError("https://host/x3d_s.pyth: HTTP 404 Not Found; download it by other means")
        return f"/cache/{entry.name}.pyth"

    monkeypatch.setattr(vidact.api, "fetch_weights", fetch)
    assert main(["download", "x3d_xs", "x3d_s", "x3d_m"]) == 2
    out, err = capsys.readouterr()
    assert "x3d_xs: /cache/x3d_xs.pyth" in out and "x3d_m: /cache/x3d_m.pyth" in out
    assert "x3d_s: https://host/x3d_s.pyth: HTTP 404" in err and "1 of 3 downloads failed" in err


def test_a_misspelt_model_name_gets_the_close_ones():
    from vidact.weights.zoo import get_entry

    with pytest.raises(VidactError, match="known models include: x3d_m"):
        get_entry("x3d-m")


# --- incomplete downloads, full disks, killed downloads ----------------------------------------


def serve_checkpoints(server, tmp_path) -> None:
    """Add a safetensors file and a legacy (pre-zip) torch file to what ``server`` serves."""
    from safetensors.torch import save_file

    state = {"head.projection.weight": torch.randn(7, 5), "head.projection.bias": torch.arange(7)}
    save_file(state, tmp_path / "tiny.safetensors")
    torch.save({"model_state": state, "epoch": 3}, tmp_path / "legacy.pyth", _use_new_zipfile_serialization=False)
    for name in ("tiny.safetensors", "legacy.pyth"):
        server.files[name] = (tmp_path / name).read_bytes()


def test_whole_checkpoints_of_each_format_are_cached_with_or_without_a_length(server, tmp_path):
    serve_checkpoints(server, tmp_path)
    for name in ("SLOWFAST_TINY.pyth", "SLOWFAST_TINY.pkl", "tiny.safetensors", "legacy.pyth"):
        for mode in ("", "nolen/"):
            path = download(f"{server.url}/{mode}{name}", progress=False)
            assert path.read_bytes() == server.files[name]
            assert read_checkpoint(path).state_dict


@pytest.mark.parametrize("mode", ["cut", "short"])
@pytest.mark.parametrize("name", ["SLOWFAST_TINY.pyth", "SLOWFAST_TINY.pkl", "tiny.safetensors"])
def test_a_body_cut_short_unnoticed_by_the_length_check_is_not_cached(server, tmp_path, name, mode):
    """No Content-Length and an early close, or a Content-Length smaller than the body."""
    serve_checkpoints(server, tmp_path)
    url = f"{server.url}/{mode}/{name}"
    with pytest.raises(VidactError, match="incomplete or not a checkpoint.*run again") as excinfo:
        download(url, progress=False)
    assert url in str(excinfo.value) and "\n" not in str(excinfo.value)
    assert cache_files() == []


def test_a_login_page_served_as_a_checkpoint_is_not_cached(server):
    server.files["x3d_m.pyth"] = b"<!DOCTYPE html><html><body>Please sign in</body></html>"
    with pytest.raises(VidactError, match="incomplete or not a checkpoint"):
        download(f"{server.url}/x3d_m.pyth", progress=False)
    assert cache_files() == []


@pytest.mark.parametrize("name", sorted(FILES))
def test_a_broken_cached_file_is_deleted_and_fetched_again(server, name, capsys):
    url = f"{server.url}/{name}"
    cached = cache_path(url)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(server.files[name][:100_000])  # what an unchecked cut-short download left
    assert download(url, progress=False) == cached
    assert cached.read_bytes() == server.files[name] and server.requests == [f"/{name}"]
    err = capsys.readouterr().err.strip()
    assert str(cached) in err and "again" in err and len(err.splitlines()) == 1
    assert download(url, progress=False) == cached and len(server.requests) == 1  # a whole one is kept


def test_a_pinned_sha256_vouches_for_a_file_of_any_format(server):
    """The pin is the stronger check: a file matching it is kept, even in a format not sniffed."""
    server.files["notes.bin"] = b"weights in a format vidact cannot sniff"
    url = f"{server.url}/notes.bin"
    pin = hashlib.sha256(server.files["notes.bin"]).hexdigest()
    path = download(url, sha256=pin, progress=False)
    assert download(url, sha256=pin, progress=False) == path and len(server.requests) == 1
    with pytest.raises(VidactError, match="incomplete or not a checkpoint"):
        download(url, progress=False)  # unpinned, the same bytes go through the format check


def test_a_broken_cached_file_is_fetched_again_under_a_pin_but_a_whole_other_one_is_refused(server):
    url = f"{server.url}/SLOWFAST_TINY.pyth"
    pin = hashlib.sha256(server.files["SLOWFAST_TINY.pyth"]).hexdigest()
    cached = cache_path(url)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(server.files["SLOWFAST_TINY.pyth"][:1000])
    assert download(url, sha256=pin, progress=False).read_bytes() == server.files["SLOWFAST_TINY.pyth"]
    cached.write_bytes(server.files["SLOWFAST_TINY.pkl"])  # a whole checkpoint, not the pinned one: the user's to judge
    with pytest.raises(VidactError, match="does not match the pinned sha256.*delete it"):
        download(url, sha256=pin, progress=False)
    assert cached.read_bytes() == server.files["SLOWFAST_TINY.pkl"]


class FullDisk(io.FileIO):
    """A file on a disk with no room left: every write of bytes to it fails."""

    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def fill_the_disk(monkeypatch, buffer_size: int, only: str = "") -> None:
    """Make the downloads whose destination name contains ``only`` write to a full disk; a
    ``buffer_size`` above the file's size leaves the failure to the flush when the file closes."""
    import vidact.weights.download as module

    def open_on_full_disk(path, mode="r", *args, **kwargs):
        if only not in os.fspath(path) or "w" not in mode:
            return open(path, mode, *args, **kwargs)
        return io.BufferedWriter(FullDisk(path, "w"), buffer_size=buffer_size)

    monkeypatch.setattr(module, "open", open_on_full_disk, raising=False)


@pytest.mark.parametrize("buffer_size", [4096, 64 << 20], ids=["on-write", "on-close"])
def test_a_full_disk_names_the_destination_and_the_url(server, monkeypatch, buffer_size):
    url = f"{server.url}/SLOWFAST_TINY.pyth"
    fill_the_disk(monkeypatch, buffer_size)
    with pytest.raises(VidactError) as excinfo:
        download(url, progress=False)
    message = str(excinfo.value)
    assert message.startswith(f"{cache_path(url)}: ") and url in message and ".part" not in message
    assert "No space left on device" in message and "VIDACT_HOME" in message and "\n" not in message
    assert cache_files() == []


def test_a_cache_that_cannot_be_a_folder_says_to_move_it(server, monkeypatch, tmp_path):
    """No advice about disk space when the disk has room but VIDACT_HOME is a file."""
    home = tmp_path / "home"
    home.write_text("not a folder")
    monkeypatch.setenv("VIDACT_HOME", str(home))
    url = f"{server.url}/SLOWFAST_TINY.pyth"
    with pytest.raises(VidactError) as excinfo:
        download(url, progress=False)
    message = str(excinfo.value)
    assert message.startswith(f"{cache_path(url)}: ") and "Not a directory" in message and "\n" not in message
    assert "set VIDACT_HOME to a writable folder" in message and "disk space" not in message


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS])
def test_a_cache_folder_not_writable_says_to_move_it(server, monkeypatch, code):
    import vidact.weights.download as module

    def open_read_only(path, mode="r", *args, **kwargs):
        if "w" in mode:
            raise OSError(code, os.strerror(code), os.fspath(path))
        return open(path, mode, *args, **kwargs)

    monkeypatch.setattr(module, "open", open_read_only, raising=False)
    with pytest.raises(VidactError) as excinfo:
        download(f"{server.url}/SLOWFAST_TINY.pyth", progress=False)
    message = str(excinfo.value)
    assert os.strerror(code) in message and "set VIDACT_HOME to a writable folder" in message and "disk space" not in message
    assert cache_files() == []


def test_download_of_several_models_goes_on_past_a_full_disk(server, monkeypatch, capsys):
    import dataclasses

    from vidact.cli.main import main
    from vidact.weights.zoo import ZOO

    for name in ("x3d_xs", "x3d_s"):
        server.files[f"{name}.pyth"] = server.files["SLOWFAST_TINY.pyth"]
        monkeypatch.setitem(ZOO, name, dataclasses.replace(ZOO[name], url=f"{server.url}/{name}.pyth"))
    fill_the_disk(monkeypatch, 64 << 20, only="x3d_xs")
    assert main(["download", "x3d_xs", "x3d_s"]) == 2
    out, err = capsys.readouterr()
    assert [p.name for p in cache_files()] == [ZOO["x3d_s"].filename]
    assert f"x3d_s: {weights_dir() / ZOO['x3d_s'].filename}" in out
    assert f"x3d_xs: {weights_dir() / ZOO['x3d_xs'].filename}: cannot save" in err
    assert err.strip().splitlines()[-1] == "vidact download: 1 of 2 downloads failed"


def test_leftovers_of_a_killed_download_are_removed_when_it_starts_again(server):
    url = f"{server.url}/SLOWFAST_TINY.pyth"
    dest = cache_path(url)
    dest.parent.mkdir(parents=True)
    stale, live = dest.parent / f".{dest.stem}.k1ll3d_x.part.pyth", dest.parent / f".{dest.stem}.runn1ng_.part.pyth"
    other = dest.parent / f".{dest.stem}.v2.k1ll3d_x.part.pyth"  # of another destination, whose name goes on
    for path in (stale, live, other):
        path.write_bytes(b"unfinished")
    two_hours_ago = time.time() - 7200
    for path in (stale, other):
        os.utime(path, (two_hours_ago, two_hours_ago))
    download(url, progress=False)
    assert not stale.exists() and live.exists() and other.exists()


def test_models_lists_a_broken_cached_file_as_such(server, capsys):
    from vidact.cli.main import main
    from vidact.weights.zoo import ZOO

    weights_dir().mkdir(parents=True)
    (weights_dir() / ZOO["x3d_xs"].filename).write_bytes(server.files["SLOWFAST_TINY.pyth"])
    (weights_dir() / ZOO["x3d_s"].filename).write_bytes(server.files["SLOWFAST_TINY.pyth"][:1000])
    assert main(["models"]) == 0
    rows = {line.split()[0]: line.split()[-1] for line in capsys.readouterr().out.splitlines()}
    assert rows["x3d_xs"] == "yes" and rows["x3d_s"] == "broken" and rows["x3d_m"] == "no"
