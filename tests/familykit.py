"""Checks every family's tiny checkpoint must pass against transformers, shared by the test_family_*.py files and
test_parity.py: logits, pairs and the pipeline's output, gradients, batch against single, the default ONNX path
and bf16, the tokenizer, bare encoders, damaged checkpoints and the training round trip.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import CORPUS
from textclass import Classifier
from textclass.checkpoint import build_model, open_checkpoint
from textclass.checkpoint.describe import describe
from textclass.errors import CheckpointError, InputError
from textclass.train.run import train
from textclass.train.setup import TrainArgs
from trainkit import FAST, sentiment_rows, write_jsonl

TEXTS = CORPUS + ["", "   ", "word " * 300]  # the last one is far past the 64-token limit
# What clf() scores: it refuses a blank text (the one rule for empty text), where logits() and the pipeline score it.
SCORED = [text for text in TEXTS if text.strip()]
PAIRS = list(zip(CORPUS[:7], CORPUS[7:14]))
PIPELINE_CASES = [
    (SCORED[0], {}),
    (SCORED, {}),
    (SCORED[0], {"top_k": None}),
    (SCORED, {"top_k": None}),
    (SCORED[:3], {"top_k": 1}),
    (SCORED[:3], {"function_to_apply": "sigmoid"}),
    ({"text": SCORED[0], "text_pair": SCORED[1]}, {}),
    ([{"text": SCORED[2], "text_pair": SCORED[3]}], {"top_k": None}),
]


def perturb(model: torch.nn.Module) -> torch.nn.Module:
    """Random init leaves LayerNorms at identity and biases at zero; move them so parity sees them."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "LayerNorm" in name or "layer_norm" in name or name.endswith("bias"):
                param.add_(torch.randn_like(param) * 0.1)
    return model.eval()


def save(folder, model, tokenizer):
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# ---- checks any family's tiny checkpoint must pass ------------------------------------------------------
def check_logits(folder, model, tokenizer, pipeline_cases=PIPELINE_CASES) -> float:
    """Logits of texts and pairs, and the pipeline's output, equal transformers'; returns the largest |Δlogit|."""
    clf = Classifier.from_pretrained(folder, dtype="fp32")
    ours, ref = clf.logits(TEXTS), reference_logits(model, tokenizer, TEXTS)
    assert ours.shape == (len(TEXTS), 3) and ours.dtype == np.float32
    assert np.ptp(ref, axis=0).min() > 0.1  # texts are told apart: a 1e-4 match means something
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)
    firsts, seconds = map(list, zip(*PAIRS))
    ours_pairs, ref_pairs = clf.logits(PAIRS), reference_logits(model, tokenizer, firsts, seconds)
    np.testing.assert_allclose(ours_pairs, ref_pairs, atol=1e-4, rtol=0)
    check_pipeline(folder, model, tokenizer, pipeline_cases)
    return float(max(np.abs(ours - ref).max(), np.abs(ours_pairs - ref_pairs).max()))


def check_pipeline(folder, model, tokenizer, pipeline_cases=PIPELINE_CASES) -> None:
    """textclass's output equals the transformers pipeline's: shapes, labels, scores within 1e-5."""
    from transformers import pipeline

    clf = Classifier.from_pretrained(folder, dtype="fp32")
    pipe = pipeline("text-classification", model=model, tokenizer=tokenizer, device="cpu")
    for inputs, kwargs in pipeline_cases:
        assert_same_shape_and_values(clf(inputs, **kwargs), pipe(inputs, truncation=True, **kwargs))
    with pytest.raises(InputError, match=r"input 1 is empty \(or only whitespace\)"):
        clf([SCORED[0], "   "])


