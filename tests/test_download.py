"""Downloads (clipedu.download) against a local HTTP server: resumed, checked, and clear when they fail.

No test touches the network: a ThreadingHTTPServer on 127.0.0.1 serves in-memory
payloads (with Range support, or a cut connection, or an HTML page) and records
every request it saw.
"""

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

from clipedu import download as dl
from clipedu import weights, weights_file
from clipedu.weights_file import WeightsError

ROOT = Path(__file__).resolve().parents[1]
PAYLOAD = os.urandom(200_000)
HASH = hashlib.sha256(PAYLOAD).hexdigest()


@dataclass
class Entry:
    body: bytes
    content_type: str = "application/octet-stream"
    cut_at: int | None = None  # send the full Content-Length, then only this many bytes, then close
    cuts: int = 1  # how many responses are cut
    ignore_range: bool = False  # answer 200 with the whole body even to a Range request


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        state = self.server.state
        rng = self.headers.get("Range")
        state.requests.append((self.path, rng))
        entry = state.files.get(self.path)
        if entry is None:
            self.send_error(404)
            return
        body, start = entry.body, 0
        if rng and not entry.ignore_range:
            start = int(rng.removeprefix("bytes=").rstrip("-"))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", entry.content_type)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if entry.cut_at is not None and entry.cuts > 0:
            entry.cuts -= 1
            self.wfile.write(body[start:entry.cut_at])
            self.close_connection = True  # HTTP/1.0: the socket closes after this response
            return
        self.wfile.write(body[start:])

    def log_message(self, *args):
        pass


class Server:
    def __init__(self):
        self.files: dict[str, Entry] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.state = self
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def serve(self, path: str, body: bytes = PAYLOAD, **kw) -> str:
        self.files[path] = Entry(body, **kw)
        return self.url + path


@pytest.fixture
def server():
    s = Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def get(url, dest, sha=HASH, **kw):
    return dl.download(url, dest, sha, progress=False, timeout=5, **kw)


# ------------------------------------------------------------------ download()


def test_a_good_download_lands_in_place_with_no_part_left(server, tmp_path):
    dest = tmp_path / "sub" / "w.pt"
    path = dl.download(server.serve("/w.pt"), dest, HASH.upper(), timeout=5)  # with the progress bar
    assert path == dest and dest.read_bytes() == PAYLOAD
    assert not dl.part_path(dest).exists() and dl.part_path(dest).name == "w.pt.part"
    assert server.requests == [("/w.pt", None)]


def test_a_wrong_hash_names_both_and_leaves_nothing(server, tmp_path):
    other = hashlib.sha256(b"another file").hexdigest()
    with pytest.raises(WeightsError) as err:
        get(server.serve("/w.pt"), tmp_path / "w.pt", other)
    assert other in str(err.value) and HASH in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_a_cut_connection_keeps_the_part_and_the_next_call_resumes(server, tmp_path):
    half = len(PAYLOAD) // 2
    url, dest = server.serve("/w.pt", cut_at=half), tmp_path / "w.pt"
    with pytest.raises(WeightsError, match="cut short after 100,000 of 200,000 bytes") as err:
        get(url, dest)
    assert "call again" in str(err.value) and str(dl.part_path(dest)) in str(err.value)
    assert dl.part_path(dest).read_bytes() == PAYLOAD[:half] and not dest.exists()
    assert get(url, dest).read_bytes() == PAYLOAD
    assert server.requests == [("/w.pt", None), ("/w.pt", f"bytes={half}-")]
    assert not dl.part_path(dest).exists()


def test_a_server_that_ignores_range_is_read_from_the_start(server, tmp_path):
    dest = tmp_path / "w.pt"
    dl.part_path(dest).write_bytes(b"stale bytes from some other attempt")
    assert get(server.serve("/w.pt", ignore_range=True), dest).read_bytes() == PAYLOAD
    assert server.requests == [("/w.pt", "bytes=35-")]  # asked to resume, got 200 and the whole file


