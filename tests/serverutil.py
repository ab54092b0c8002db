"""Running `textclass serve` in a subprocess on a free loopback port, for the server tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


_ISSUED: set[int] = set()


def free_port() -> int:
    """A loopback port free now and never handed out before in this process.

    The kernel may give the same free port to two binds in a row; servers started together (test_family_paths starts
    six) would then race for it, and one's /health would be answered by another's process (seen once in CI).
    """
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _ISSUED:
            _ISSUED.add(port)
            return port


class LiveServer:
    """Starts the process at once; `wait_healthy` blocks until /health answers 200 (several can start together)."""

    def __init__(self, model: Path, log_path: Path, *args: str, launcher: Sequence[str] = ()):
        """`launcher`: a command the server runs under (bench/server_profile.py: py-spy record ... --)."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
        cmd = [*launcher, sys.executable, "-m", "textclass", "serve", "--model", str(model), "--port", str(self.port)]
        cmd += args
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        # One pooled client for the tests: creating an httpx client per request costs ~0.1 s (SSL context).
        self.http = httpx.Client(base_url=self.url, timeout=120, limits=httpx.Limits(max_connections=128))

    def wait_healthy(self, startup_timeout: float = 180.0) -> LiveServer:
        deadline = time.monotonic() + startup_timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if self.http.get("/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server not healthy after {startup_timeout} s:\n{self.log()}")
            time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def terminate(self) -> None:
        """SIGTERM, as a process manager stops a server."""
        self.process.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 60.0) -> int:
        self.http.close()
        if self.process.poll() is None:
            self.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


def without_fast_path(app):
    """The same app's middleware stack built without FastPath (its routes then reach FastAPI)."""
    from textclass.server.fastpath import FastPath

    kept = [m for m in app.user_middleware if m.cls is not FastPath]
    assert len(kept) == len(app.user_middleware) - 1
    original, app.user_middleware = app.user_middleware, kept
    try:
        return app.build_middleware_stack()
    finally:
        app.user_middleware = original
