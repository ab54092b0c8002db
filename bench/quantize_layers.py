"""Which int8 layout keeps the accuracy contract: per-row int8 variants of a model against its exact fp32, on
held-out texts, with their speed on one core (CPU time, so other tenants of the machine matter less).

    python bench/quantize_layers.py [--model DIR] [--count 2000] [--sweep]

Texts: a fixed random sample of SST-2 *train* (the bundled model's dev set is kept for the final report).
Rows: every layer in one format (FORMATS in textclass/quantize.py), the plans the CPUs get (PLANS), ONNX Runtime's
own quantize_dynamic (per-batch activation scales) for comparison, and with --sweep one row per layer: all
layers 8-bit activations × 7-bit weights except that one in 8 × 8 bits, which shows where the error comes from.
Columns: the contract's figures (textclass/contract.py), and "alone vs batch": the largest change of a text's
probabilities between being scored alone and in its batch.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import numpy as np
from common import SST2_DEV, cpu_name, table


def held_out(count: int, seed: int = 0) -> list[str]:
    with open(SST2_DEV.with_name("train.tsv"), encoding="utf-8") as handle:
        rows = [row[0] for row in list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]]
    return [rows[i] for i in np.random.default_rng(seed).choice(len(rows), count, replace=False)]


def session_probs(path: Path, clf, encoded, batch_size: int | None = None) -> tuple[np.ndarray, float]:
    """Probabilities (temperature, softmax) from an ONNX file on one thread, and the CPU seconds it took."""
    from textclass import postprocess
    from textclass.batching import make_batches
    from textclass.onnx_engine import OnnxEngine

    engine = OnnxEngine(path, "bench", threads=1)
    logits = np.empty((len(encoded), clf.config.num_labels), np.float32)
    start = time.process_time()
    for batch in make_batches(encoded, clf.max_batch_tokens, clf.tokenizer.pad_token_id, engine.uses_token_types,
                              max_batch_size=batch_size):  # fmt: skip
        logits[batch.indices] = engine(batch)
    seconds = time.process_time() - start
    return postprocess.apply(logits / clf.temperature, "softmax"), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="checkpoint folder (default: the bundled model)")
    parser.add_argument("--count", type=int, default=2000, help="held-out texts")
    parser.add_argument("--sweep", action="store_true", help="one row per layer")
    args = parser.parse_args()

    import onnx

    from textclass import artefacts
    from textclass.api import Classifier
    from textclass.contract import evaluate
    from textclass.quantize import FORMATS, PLANS, fold_constants, quantize_rows

    clf = Classifier.from_pretrained(args.model, backend="onnx", dtype="fp32")
    encoded = clf.encode(held_out(args.count))
    fp32_path, _ = artefacts.ensure(clf.checkpoint, "fp32")
    fused = onnx.load(str(fp32_path))
    fold_constants(fused)
    layers = [node.input[1] for node in fused.graph.node if node.op_type in ("MatMul", "Attention")
              and any(init.name == node.input[1] for init in fused.graph.initializer)]  # fmt: skip
    variants: dict[str, tuple[str, dict[str, str]]] = {f"every layer {name}": ("avx2", dict.fromkeys(layers, name))
                                                       for name in FORMATS}  # fmt: skip
    variants.update({f"plan {plan} (after GELU {a}, else {b})": (plan, {}) for plan, (a, b) in PLANS.items()})
    if args.sweep:
        for layer in layers:
            variants[f"{layer} in a8w8u, rest a8w7"] = ("avx2", {**dict.fromkeys(layers, "a8w7"), layer: "a8w8u"})

    with tempfile.TemporaryDirectory() as work:
        reference, reference_seconds = session_probs(fp32_path, clf, encoded)
        files = {}
        for name, (plan, per_layer) in variants.items():
            model = onnx.load(str(fp32_path))
            fold_constants(model)
            quantize_rows(model, plan, per_layer)
            files[name] = Path(work) / f"{len(files)}.onnx"
            onnx.save(model, str(files[name]))
        try:  # ONNX Runtime's own dynamic quantization, as export.py did before: per-batch activation scales
            from onnxruntime.quantization import QuantType, quantize_dynamic
            from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

            shaped = Path(work) / "shaped.onnx"
            onnx.save(SymbolicShapeInference.infer_shapes(fused, auto_merge=True), str(shaped))
            files["ONNX Runtime quantize_dynamic (per batch)"] = Path(work) / "dynamic.onnx"
            quantize_dynamic(str(shaped), str(files["ONNX Runtime quantize_dynamic (per batch)"]),
                             weight_type=QuantType.QInt8, per_channel=True)  # fmt: skip
        except ImportError as exc:
            print(f"(no quantize_dynamic row: {exc})")
        rate = f"{len(encoded) / reference_seconds:.0f}"
        rows = [["exact fp32 (onnx)", "100.00%", "0", "0", "0", "–", "yes", "0", rate]]
        for name, path in files.items():
            probs, seconds = session_probs(path, clf, encoded)
            alone, _ = session_probs(path, clf, encoded[:100], batch_size=1)
            verdict = evaluate(reference, probs, alone, probs[:100])
            rows.append([name, f"{verdict.agreement:.2%}", f"{verdict.mean_delta:.4f}", f"{verdict.p99_delta:.3f}",
                         f"{verdict.max_delta:.3f}", f"{verdict.flip_confidence:.2f}", "yes" if verdict.holds else "no",
                         f"{verdict.batch_delta:.1e}", f"{len(encoded) / seconds:.0f}"])  # fmt: skip
    print(f"\n{clf.folder.name}, {len(encoded)} SST-2 train sentences, against exact fp32; {cpu_name()}\n")
    print(table(["variant", "agreement", "mean |Δp|", "p99 |Δp|", "max |Δp|", "flips at ≤", "contract",
                 "alone vs batch", "texts/s, 1 core"], rows))  # fmt: skip


if __name__ == "__main__":
    main()
