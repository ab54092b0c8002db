"""The fast CPU default: per-row int8 (quantize.py) chosen by the CPU's flags (cpu.py), held to the accuracy
contract (contract.py), checked by `textclass check`, and served answers that do not move with traffic.

The rest of the suite pins exact fp32 (conftest.py sets TEXTCLASS_PRECISION); these tests remove the pin.
CPU kinds other than this machine's are simulated by replacing cpu.detect: only the choice is tested under
simulated flags, never a graph run (an 8-bit-weight graph would overflow on a CPU without VNNI). The graphs of the
AVX2 path run where CI runs this file again under tools/avx2-view (AVX2 kernels, AVX2 format: .ci/run).
"""

from __future__ import annotations

import asyncio
import csv
import json
import math
import warnings

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import SST2
from textclass.accuracy.check import probabilities
from textclass.accuracy.contract import CONTRACT, evaluate
from textclass.checkpoint.locate import DEFAULT_MODEL, bundled_models
from textclass.classifier import Classifier
from textclass.onnx import quantize
from textclass.runtime import cpu
from textclass.runtime.precision import PRECISION_ENV, Precision, pick_precision

BASE = "fpu vme de pse tsc msr pae mce cx8 apic sep sse sse2 ssse3 sse4_1 sse4_2 popcnt avx f16c"
FLAGS = {  # the three CPUs of ../shared/RECIPES.md, by the flags that matter
    "avx2": f"{BASE} fma avx2 bmi2",  # (b) AMD EPYC without AVX-512
    "zen4": f"{BASE} fma avx2 avx512f avx512bw avx512_vnni avx512_bf16",  # (a) AMD EPYC Zen4
    "amx": f"{BASE} fma avx2 avx512f avx512bw avx512_vnni avx512_bf16 amx_bf16 amx_int8 amx_tile",  # (c) Xeon SPR
    "old": BASE,  # x86 without AVX2
}
THIS_CPU = cpu.detect()
bundled = pytest.mark.skipif(DEFAULT_MODEL not in bundled_models(), reason="bundled model not installed")


@pytest.fixture(autouse=True)
def cpu_default(monkeypatch):
    """This CPU's own default for every test here, not the suite's fp32 pin."""
    monkeypatch.delenv(PRECISION_ENV, raising=False)


def simulate(monkeypatch, kind: str, name: str = "AMD EPYC", machine: str = "x86_64") -> cpu.CpuFeatures:
    features = cpu.CpuFeatures(machine, frozenset(FLAGS.get(kind, kind).split()), name)
    monkeypatch.setattr(cpu, "detect", lambda: features)
    return features


def dev_sentences(count: int) -> list[str]:
    """SST-2 dev sentences: text the bundled model never saw. (Its train phrases, even the 2,000 held out from
    fitting, overlap the fitted ones and are scored so confidently that int8 errors hardly show on them.)"""
    if not (SST2 / "dev.tsv").is_file():
        pytest.skip(f"SST-2 data not found at {SST2}")
    with open(SST2 / "dev.tsv", encoding="utf-8") as handle:
        rows = [row[0] for row in list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]]
    return rows[:count]


# ---- the contract, a pure function ---------------------------------------------------------------------------
def two_labels(p_positive) -> np.ndarray:
    p = np.asarray(p_positive, dtype=np.float64)
    return np.stack([1 - p, p], axis=1)


def test_contract_holds_for_small_changes_and_names_each_clause():
    reference = two_labels(np.linspace(0.6, 0.98, 1000))
    fast = two_labels(np.linspace(0.6, 0.98, 1000) + 0.001)
    verdict = evaluate(reference, fast, fast[:10], fast[:10])
    assert verdict.holds and verdict.agreement == 1.0 and verdict.flips == 0
    assert verdict.mean_delta == pytest.approx(0.001) and verdict.p99_delta == pytest.approx(0.001)
    assert [c.name for c in verdict.clauses][0] == "label agreement" and len(verdict.clauses) == 5
    assert json.loads(json.dumps(verdict.as_dict()))["holds"] is True