def check_gradients(folder, model, tokenizer) -> None:
    """Training differentiates what transformers does: each tensor's gradient of one loss agrees (dropout off)."""
    ours, _ = build_model(open_checkpoint(folder))
    family = open_checkpoint(folder).family
    encoded = tokenizer(CORPUS, padding=True, return_tensors="pt", return_token_type_ids=True)
    targets = torch.arange(len(CORPUS)) % 3
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(**encoded).logits, targets).backward()
    args = [encoded[k] for k in ("input_ids", "attention_mask", "token_type_ids")]
    torch.nn.functional.cross_entropy(ours(*args), targets).backward()
    theirs, params = dict(model.named_parameters()), dict(ours.named_parameters())
    table = family.weight_table(ours.config)
    assert set(table.values()) == set(params)  # every parameter is checked, and named in the table once
    for hf_name, name in table.items():
        expected = theirs[family.hf_name(hf_name)].grad
        torch.testing.assert_close(params[name].grad, expected, atol=1e-6, rtol=1e-4, msg=name)
    model.zero_grad()


def check_batch_equals_single(folder) -> None:
    clf = Classifier.from_pretrained(folder, dtype="fp32", max_batch_tokens=96)  # several batches
    together = clf.logits(TEXTS)
    assert not np.allclose(together[0], together[1])  # distinct inputs, distinct rows: order is observable
    np.testing.assert_allclose(together, np.concatenate([clf.logits([t]) for t in TEXTS]), atol=1e-5, rtol=0)
    np.testing.assert_allclose(clf.logits(TEXTS[::-1])[::-1], together, atol=1e-5, rtol=0)


def check_first_only(folder, device: str = "cpu") -> bool:
    """The last layer computes the first token's row alone (the head reads nothing else) where the family can, and
    the logits are the full last layer's, padded rows included; a model that cannot says so and runs it in full.
    Returns whether it prunes."""
    checkpoint = open_checkpoint(folder)
    model = build_model(checkpoint)[0].eval().to(device)
    clf = Classifier.from_pretrained(folder, dtype="fp32")
    rows = clf.encode(TEXTS[:4])
    width = max(len(r) for r in rows)
    ids = torch.tensor([r.ids + [checkpoint.config.pad_token_id] * (width - len(r)) for r in rows], device=device)
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=device)
    assert not bool(mask.all())  # padding inside the batch
    types = torch.zeros_like(ids) if checkpoint.config.type_vocab_size > 0 else None
    last = model.encoder.layers[-1] if hasattr(model.encoder, "layers") else model.encoder.layer
    shapes = []  # what the last layer's calls return (ALBERT calls its one layer at every depth: the last counts)
    hook = last.register_forward_hook(lambda module, args, out: shapes.append(tuple(out.shape)))
    prunes = model.first_only  # per class, or (ModernBERT) per config: mean pooling reads every row
    with torch.no_grad():
        pruned = model(ids, mask, types)
        pruned_shape = shapes[-1]
        model.first_only = False
        full = model(ids, mask, types)
    hook.remove()
    hidden = checkpoint.config.hidden_size
    assert pruned_shape == (len(rows), 1 if prunes else width, hidden)
    assert shapes[-1] == (len(rows), width, hidden)
    torch.testing.assert_close(pruned, full, atol=1e-5, rtol=0)
    return prunes


needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here (checked where one is lent)")


def check_gpu(folder, model, tokenizer) -> dict[str, float]:
    """On a CUDA GPU, as a user gets it there: the default is torch bf16; fp32 equals transformers (run on the CPU)
    within 1e-4 on texts and pairs, and a text alone equals itself in padded batches; bf16 and fp16 stay close to
    fp32 alone and in batches; the pruned last layer holds on the GPU's kernels. Returns the largest differences."""
    default = Classifier.from_pretrained(folder, device="auto")  # as a user's default (the suite pins the CPU)
    assert default.device.startswith("cuda") and default.precision == "torch-bfloat16"
    # PyTorch lets cuDNN convolutions (DeBERTa-v2's) round through TF32 by default, ~1e-3: not what is tested here.
    tf32, torch.backends.cudnn.allow_tf32 = torch.backends.cudnn.allow_tf32, False
    try:
        return _check_gpu(folder, model, tokenizer)
    finally:
        torch.backends.cudnn.allow_tf32 = tf32


