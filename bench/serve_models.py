"""Several models in one server: resident memory of `textclass serve` with one model against the three-model example
(sentiment, a zero-shot NLI model, a reranker), and what the default token bound costs in time per model size.

    python bench/serve_models.py --minilm DIR [--base DIR]

DIR: all-MiniLM-L6-v2 (RECIPES.md); its NLI and cross-encoder heads are random (memory and time do not depend on
the head's weights). --base: a base-size checkpoint (e.g. all-mpnet-base-v2) for the token bound's cost there.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from serverutil import free_port  # noqa: E402


def with_head(source: Path, folder: Path, num_labels: int, id2label: dict[int, str] | None = None) -> Path:
    import torch
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    extra = {"id2label": id2label, "label2id": {v: k for k, v in id2label.items()}} if id2label else {}
    AutoModelForSequenceClassification.from_pretrained(source, num_labels=num_labels, **extra).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (source / name).is_file():
            shutil.copy(source / name, folder / name)
    return folder


def rss_mb(pid: int) -> float:
    """Resident memory of the process and its children (MB)."""
    out = subprocess.run(["ps", "-o", "rss=", "--pid", str(pid), "--ppid", str(pid)], capture_output=True, text=True)
    return sum(int(v) for v in out.stdout.split()) / 1024


def serving(models: list[str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    args = [arg for model in models for arg in ("--model", model)]
    process = subprocess.Popen([sys.executable, "-m", "textclass", "serve", *args, "--port", str(port),
                                "--no-access-log"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(1200):
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"server with {models} never became healthy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minilm", type=Path, required=True)
    parser.add_argument("--base", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    nli = with_head(args.minilm, work / "nli", 3, {0: "contradiction", 1: "neutral", 2: "entailment"})
    rr = with_head(args.minilm, work / "rr", 1)
    sizes = {}
    for label, models in [("one model (sentiment-en)", ["sentiment-en"]),
                          ("three models", ["sent=sentiment-en", f"nli={nli}", f"rr={rr}"])]:  # fmt: skip
        process, url = serving(models)
        for path, body in [("/predict", {"inputs": "warm"}), ("/models/nli/", {"inputs": "warm"}),
                           ("/models/rr/rerank", {"query": "q", "texts": ["warm"]})]:  # fmt: skip
            httpx.post(url + path, json=body, timeout=60)  # every model has run (lazy allocations done)
        sizes[label] = rss_mb(process.pid)
        process.terminate()
        process.wait(30)
        print(f"{label}: RSS {sizes[label]:.0f} MB")
    one, three = sizes["one model (sentiment-en)"], sizes["three models"]
    print(f"each further MiniLM-size model: {(three - one) / 2:.0f} MB; three/one = {three / one:.2f}x")

    from textclass.server.settings import DEFAULT_MAX_REQUEST_TOKENS

    # ~16 tokens a sentence, an eighth more for the windows' overlap and their special tokens: just under the bound.
    sentence = "The film was long but the acting was good and the story held together."
    words = " ".join([sentence] * int(DEFAULT_MAX_REQUEST_TOKENS / 16 / 1.15))
    sized = [("MiniLM (bundled)", "sentiment-en")]
    if args.base:
        sized.append(("base", str(with_head(args.base, work / "base", 2))))
    for label, model in sized:
        process, url = serving([model])
        body = {"inputs": words, "parameters": {"long_text": "chunk"}}
        started = time.perf_counter()
        answer = httpx.post(url + "/", json=body, timeout=600)
        seconds = time.perf_counter() - started
        process.terminate()
        process.wait(30)
        windows = answer.json()[0][0].get("windows") if answer.status_code == 200 else None
        print(f"{label}: one request near the default bound of {DEFAULT_MAX_REQUEST_TOKENS:,} tokens "
              f"({answer.status_code}, {windows} windows) took {seconds:.1f} s")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