def test_contract_allows_label_changes_only_on_near_ties():
    p = np.full(1000, 0.9)
    p[:3] = 0.52  # three near ties flip: 99.7% agreement, allowed
    moved = p.copy()
    moved[:3] = 0.48
    verdict = evaluate(two_labels(p), two_labels(moved), np.zeros((0, 2)), np.zeros((0, 2)))
    assert verdict.holds and verdict.flips == 3 and verdict.agreement == pytest.approx(0.997)
    assert verdict.flip_confidence == pytest.approx(0.52)
    moved[3] = 0.3  # one confident text (fp32 0.9) flips: agreement still 99.6%, but the near-tie clause fails
    verdict = evaluate(two_labels(p), two_labels(moved), np.zeros((0, 2)), np.zeros((0, 2)))
    failed = [c.name for c in verdict.clauses if not c.holds]
    assert failed == ["changed labels only on near ties (fp32 top probability)"] and not verdict.holds


@pytest.mark.parametrize(
    ("change", "failing"),
    [
        (lambda d: d + 0.006, "mean |Δp|"),  # every text moves a little: the mean fails, nothing else
        (lambda d: np.where(np.arange(d.size) < 20, d + 0.06, d), "p99 |Δp|"),  # 2% of texts move a lot
    ],
)
def test_contract_bounds_mean_and_99th_percentile(change, failing):
    p = np.full(1000, 0.2)
    verdict = evaluate(two_labels(p), two_labels(change(p)), np.zeros((0, 2)), np.zeros((0, 2)))
    assert [c.name for c in verdict.clauses if not c.holds] == [failing]


def test_contract_bounds_batch_dependence_and_reports_the_largest_change():
    p = two_labels(np.full(100, 0.8))
    moved = p.copy()
    moved[0] = [0.0, 1.0]  # one text moves by 0.2: reported as the maximum, bounded by nothing
    alone = p[:5].copy()
    alone[2, :] += [-2e-4, 2e-4]
    verdict = evaluate(p, moved, alone, p[:5])
    assert verdict.max_delta == pytest.approx(0.2) and verdict.batch_delta == pytest.approx(2e-4)
    assert [c.name for c in verdict.clauses if not c.holds] == ["alone vs in a batch, max |Δp|"]


def test_contract_for_independent_labels_and_bad_shapes():
    reference = np.array([[0.9, 0.55, 0.1], [0.2, 0.3, 0.95]] * 500)
    fast = reference.copy()
    fast[0, 1] = 0.45  # a near tie (0.55) changes its yes/no: allowed
    verdict = evaluate(reference, fast, fast[:2], fast[:2], exclusive=False)
    assert verdict.flips == 1 and verdict.flip_confidence == pytest.approx(0.55) and verdict.holds
    with pytest.raises(ValueError, match="same"):
        evaluate(reference, fast[:10], fast[:2], fast[:2])
    assert CONTRACT.min_agreement == 0.995 and CONTRACT.max_batch_delta == 1e-4


# ---- choosing the mode by instruction set --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "dtype", "plan", "decisive"),
    [("avx2", "int8", "avx2", "avx2"), ("zen4", "int8", "vnni", "avx512_vnni"), ("amx", "int8", "vnni", "amx_int8"),
     ("old", "float32", "avx2", "no AVX2")],
)  # fmt: skip
def test_default_follows_the_instruction_set_never_the_vendor(monkeypatch, kind, dtype, plan, decisive):
    for name in ("AMD EPYC 9R14", "Intel(R) Xeon(R) Platinum 8488C"):
        simulate(monkeypatch, kind, name)
        precision = pick_precision("cpu")
        assert precision == Precision("onnx", dtype, required=False, rescore=dtype == "int8")
        assert decisive in precision.reason and cpu.int8_plan() == plan
    from textclass.onnx.export import export_settings

    # The cached int8 graph's key holds the plan runtime/ passes in: one built for another instruction set is
    # another entry, never run here.
    assert export_settings("int8", cpu.int8_plan())["quantization"]["plan"] == plan