def _check_gpu(folder, model, tokenizer) -> dict[str, float]:
    reference = reference_logits(model, tokenizer, TEXTS)
    fp32 = Classifier.from_pretrained(folder, device="cuda", dtype="fp32", max_batch_tokens=96)  # several batches
    together = fp32.logits(TEXTS)
    np.testing.assert_allclose(together, reference, atol=1e-4, rtol=0)
    alone = np.concatenate([fp32.logits([t]) for t in TEXTS])
    np.testing.assert_allclose(alone, together, atol=1e-5, rtol=0)
    firsts, seconds = map(list, zip(*PAIRS))
    pairs = reference_logits(model, tokenizer, firsts, seconds)
    np.testing.assert_allclose(fp32.logits(PAIRS), pairs, atol=1e-4, rtol=0)
    seen = {"fp32 vs transformers": float(np.abs(together - reference).max()),
            "fp32 alone vs batch": float(np.abs(alone - together).max())}  # fmt: skip
    scale = np.abs(reference).max()
    for dtype in ("bf16", "fp16"):
        clf = Classifier.from_pretrained(folder, device="cuda", dtype=dtype, max_batch_tokens=96)
        got = clf.logits(TEXTS)
        alone = np.concatenate([clf.logits([t]) for t in TEXTS])
        seen[f"{dtype} vs fp32"], seen[f"{dtype} alone vs batch"] = (float(np.abs(got - together).max()),
                                                                     float(np.abs(alone - got).max()))  # fmt: skip
        np.testing.assert_allclose(got, together, atol=0.05 * scale, rtol=0)
        np.testing.assert_allclose(alone, got, atol=0.05 * scale, rtol=0)
    check_first_only(folder, device="cuda")
    print(f"GPU {open_checkpoint(folder).family.name}: " + ", ".join(f"{k} {v:.1e}" for k, v in seen.items()))
    return seen


def check_onnx_and_bf16(folder, monkeypatch, tmp_path) -> None:
    """The default (ONNX Runtime fp32, traced at (2, 8)) equals torch fp32 at other lengths and paddings."""
    monkeypatch.setenv("TEXTCLASS_CACHE", str(tmp_path / "user-cache"))
    reference = Classifier.from_pretrained(folder, dtype="fp32")
    onnx = Classifier.from_pretrained(folder, max_batch_tokens=200)  # several padded batches of mixed widths
    assert onnx.precision == "onnx-float32"  # not a silent fallback to torch
    for texts in (TEXTS, TEXTS[:1], ["ok"], ["word " * 30], PAIRS):
        np.testing.assert_allclose(onnx.logits(texts), reference.logits(texts), atol=1e-4, rtol=0)
    bf16 = Classifier.from_pretrained(folder, dtype="bf16")
    assert bf16.precision == "torch-bfloat16"
    expected = reference.logits(TEXTS)
    np.testing.assert_allclose(bf16.logits(TEXTS), expected, atol=0.05 * np.abs(expected).max(), rtol=0)


def check_onnx_at_every_length(folder) -> tuple[Classifier, np.ndarray, list[str]]:
    """The default ONNX graph (traced at (2, 8)) equals torch fp32 from 3 to 64 tokens, padded together and alone,
    and on pairs; bf16 is close. Returns the torch classifier, its logits and the texts, for further checks."""
    texts = ["word " * n for n in (1, 5, 6, 9, 14, 23, 40, 70)] + CORPUS
    torch_fp32 = Classifier.from_pretrained(folder, dtype="fp32")
    onnx = Classifier.from_pretrained(folder)
    assert onnx.precision == "onnx-float32"  # not a silent fallback to torch
    expected = torch_fp32.logits(texts)
    np.testing.assert_allclose(onnx.logits(texts), expected, atol=1e-4, rtol=0)
    np.testing.assert_allclose(np.concatenate([onnx.logits([t]) for t in texts]), expected, atol=1e-4, rtol=0)
    np.testing.assert_allclose(onnx.logits(PAIRS), torch_fp32.logits(PAIRS), atol=1e-4, rtol=0)
    bf16 = Classifier.from_pretrained(folder, dtype="bf16")
    np.testing.assert_allclose(bf16.logits(texts), expected, atol=0.05, rtol=0)
    return torch_fp32, expected, texts


