"""Precision and backend modes agree with fp32, the rules that choose them, and falling back when an export fails.

Correctness only; speed is measured by bench/throughput.py and bench/latency.py.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import CORPUS, make_model, make_tokenizer
from textclass import Classifier
from textclass.checkpoint.locate import DEFAULT_MODEL, bundled_models
from textclass.errors import InputError
from textclass.onnx import cache
from textclass.runtime.batching import make_batches
from textclass.runtime.precision import Precision, pick_device, pick_precision

WORDPIECE = ("bert", "distilbert")
MODES = [("torch", "bf16"), ("torch", "int8"), ("onnx", "fp32"), ("onnx", "int8")]
TEXTS = CORPUS + [
    "a gorgeous, witty, seductive movie.",
    "the plot is nothing but boilerplate clichés from start to finish.",
    "It is a masterpiece of quiet, patient storytelling.",
    "I walked out after twenty minutes, bored stiff.",
    "",
    "ok",
    "word " * 40,
]


def save_checkpoint(folder, family, vocab_txt, seed=0):
    """A tiny checkpoint with its output layer scaled up, so logits sit far apart and rounding cannot flip them.

    (A random tiny encoder gives texts similar pooled features, so labels vary little between texts; the
    closeness of the logits, checked too, is the sharper test.)
    """
    import torch

    tokenizer = None if family in WORDPIECE else make_tokenizer(family, vocab_txt)
    model = make_model(family, len(tokenizer) if tokenizer else 30522, num_labels=3, seed=seed)
    out = model.classifier.out_proj if family == "roberta" else model.classifier
    with torch.no_grad():
        out.weight.mul_(50.0)
    model.save_pretrained(folder)
    if tokenizer is None:
        # MiniLM's own bert-base-uncased tokenizer files: with transformers 5, BertTokenizerFast(vocab_file=...)
        # builds a 5-token vocabulary, which would turn every text into [UNK]s.
        for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
            shutil.copy(vocab_txt.parent / name, folder / name)
    else:
        tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(autouse=True)
def user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TEXTCLASS_CACHE", str(tmp_path / "user-cache"))
    return tmp_path / "user-cache"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, vocab_txt):
    """family -> checkpoint folder (its ONNX artefacts are built by the first test that needs them)."""
    return {
        f: save_checkpoint(tmp_path_factory.mktemp(f"prec-{f}"), f, vocab_txt)
        for f in ("bert", "distilbert", "roberta")
    }


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Label agreement with the reference `b` on the texts that are not near ties in `b` (top-2 logit gap over
    5% of the logit range: a lossy mode may flip a tie, as the accuracy contract allows). The reference must
    predict several labels there, or a constant predictor would agree perfectly and the figure prove nothing."""
    top2 = np.sort(b, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 0.05 * np.ptp(b)
    assert clear.sum() >= len(b) // 2 and len(set(b[clear].argmax(1).tolist())) >= 2, "reference too uniform"
    return float((a[clear].argmax(1) == b[clear].argmax(1)).mean())


@pytest.mark.parametrize("family", ["bert", "distilbert", "roberta"])
@pytest.mark.parametrize(("backend", "dtype"), MODES, ids=[f"{b}-{d}" for b, d in MODES])
def test_every_mode_agrees_with_fp32(tiny, family, backend, dtype):
    reference = Classifier.from_pretrained(tiny[family], dtype="fp32").logits(TEXTS)
    clf = Classifier.from_pretrained(tiny[family], dtype=dtype, backend=backend)
    assert clf.engine.backend == backend
    logits = clf.logits(TEXTS)
    assert logits.shape == reference.shape and logits.dtype == np.float32
    # A random tiny encoder pools every text to nearly the same vector, so its labels barely vary and label
    # agreement means nothing here (test_lossy_modes_keep_labels_of_the_trained_model checks it); the closeness
    # of the logits is the sharper test.
    if dtype == "fp32":
        np.testing.assert_allclose(logits, reference, atol=1e-4, rtol=1e-4)
    else:  # lossy, but near: a mode that mangled the weights would not be (tiny random models round badly)
        assert np.abs(logits - reference).max() < 0.5 * np.ptp(reference)
    # Dynamic int8 scales activations per batch, so batch-mates shift results a little.
    batched, single = clf.logits(TEXTS[:8]), np.concatenate([clf.logits([t]) for t in TEXTS[:8]])
    np.testing.assert_allclose(batched, single, atol=0.05 * np.abs(batched).max())


@pytest.mark.skipif(DEFAULT_MODEL not in bundled_models(), reason="bundled model not installed")
@pytest.mark.parametrize(("backend", "dtype"), MODES, ids=[f"{b}-{d}" for b, d in MODES])
def test_lossy_modes_keep_labels_of_the_trained_model(backend, dtype):
    texts = TEXTS + ["So have I!", "I hate this so much!", "not bad at all", "not good at all", "meh."]
    reference = Classifier.from_pretrained(dtype="fp32").logits(texts)
    clf = Classifier.from_pretrained(dtype=dtype, backend=backend)
    # torch's dynamic int8 (per-tensor activation scales) flips clear labels too (96.8% agreement on 1,821
    # sentences): opt-in only, held to a looser bar; every other mode keeps every clear label.
    assert agreement(clf.logits(texts), reference) >= (0.9 if (backend, dtype) == ("torch", "int8") else 1.0)
    batched, single = clf.logits(texts[:8]), np.concatenate([clf.logits([t]) for t in texts[:8]])
    assert agreement(batched, single) == 1.0


def test_cpu_default_is_onnx_fp32_unless_the_checkpoint_prefers_onnx_int8(tiny, tmp_path):
    folder = tmp_path / "default"
    shutil.copytree(tiny["bert"], folder)
    clf = Classifier.from_pretrained(folder)
    assert clf.precision == "onnx-float32"
    reference = Classifier.from_pretrained(folder, dtype="fp32")
    np.testing.assert_allclose(clf.logits(TEXTS), reference.logits(TEXTS), atol=1e-4, rtol=1e-4)
    assert not list(folder.glob("*.onnx*"))  # the graph lives in the user cache, never beside the checkpoint

    folder = tmp_path / "prefers-int8"
    shutil.copytree(tiny["bert"], folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "textclass_precision": "onnx-int8"}))
    clf = Classifier.from_pretrained(folder)
    assert clf.precision == "onnx-int8" and clf.engine.rescored is not None  # as check measured it
    assert not list(folder.glob("*.onnx*"))
    assert Classifier.from_pretrained(folder, dtype="fp32").precision == "torch-float32"


