"""`textclass serve --engine ray`: its bad-input rules without a cluster, the Serve config it prints, and (slow) a
2-replica deployment on a local 127.0.0.1 cluster: 100 concurrent requests equal to the Python API, a replica
killed with SIGKILL replaced while every later request is answered, and a clean stop that leaves no Ray process."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from conftest import CORPUS
from serverutil import ROOT, free_port
from textclass.classifier import Classifier
from textclass.cli.app import app as cli_app

pytest.importorskip("ray.serve", reason="needs Ray Serve: pip install 'textclass[ray]'")
REPLICA_TITLE = "ray::ServeReplica:textclass:textclass"


@pytest.fixture(autouse=True)
def _root_logging_restored():
    """`textclass serve` run in this process sets its JSON logging on the root logger (a handler on CliRunner's
    stderr, closed after the call, and the root at INFO); the tests after these must not inherit it: CLI tests that
    expect one stderr line got a "--- Logging error ---" traceback instead."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_ray_engine_bad_input_is_one_line(monkeypatch, tiny_checkpoints):
    runner = CliRunner()
    model = str(tiny_checkpoints["bert"][0])
    cases = [
        (["--engine", "ray", "--autoscale", "4:1"], "--autoscale '4:1': MAX must be at least 1 and at least MIN"),
        (["--engine", "ray", "--autoscale", "two"], "expected MIN:MAX replicas"),
        (["--replicas", "2"], "need --engine ray"),
        (["--engine", "mars"], "--engine must be local or ray"),
    ]
    for args, message in cases:
        result = runner.invoke(cli_app, ["serve", "--model", model, *args])
        assert result.exit_code == 1 and result.output.count("\n") == 1 and message in result.output, result.output
    started = time.perf_counter()
    result = runner.invoke(cli_app, ["serve", "--model", model, "--engine", "ray", "--address", "127.0.0.1:1"])
    assert time.perf_counter() - started < 10
    assert result.exit_code == 1 and "no Ray cluster answers at --address 127.0.0.1:1" in result.output, result.output
    monkeypatch.setitem(sys.modules, "ray", None)  # as without the extra
    result = runner.invoke(cli_app, ["serve", "--model", model, "--engine", "ray"])
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert "pip install 'textclass[ray]'" in result.output and "ray[serve]" in result.output


def test_print_config_is_a_serve_config_that_builds_the_app(tiny_checkpoints):
    model = str(tiny_checkpoints["bert"][0])
    result = CliRunner().invoke(cli_app, ["serve", "--model", f"sent={model}", "--engine", "ray", "--autoscale",
                                          "1:4", "--print-config", "--api-key", "secret"])  # fmt: skip
    assert result.exit_code == 0, result.output
    config = json.loads(result.output)
    app = config["applications"][0]
    assert app["import_path"] == "textclass.server.ray_serve:build" and app["route_prefix"] == "/"
    scaling = app["deployments"][0]["autoscaling_config"]
    assert (scaling["min_replicas"], scaling["max_replicas"], scaling["target_ongoing_requests"]) == (1, 4, 32.0)
    assert app["args"]["settings"]["models"] == [["sent", model]] and "secret" not in result.output
    from ray.serve.schema import ServeDeploySchema

    ServeDeploySchema.model_validate(config)  # what `serve deploy` checks
    from textclass.server.ray_serve import build

    assert type(build(app["args"])).__name__ == "Application"


@pytest.mark.parametrize("serve_was_running", [False, True], ids=["serve-started-here", "serve-already-running"])
def test_a_failed_or_interrupted_deploy_leaves_a_joined_cluster_as_it_was(monkeypatch, serve_was_running):
    """A deployment whose replicas fail to start, or Ctrl-C while it deploys: the application is deleted and Serve
    shut down if this process started it, before the driver disconnects (no half-started fleet on the cluster).
    Ray's calls are recorded by stand-ins: the order of what is removed is the behaviour under test."""
    import ray
    from ray import serve

    from textclass.server import ray_serve
    from textclass.server.settings import ServerSettings

    calls: list[str] = []
    monkeypatch.setattr(ray_serve, "connect", lambda address: calls.append(f"connect {address}") or False)
    monkeypatch.setattr(ray_serve, "_serve_running", lambda: serve_was_running)
    monkeypatch.setattr(ray_serve, "application", lambda settings, ray_settings: "app")
    monkeypatch.setattr(serve, "start", lambda **kwargs: calls.append("serve.start"))
    monkeypatch.setattr(serve, "delete", lambda name: calls.append(f"serve.delete {name}"))
    monkeypatch.setattr(serve, "shutdown", lambda: calls.append("serve.shutdown"))
    monkeypatch.setattr(ray, "shutdown", lambda: calls.append("ray.shutdown"))
    for failure in (RuntimeError("Deploying app 'textclass' failed"), KeyboardInterrupt()):
        def run(app, failure: BaseException = failure, **kwargs):
            calls.append("serve.run")
            raise failure

        monkeypatch.setattr(serve, "run", run)
        calls.clear()
        with pytest.raises(type(failure)):
            ray_serve.serve_on_ray(ServerSettings(), ray_serve.RaySettings(address="auto"))
        removed = ["serve.delete textclass", *([] if serve_was_running else ["serve.shutdown"]), "ray.shutdown"]
        assert calls == ["connect auto", "serve.start", "serve.run", *removed], calls


def processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process now."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] != "Z":  # a zombie is gone already
                found[int(entry.name)] = (int(fields[1]), title)
    return found


def tree(root: int) -> dict[int, str]:
    """pid -> command line of the processes descending from `root` (the cluster this test's server started)."""
    table = processes()

    def descends(pid: int) -> bool:
        while pid > 1:
            if pid == root:
                return True
            pid = table.get(pid, (1, ""))[0]
        return False

    return {pid: title for pid, (_, title) in table.items() if pid != root and descends(pid)}


def replicas(root: int) -> list[int]:
    return [pid for pid, title in tree(root).items() if title.startswith(REPLICA_TITLE)]


@pytest.mark.slow
def test_two_replicas_answer_survive_a_sigkill_and_stop_clean(tiny_checkpoints, tmp_path):
    import subprocess

    model = tiny_checkpoints["bert"][0]
    offline = Classifier.from_pretrained(model)
    port = free_port()
    env = dict(os.environ, RAY_AUTH_MODE="disabled", PYTHONPATH=str(ROOT / "src"))
    log = (tmp_path / "ray.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "textclass", "serve", "--model", str(model), "--engine", "ray",
                                "--replicas", "2", "--port", str(port), "--no-access-log"], stdout=log,
                               stderr=subprocess.STDOUT, env=env)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    http = httpx.Client(base_url=url, timeout=60, limits=httpx.Limits(max_connections=100))
    try:
        deadline = time.monotonic() + 300
        while True:
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "ray.log").read_text()[-4000:]
            try:
                if http.get("/health", timeout=2).status_code == 200 and len(replicas(process.pid)) == 2:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)

        texts = [f"{CORPUS[i % len(CORPUS)]} ({i})" for i in range(100)]
        answers: dict[int, httpx.Response] = {}
        threads = [threading.Thread(target=lambda i=i: answers.__setitem__(i, http.post("/predict",
                                    json={"inputs": texts[i]}))) for i in range(100)]  # fmt: skip
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        want = offline(texts, top_k=None)
        for i in range(100):
            assert answers[i].status_code == 200, answers[i].text
            got = answers[i].json()
            assert [g["label"] for g in got] == [w["label"] for w in want[i]]
            assert [g["score"] for g in got] == pytest.approx([w["score"] for w in want[i]], abs=1e-5)

        # A replica dies while clients keep sending: what they see is counted, and from 3 s on all is answered.
        outcomes: list[tuple[float, int | str]] = []
        stop = threading.Event()

        def client() -> None:
            while not stop.is_set():
                try:
                    response = http.post("/predict", json={"inputs": CORPUS[0]})
                    outcomes.append((time.monotonic(), response.status_code if response.status_code == 200 else
                                     f"{response.status_code} {response.text[:200]}"))  # fmt: skip
                except httpx.HTTPError as exc:
                    outcomes.append((time.monotonic(), type(exc).__name__))

        load = [threading.Thread(target=client) for _ in range(4)]
        for thread in load:
            thread.start()
        time.sleep(1)
        victim = replicas(process.pid)[0]
        killed = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        time.sleep(8)
        stop.set()
        for thread in load:
            thread.join(60)
        failed = [(round(t - killed, 2), what) for t, what in outcomes if what != 200]
        print(f"replica SIGKILL: {len(outcomes)} requests, {len(failed)} not answered 200: {failed}")
        assert all(0 <= t < 3 for t, _ in failed), failed  # only around the kill
        assert [what for t, what in outcomes if t > killed + 3] and all(
            what == 200 for t, what in outcomes if t > killed + 3
        )
        deadline = time.monotonic() + 120
        while len(replicas(process.pid)) != 2 or victim in replicas(process.pid):
            assert time.monotonic() < deadline, "the killed replica was not replaced"
            time.sleep(1)
        assert http.post("/predict", json={"inputs": CORPUS[1]}).status_code == 200
    finally:
        http.close()
        cluster = tree(process.pid)  # gcs, raylet, workers, replicas: all must go with it
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(90)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
        log.close()
    assert code == 0, (tmp_path / "ray.log").read_text()[-4000:]
    time.sleep(2)
    left = {pid: title for pid, title in cluster.items() if pid in processes()}
    assert cluster and not left, left
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/health", timeout=2)