def test_arm_and_the_machine_pin_choose_exact_fp32(monkeypatch):
    simulate(monkeypatch, "fp asimd asimddp sve", "Neoverse-V1", machine="aarch64")
    assert pick_precision("cpu") == Precision("onnx", "float32", required=False)
    simulate(monkeypatch, "avx2")
    monkeypatch.setenv(PRECISION_ENV, "onnx-fp32")
    pinned = pick_precision("cpu")
    assert pinned == Precision("onnx", "float32", required=False) and PRECISION_ENV in pinned.reason
    # The checkpoint's own pin comes first; exact fp32 stays one argument away.
    assert pick_precision("cpu", preferred="onnx-int8") == Precision("onnx", "int8", rescore=True)
    monkeypatch.setenv(PRECISION_ENV, "onnx-int8")  # a pin is the mode check measured: near ties rescored
    assert pick_precision("cpu") == Precision("onnx", "int8", required=False, rescore=True)
    assert pick_precision("cpu", dtype="int8") == Precision("onnx", "int8")  # by name: int8 alone
    monkeypatch.delenv(PRECISION_ENV)
    assert pick_precision("cpu", dtype="float32").dtype == "float32"


def test_the_cpu_token_budget_follows_the_instruction_set(monkeypatch):
    """AMX's int8 products are fast enough that smaller, cache-resident batches win (docs/performance.md)."""
    budgets = {kind: cpu.cpu_batch_tokens(cpu.CpuFeatures("x86_64", frozenset(FLAGS[kind].split())))
               for kind in ("avx2", "zen4", "amx", "old")}  # fmt: skip
    assert budgets == {"avx2": 1024, "zen4": 1024, "amx": 256, "old": 1024}
    assert cpu.cpu_batch_tokens(cpu.CpuFeatures("aarch64", frozenset({"amx_int8"}))) == 1024  # x86 flags only
    # What a classifier on this machine cuts by, unless asked otherwise.
    assert Classifier.from_pretrained(backend="onnx").max_batch_tokens == cpu.cpu_batch_tokens(THIS_CPU)
    assert Classifier.from_pretrained(backend="onnx", max_batch_tokens=512).max_batch_tokens == 512


def test_proc_cpuinfo_flags_are_read_from_the_first_processor():
    text = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Xeon\nflags\t\t: fpu avx2 fma amx_int8\n\n" \
           "processor\t: 1\nflags\t\t: fpu\n"  # fmt: skip
    flags, name = cpu._proc_cpuinfo(text)
    assert flags == {"fpu", "avx2", "fma", "amx_int8"} and name == "Xeon"
    assert cpu.CpuFeatures("x86_64", frozenset(flags)).kind == "vnni"
    assert THIS_CPU.kind in ("vnni", "avx2", "other")


def test_bf16_on_a_cpu_without_it_warns_and_a_pinned_one_falls_back(monkeypatch, caplog):
    pytest.importorskip("torch", reason="bf16 runs on torch")
    simulate(monkeypatch, "avx2")
    with pytest.warns(UserWarning, match="no native bf16.*emulates it, about 6x slower.*dtype='fp32'"):
        assert pick_precision("cpu", dtype="bf16") == Precision("torch", "bfloat16")
    with caplog.at_level("WARNING", logger="textclass"):
        fallback = pick_precision("cpu", preferred="torch-bf16")
    assert fallback == Precision("onnx", "int8", required=False, rescore=True)
    assert "textclass_precision=torch-bf16, but this CPU has no native bf16" in caplog.text
    simulate(monkeypatch, "amx")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # native bf16: no warning, and a pin is honoured
        assert pick_precision("cpu", dtype="bf16") == Precision("torch", "bfloat16")
        assert pick_precision("cpu", preferred="torch-bf16") == Precision("torch", "bfloat16")


# ---- the per-row int8 graph ----------------------------------------------------------------------------------
def test_the_format_for_cpus_without_vnni_cannot_overflow_int16_pair_sums():
    formats = quantize.FORMATS
    assert not formats[quantize.PLANS["avx2"]].overflows_without_vnni()  # 7-bit weights: 2·255·63 ≤ 32767
    assert not formats["a8w8u"].overflows_without_vnni()  # u8·u8: 16-bit products
    assert not formats["a7w8"].overflows_without_vnni()
    assert formats["a8w8"].overflows_without_vnni()  # 2·255·127 > 32767: u8·s8 at 8 bits is for VNNI CPUs only
    assert quantize.PLANS["vnni"] == "a8w8"


