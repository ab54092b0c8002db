"""Where a served request's CPU goes: `textclass serve` sampled by py-spy under bench/load.py's lean load.

Starts the server under `py-spy record` (a child process, so no ptrace permission is needed), sends one sentence a
request from N lean keep-alive clients (bench/load.py's), stops the sampler, and prints per thread the CPU it used
per request and where that went: by category (the innermost frame's library: HTTP protocol, validation, JSON,
metrics, logging, the batcher, the engine, ...) and by function (inclusive share). py-spy samples only threads
that are running, so a thread's samples / rate are its CPU seconds. The sampler itself costs some CPU on a small
machine: read the shares and the per-request CPU, not the throughput, from this run.

    pip install py-spy
    python bench/server_profile.py --model src/textclass/bundled/sentiment-en --clients 64 --requests 3000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import signal
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load import SST2_DEV, LiveServer, Tally, expected_answers, run_clients  # noqa: E402

from textclass.classifier import Classifier  # noqa: E402

# (category, pattern on a frame's file): the first that matches, from the innermost frame outwards, names a sample.
CATEGORIES = [
    ("json", r"/json/|orjson"),
    ("validation (pydantic)", r"pydantic"),
    ("metrics (prometheus_client)", r"prometheus_client"),
    ("logging", r"/logging/|textclass/server/run\.py"),
    ("numpy", r"/numpy/"),
    ("tokenizer", r"tokenizers|textclass/checkpoint/tokenizer"),
    ("engine (onnxruntime)", r"onnxruntime|textclass/runtime/|textclass/classifier\.py"),
    ("postprocess", r"textclass/postprocess"),
    ("batcher", r"textclass/server/batcher"),
    ("textclass server (routes, fast path, guards)", r"textclass/"),
    ("HTTP protocol (uvicorn, httptools, h11)", r"uvicorn|httptools|h11"),
    ("framework (starlette, fastapi, anyio)", r"starlette|fastapi|anyio"),
    ("event loop (asyncio, uvloop)", r"asyncio|uvloop"),
    ("threading", r"threading\.py|queue\.py"),
]
# Stacks under these are start-up (imports, the model load), not serving: left out of the per-request figures.
START_UP = {"load_models", "create_app", "_find_and_load"}
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def parse(raw: str) -> dict[str, list[tuple[list[tuple[str, str]], int]]]:
    """py-spy's raw (collapsed) lines -> thread name -> [(frames outermost first as (function, file), samples)]."""
    threads: dict[str, list] = defaultdict(list)
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        head, *frames = stack.split(";")
        name = head.split(": ", 1)[1] if ": " in head else head  # "thread (TID): NAME"
        parsed = [(m["function"], m["file"]) if (m := FRAME.match(f)) else (f, "") for f in frames]
        if any(function in START_UP for function, _ in parsed):
            continue
        threads[_thread_kind(name)].append((parsed, int(count)))
    return threads


def _thread_kind(name: str) -> str:
    return re.sub(r"[-_ ]?\d+$", "", name) or name  # worker threads numbered alike count as one kind


def category(frames: list[tuple[str, str]]) -> str:
    for _, file in reversed(frames):
        for name, pattern in CATEGORIES:
            if re.search(pattern, file):
                return name
    return "other"


def summarise(threads: dict, rate: int, requests: int, top: int) -> dict:
    report = {}
    for thread, stacks in sorted(threads.items(), key=lambda kv: -sum(n for _, n in kv[1])):
        total = sum(n for _, n in stacks)
        if total < rate / 10:  # under 0.1 s of CPU in the whole run
            continue
        by_category: Counter = Counter()
        inclusive: Counter = Counter()
        for frames, n in stacks:
            by_category[category(frames)] += n
            for function, file in dict.fromkeys(frames):
                inclusive[f"{function} ({Path(file).name})"] += n
        report[thread] = {
            "cpu_seconds": round(total / rate, 2),
            "cpu_ms_per_request": round(total / rate / max(requests, 1) * 1000, 3),
            "by_category_percent": {k: round(100 * v / total, 1) for k, v in by_category.most_common()},
            "top_functions_inclusive_percent": {k: round(100 * v / total, 1) for k, v in inclusive.most_common(top)},
        }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="checkpoint folder")
    parser.add_argument("--data", type=Path, default=SST2_DEV, help="TSV with a 'sentence' column")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--requests", type=int, default=3000, help="requests sampled (bounded)")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=30, help="functions listed per thread")
    parser.add_argument("--raw", type=Path, help="keep py-spy's raw stacks here")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    parser.add_argument("server_args", nargs="*", help="extra `textclass serve` options (after --)")
    args = parser.parse_args()
    if shutil.which("py-spy") is None:
        raise SystemExit("py-spy not found: pip install py-spy")
    lines = args.data.read_text(encoding="utf-8").splitlines()[1:]
    texts = list(dict.fromkeys(line.split("\t")[0].strip() for line in lines))
    clf = Classifier.from_pretrained(args.model)
    _, want = expected_answers(clf, texts)
    del clf
    with tempfile.TemporaryDirectory() as tmp:
        raw = args.raw or Path(tmp) / "stacks.txt"
        launcher = ["py-spy", "record", "--rate", str(args.rate), "--nonblocking", "--threads", "--format", "raw",
                    "--output", str(raw), "--"]  # fmt: skip
        server = LiveServer(args.model, Path(tmp) / "server.log", *args.server_args, launcher=launcher)
        server.wait_healthy()
        bodies = [[texts[i % len(texts)]] for i in range(args.requests)]
        tally = Tally()
        try:
            asyncio.run(run_clients(server.url, bodies, args.clients, want, tally, lean=True))
        finally:
            server.process.send_signal(signal.SIGINT)  # py-spy writes its stacks and ends the server
            server.process.wait(60)
        threads = summarise(parse(raw.read_text()), args.rate, tally.statuses.get(200, 0), args.top)
        summary = {"clients": args.clients, **tally.summary(), "rate": args.rate, "threads": threads}
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
