"""Every family on every path: the CLI (default CPU mode), inspect, batch scoring and the HTTP server.

Parity with transformers is proven per family in test_family_<name>.py; here one tiny classifier of each
family (MiniLM's WordPiece tokenizer, so only the model differs) goes through the paths users take, and each
answer must equal the exact fp32 Classifier's.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import CORPUS, TINY_MAX_TOKENS
from familykit import check_first_only
from serverutil import LiveServer
from textclass import Classifier
from textclass.batch import BatchJob, ScoreOptions, run_batch
from textclass.cli.app import app

SIZES = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48)
LABELS = {"id2label": {0: "neg", 1: "neutral", 2: "pos"}, "label2id": {"neg": 0, "neutral": 1, "pos": 2}}
TEXTS = CORPUS + ["", "word " * 100]


def tiny_config(model_type: str):
    import transformers as tf

    common = dict(vocab_size=30522, num_labels=3, **LABELS, **SIZES)
    return {
        "deberta-v2": lambda: tf.DebertaV2Config(**common, max_position_embeddings=TINY_MAX_TOKENS,
                                                 relative_attention=True, position_biased_input=False,
                                                 pos_att_type=["p2c", "c2p"], position_buckets=16,
                                                 norm_rel_ebd="layer_norm", share_att_key=True, type_vocab_size=0),
        "modernbert": lambda: tf.ModernBertConfig(**common, max_position_embeddings=TINY_MAX_TOKENS, local_attention=8,
                                                  pad_token_id=0, cls_token_id=101, sep_token_id=102,
                                                  bos_token_id=101, eos_token_id=102),
        "electra": lambda: tf.ElectraConfig(**common, embedding_size=16, max_position_embeddings=TINY_MAX_TOKENS),
        "albert": lambda: tf.AlbertConfig(**common, embedding_size=16, max_position_embeddings=TINY_MAX_TOKENS),
        "mpnet": lambda: tf.MPNetConfig(**common, max_position_embeddings=TINY_MAX_TOKENS + 2, pad_token_id=1),
    }[model_type]()


FAMILIES = ("deberta-v2", "modernbert", "electra", "albert", "mpnet")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, minilm_dir) -> dict[str, Path]:
    import torch
    from transformers import AutoModelForSequenceClassification

    folders = {}
    for model_type in FAMILIES:
        folder = tmp_path_factory.mktemp(f"paths-{model_type}")
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_config(tiny_config(model_type)).eval()
        with torch.no_grad():  # spread the random head so labels differ between texts
            for name, param in model.named_parameters():
                if name.startswith("classifier") and name.endswith("weight"):
                    param.mul_(30.0)
        model.save_pretrained(folder)
        for file in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
            shutil.copy(minilm_dir / file, folder / file)
        folders[model_type] = folder
    return folders


def exact(folder: Path) -> Classifier:
    return Classifier.from_pretrained(folder, dtype="fp32")


@pytest.mark.parametrize("model_type", FAMILIES)
def test_cli_classify_and_inspect(checkpoints, model_type):
    folder = checkpoints[model_type]
    result = CliRunner().invoke(app, ["classify", *TEXTS[:5], "--model", str(folder), "--format", "jsonl",
                                      "--top-k", "0"])  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    expected = exact(folder)(TEXTS[:5], top_k=None)
    for row, ranked in zip(rows, expected, strict=True):
        assert [s["label"] for s in row["scores"]] == [r["label"] for r in ranked]
        np.testing.assert_allclose([s["score"] for s in row["scores"]], [r["score"] for r in ranked], atol=1e-4)
    info = json.loads(CliRunner().invoke(app, ["inspect", "--model", str(folder), "--json"]).stdout)
    assert info["model_type"] == model_type and info["has_classification_head"] is True
    assert info["labels"] == ["neg", "neutral", "pos"] and info["max_length"] == TINY_MAX_TOKENS


@pytest.mark.parametrize("model_type", FAMILIES)
def test_default_mode_is_onnx_and_matches_fp32(checkpoints, model_type):
    default = Classifier.from_pretrained(checkpoints[model_type])
    assert default.precision == "onnx-float32"
    np.testing.assert_allclose(default.logits(TEXTS), exact(checkpoints[model_type]).logits(TEXTS), atol=1e-4)


@pytest.mark.parametrize("model_type", FAMILIES)
def test_batch_scores_like_the_classifier(checkpoints, model_type, tmp_path):
    texts = [t for t in TEXTS if t]  # batch makes an empty text an error row (tested in test_batch.py)
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    job = BatchJob(str(source), str(tmp_path / "out.jsonl"), str(checkpoints[model_type]), "text", None,
                   ScoreOptions(top_k=0, all_scores=True), 8)  # fmt: skip
    result = run_batch(job, show_progress=False)
    assert (result.rows, result.errors) == (len(texts), 0)
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    expected = exact(checkpoints[model_type])(texts, top_k=None)
    for row, ranked in zip(rows, expected, strict=True):
        assert row["label"] == ranked[0]["label"] and row["score"] == pytest.approx(ranked[0]["score"], abs=1e-4)


@pytest.mark.parametrize("model_type", FAMILIES)
def test_last_layer_first_token_alone(checkpoints, model_type):
    """ELECTRA, ALBERT (one shared layer), MPNet (its bias sliced to the first query), DeBERTa (the first query's
    rows of its relative index) and ModernBERT with first-token pooling (its local window's first row) prune the
    last layer."""
    assert check_first_only(checkpoints[model_type])


@pytest.mark.slow
def test_server_answers_every_family(checkpoints, tmp_path):
    servers = {t: LiveServer(checkpoints[t], tmp_path / f"{t}.log") for t in FAMILIES}
    try:
        for model_type, server in servers.items():
            server.wait_healthy()
            info = server.http.get("/info").json()
            assert info["family"] == exact(checkpoints[model_type]).checkpoint.family.name, info
            answer = server.http.post("/predict", json={"inputs": [[t] for t in TEXTS[:6]]})
            assert answer.status_code == 200, answer.text
            expected = exact(checkpoints[model_type])(TEXTS[:6], top_k=None)
            for got, ranked in zip(answer.json(), expected, strict=True):
                assert [g["label"] for g in got] == [r["label"] for r in ranked]
                np.testing.assert_allclose([g["score"] for g in got], [r["score"] for r in ranked], atol=1e-4)
    finally:
        for server in servers.values():
            server.stop()