def rewritten(m: int, k: int = 64, n: int = 48, seed: int = 0):
    """x (1, m, k) -> [x @ W1, gelu(x + b) @ W2] as an ONNX graph rewritten to per-row int8 (plan avx2, smoothed by
    the channels' ranges in x): the model, x, gelu(x + b), the weights and each layer's smoothing."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w1, w2 = (rng.standard_normal((k, n)).astype(np.float32) * 0.1 for _ in range(2))
    bias = rng.standard_normal(k).astype(np.float32) * 0.1
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["y1"]),
             helper.make_node("BiasGelu", ["x", "b"], ["g"], domain="com.microsoft"),
             helper.make_node("MatMul", ["g", "w2"], ["y2"])]  # fmt: skip
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", k])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", "seq", n]) for name in ("y1", "y2")],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2"), numpy_helper.from_array(bias, "b")],
    )  # fmt: skip
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    x = rng.standard_normal((1, m, k)).astype(np.float32)
    x[..., ::7] *= 8  # outlier channels: a large row maximum, the case that overflows 8-bit × 8-bit
    gelu = (x + bias) * 0.5 * (1 + np.vectorize(math.erf)((x + bias) / np.sqrt(2)))
    ranges = {"w1": np.abs(x).max((0, 1)), "w2": np.abs(gelu).max((0, 1))}  # (k,): each channel's largest |x|
    quantize.quantize_rows(model, "avx2", ranges)
    onnx.checker.check_model(model)
    smooth = {name: np.clip(ranges[name] ** 0.5 / np.abs(w).max(1) ** 0.5, 1e-2, 1e2).astype(np.float32)
              for name, w in (("w1", w1), ("w2", w2))}  # fmt: skip
    return model, x, gelu, (w1, w2), smooth


def simulate_row_int8(x: np.ndarray, w: np.ndarray, smooth: np.ndarray, shift: float) -> np.ndarray:
    """What the rewritten graph computes, in numpy: smoothed channels, per-row activations, per-column weights,
    integer sums."""
    form = quantize.FORMATS[quantize.PLANS["avx2"]]
    levels = 2**form.activation_bits - 1 if shift else 2 ** (form.activation_bits - 1) - 1
    x = (x + shift) * (1 / smooth)
    peak = x.max(-1, keepdims=True) if shift else np.abs(x).max(-1, keepdims=True)
    scale = peak / levels
    q = np.round((x / peak).astype(np.float32) / np.float32(1 / levels))
    stored, w_scale = quantize.quantize_weight(w * smooth[:, None], form)
    integers = stored.astype(np.float64) - form.weight_zero
    dequantized = integers * w_scale / smooth[:, None]
    return (q.astype(np.float64) @ integers) * scale * w_scale - shift * dequantized.sum(0)


def test_row_int8_computes_its_numpy_model_without_overflow_and_row_by_row():
    import onnxruntime as ort

    model, x, gelu, (w1, w2), smooth = rewritten(m=12)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    y1, y2 = session.run(None, {"x": x})
    # Integer sums are exact: the graph equals the simulation to float rounding (an int16 overflow would not).
    np.testing.assert_allclose(y1, simulate_row_int8(x, w1, smooth["w1"], 0.0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(y2, simulate_row_int8(gelu, w2, smooth["w2"], quantize.GELU_SHIFT), rtol=1e-4,
                               atol=1e-4)  # fmt: skip
    assert np.abs(y1 - x @ w1).max() < 0.03 * np.abs(x @ w1).max()  # and both are close to fp32
    assert np.abs(y2 - gelu @ w2).max() < 0.03 * np.abs(gelu @ w2).max()
    # A row of zeros has peak 0: whatever QuantizeLinear makes of 0/0, the product scales it by 0, an exact zero row.
    zeros = x.copy()
    zeros[0, 3] = 0
    y1, y2 = session.run(None, {"x": zeros})
    assert np.isfinite(y1).all() and np.isfinite(y2).all() and not y1[0, 3].any()
    np.testing.assert_allclose(y1[0, :3], simulate_row_int8(x, w1, smooth["w1"], 0.0)[0, :3], rtol=1e-4, atol=1e-4)
    for row in (0, 5, 11):  # each row alone gives, bit for bit, what it gives among the others
        alone = session.run(None, {"x": x[:, row : row + 1]})
        assert all(np.array_equal(a[0, 0], b[0, row]) for a, b in zip(alone, (y1, y2)))
    assert not {init.name for init in model.graph.initializer} - {i for n in model.graph.node for i in n.input}


@bundled
def test_per_row_int8_keeps_the_contract_on_the_trained_model_whatever_the_batch():
    texts = dev_sentences(300)
    fast = Classifier.from_pretrained(dtype="int8")
    exact = Classifier.from_pretrained(backend="onnx", dtype="fp32")
    assert fast.precision == "onnx-int8" and "asked for" in fast.precision_reason
    fast_probs = probabilities(fast, texts)
    alone = probabilities(fast, texts[:40], batch_size=1)
    verdict = evaluate(probabilities(exact, texts), fast_probs, alone, fast_probs[:40])
    assert verdict.holds, verdict.clauses
    assert verdict.batch_delta <= 1e-6  # integer sums: alone and batched agree to float rounding, here exactly
    # Other batch compositions (a small token budget: other neighbours, other padding) change nothing either.
    fast.max_batch_tokens = 128
    assert np.abs(probabilities(fast, texts[:80]) - fast_probs[:80]).max() <= 1e-6


@bundled
def test_the_default_scores_near_ties_again_in_fp32_and_keeps_the_rest_in_int8():
    """The CPU default (rescore.py): a text int8 leaves near a tie gets exact fp32's logits, every other text
    per-row int8's, and either way the same alone as in any batch."""
    from textclass.runtime.rescore import MARGIN, RescoringEngine, near_ties

    sentences = dev_sentences(120)
    texts = sentences + [f"{a.strip()}, but {b.strip()}" for a, b in zip(sentences[:60], sentences[60:])]
    default = Classifier.from_pretrained()
    if default.precision != "onnx-int8":
        pytest.skip(f"this CPU's default is {default.precision}: no int8 to rescore")
    assert isinstance(default.engine, RescoringEngine) and "near ties" in default.precision_reason
    int8 = Classifier.from_pretrained(dtype="int8")  # asked for by name: per-row int8 alone
    exact = Classifier.from_pretrained(backend="onnx", dtype="fp32")
    assert not isinstance(int8.engine, RescoringEngine)
    got, fast, reference = default.logits(texts), int8.logits(texts), exact.logits(texts)
    ties = near_ties(fast, "softmax", default.temperature)
    assert 3 <= len(ties) < len(texts) // 2, "the texts should hold a few near ties, not only near ties"
    assert default.engine.rescored.again == len(ties) and default.engine.rescored.texts == len(texts)
    others = np.setdiff1d(np.arange(len(texts)), ties)
    np.testing.assert_allclose(got[ties], reference[ties], rtol=0, atol=1e-5)
    np.testing.assert_array_equal(got[others], fast[others])
    # A near tie is a top-two gap of at most MARGIN in int8's own probabilities (then fp32 scores it again).
    top2 = np.sort(default.scores(fast), axis=1)[:, -2:]
    assert set(ties.tolist()) == {i for i, (low, high) in enumerate(top2) if high - low <= MARGIN}
    alone = np.concatenate([default.logits([text]) for text in texts[::7]])
    np.testing.assert_allclose(alone, got[::7], rtol=0, atol=1e-5)
    default.max_batch_tokens = 96  # other neighbours, other padding
    np.testing.assert_allclose(default.logits(texts), got, rtol=0, atol=1e-5)