def test_default_device_is_the_machines_pin_else_found(monkeypatch):
    """TEXTCLASS_DEVICE sets a machine's default device; "auto" (and no pin) finds a GPU, here none."""
    import textclass.runtime.precision as rules

    monkeypatch.setenv("TEXTCLASS_DEVICE", "cpu")
    assert pick_device(None) == "cpu" and pick_device("cpu") == "cpu"
    monkeypatch.setattr(rules, "_GPU_DEVICE_FILES", ())  # as on a machine without a GPU driver
    monkeypatch.delenv("TEXTCLASS_DEVICE")
    assert pick_device(None) == "cpu" and pick_device("auto") == "cpu"
    monkeypatch.setenv("TEXTCLASS_DEVICE", "auto")
    assert pick_device(None) == "cpu"
    if not rules.installed("torch"):
        return
    import torch

    if not torch.cuda.is_available():
        monkeypatch.setenv("TEXTCLASS_DEVICE", "cuda")
        with pytest.raises(InputError, match="TEXTCLASS_DEVICE='cuda' asked for, but torch sees no CUDA GPU"):
            pick_device(None)
    for bad in ("gpu", "cuda:x", "cuda0", ""):
        with pytest.raises(InputError, match=f"device {bad!r} is not a device: use cpu, cuda, cuda:N"):
            pick_device(bad)
    assert pick_device("CPU") == "cpu" and pick_device("cpu:0") == "cpu"  # the ONNX path knows "cpu" alone
    monkeypatch.setenv("TEXTCLASS_DEVICE", "GPU")
    with pytest.raises(InputError, match="TEXTCLASS_DEVICE='GPU' is not a device"):
        pick_device(None)


