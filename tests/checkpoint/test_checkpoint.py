"""Checkpoint formats and the errors a broken or unsupported checkpoint gives."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import CORPUS, build_checkpoint
from textclass import Classifier
from textclass.errors import CheckpointError, InputError


def test_sharded_safetensors_and_bin_give_same_logits(tiny_checkpoints, tmp_path):
    folder, model, tokenizer = tiny_checkpoints["distilbert"]
    expected = Classifier.from_pretrained(folder).logits(CORPUS)

    sharded = tmp_path / "sharded"
    model.save_pretrained(sharded, max_shard_size="100KB")
    tokenizer.save_pretrained(sharded)
    assert (sharded / "model.safetensors.index.json").is_file()
    np.testing.assert_array_equal(Classifier.from_pretrained(sharded).logits(CORPUS), expected)

    legacy = tmp_path / "bin"
    legacy.mkdir()
    torch.save(model.state_dict(), legacy / "pytorch_model.bin")
    (legacy / "config.json").write_text((folder / "config.json").read_text())
    tokenizer.save_pretrained(legacy)
    np.testing.assert_array_equal(Classifier.from_pretrained(legacy).logits(CORPUS), expected)


def test_bin_with_pickled_code_is_refused(tiny_checkpoints, copy_checkpoint):
    folder = copy_checkpoint(tiny_checkpoints["bert"][0])
    (folder / "model.safetensors").unlink()

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="cannot read weights"):
        Classifier.from_pretrained(folder)


def test_missing_and_unexpected_tensors_are_named(tiny_checkpoints, copy_checkpoint):
    folder = copy_checkpoint(tiny_checkpoints["bert"][0])
    tensors = load_file(folder / "model.safetensors")
    del tensors["bert.encoder.layer.1.attention.self.key.weight"]
    save_file(tensors, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"lacks tensors: bert\.encoder\.layer\.1\.attention\.self\.key\.weight"):
        Classifier.from_pretrained(folder)

    tensors = load_file(tiny_checkpoints["bert"][0] / "model.safetensors")
    tensors["bert.encoder.layer.9.surprise.weight"] = torch.zeros(2)
    save_file(tensors, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"unexpected tensors.*layer\.9\.surprise"):
        Classifier.from_pretrained(folder)


def test_classifier_config_without_head_weights_is_an_error(tiny_checkpoints, copy_checkpoint):
    folder = copy_checkpoint(tiny_checkpoints["roberta"][0])
    tensors = {k: v for k, v in load_file(folder / "model.safetensors").items() if not k.startswith("classifier.")}
    save_file(tensors, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"lack its head: classifier\.dense\.weight"):
        Classifier.from_pretrained(folder)


@pytest.mark.parametrize("family", ["bert", "distilbert", "roberta"])
def test_bare_encoder_loads_but_refuses_to_classify(tmp_path, vocab_txt, family):
    build_checkpoint(tmp_path, family, vocab_txt, head=False)
    clf = Classifier.from_pretrained(tmp_path)
    assert not clf.has_head
    with pytest.raises(InputError, match="bare encoder without a classification head"):
        clf(["hello"])


def test_shape_mismatch_names_the_tensor(tiny_checkpoints, copy_checkpoint):
    folder = copy_checkpoint(tiny_checkpoints["distilbert"][0])
    config = json.loads((folder / "config.json").read_text())
    config["hidden_dim"] = 64
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        CheckpointError,
        match=r"distilbert\.transformer\.layer\.0\.ffn\.lin1\.bias has shape \(48,\), config\.json implies \(64,\)",
    ):
        Classifier.from_pretrained(folder)


def test_unsupported_model_type_lists_supported(tiny_checkpoints, copy_checkpoint):
    folder = copy_checkpoint(tiny_checkpoints["bert"][0])
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    from textclass.models import SUPPORTED_MODEL_TYPES

    with pytest.raises(CheckpointError, match="'gpt2' is not supported; supported: ") as raised:
        Classifier.from_pretrained(folder)
    listed = str(raised.value).split("supported: ")[-1].split(", ")
    assert listed == list(SUPPORTED_MODEL_TYPES) and {"bert", "distilbert", "roberta"} <= set(listed)


def test_labels_default_and_config_fields(tiny_checkpoints, copy_checkpoint):
    folder = copy_checkpoint(tiny_checkpoints["bert"][0])
    config = json.loads((folder / "config.json").read_text())
    config.pop("id2label")
    config.pop("label2id")
    config["num_labels"] = 3
    (folder / "config.json").write_text(json.dumps(config))
    clf = Classifier.from_pretrained(folder)
    assert clf.labels == ("LABEL_0", "LABEL_1", "LABEL_2")
    assert clf.config.max_tokens == 64

    config["id2label"] = {"0": "neg", "1": "neu", "2": "pos"}
    config["problem_type"] = "multi_label_classification"
    (folder / "config.json").write_text(json.dumps(config))
    clf = Classifier.from_pretrained(folder)
    assert clf.labels == ("neg", "neu", "pos")
    scores = [r["score"] for r in clf("hello", top_k=None)]
    assert not np.isclose(sum(scores), 1.0)  # multi-label: sigmoid per label, not softmax


def test_hub_id_offline_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match="model folder textclass-tests/no-such-model does not exist .*, and as a "
                       "hub id it is not in the local hub cache and the Hugging Face hub cannot be reached "
                       r"\(HF_HUB_OFFLINE is set\)"):  # fmt: skip
        Classifier.from_pretrained("textclass-tests/no-such-model")


def test_hub_id_served_from_local_cache(monkeypatch, tmp_path, tiny_checkpoints):
    """Offline, a repo already in the hub cache loads; the download path is the same code."""
    from huggingface_hub import constants

    folder = tiny_checkpoints["bert"][0]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    snapshot = tmp_path / "models--org--tiny" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (tmp_path / "models--org--tiny" / "refs").mkdir()
    (tmp_path / "models--org--tiny" / "refs" / "main").write_text("0" * 40)
    for item in folder.iterdir():
        (snapshot / item.name).write_bytes(item.read_bytes())
    clf = Classifier.from_pretrained("org/tiny")
    np.testing.assert_array_equal(clf.logits(["hi"]), Classifier.from_pretrained(folder).logits(["hi"]))


def test_calibration_temperature_scales_scores_not_logits(tiny_checkpoints, copy_checkpoint):
    folder = copy_checkpoint(tiny_checkpoints["bert"][0])
    plain = Classifier.from_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "textclass_temperature": 2.0}))
    calibrated = Classifier.from_pretrained(folder)
    np.testing.assert_array_equal(calibrated.logits(CORPUS), plain.logits(CORPUS))
    logits = plain.logits(CORPUS[:1])[0] / 2.0
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    got = {r["label"]: r["score"] for r in calibrated(CORPUS[0], top_k=None)}
    np.testing.assert_allclose([got[label] for label in calibrated.labels], expected, rtol=1e-5)