def test_near_ties_for_exclusive_and_independent_labels():
    from textclass.runtime.rescore import near_ties

    # softmax: top minus runner-up at most 0.5 (two labels: top probability at most 0.75)
    logits = np.log(np.array([[0.7, 0.3], [0.8, 0.2], [0.5, 0.5], [0.1, 0.9], [0.6, 0.3, 0.1][:2]]))
    assert near_ties(logits, "softmax").tolist() == [0, 2, 4]
    three = np.log(np.array([[0.65, 0.3, 0.05], [0.9, 0.05, 0.05], [0.45, 0.45, 0.1], [0.5, 0.2, 0.3]]))
    assert near_ties(three, "softmax").tolist() == [2, 3]  # more labels: top probability ≤ 0.6 (test_never_slower.py)
    # sigmoid: any label within 0.25 of 0.5
    p = np.array([[0.9, 0.1], [0.9, 0.6], [0.2, 0.05]])
    assert near_ties(np.log(p / (1 - p)), "sigmoid").tolist() == [1]
    # a calibration temperature sharpens or flattens first
    assert near_ties(np.log(np.array([[0.7, 0.3]])), "softmax", temperature=0.5).tolist() == []


def test_regroup_batches_rows_of_several_batches_afresh():
    from textclass.runtime.batching import Batch, regroup

    def batch(indices, lengths, width):
        ids = np.full((len(lengths), width), 9, dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, n in enumerate(lengths):
            ids[row, :n], mask[row, :n] = 100 + np.arange(n), 1
        return Batch(np.array(indices), ids, mask, np.zeros_like(ids))

    batches = [batch([4, 0], [6, 5], 6), batch([3, 1, 2], [3, 3, 2], 3)]
    picks = [(0, 1), (1, 0), (1, 2)]
    groups = list(regroup(batches, picks, max_batch_tokens=1024, pad_token_id=7))
    assert len(groups) == 1
    group, new = groups[0]
    assert sorted(group) == [0, 1, 2] and new.input_ids.shape == (3, 5)
    assert new.indices.tolist() == [batches[b].indices[r] for b, r in (picks[g] for g in group)]
    for row, g in enumerate(group):
        b, r = picks[g]
        n = int(batches[b].attention_mask[r].sum())
        assert new.input_ids[row, :n].tolist() == list(range(100, 100 + n))
        assert (new.input_ids[row, n:] == 7).all() and new.attention_mask[row].sum() == n
    small = list(regroup(batches, picks, max_batch_tokens=6, pad_token_id=7))  # the budget cuts
    assert sorted(g for group, _ in small for g in group) == [0, 1, 2] and len(small) >= 2
    assert all(new.input_ids.size <= 6 or len(group) == 1 for group, new in small)


# ---- the default at work: check, inspect, -v, the server ------------------------------------------------------
def expected_default() -> str:
    return f"onnx-{pick_precision('cpu').dtype}"


@bundled
def test_check_command_measures_the_default_on_a_file(tmp_path):
    from textclass.cli.app import app

    texts = dev_sentences(80)
    data = tmp_path / "reviews.csv"
    with open(data, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "review"])
        writer.writerows(enumerate(texts))
    runner = CliRunner()
    done = runner.invoke(app, ["check", "--data", str(data), "--text-column", "review", "--json"])
    report = json.loads(done.stdout)
    verdict = report["verdict"]
    assert done.exit_code == (0 if verdict["holds"] else 2)
    assert report["mode"] == expected_default() and report["reference"] == "onnx-float32"
    assert verdict["texts"] == 80 and verdict["agreement"] >= 0.99 and verdict["batch_delta"] <= 1e-4
    assert report["mode_texts_per_second"] > 0 and report["reference_texts_per_second"] > 0
    lines = tmp_path / "texts.txt"
    lines.write_text("\n".join(texts[:30]) + "\n\n", encoding="utf-8")
    shown = runner.invoke(app, ["check", "--data", str(lines)])
    assert "label agreement" in shown.stdout and "30 texts" in shown.stdout and "why this mode" in shown.stdout
    missing = runner.invoke(app, ["check", "--data", str(data)])
    assert missing.exit_code == 1
    assert "has no 'text' or 'sentence' column; its columns are: id, review" in missing.stderr


