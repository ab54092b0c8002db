"""Throughput, textclass modes vs the transformers pipeline (and Optimum + ONNX Runtime when installed), in one
process and one run, with each mode's share of this machine's measured GEMM peak for its dtype.

    python bench/make_models.py                       # once: builds bench/models/{distilbert-..., minilm-...}
    python bench/throughput.py --model bench/models/distilbert-sst2-shape [--limit 300] [--long]

Rows: pipeline (batch_size 1, its default), pipeline batch_size=32, Optimum's ORTModelForSequenceClassification
through the pipeline, fp32 and dynamic int8 (only when `optimum` is importable: never installed for you), then
each textclass mode (length-sorted batches under a token budget), then the CPU default as a user gets it (per-row
int8 with near ties scored again in fp32 on AVX2/VNNI CPUs: the share rescored is shown). Then a model unsure of
every text (--diffuse, bench/make_models.py's distilbert-diffuse): ONNX Runtime fp32 and the default on the same
texts, the default's speed as a ratio of fp32's (issue 28: never below 0.95x), and the targets, this run.
Columns: texts/s, tokens/s, speed-up over each pipeline row, label agreement with the fp32 pipeline, the largest
probability difference from it, and "of peak": the model's matrix-multiply work done per second (2 × multiply-
adds of its linear layers and attention, padding excluded) over a plain GEMM's rate in the same dtype, measured
in this run at a (2048 × hidden) × (hidden × intermediate) shape: ONNX Runtime MatMul for fp32, ONNX Runtime's
uint8 × int8 kernel for int8 (and uint8 × uint8, for a plan that stores its weights unsigned), torch for bf16. Load
time (first load exports and caches ONNX artefacts) is not counted; tokenization is. Prints markdown tables.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
from common import MODES, cpu_name, table, text_set, text_set_parser


def label_probs(results: list[list[dict]], labels: tuple[str, ...]) -> np.ndarray:
    """(texts, labels) probabilities, in `labels` order, from top_k=None results (the pipeline's or textclass's)."""
    scored = [{r["label"]: r["score"] for r in result} for result in results]
    return np.array([[scores[label] for label in labels] for scores in scored])


def pipeline_probs(pipe, texts: list[str], labels: tuple[str, ...], batch_size: int) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    results = pipe(texts, batch_size=batch_size, top_k=None, truncation=True)
    seconds = time.perf_counter() - start
    return label_probs(results, labels), seconds


def textclass_probs(clf, texts: list[str]) -> tuple[np.ndarray, float]:
    # Warm-up on the path the timed call takes: thread pools, first-call allocations, and the one-thread session
    # that side-by-side batches open on their first call (a 16-text warm-up left that inside the timing: -10%).
    clf(texts[: max(16, len(texts) // 4)], top_k=None)
    start = time.perf_counter()
    results = clf(texts, top_k=None)
    seconds = time.perf_counter() - start
    return label_probs(results, clf.labels), seconds


def linear_flops(config, tokens: float) -> float:
    """Multiply-add work ×2 of the encoder's linear layers for one text of `tokens` tokens, as the models run it: the
    last layer computes keys and values for every token, the rest for the first token only (models/encoder.py)."""
    hidden, inner, layers = config.hidden_size, config.intermediate_size, config.num_layers
    full = 4 * hidden * hidden + 2 * hidden * inner  # QKV, output, FFN in and out, per token
    return 2 * ((layers - 1) * full * tokens + 2 * hidden * hidden * tokens + full - 2 * hidden * hidden)


def model_flops(config, lengths: list[int]) -> float:
    """Multiply-add work ×2 of the encoder's linear layers and attention for these texts (no padding)."""
    layers, hidden = config.num_layers, config.hidden_size
    # QKᵀ and PV: n × n × hidden each in a full layer, 1 × n × hidden in the last.
    attention = sum(2 * 2 * hidden * n * ((layers - 1) * n + 1) for n in lengths)
    return sum(linear_flops(config, n) for n in lengths) + attention


