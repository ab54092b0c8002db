"""Which int8 layout keeps the accuracy contract: per-row int8 variants of a model against its exact fp32, with
their speed on one core (CPU time, so other tenants of the machine matter less).

    python bench/quantize_layers.py [--model DIR] [--texts FILE] [--half even|odd] [--sweep]

Texts: SST-2 dev by default (`--half` takes every other sentence, to choose on one half and confirm on the
other). Not SST-2 train: the bundled model was fitted on it, and even the 2,000 rows held out from fitting are
phrases of the fitted sentences, scored so confidently that int8 errors hardly show (mean |Δp| 2x smaller).
Rows: every layer in each format (FORMATS in textclass/quantize.py), with and without smoothing (channel ranges
measured on calibration.py's sentences), ONNX Runtime's own quantize_dynamic (per-batch activation scales), and
with --sweep one row per layer: all layers 8-bit activations × 7-bit weights except that one in 8 × 8 bits.
Columns: the contract's figures (textclass/contract.py), and "alone vs batch": the largest change of a text's
probabilities between being scored alone and in its batch.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from common import SST2_DEV, cpu_name, read_texts, table


def session_probs(path: Path, clf, encoded, batch_size: int | None = None) -> tuple[np.ndarray, float]:
    """Probabilities (temperature, softmax) from an ONNX file on one thread, and the CPU seconds it took."""
    from textclass.runtime.batching import make_batches
    from textclass.runtime.onnx_engine import OnnxEngine

    engine = OnnxEngine(path, "bench", threads=1)
    logits = np.empty((len(encoded), clf.config.num_labels), np.float32)
    start = time.process_time()
    for batch in make_batches(encoded, clf.max_batch_tokens, clf.tokenizer.pad_token_id, engine.uses_token_types,
                              max_batch_size=batch_size):  # fmt: skip
        logits[batch.indices] = engine(batch)
    seconds = time.process_time() - start
    return clf.scores(logits, "softmax"), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="checkpoint folder (default: the bundled model)")
    parser.add_argument("--texts", default=str(SST2_DEV), help="SST-2 style .tsv or one text per line")
    parser.add_argument("--half", choices=("even", "odd"), help="every other text only")
    parser.add_argument("--sweep", action="store_true", help="one row per layer")
    args = parser.parse_args()

    import onnx

    from textclass.accuracy.contract import evaluate
    from textclass.classifier import Classifier
    from textclass.onnx.export import export_graphs, save_graph
    from textclass.onnx.quantize import FORMATS, PLANS, calibrate, quantize_rows
    from textclass.runtime.cpu import int8_plan
    from textclass.runtime.load import calibration_feeds

    clf = Classifier.from_pretrained(args.model, backend="onnx", dtype="fp32")
    texts = read_texts(Path(args.texts), None)
    texts = texts[{"even": 0, "odd": 1}[args.half] :: 2] if args.half else texts
    encoded = clf.encode(texts)
    fused = export_graphs(clf.checkpoint, ["fp32"]).graphs["fp32"]  # the graph int8 is built from
    ranges = calibrate(fused, calibration_feeds(clf.checkpoint)).ranges
    layers = list(ranges)
    runnable = [name for name, form in FORMATS.items() if not (int8_plan() == "avx2" and form.overflows_without_vnni())]
    variants: dict[str, tuple[dict, dict[str, str]]] = {}
    for name in runnable:  # (an overflowing format would only measure the overflow)
        variants[f"every layer {name}{' (this CPU default)' if PLANS[int8_plan()] == name else ''}, smoothed"] = (
            ranges, dict.fromkeys(layers, name))
        variants[f"every layer {name}, not smoothed"] = ({}, dict.fromkeys(layers, name))
    if args.sweep:
        for layer in layers:
            variants[f"{layer} in a8w8u, rest a8w7"] = ({}, {**dict.fromkeys(layers, "a8w7"), layer: "a8w8u"})

    with tempfile.TemporaryDirectory() as work:
        fp32_path = Path(work) / "fp32.onnx"
        save_graph(fused.__deepcopy__(), fp32_path)
        reference, reference_seconds = session_probs(fp32_path, clf, encoded)
        files = {}
        for name, (smoothing, per_layer) in variants.items():
            model = onnx.load(str(fp32_path))
            quantize_rows(model, int8_plan(), smoothing, per_layer)
            files[name] = Path(work) / f"{len(files)}.onnx"
            save_graph(model, files[name])
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
    print(f"\n{clf.folder.name}, {len(encoded)} texts of {Path(args.texts).name}, against exact fp32; {cpu_name()}\n")
    print(table(["variant", "agreement", "mean |Δp|", "p99 |Δp|", "max |Δp|", "flips at ≤", "contract",
                 "alone vs batch", "texts/s, 1 core"], rows))  # fmt: skip


if __name__ == "__main__":
    main()
