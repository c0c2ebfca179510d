"""Dataset fetch from presigned URLs: streamed, size-capped, retried, named after the URL path."""

from __future__ import annotations

import http.server
import threading

import pytest

from godminer.engine.fetch import FetchError, fetch, filename_from_url, resolve_dataset


class Handler(http.server.BaseHTTPRequestHandler):
    failures_left = 0
    hits = 0

    def do_GET(self):
        Handler.hits += 1
        if self.path.startswith("/flaky") and Handler.failures_left > 0:
            Handler.failures_left -= 1
            self.send_response(503)
            self.end_headers()
            return
        if self.path.startswith("/missing"):
            self.send_response(404)
            self.end_headers()
            return
        body = b"x" * (5000 if self.path.startswith("/big") else 100)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    Handler.hits = 0
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_filename_comes_from_the_url_path():
    url = "https://s3.example/bucket/7d3f9a0c1b2e4f56_train_data.json?X-Amz-Signature=abc&X-Amz-Expires=604800"
    assert filename_from_url(url) == "7d3f9a0c1b2e4f56_train_data.json"
    assert filename_from_url("https://x/../../etc/passwd") == "passwd"
    assert filename_from_url("https://x/") == "dataset.json"


def test_download_and_retry(server, tmp_path):
    Handler.failures_left = 2
    sleeps = []
    path = fetch(f"{server}/flaky/a_train_data.json?sig=1", tmp_path, sleep=sleeps.append, backoff_s=1)
    assert path.name == "a_train_data.json" and path.read_bytes() == b"x" * 100
    assert sleeps == [1, 2]
    assert not list(tmp_path.glob("*.part"))


def test_not_found_is_permanent_and_leaves_nothing(server, tmp_path):
    with pytest.raises(FetchError) as info:
        fetch(f"{server}/missing/b.json?sig=secret", tmp_path, sleep=lambda s: None)
    assert info.value.permanent and "secret" not in str(info.value)
    assert Handler.hits == 1 and not list(tmp_path.iterdir())


def test_size_cap(server, tmp_path):
    with pytest.raises(FetchError) as info:
        fetch(f"{server}/big/c.json", tmp_path, max_bytes=1000, sleep=lambda s: None)
    assert info.value.permanent and not list(tmp_path.iterdir())


def test_local_paths(tmp_path):
    (tmp_path / "d.json").write_text("[]")
    assert resolve_dataset(str(tmp_path / "d.json"), tmp_path / "out") == tmp_path / "d.json"
    assert resolve_dataset(f"file://{tmp_path / 'd.json'}", tmp_path / "out") == tmp_path / "d.json"
    with pytest.raises(FetchError):
        resolve_dataset(str(tmp_path / "nope.json"), tmp_path)