def gemm_peaks(hidden: int, inner: int, threads: int) -> dict[str, float]:
    """FLOP/s of one (2048 × hidden) × (hidden × inner) product per dtype, best of several runs."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rows = 2048
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((hidden, inner)).astype(np.float32)
    x = rng.standard_normal((rows, hidden)).astype(np.float32)
    graphs = {
        "fp32": ([helper.make_node("MatMul", ["x", "w"], ["y"])], [numpy_helper.from_array(weight, "w")],
                 TensorProto.FLOAT, x),
        "int8": ([helper.make_node("MatMulIntegerToFloat", ["x", "w", "s", "s", "z"], ["y"], domain="com.microsoft")],
                 [numpy_helper.from_array(rng.integers(-63, 64, (hidden, inner)).astype(np.int8), "w"),
                  numpy_helper.from_array(np.float32(1.0), "s"), numpy_helper.from_array(np.uint8(128), "z")],
                 TensorProto.UINT8, rng.integers(0, 256, (rows, hidden)).astype(np.uint8)),
        # uint8 weights: the kernel per-row int8 uses on CPUs without VNNI (quantize.py)
        "int8 u8·u8": ([helper.make_node("MatMulIntegerToFloat", ["x", "w", "s", "s", "z", "z"], ["y"],
                                         domain="com.microsoft")],
                       [numpy_helper.from_array(rng.integers(1, 256, (hidden, inner)).astype(np.uint8), "w"),
                        numpy_helper.from_array(np.float32(1.0), "s"), numpy_helper.from_array(np.uint8(128), "z")],
                       TensorProto.UINT8, rng.integers(0, 256, (rows, hidden)).astype(np.uint8)),
    }  # fmt: skip
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    peaks = {}
    for dtype, (nodes, weights, input_type, feed) in graphs.items():
        graph = helper.make_graph(nodes, "gemm", [helper.make_tensor_value_info("x", input_type, [rows, hidden])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, inner])], weights)
        opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
        model = helper.make_model(graph, opset_imports=opsets)
        model.ir_version = 8
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        peaks[dtype] = 2 * rows * hidden * inner / _best(lambda s=session, f=feed: s.run(None, {"x": f}))
    try:
        import torch
    except ImportError:
        return peaks
    torch.set_num_threads(threads)
    # As nn.Linear runs it: weight (out, in). (x @ weight with weight (in, out) took another, 10x slower path.)
    a, b = torch.from_numpy(x).bfloat16(), torch.from_numpy(weight.T.copy()).bfloat16()
    peaks["bf16"] = 2 * rows * hidden * inner / _best(lambda: torch.nn.functional.linear(a, b))
    return peaks


def _best(call, runs: int = 7) -> float:
    call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times)


def pipeline_tokenizer(model: str):
    """The checkpoint's tokenizer for a transformers pipeline. DistilBERT takes no token types, but a tokenizer
    saved with BERT's input names still makes them, which transformers 4.x's DistilBERT refuses."""
    import json

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    model_type = json.loads((Path(model) / "config.json").read_text()).get("model_type")
    if model_type == "distilbert" and "token_type_ids" in tokenizer.model_input_names:
        tokenizer.model_input_names = ["input_ids", "attention_mask"]
    return tokenizer


def optimum_pipelines(model: str, work: Path, vnni: bool) -> dict[str, object]:
    """Optimum's fp32 export and its dynamic int8 (per-channel, the instruction set's config) as pipelines;
    empty when optimum is not installed (its own venv: ../shared/RECIPES.md)."""
    try:
        from optimum.onnxruntime import ORTModelForSequenceClassification, ORTQuantizer
        from optimum.onnxruntime.configuration import AutoQuantizationConfig
    except ImportError:
        return {}
    from transformers import pipeline

    tokenizer = pipeline_tokenizer(model)
    fp32 = ORTModelForSequenceClassification.from_pretrained(model, export=True)
    fp32.save_pretrained(work / "fp32")
    config = (AutoQuantizationConfig.avx512_vnni if vnni else AutoQuantizationConfig.avx2)(is_static=False,
                                                                                             per_channel=True)
    ORTQuantizer.from_pretrained(fp32).quantize(save_dir=work / "int8", quantization_config=config)
    int8 = ORTModelForSequenceClassification.from_pretrained(work / "int8")
    return {f"Optimum ORT {name}, batch_size=1": pipeline("text-classification", model=m, tokenizer=tokenizer)
            for name, m in (("fp32", fp32), ("int8 dynamic", int8))}  # fmt: skip


def main() -> None:
    parser = text_set_parser(__doc__, limit=300)
    parser.add_argument("--modes", default="all", help="comma-separated table labels' backends, e.g. onnx")
    parser.add_argument("--diffuse", default=str(Path(__file__).parent / "models" / "distilbert-diffuse"),
                        help="a model unsure of every text (bench/make_models.py): its default vs fp32 row")
    args = parser.parse_args()

    from textclass import Classifier
    from textclass.onnx.quantize import FORMATS, PLANS
    from textclass.runtime.cpu import detect, int8_plan
    from textclass.runtime.onnx_engine import cpu_threads
    from textclass.runtime.precision import pick_precision

    reference = Classifier.from_pretrained(args.model, dtype="fp32")
    count = lambda text: len(reference.tokenizer.encode_batch([text])[0])  # noqa: E731
    texts = text_set(args, count)
    lengths = [len(e) for e in reference.encode(texts)]
    tokens, flops = sum(lengths), model_flops(reference.config, lengths)
    default = pick_precision("cpu", preferred=reference.config.raw.get("textclass_precision"))
    shape = (reference.config.hidden_size, reference.config.intermediate_size, cpu_threads())
    peaks = gemm_peaks(*shape)

    from transformers import pipeline

    pipe = pipeline("text-classification", model=args.model, tokenizer=pipeline_tokenizer(args.model), device=-1)
    labels = reference.labels
    results, speeds = [], {}  # (name, probabilities, seconds, dtype of its matrix products); texts/s by engine
    truth, seconds = pipeline_probs(pipe, texts, labels, batch_size=1)
    speeds["b1"] = len(texts) / seconds
    b32_probs, seconds = pipeline_probs(pipe, texts, labels, batch_size=32)
    speeds["b32"] = len(texts) / seconds

    def row(name: str, probs: np.ndarray, seconds: float, dtype: str) -> list[str]:
        rate = len(texts) / seconds
        agree = (probs.argmax(1) == truth.argmax(1)).mean()
        share = f"{flops / seconds / peaks[dtype]:.0%} of {dtype}" if dtype in peaks else "–"
        return [name, f"{rate:.0f}", f"{tokens / seconds:,.0f}", f"{rate / speeds['b1']:.1f}×",
                f"{rate / speeds['b32']:.1f}×", f"{agree:.2%}", f"{np.abs(probs - truth).max():.1e}",
                share]  # fmt: skip

    results.append(("pipeline, batch_size=1 (default)", truth, len(texts) / speeds["b1"], "fp32"))
    results.append(("pipeline, batch_size=32", b32_probs, len(texts) / speeds["b32"], "fp32"))
    with tempfile.TemporaryDirectory() as work:
        for name, peer in optimum_pipelines(args.model, Path(work), detect().int8_dot).items():
            probs, seconds = pipeline_probs(peer, texts, labels, batch_size=1)
            results.append((name, probs, seconds, "int8" if "int8" in name else "fp32"))
    for name, backend, dtype in [*MODES, ("default", None, None)]:
        if args.modes != "all" and str(backend) not in args.modes.split(","):
            continue
        clf = Classifier.from_pretrained(args.model, backend=backend, dtype=dtype)
        probs, seconds = textclass_probs(clf, texts)
        kind = {"float32": "fp32", "bfloat16": "bf16"}.get(clf.engine.dtype, clf.engine.dtype)
        if clf.engine.backend == "onnx" and kind == "int8" and FORMATS[PLANS[int8_plan()]].weight_dtype == np.uint8:
            kind = "int8 u8·u8"  # the plan's weights are stored unsigned: the u8·u8 kernel's peak
        if backend is None:  # the CPU default: its mode, and how many texts it scored again in fp32 (rescore.py)
            counts = clf.engine.rescored
            again = f", {counts.again / counts.texts:.1%} rescored in fp32" if counts is not None else ""
            name = f"default ({clf.precision}{again})"
            speeds["default"] = len(texts) / seconds
        if (backend, dtype) == ("onnx", "fp32"):
            speeds["onnx fp32"] = len(texts) / seconds
        results.append((f"textclass {name}", probs, seconds, kind))
        del clf
    diffuse = diffuse_row(args.diffuse, texts) if args.diffuse and Path(args.diffuse).is_dir() else None

    # Measured again after the modes, the better of the two kept: a busy machine slows one measurement.
    peaks = {dtype: max(peak, again) for (dtype, peak), again in zip(peaks.items(), gemm_peaks(*shape).values())}
    mean = tokens / len(texts)
    print(f"\n{Path(args.model).name}, {len(texts)} texts ({mean:.0f} tokens mean), {cpu_name()}; "
          f"{flops / tokens / 1e6:.0f} MFLOP per token\n")  # fmt: skip
    print(f"default here: {default.backend}-{default.dtype} ({default.reason})\n")
    header = ["engine", "texts/s", "tokens/s", "vs pipeline", "vs pipeline b32", "label agreement", "max Δprob",
              "of peak"]  # fmt: skip
    print(table(header, [row(*result) for result in results]))
    print("\nGEMM peak measured in this run: " + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in peaks.items()))
    targets = []
    if "default" in speeds:
        targets.append(f"default vs the pipeline (batch 1): {speeds['default'] / speeds['b1']:.1f}× (target ≥ 8× on "
                       "VNNI/AMX, ≥ 3.3× on AVX2)")  # fmt: skip
    if "default" in speeds and "onnx fp32" in speeds:
        targets.append(f"default vs ONNX Runtime fp32 on this model: {speeds['default'] / speeds['onnx fp32']:.2f}×")
    if diffuse is not None:
        print("\n" + table(["diffuse model (random head: every text a near tie)", "texts/s", "vs ONNX Runtime fp32"],
                            diffuse[0]))  # fmt: skip
        targets.append(f"default vs ONNX Runtime fp32 on the diffuse model: {diffuse[1]:.2f}× (target ≥ 0.95×)")
    print("\nTargets (issue 28), this run:\n" + "\n".join(f"- {line}" for line in targets))


def diffuse_row(model: str, texts: list[str]) -> tuple[list[list[str]], float]:
    """ONNX Runtime fp32 and the CPU default on a model unsure of every text, on the same texts, interleaved twice
    (the better run of each kept): rows, and the default's speed as a share of fp32's."""
    from textclass import Classifier

    engines = {"textclass onnx fp32": Classifier.from_pretrained(model, backend="onnx", dtype="fp32"),
               "textclass default": Classifier.from_pretrained(model)}  # fmt: skip
    rates: dict[str, float] = {}
    for _ in range(2):
        for name, clf in engines.items():
            _, seconds = textclass_probs(clf, texts)
            rates[name] = max(rates.get(name, 0.0), len(texts) / seconds)
    fp32 = rates["textclass onnx fp32"]
    rows = [[f"{name} ({clf.precision}: {clf.precision_reason})" if name.endswith("default") else name,
             f"{rates[name]:.0f}", f"{rates[name] / fp32:.2f}×"] for name, clf in engines.items()]  # fmt: skip
    return rows, rates["textclass default"] / fp32


if __name__ == "__main__":
    main()