@bundled
def test_inspect_and_verbose_say_which_mode_runs_and_why():
    from textclass.cli.app import app

    info = json.loads(CliRunner().invoke(app, ["inspect", "--json"]).stdout)
    assert info["default_precision"] == expected_default() and "CPU default" in info["precision_reason"]
    done = CliRunner().invoke(app, ["classify", "-v", "a gorgeous, witty, seductive movie."])
    assert done.exit_code == 0 and "POSITIVE" in done.stdout
    assert f"runs {expected_default()}: CPU default" in done.stderr


@bundled
def test_served_answers_do_not_move_with_concurrent_traffic():
    from textclass.server.app import create_app
    from textclass.server.settings import ServerSettings

    clf = Classifier.from_pretrained()
    assert clf.precision == expected_default()
    probe = "a gorgeous, witty, seductive movie."
    others = dev_sentences(64)

    async def run() -> tuple[dict, list, list]:
        app = create_app(clf, ServerSettings())
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as http:
            async with app.router.lifespan_context(app):
                info = (await http.get("/info")).json()
                alone = (await http.post("/", json={"inputs": probe})).json()
                # 16 clients at once, each with the probe (at position i % 4) among texts of other lengths: the
                # batcher mixes them into shared batches.
                inputs = [others[4 * i : 4 * i + i % 4] + [probe] + others[4 * i + 2 : 4 * i + 4] for i in range(16)]
                crowd = await asyncio.gather(*(http.post("/", json={"inputs": texts}) for texts in inputs))
        return info, alone, [answer.json() for answer in crowd]

    info, alone, crowd = asyncio.run(run())
    assert info["precision"] == expected_default() and "CPU default" in info["precision_reason"]
    scores = {item["label"]: item["score"] for item in alone[0]}
    for i, answer in enumerate(crowd):
        ours = {item["label"]: item["score"] for item in answer[i % 4]}
        assert ours.keys() == scores.keys()
        assert max(abs(ours[label] - scores[label]) for label in scores) <= 1e-6


