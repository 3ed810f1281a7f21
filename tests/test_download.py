"""The download cache against a local HTTP server serving real checkpoint files."""

from __future__ import annotations

import hashlib
import socket
import threading
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
    """A threaded HTTP server on 127.0.0.1; ``/drop/NAME`` sends half of NAME and closes,
    ``/v2/NAME`` sends other bytes under the same file name."""

    def __init__(self):
        self.files = {name: shared_path(*PARITY, source).read_bytes() for name, source in FILES.items()}
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                drop, other = self.path.startswith("/drop/"), self.path.startswith("/v2/")
                body = server.files.get(self.path.removeprefix("/drop/").removeprefix("/v2/").lstrip("/"))
                if body is not None and other:
                    body = body[::-1]
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                if self.path.endswith(".html"):
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if drop else body)
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


@pytest.mark.parametrize("name", sorted(FILES))
def test_download_into_cache_with_progress(server, name, capsys):
    path = download(f"{server.url}/{name}")
    assert path == cache_path(f"{server.url}/{name}") and path.parent == weights_dir() and path.name.endswith(name)
    assert path.read_bytes() == server.files[name]
    assert cache_files() == [path]
    assert "100%" in capsys.readouterr().err  # tqdm reached the Content-Length
    checkpoint = read_checkpoint(path)
    assert checkpoint.format == ("pyslowfast" if name.endswith(".pyth") else "caffe2")


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
    assert first != second and second.read_bytes() == server.files["SLOWFAST_TINY.pyth"][::-1]
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
    assert "x3d_s: https://host/x3d_s.pyth: HTTP 404" in err and "1 of 3 failed" in err


def test_a_misspelt_model_name_gets_the_close_ones():
    from vidact.weights.zoo import get_entry

    with pytest.raises(VidactError, match="known models include: x3d_m"):
        get_entry("x3d-m")