def test_precision_rules():
    assert pick_precision("cpu") == Precision("onnx", "float32", required=False)
    assert pick_precision("cpu", backend="onnx") == Precision("onnx", "float32")
    assert pick_precision("cpu", preferred="onnx-int8") == Precision("onnx", "int8", rescore=True)
    assert pick_precision("cuda", preferred="onnx-int8") == Precision("torch", "bfloat16")
    assert pick_precision("cpu", dtype="fp32") == Precision("torch", "float32")
    assert pick_precision("cpu", dtype="int8") == Precision("onnx", "int8")
    assert pick_precision("cpu", dtype="int8", backend="torch") == Precision("torch", "int8")
    assert pick_precision("cpu", backend="onnx", dtype="fp32") == Precision("onnx", "float32")
    assert pick_precision("cuda", dtype=None) == Precision("torch", "bfloat16")
    for device, dtype, backend in [("cuda", None, "onnx"), ("cpu", "bf16", "onnx"), ("cuda", "int8", None),
                                   ("cpu", "fp8", None), ("cpu", None, "tensorrt")]:  # fmt: skip
        with pytest.raises(InputError):
            pick_precision(device, dtype, backend)


def test_the_winning_rule_is_recorded(monkeypatch):
    """Each rule in order, the first that applies wins, and which one it was is data (not read back from its
    reason text): a pinned onnx-int8 rescores its near ties because a pin chose it."""
    from textclass.runtime import precision as rules

    assert [rule.__name__ for rule in rules.RULES] == ["asked_for", "checkpoint_pin", "machine_pin", "gpu_default",
                                                       "no_onnxruntime", "cpu_default"]  # fmt: skip
    assert pick_precision("cpu", dtype="int8").rule == rules.ASKED
    assert pick_precision("cpu", preferred="onnx-int8").rule == rules.CHECKPOINT_PIN
    monkeypatch.setenv(rules.PRECISION_ENV, "onnx-int8")
    pinned = pick_precision("cpu")
    assert pinned.rule == rules.MACHINE_PIN and pinned.rescore and not pinned.required
    # A malformed checkpoint pin is skipped (with a warning) for the next rule, here the machine's pin.
    assert pick_precision("cpu", preferred="onnx").rule == rules.MACHINE_PIN
    assert pick_precision("cuda", preferred="onnx-int8").rule == rules.GPU_DEFAULT
    monkeypatch.delenv(rules.PRECISION_ENV)
    assert pick_precision("cpu").rule == rules.CPU_DEFAULT
    # A pin that reads like a reason string is still a pin: nothing matches on text.
    assert pick_precision("cpu", preferred="onnx-int8").reason.startswith("config.json")
    monkeypatch.setattr(rules.importlib.util, "find_spec", lambda name: None)
    assert pick_precision("cpu") == Precision("torch", "float32") and pick_precision("cpu").rule == rules.NO_ONNXRUNTIME