@pytest.mark.parametrize("part, requests", [
    (PAYLOAD, [("/w.pt", f"bytes={len(PAYLOAD)}-")]),  # complete, only the rename was missing
    (PAYLOAD + b"junk", [("/w.pt", f"bytes={len(PAYLOAD) + 4}-"), ("/w.pt", None)]),  # too long: start over
])
def test_a_part_at_or_past_the_end_is_finished_or_started_over(server, tmp_path, part, requests):
    dest = tmp_path / "w.pt"
    dl.part_path(dest).write_bytes(part)
    assert get(server.serve("/w.pt"), dest).read_bytes() == PAYLOAD  # the server answers 416 to the Range
    assert server.requests == requests


def test_a_file_already_in_place_is_returned_without_a_request(server, tmp_path):
    dest = tmp_path / "w.pt"
    dest.write_bytes(PAYLOAD)
    dl.part_path(dest).write_bytes(b"left over")
    assert get(server.serve("/w.pt"), dest) == dest
    assert server.requests == [] and not dl.part_path(dest).exists()


def test_a_file_in_place_with_a_wrong_hash_is_named_then_replaced(server, tmp_path):
    dest = tmp_path / "w.pt"
    dest.write_bytes(b"damaged")
    with pytest.warns(UserWarning, match=f"{hashlib.sha256(b'damaged').hexdigest()}, not {HASH}"):
        assert get(server.serve("/w.pt"), dest).read_bytes() == PAYLOAD


def assert_says_how_to_place_it(message: str, dest: Path) -> None:
    assert f"save it as {dest}" in message and "CLIPEDU_WEIGHTS" in message and HASH in message


def test_a_404_says_what_to_do(server, tmp_path):
    with pytest.raises(WeightsError, match="HTTP 404") as err:
        get(server.url + "/missing.pt", tmp_path / "w.pt")
    assert "Check the address" in str(err.value)
    assert_says_how_to_place_it(str(err.value), tmp_path / "w.pt")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("content_type, body", [
    ("text/html; charset=utf-8", b"<html><body>Sign in to continue</body></html>"),
    ("application/octet-stream", b"\n  <!DOCTYPE html><html><title>Error</title></html>"),  # mislabelled
])
def test_an_html_page_is_not_taken_for_weights(server, tmp_path, content_type, body):
    with pytest.raises(WeightsError, match="web page|HTML page") as err:
        get(server.serve("/w.pt", body, content_type=content_type), tmp_path / "w.pt")
    assert_says_how_to_place_it(str(err.value), tmp_path / "w.pt")
    assert list(tmp_path.iterdir()) == []


def test_no_network_says_how_to_place_the_file_by_hand(tmp_path):
    with socket.socket() as s:  # a port nothing listens on once this socket closes
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(WeightsError, match="cannot reach") as err:
        get(f"http://127.0.0.1:{port}/w.pt", tmp_path / "w.pt")
    assert_says_how_to_place_it(str(err.value), tmp_path / "w.pt")


# ------------------------------------------------------------------ OpenAI's files, OpenCLIP's


@pytest.fixture
def vit_b32_is_payload(monkeypatch):
    monkeypatch.setitem(weights_file.OPENAI_SHA256, "ViT-B/32", HASH)


def test_download_openai_uses_openai_layout_and_its_cache(server, tmp_path, vit_b32_is_payload):
    server.serve(f"/clip/{HASH}/ViT-B-32.pt")
    path = dl.download_openai("ViT-B/32", tmp_path, base_url=server.url + "/clip/", progress=False)
    assert path == tmp_path / "ViT-B-32.pt" and path.read_bytes() == PAYLOAD
    assert dl.download_openai("ViT-B/32", tmp_path, base_url=server.url + "/clip", progress=False) == path
    assert server.requests == [(f"/clip/{HASH}/ViT-B-32.pt", None)]  # the second call asked nothing


def test_download_openai_finds_what_clip_load_saved(server, tmp_path, monkeypatch, vit_b32_is_payload):
    monkeypatch.setenv("HOME", str(tmp_path))
    saved = tmp_path / ".cache" / "clip" / "ViT-B-32.pt"  # clip.load's download_root and file name
    saved.parent.mkdir(parents=True)
    saved.write_bytes(PAYLOAD)
    assert dl.download_openai("ViT-B/32", base_url=server.url, progress=False) == saved
    assert server.requests == []


