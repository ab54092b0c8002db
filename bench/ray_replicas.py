"""Ray Serve replicas against the one-process server, in one run: start-up time and throughput with 1 and 2 replicas.

    python bench/ray_replicas.py [--model sentiment-en] [--requests 400] [--clients 32]

Texts: SST-2 train phrases (../shared/data/sst2/train.tsv, never dev), one per request, `--clients` at once. Each
shape is started fresh; start-up is from the command to /health answering 200 (Ray: the cluster, Serve and every
replica with its model warmed up), and the deployment's own figure (serve.run until every replica is running).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from serverutil import free_port  # noqa: E402


def texts(count: int) -> list[str]:
    train = ROOT.parent / "shared" / "data" / "sst2" / "train.tsv"
    lines = train.read_text(encoding="utf-8").splitlines()[1:] if train.is_file() else []
    phrases = [line.split("\t")[0] for line in lines if len(line.split("\t")[0].split()) >= 8][:count]
    return phrases if len(phrases) == count else ["a fine and moving film about the people who made it"] * count


def start(model: str, ray_replicas: int | None) -> tuple[subprocess.Popen, str, float, float | None, Path]:
    port = free_port()
    log = Path(f"/tmp/bench-ray-{port}.log")
    args = ["--engine", "ray", "--replicas", str(ray_replicas)] if ray_replicas else []
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    began = time.perf_counter()
    command = [sys.executable, "-m", "textclass", "serve", "--model", model, "--port", str(port), "--no-access-log"]
    process = subprocess.Popen([*command, *args], stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    while True:
        if process.poll() is not None:
            raise RuntimeError(log.read_text()[-3000:])
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    ready = time.perf_counter() - began
    deployed = None
    for line in log.read_text(errors="replace").splitlines():
        if '"event": "ready"' in line and '"engine": "ray"' in line:
            deployed = json.loads(line)["seconds"]
    return process, url, ready, deployed, log


def throughput(url: str, batch: list[str], clients: int) -> float:
    with httpx.Client(base_url=url, timeout=120, limits=httpx.Limits(max_connections=clients)) as http:
        for text in batch[:clients]:
            assert http.post("/predict", json={"inputs": text}).status_code == 200  # warm every connection
        began = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            statuses = list(pool.map(lambda t: http.post("/predict", json={"inputs": t}).status_code, batch))
        seconds = time.perf_counter() - began
    assert statuses.count(200) == len(batch), statuses
    return len(batch) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="sentiment-en")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args()
    batch = texts(args.requests)
    results = {}
    for label, replicas in [("one process", None), ("ray, 1 replica", 1), ("ray, 2 replicas", 2)]:
        process, url, ready, deployed, log = start(args.model, replicas)
        try:
            results[label] = throughput(url, batch, args.clients)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(120)
            log.unlink(missing_ok=True)
        extra = f", deployment {deployed:.1f} s" if deployed is not None else ""
        print(f"{label}: ready in {ready:.1f} s{extra}; {results[label]:.0f} texts/s "
              f"({args.requests} requests, {args.clients} clients)")  # fmt: skip
    base = results["one process"]
    for label in ("ray, 1 replica", "ray, 2 replicas"):
        print(f"{label} / one process: {results[label] / base:.2f}x")
    print(f"2 replicas / 1 replica: {results['ray, 2 replicas'] / results['ray, 1 replica']:.2f}x")


if __name__ == "__main__":
    main()