@bundled
def test_near_ties_keep_their_int8_answers_when_no_fp32_engine_opens(caplog):
    """The second opinion never costs an answer: an fp32 engine that cannot be opened leaves int8's, with a warning."""
    from textclass.runtime.rescore import RescoringEngine, near_ties

    default = Classifier.from_pretrained()
    if not isinstance(default.engine, RescoringEngine):
        pytest.skip(f"this CPU's default is {default.precision}: no int8 to rescore")

    def broken():
        raise OSError("disk full")

    default.engine._open_exact = broken
    # Mixed and lukewarm texts, of which the bundled model leaves some near a tie (top score 0.53-0.63 for
    # "some good parts, some bad", "so-so", "average"), and clear ones.
    texts = ["some good parts, some bad", "so-so", "average", "not the worst", "a mixed bag", "great", "awful"] * 2
    int8 = Classifier.from_pretrained(dtype="int8")
    expected = int8.logits(texts)
    assert len(near_ties(expected, "softmax", int8.temperature)) >= 3, "these texts should hold near ties"
    with caplog.at_level("WARNING", logger="textclass"):
        np.testing.assert_array_equal(default.logits(texts), expected)
        default.logits(texts)
    assert sum("no fp32 engine (disk full)" in r.message for r in caplog.records) == 1
    assert default.engine.rescored.again == 0 and default.engine.rescored.texts == 2 * len(texts)


def test_check_says_to_pin_fp32_where_the_mode_ran_slower(capsys, tmp_path):
    from textclass.accuracy.check import Measurement
    from textclass.cli.check import _print

    probs = two_labels(np.linspace(0.05, 0.95, 50))
    verdict = evaluate(probs, probs, probs[:5], probs[:5])
    slow = Measurement(verdict, "onnx-int8", "CPU default", "onnx-float32", 90.0, 100.0, rescored=0.4)
    _print(slow, tmp_path / "texts.txt")
    shown = " ".join(capsys.readouterr().out.split())
    assert "40.0% of the texts" in shown and 'ran slower than exact fp32' in shown and '"onnx-fp32"' in shown
    _print(Measurement(verdict, "onnx-int8", "CPU default", "onnx-float32", 110.0, 100.0, rescored=0.01), tmp_path)
    assert "ran slower" not in capsys.readouterr().out
    # A default that is exact fp32 already (a model unsure of its texts): nothing to pin, whatever the timings said.
    _print(Measurement(verdict, "onnx-float32", "CPU default", "onnx-float32", 99.0, 100.0), tmp_path)
    shown = " ".join(capsys.readouterr().out.split())
    assert "ran slower" not in shown and "onnx-float32 is exact fp32 already" in shown