def test_download_openai_asks_openais_published_addresses(tmp_path, monkeypatch):
    """The URLs of openai/CLIP's _MODELS table (clip/clip.py), copied from there."""
    monkeypatch.setenv("HOME", str(tmp_path))
    asked = []
    monkeypatch.setattr(dl, "download", lambda url, dest, sha, progress: asked.append((url, dest, sha)))
    dl.download_openai("RN50")
    dl.download_openai("ViT-L/14@336px")
    base = "https://openaipublic.azureedge.net/clip/models"
    assert [url for url, _, _ in asked] == [
        f"{base}/afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762/RN50.pt",
        f"{base}/3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02/ViT-L-14-336px.pt"]
    assert asked[1][1] == tmp_path / ".cache" / "clip" / "ViT-L-14-336px.pt"
    assert asked[1][2] == "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02"
    assert {n: weights_file.openai_filename(n) for n in weights_file.OPENAI_SHA256} == weights.OPENAI_FILENAMES


def test_download_openai_lists_the_known_names():
    with pytest.raises(WeightsError, match="ViT-B/64") as err:
        dl.download_openai("ViT-B/64")
    assert all(name in str(err.value) for name in weights_file.OPENAI_SHA256)


def test_download_openclip_goes_through_huggingface_hub(tmp_path, monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError, RemoteEntryNotFoundError

    calls = []

    def fake(repo_id, filename, cache_dir=None):
        calls.append((repo_id, filename, cache_dir))
        if repo_id == "org/none":
            raise LocalEntryNotFoundError("offline and not in the cache")
        if filename == "open_clip_config.json" and repo_id == "org/bare":
            raise RemoteEntryNotFoundError("404: no such file", response=SimpleNamespace(headers={}, request=None))
        return str(tmp_path / repo_id / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake)
    path = dl.download_openclip("hf-hub:timm/vit_base_patch32_clip_224.openai", cache_dir=tmp_path)
    assert path == tmp_path / "timm/vit_base_patch32_clip_224.openai/open_clip_model.safetensors"
    assert calls == [("timm/vit_base_patch32_clip_224.openai", "open_clip_model.safetensors", tmp_path),
                     ("timm/vit_base_patch32_clip_224.openai", "open_clip_config.json", tmp_path)]
    with pytest.warns(UserWarning, match="open_clip_config.json"):
        dl.download_openclip("org/bare", "open_clip_pytorch_model.bin")
    with pytest.raises(WeightsError, match="LocalEntryNotFoundError: offline.*CLIPEDU_WEIGHTS"):
        dl.download_openclip("org/none")


def test_download_openclip_without_huggingface_hub_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # `import huggingface_hub` now fails
    with pytest.raises(WeightsError, match=r'pip install "clipedu\[hub\]"'):
        dl.download_openclip("timm/vit_base_patch32_clip_224.openai")


# ------------------------------------------------------------------ python -m clipedu.download, make weights


def test_the_command_downloads_and_prints_the_path(server, tmp_path, capsys, vit_b32_is_payload):
    server.serve(f"/{HASH}/ViT-B-32.pt")
    dl.main(["ViT-B/32", "--cache-dir", str(tmp_path), "--base-url", server.url, "--quiet"])
    assert capsys.readouterr().out.strip() == str(tmp_path / "ViT-B-32.pt")
    assert (tmp_path / "ViT-B-32.pt").read_bytes() == PAYLOAD
    with pytest.raises(SystemExit, match="error: .*HTTP 404"):
        dl.main(["ViT-B/16", "--cache-dir", str(tmp_path), "--base-url", server.url, "--quiet"])


@pytest.mark.slow  # a fresh interpreter imports torch (through clipedu.weights_file): about 5 s
def test_python_m_clipedu_download_fails_clearly(tmp_path):
    out = subprocess.run([sys.executable, "-m", "clipedu.download", "ViT-B/64", "--cache-dir", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and out.stdout == ""
    assert "no OpenAI CLIP release is called 'ViT-B/64'" in out.stderr and "RN50x64" in out.stderr


def test_make_weights_runs_the_command():
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    dry = subprocess.run(["make", "-n", "-o", ".venv/.installed", "weights", "MODEL=ViT-L/14@336px"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert '.venv/bin/python -m clipedu.download "ViT-L/14@336px"' in dry
    default = subprocess.run(["make", "-n", "-o", ".venv/.installed", "weights"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
    assert '-m clipedu.download "ViT-B/32"' in default