def test_changed_checkpoint_rebuilds(tmp_path, vocab_txt):
    folder = save_checkpoint(tmp_path / "ckpt", "bert", vocab_txt, seed=0)
    old = Classifier.from_pretrained(folder, backend="onnx", dtype="fp32").logits(TEXTS)
    size = (folder / "model.safetensors").stat().st_size
    save_checkpoint(folder, "bert", vocab_txt, seed=1)  # same architecture: same size, new weights
    assert (folder / "model.safetensors").stat().st_size == size
    expected = Classifier.from_pretrained(folder, dtype="fp32").logits(TEXTS)
    clf = Classifier.from_pretrained(folder, backend="onnx", dtype="fp32")
    new = clf.logits(TEXTS)
    assert not np.allclose(old, expected, atol=1e-3)
    np.testing.assert_allclose(new, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("weights_dtype", ["float16", "bfloat16"])
def test_half_precision_weights_export_as_fp32(tmp_path, vocab_txt, weights_dtype):
    import torch
    from safetensors.torch import load_file, save_file

    folder = save_checkpoint(tmp_path / "ckpt", "bert", vocab_txt)
    state = load_file(str(folder / "model.safetensors"))
    save_file({k: v.to(getattr(torch, weights_dtype)) for k, v in state.items()}, str(folder / "model.safetensors"),
              metadata={"format": "pt"})  # fmt: skip
    reference = Classifier.from_pretrained(folder, dtype="fp32").logits(TEXTS)  # the same rounded weights
    clf = Classifier.from_pretrained(folder, backend="onnx")
    np.testing.assert_allclose(clf.logits(TEXTS), reference, atol=1e-4, rtol=1e-4)


def test_default_falls_back_to_torch_when_export_fails(tmp_path, vocab_txt, monkeypatch, caplog):
    folder = save_checkpoint(tmp_path / "ckpt", "bert", vocab_txt)

    def broken(*args, **kwargs):
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(cache, "export_graphs", broken)
    clf = Classifier.from_pretrained(folder)
    assert clf.precision == "torch-float32"
    assert "exporter exploded" in caplog.text
    with pytest.raises(RuntimeError, match="exporter exploded"):  # asked for by name: no silent substitute
        Classifier.from_pretrained(folder, backend="onnx")


def test_bare_encoder_loads_but_refuses_to_classify(tmp_path, vocab_txt, user_cache):
    folder = tmp_path / "bare"
    make_model("bert", 30522, head=False).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        shutil.copy(vocab_txt.parent / name, folder / name)
    clf = Classifier.from_pretrained(folder)
    with pytest.raises(InputError, match="bare encoder"):
        clf("hello")
    assert not list(folder.glob("model.*.onnx")) and not list((user_cache / "onnx").glob("bare-*"))


def test_onnx_classify_does_not_import_torch(tiny):
    folder = tiny["bert"]
    Classifier.from_pretrained(folder, dtype="int8")  # makes sure the artefact exists
    code = (
        "import sys; from textclass import Classifier; "
        f"print(Classifier.from_pretrained({str(folder)!r}, dtype='int8')('great')[0]['label']); "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() in Classifier.from_pretrained(folder).labels


@pytest.mark.parametrize("dtype", ["fp32", "int8"])
def test_batches_side_by_side_equal_one_after_another(tiny, dtype):
    """Many batches run side by side on a one-thread session (OnnxEngine.map): each text gets the logits it gets
    when the same batches run one after another with every thread on each, in the caller's order."""
    texts = [f"{CORPUS[i % len(CORPUS)]} {'again ' * (i % 7)}({i})" for i in range(60)]
    clf = Classifier.from_pretrained(tiny["bert"], backend="onnx", dtype=dtype, max_batch_tokens=64)
    encoded = clf.encode(texts)
    clf.engine.threads = 1  # map runs the batches one after another on the session that has every thread
    sequential = clf.run(encoded)
    clf.engine.threads = 2  # as on a 2-CPU machine, whatever this one has
    assert clf.engine._single_thread is None
    together = clf.run(encoded)  # dozens of batches of <= 64 tokens, two at a time
    assert clf.engine._single_thread is not None  # the side-by-side path ran
    np.testing.assert_allclose(together, sequential, rtol=0, atol=1e-6)
    alone = np.concatenate([clf.run([item]) for item in encoded[:10]])  # one batch: the every-thread session
    np.testing.assert_allclose(together[:10], alone, rtol=0, atol=1e-5 if dtype == "fp32" else 1e-6)


def test_side_by_side_batches_run_when_their_graph_file_has_gone(tiny, tmp_path, caplog):
    """The one-thread session opens on the first call that needs it; by then a newer build of the same checkpoint
    may have replaced the graph's cache entry. The batches then run on the open session, with the same logits."""
    from textclass.runtime.onnx_engine import OnnxEngine

    clf = Classifier.from_pretrained(tiny["bert"], backend="onnx", dtype="fp32", max_batch_tokens=64)
    graph = tmp_path / "graph" / "model.onnx"
    shutil.copytree(clf.engine.path.parent, graph.parent)  # the graph and its weights' side file
    engine = OnnxEngine(graph, "fp32", threads=2)
    batches = list(make_batches(clf.encode([f"{CORPUS[i % len(CORPUS)]} ({i})" for i in range(40)]), 64,
                                clf.tokenizer.pad_token_id, engine.uses_token_types))  # fmt: skip
    assert len(batches) >= 4  # enough to go side by side
    expected = [engine(batch) for batch in batches]
    shutil.rmtree(graph.parent)
    with caplog.at_level(logging.WARNING, logger="textclass"):
        got = list(engine.map(batches))
    assert "batches run on one session" in caplog.text
    for ours, theirs in zip(got, expected):
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)


@pytest.mark.parametrize("dtype", ["fp32", "int8"])
def test_calls_on_one_thread_at_once_equal_calls_with_every_thread(tiny, dtype):
    """A server's lanes: `one_thread` calls run on the caller's thread alone (the one-thread session), several at
    once from several threads, and each text gets the logits it gets from a call with every thread."""
    from concurrent.futures import ThreadPoolExecutor

    texts = [f"{CORPUS[i % len(CORPUS)]} {'again ' * (i % 5)}({i})" for i in range(24)]
    clf = Classifier.from_pretrained(tiny["bert"], backend="onnx", dtype=dtype, max_batch_tokens=64)
    encoded = clf.encode(texts)
    clf.engine.threads = 2  # as on a 2-CPU machine, whatever this one has
    assert clf.engine.lanes == 2
    every_thread = clf.run(encoded)
    calls = [encoded[i : i + 3] for i in range(0, len(encoded), 3)]
    with ThreadPoolExecutor(2) as pool:
        lanes = np.concatenate(list(pool.map(lambda call: clf.run(call, one_thread=True), calls)))
    assert clf.engine._single_thread is not None  # they ran on the one-thread session
    np.testing.assert_allclose(lanes, every_thread, rtol=0, atol=1e-5 if dtype == "fp32" else 1e-6)
    clf.engine.side_by_side = False  # a model too big for a second copy: one call at a time, every thread
    assert clf.engine.lanes == 1
    torch_engine = Classifier.from_pretrained(tiny["bert"], backend="torch", dtype="fp32").engine
    assert torch_engine.lanes == 1


def test_sessions_spin_during_a_run_and_stop_after_it(tiny):
    """ONNX Runtime's threads spin inside a run (fast operator hand-offs) and stop spinning when it returns, so
    that the CPUs are free between calls (a server's event loop and clients share them)."""
    engine = Classifier.from_pretrained(tiny["bert"], backend="onnx", dtype="fp32").engine
    options = engine.options(2)
    assert options.get_session_config_entry("session.force_spinning_stop") == "1"
    try:
        spinning = options.get_session_config_entry("session.intra_op.allow_spinning")
    except RuntimeError:  # not set: ONNX Runtime's default, on
        spinning = "1"
    assert spinning == "1"


def test_side_by_side_only_where_a_second_copy_of_the_weights_is_small(tiny):
    from types import SimpleNamespace

    from textclass.runtime.load import SIDE_BY_SIDE_BYTES, _second_copy_bytes

    def sizes(layers: int, hidden: int, inner: int) -> SimpleNamespace:
        return SimpleNamespace(config=SimpleNamespace(num_layers=layers, hidden_size=hidden, intermediate_size=inner))

    base, large = sizes(12, 768, 3072), sizes(24, 1024, 4096)
    assert max(_second_copy_bytes(base, "fp32"), _second_copy_bytes(base, "int8")) <= SIDE_BY_SIDE_BYTES
    assert _second_copy_bytes(large, "fp32") > SIDE_BY_SIDE_BYTES >= _second_copy_bytes(large, "int8")
    assert Classifier.from_pretrained(tiny["bert"], backend="onnx", dtype="fp32").engine.side_by_side
