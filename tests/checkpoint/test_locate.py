"""A --model value that names no local folder is answered in under 2 s, in one line that says what it was taken for:
a path (the folder does not exist), a bare name (the bundled models are listed), or a hub id (not cached, and the
hub unreachable or without it); never minutes of retries, never a fetch without a word."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import ROOT
from textclass import Classifier
from textclass.errors import CheckpointError


def textclass(*args: str, cwd, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess, float]:
    full = dict(os.environ, PYTHONPATH=str(ROOT / "src"), **(env or {}))
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "textclass", *args], capture_output=True, text=True, env=full,
                          cwd=cwd, timeout=60)  # fmt: skip
    return done, time.perf_counter() - started


def one_line(done: subprocess.CompletedProcess) -> str:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


@pytest.fixture
def unreachable_hub(monkeypatch, tmp_path):
    """A hub endpoint on a loopback port nothing listens on, and an empty hub cache."""
    import socket

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    env = {"HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "0"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.mark.parametrize("value", ["./x", "/no/such/folder", "~/no-such-textclass-folder", "runs/a/b", "bad name/x"])
def test_a_path_is_a_folder_that_does_not_exist(value, tmp_path, unreachable_hub):
    done, _ = textclass("classify", "hi", "--model", value, cwd=tmp_path, env=unreachable_hub)
    line = one_line(done)
    assert f"model folder {value} does not exist" in line and "hub" not in line.split(";")[0], line


def test_org_name_says_the_folder_and_the_hub_once(tmp_path, unreachable_hub):
    (tmp_path / "checkpoints").mkdir()  # beside a checkpoints/ folder, checkpoints/run1 is a path
    done, _ = textclass("classify", "hi", "--model", "checkpoints/run1", cwd=tmp_path, env=unreachable_hub)
    assert "model folder checkpoints/run1 does not exist" in one_line(done) and "cannot be reached" not in done.stderr
    for command in (["classify", "hi"], ["inspect"], ["tokenize", "hi"], ["batch", "-i", "in.jsonl", "-o", "o.jsonl"]):
        (tmp_path / "in.jsonl").write_text('{"text": "hi"}\n')
        done, _ = textclass(*command, "--model", "run-owner/run1", cwd=tmp_path, env=unreachable_hub)
        line = one_line(done)
        assert "model folder run-owner/run1 does not exist" in line, line
        assert "as a hub id it is not in the local hub cache and the Hugging Face hub cannot be reached" in line
        assert line.count("hub id") == 1, line


@pytest.mark.parametrize("value", ["./x", "runs/a/b", "sentiment-xx", "run-owner/run1"])
def test_answered_in_under_two_seconds(value, unreachable_hub, tmp_path, monkeypatch):
    """Timed in this process (an interpreter's start would be most of a subprocess's time on a busy machine)."""
    monkeypatch.chdir(tmp_path)
    started = time.perf_counter()
    with pytest.raises(CheckpointError):
        Classifier.from_pretrained(value)
    assert time.perf_counter() - started < 2


def test_a_bare_name_lists_the_bundled_models(tmp_path):
    done, _ = textclass("classify", "hi", "--model", "sentiment-xx", cwd=tmp_path)
    assert "'sentiment-xx' is neither a folder here nor a bundled model (bundled: sentiment-en)" in one_line(done)


def test_a_hub_that_answers_without_the_model(monkeypatch, tmp_path):
    """The hub is reachable (a local stand-in answering 404 to everything): fetching is said, and its refusal too."""

    class NotFound(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server API
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"error": "Repository not found"}')

        do_HEAD = do_GET  # noqa: N815

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {"HF_ENDPOINT": f"http://127.0.0.1:{server.server_port}", "HF_HOME": str(tmp_path / "hf"),
               "HF_HUB_OFFLINE": "0"}  # fmt: skip
        done, seconds = textclass("classify", "hi", "--model", "run-owner/run1", cwd=tmp_path, env=env)
    finally:
        server.shutdown()
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and lines[0] == "textclass: fetching run-owner/run1 from the Hugging Face hub (once)"
    assert lines[-1].startswith("error: model folder run-owner/run1 does not exist") and len(lines) == 2, lines
    assert "the Hugging Face hub could not give it" in lines[-1] and seconds < 10, seconds
