"""GPU throughput and latency: textclass's torch modes against the transformers pipeline on the same CUDA GPU, in one
process and one run.

    python bench/gpu.py --model bench/models/distilbert-sst2-shape --texts FILE [--limit 8000] [--long]

Rows: the pipeline on the GPU (fp32 at batch_size 1, its default, on the first --pipeline-b1 texts; fp32 and bf16 at
batch_size 64), then textclass fp32, fp16 and bf16 (the GPU default) at the GPU token budget (16,384 tokens a
batch), bf16 at 4x that budget, and bf16 with each batch's logits fetched before the next batch is launched (how the
engine ran before it queued batches). Columns: texts/s, tokens/s, speed-up over the pipeline rows, label agreement
with the fp32 pipeline, the largest probability difference from it, and MFU: the model's matrix-multiply work per
second (bench/throughput.py's count, padding excluded) over a plain (8192 x 8192) x (8192 x 8192) product's rate on
this GPU in the same dtype, measured in this run (fp32 as torch runs it by default: no TF32). Each textclass row is
the best of two timed runs after a warm-up; tokenization is counted. Then: tokenization alone, one text at a time
(p50/p90/p99 ms, as bench/latency.py times it), and each text alone against the same text inside a batch (largest
|Δp|: batch independence).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from common import cpu_name, table, text_set, text_set_parser
from latency import percentiles
from throughput import label_probs, model_flops, pipeline_probs, pipeline_tokenizer


def gemm_peaks(device: str) -> dict[str, float]:
    import torch

    peaks, n = {}, 8192 if device.startswith("cuda") else 512  # (a CPU check of the script: a small product)
    for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16), ("fp32", torch.float32)):
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        peaks[name] = 2 * n**3 / best(lambda a=a, b=b: a @ b, runs=5)[0]
    return peaks


def best(call, runs: int = 2) -> tuple[float, Any]:
    """The best wall time of `runs` calls after one warm-up, the GPU drained around each, and the last call's
    result."""
    import torch

    sync = torch.cuda.synchronize if torch.cuda.is_available() else lambda: None
    call()
    times = []
    for _ in range(runs):
        sync()
        start = time.perf_counter()
        result = call()
        sync()
        times.append(time.perf_counter() - start)
    return min(times), result


def textclass_probs(clf, texts: list[str]) -> tuple[np.ndarray, float]:
    seconds, results = best(lambda: clf(texts, top_k=None))
    return label_probs(results, clf.labels), seconds


def main() -> None:
    parser = text_set_parser(__doc__, limit=8000)
    parser.add_argument("--pipeline-b1", type=int, default=500, help="texts the batch_size=1 pipeline row times")
    parser.add_argument("--device", default="cuda", help="cuda, or cpu to check the script itself on a few texts")
    args = parser.parse_args()

    import torch
    from transformers import pipeline

    from textclass import Classifier

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("bench/gpu.py needs a CUDA GPU (torch sees none)")
    reference = Classifier.from_pretrained(args.model, device=args.device, dtype="fp32")
    count = lambda text: len(reference.tokenizer.encode_batch([text])[0])  # noqa: E731
    texts = text_set(args, count)
    lengths = [len(e) for e in reference.encode(texts)]
    tokens, flops = sum(lengths), model_flops(reference.config, lengths)
    peaks = gemm_peaks(args.device)
    labels = reference.labels
    tokenizer = pipeline_tokenizer(args.model)

    def pipe(dtype):
        return pipeline("text-classification", model=args.model, tokenizer=tokenizer, device=args.device, dtype=dtype)

    fp32_pipe = pipe(torch.float32)
    head = texts[: args.pipeline_b1]
    pipeline_probs(fp32_pipe, head[:16], labels, batch_size=1)  # warm-up
    _, seconds = pipeline_probs(fp32_pipe, head, labels, batch_size=1)
    speeds = {"b1": len(head) / seconds}
    results = []  # (name, probabilities or None, seconds, dtype of its matrix products)
    pipeline_probs(fp32_pipe, texts[:256], labels, batch_size=64)
    truth, seconds = pipeline_probs(fp32_pipe, texts, labels, batch_size=64)
    results.append((f"pipeline fp32, batch_size=1 (default; first {len(head)} texts)", None, len(texts) / speeds["b1"],
                    "fp32"))  # fmt: skip
    results.append(("pipeline fp32, batch_size=64", truth, seconds, "fp32"))
    bf16_pipe = pipe(torch.bfloat16)
    pipeline_probs(bf16_pipe, texts[:256], labels, batch_size=64)
    probs, seconds = pipeline_probs(bf16_pipe, texts, labels, batch_size=64)
    speeds["b64 bf16"] = len(texts) / seconds
    results.append(("pipeline bf16, batch_size=64", probs, seconds, "bf16"))
    del bf16_pipe  # (the fp32 one times one text at a time below)

    default = Classifier.from_pretrained(args.model, device=args.device)  # on a GPU: torch bf16
    budget = default.max_batch_tokens
    for name, dtype, tokens_per_batch, queued in (
        ("textclass fp32", "fp32", budget, True),
        ("textclass fp16", "fp16", budget, True),
        (f"textclass default ({default.precision})", None, budget, True),
        (f"textclass default, {4 * budget:,}-token batches", None, 4 * budget, True),
        ("textclass default, each batch fetched before the next is launched", None, budget, False),
    ):
        clf = Classifier.from_pretrained(args.model, device=args.device, dtype=dtype, max_batch_tokens=tokens_per_batch)
        if not queued and clf.engine.backend != "torch":  # (a CPU check: the default there is ONNX Runtime)
            continue
        if not queued:
            clf.engine.map = lambda batches, one_thread=False, engine=clf.engine: map(engine, batches)
        probs, seconds = textclass_probs(clf, texts)
        kind = {"bfloat16": "bf16", "float16": "fp16"}.get(clf.engine.dtype, "fp32")
        results.append((name, probs, seconds, kind))
        del clf

    def row(name: str, probs: np.ndarray | None, seconds: float, dtype: str) -> list[str]:
        rate = len(texts) / seconds
        agree = f"{(probs.argmax(1) == truth.argmax(1)).mean():.2%}" if probs is not None else "–"
        diff = f"{np.abs(probs - truth).max():.1e}" if probs is not None else "–"
        mfu = f"{flops / seconds / peaks[dtype]:.1%} of {dtype}"
        return [name, f"{rate:,.0f}", f"{tokens / seconds:,.0f}", f"{rate / speeds['b1']:.1f}×",
                f"{rate / speeds['b64 bf16']:.2f}×", agree, diff, mfu]  # fmt: skip

    encode, _ = best(lambda: default.encode(texts))
    one = [t for t in texts if 20 <= count(t) <= 40][:100] or texts[:100]
    latencies = {name: percentiles(call, one, 200) for name, call in (("pipeline fp32", fp32_pipe),
                                                                       ("textclass default", default))}  # fmt: skip
    sample = texts[:64]
    together = default.scores(default.logits(sample))
    alone = np.concatenate([default.scores(default.logits([t])) for t in sample])

    gpu = torch.cuda.get_device_name() if args.device.startswith("cuda") else "no GPU"
    print(f"\n{Path(args.model).name}, {len(texts)} texts ({tokens / len(texts):.0f} tokens mean), {gpu}, host "
          f"{cpu_name()}; torch {torch.__version__}; {flops / tokens / 1e6:.0f} MFLOP per token\n")  # fmt: skip
    header = ["engine", "texts/s", "tokens/s", "vs pipeline b1", "vs pipeline bf16 b64", "label agreement",
              "max Δprob", "MFU"]  # fmt: skip
    print(table(header, [row(*result) for result in results]))
    print("\nGEMM rate measured in this run: " + ", ".join(f"{k} {v / 1e12:.0f} TFLOP/s" for k, v in peaks.items()))
    print(f"Tokenization alone (textclass encode, {len(texts)} texts): {len(texts) / encode:,.0f} texts/s")
    for name, (p50, p90, p99) in latencies.items():
        print(f"One text of 20-40 tokens, {name}: p50 {p50} ms, p90 {p90} ms, p99 {p99} ms")
    print(f"A text alone vs inside a batch of {len(sample)} (default): max |Δp| {np.abs(alone - together).max():.1e}")


if __name__ == "__main__":
    main()
