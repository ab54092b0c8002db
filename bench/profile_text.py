"""Where one short text's time goes: ONNX Runtime's profiler, operator by operator, for the CPU default's graph,
against the time its matrix products would take at the CPU's int8 GEMM peak.

python bench/profile_text.py --model bench/models/distilbert-sst2-shape [--runs 200] [--threads 2] [--mode int8]

Each of the texts (28-36 tokens, SST-2 dev) runs alone, as `clf(text)` runs it. Printed: the end-to-end p50 of
`clf(text)`, the session's own p50, and per operator type its share, ms per text and nodes per text.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from common import SST2_DEV, cpu_name, read_texts, table
from throughput import gemm_peaks, linear_flops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mode", default="default", help="default (the CPU's), int8 or fp32")
    args = parser.parse_args()

    import onnxruntime as ort

    from textclass import Classifier
    from textclass.runtime.batching import collate

    dtype = {"default": None, "int8": "int8", "fp32": "fp32"}[args.mode]
    clf = Classifier.from_pretrained(args.model, backend=None if dtype is None else "onnx", dtype=dtype)
    from textclass.runtime.rescore import RescoringEngine

    engine = clf.engine.fast if isinstance(clf.engine, RescoringEngine) else clf.engine  # the int8 graph itself
    texts = [t for t in read_texts(SST2_DEV, None) if 28 <= len(clf.encode(t)[0]) <= 36][:100]
    encoded = [clf.encode(t)[0] for t in texts]
    batches = [collate([e], [0], clf.tokenizer.pad_token_id, engine.uses_token_types) for e in encoded]

    def p50(call) -> float:
        for i in range(10):
            call(i)
        times = []
        for i in range(args.runs):
            start = time.perf_counter()
            call(i)
            times.append(time.perf_counter() - start)
        return float(np.median(times)) * 1000

    end_to_end = p50(lambda i: clf(texts[i % len(texts)]))
    engine_only = p50(lambda i: engine(batches[i % len(batches)]))

    with tempfile.TemporaryDirectory() as work:
        options = engine.options(args.threads)  # as the engine opens its session
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(work) / "profile")
        session = ort.InferenceSession(str(engine.path), options, providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        feeds = [{k: v for k, v in (("input_ids", b.input_ids), ("attention_mask", b.attention_mask),
                                    ("token_type_ids", np.zeros_like(b.input_ids))) if k in names}
                 for b in batches]  # fmt: skip
        for i in range(10):
            session.run(None, feeds[i % len(feeds)])
        for i in range(args.runs):
            session.run(None, feeds[i % len(feeds)])
        events = json.loads(Path(session.end_profiling()).read_text())
    runs = [e for e in events if e.get("name") == "model_run"][-args.runs :]
    first = runs[0]["ts"]
    by_op: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time") and event["ts"] >= first:
            op = event["args"]["op_name"]
            by_op[op] += event["dur"]
            count[op] += 1
    total_us = sum(by_op.values())
    run_us = sum(r["dur"] for r in runs)

    config = clf.config
    tokens = float(np.mean([len(e) for e in encoded]))
    hidden, inner = config.hidden_size, config.intermediate_size
    gemm_ops = linear_flops(config, tokens)
    peak = gemm_peaks(hidden, inner, args.threads)["int8" if engine.dtype == "int8" else "fp32"]
    rows = [[op, f"{us / total_us:.1%}", f"{us / 1000 / args.runs:.3f}", f"{count[op] / args.runs:.0f}"]
            for op, us in sorted(by_op.items(), key=lambda item: -item[1])]  # fmt: skip
    print(f"\n{Path(args.model).name}, {clf.precision} ({engine.dtype} graph), {len(texts)} texts of 28-36 tokens "
          f"({tokens:.1f} mean), {args.threads} threads, {cpu_name()}\n")  # fmt: skip
    print(f"clf(text) p50 {end_to_end:.2f} ms; the engine alone p50 {engine_only:.2f} ms; profiled session "
          f"{run_us / 1000 / args.runs:.2f} ms a run, of which operators {total_us / 1000 / args.runs:.2f} ms")
    print(f"matrix products at the {engine.dtype} GEMM peak ({peak / 1e9:.0f} GOP/s, 2048-row products): "
          f"{gemm_ops / peak * 1000:.2f} ms a text\n")  # fmt: skip
    print(table(["operator", "share", "ms per text", "nodes per text"], rows))


if __name__ == "__main__":
    main()