def check_tokenizer(folder, tokenizer) -> None:
    ours = Classifier.from_pretrained(folder, dtype="fp32").tokenizer
    for text in CORPUS + ["", "word " * 300]:
        assert ours(text, truncation=True) == dict(tokenizer(text, truncation=True)), text
    firsts, seconds = map(list, zip(*PAIRS))
    expected = tokenizer(firsts, seconds, truncation=True, return_token_type_ids=True)
    got = ours(firsts, seconds, truncation=True)
    assert got["input_ids"] == expected["input_ids"] and got["token_type_ids"] == expected["token_type_ids"]
    assert all(1 in row for row in got["token_type_ids"])  # the second segment is marked


def check_missing_tensor(folder, copy_checkpoint, name) -> None:
    folder = copy_checkpoint(folder)
    tensors = load_file(folder / "model.safetensors")
    del tensors[name]
    save_file(tensors, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match="lacks tensors: " + re.escape(name)):
        Classifier.from_pretrained(folder, dtype="fp32")


def check_bare_encoder(folder, family, new_head) -> None:
    assert sorted(build_model(open_checkpoint(folder))[1]) == new_head
    clf = Classifier.from_pretrained(folder)
    assert not clf.has_head
    with pytest.raises(InputError, match="bare encoder without a classification head"):
        clf(["hello"])
    info = describe(folder)
    assert info["family"] == family and info["has_classification_head"] is False


def check_round_trip(base, tmp_path) -> None:
    """Fine-tune the bare base on a separable task; transformers loads the result with the same logits."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    train_file = write_jsonl(tmp_path / "train.jsonl", sentiment_rows(400, 1))
    dev_file = write_jsonl(tmp_path / "dev.jsonl", sentiment_rows(100, 2))
    out = tmp_path / "out"
    # Tiny random ELECTRA and ALBERT sit at chance for the first epoch and separate in the second; FAST has 4.
    summary = train(TrainArgs(model=str(base), train=str(train_file), eval=str(dev_file), out=str(out), **FAST))
    assert summary["eval_metrics"]["accuracy"] >= 0.95
    texts = ["a superb film", "the plot was boring and the actor awful", "x", "thing " * 80]
    ours = Classifier.from_pretrained(out, dtype="fp32").logits(texts)
    hf = AutoModelForSequenceClassification.from_pretrained(out, dtype=torch.float32).eval()
    encoded = AutoTokenizer.from_pretrained(out)(texts, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        np.testing.assert_allclose(ours, hf(**encoded).logits.numpy(), atol=1e-4, rtol=0)
    assert [r["label"] for r in Classifier.from_pretrained(out)(texts[:2])] == ["pos", "neg"]


def reference_logits(model, tokenizer, texts, pairs=None):
    enc = tokenizer(texts, pairs, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        return model(**enc).logits.numpy()


def assert_same_shape_and_values(got, expected):
    if isinstance(expected, dict):
        assert isinstance(got, dict) and got.keys() == expected.keys()
        assert got["label"] == expected["label"]
        assert got["score"] == pytest.approx(expected["score"], abs=1e-5)
        return
    assert isinstance(got, list) and len(got) == len(expected)
    for g, e in zip(got, expected):
        assert_same_shape_and_values(g, e)


def edit_config(folder: Path, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))
