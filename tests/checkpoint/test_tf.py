"""TensorFlow-era checkpoints: tf_model.h5 read with h5py gives the logits TensorFlow recorded, and converts.

The fixtures under tests/fixtures/tf were made by tools/make_tf_fixtures.py with TensorFlow 2.21 and
transformers 4.57; TensorFlow is not needed here.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from textclass import Classifier
from textclass.checkpoint import open_checkpoint
from textclass.checkpoint.convert import convert_checkpoint
from textclass.checkpoint.tf_names import pytorch_name
from textclass.errors import CheckpointError

FIXTURES = Path(__file__).parents[1] / "fixtures" / "tf"
TF_FAMILIES = ("distilbert", "bert", "roberta")
SCOPES = {"distilbert": "tf_distil_bert_for_sequence_classification", "bert": "tf_bert_for_sequence_classification",
          "roberta": "tf_roberta_for_sequence_classification"}  # fmt: skip


def recorded(family: str) -> dict:
    return json.loads((FIXTURES / family / "expected_logits.json").read_text(encoding="utf-8"))


def inputs_of(record: dict) -> list:
    return record["texts"] if "text_pairs" not in record else list(zip(record["texts"], record["text_pairs"]))


def copy_fixture(family: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURES / family, tmp_path / family))


@pytest.mark.parametrize("family", TF_FAMILIES)
def test_h5_logits_match_tensorflow(family, tmp_path):
    clf = Classifier.from_pretrained(copy_fixture(family, tmp_path))  # a copy: loading caches an ONNX export beside it
    assert clf.checkpoint.weight_format == "h5" and clf.has_head
    assert clf.labels == ("negative", "neutral", "positive")
    for kind in ("single", "pairs"):
        record = recorded(family)[kind]
        encoded = clf.encode(inputs_of(record))
        for got, ids, mask in zip(encoded, record["input_ids"], record["attention_mask"]):
            assert got.ids == [i for i, m in zip(ids, mask) if m]  # the tokenizer files give TF's own ids
        delta = np.abs(clf.logits(inputs_of(record)) - np.array(record["logits"])).max()
        print(f"{family} {kind}: max |Δlogit| vs TensorFlow = {delta:.2e}")
        assert delta <= 1e-4
    assert "tensorflow" not in sys.modules


@pytest.mark.parametrize("family", TF_FAMILIES)
def test_convert_round_trip_loads_in_transformers_v5(family, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = convert_checkpoint(FIXTURES / family, tmp_path / "converted")
    assert {"model.safetensors", "config.json"} <= {p.name for p in out.iterdir()}
    assert not (out / "tf_model.h5").exists()
    record = recorded(family)["pairs" if family == "bert" else "single"]  # BERT's pairs use token types
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    features = {k: torch.tensor(record[k]) for k in ("input_ids", "attention_mask", "token_type_ids") if k in record}
    with torch.no_grad():
        reference = model(**features).logits.numpy()
    np.testing.assert_allclose(reference, record["logits"], atol=1e-4, rtol=0)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer(record["texts"], record.get("text_pairs"), padding=True)["input_ids"] == record["input_ids"]
    clf = Classifier.from_pretrained(out)
    assert clf.checkpoint.weight_format == "safetensors"
    np.testing.assert_allclose(clf.logits(inputs_of(record)), record["logits"], atol=1e-4, rtol=0)


def test_convert_command_and_its_errors(tmp_path):
    from typer.testing import CliRunner

    from textclass.cli.app import app

    runner = CliRunner()
    result = runner.invoke(app, ["convert", "--model", str(FIXTURES / "roberta"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "model.safetensors").is_file() and (tmp_path / "out" / "merges.txt").is_file()
    again = runner.invoke(app, ["convert", "--model", str(FIXTURES / "roberta"), "--out", str(tmp_path / "out")])
    assert again.exit_code == 1 and "error:" in again.output and "not an empty folder" in again.output
    missing = runner.invoke(app, ["convert", "--model", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o2")])
    assert missing.exit_code == 1 and "does not exist" in missing.output
    assert not (tmp_path / "o2").exists()


def _edit_h5(path: Path, family: str, layer: str, weight: str, new_weight: str | None) -> None:
    """Remove (new_weight None) or rename one variable, keeping the Keras weight_names list consistent."""
    full = f"{SCOPES[family]}/{weight}"
    with h5py.File(path, "r+") as file:
        group = file[layer]
        names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["weight_names"]]
        assert full in names, names
        data = group[full][()]
        del group[full]
        if new_weight is None:
            names.remove(full)
        else:
            renamed = f"{SCOPES[family]}/{new_weight}"
            group.create_dataset(renamed, data=data)
            names[names.index(full)] = renamed
        group.attrs["weight_names"] = [n.encode() for n in names]


def test_h5_with_a_weight_removed_names_it(tmp_path):
    folder = copy_fixture("distilbert", tmp_path)
    _edit_h5(folder / "tf_model.h5", "distilbert", "distilbert",
             "distilbert/transformer/layer_._1/attention/q_lin/kernel:0", None)  # fmt: skip
    with pytest.raises(
        CheckpointError, match=r"lacks tensors: distilbert\.transformer\.layer\.1\.attention\.q_lin\.weight"
    ):
        Classifier.from_pretrained(folder)
    with pytest.raises(CheckpointError, match="q_lin"):
        convert_checkpoint(folder, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing written for a broken checkpoint


def test_h5_with_a_weight_renamed_names_it(tmp_path):
    folder = copy_fixture("bert", tmp_path)
    _edit_h5(folder / "tf_model.h5", "bert", "bert", "bert/encoder/layer_._0/output/LayerNorm/gamma:0",
             "bert/encoder/layer_._0/output/LayerNorm/scale:0")  # fmt: skip
    with pytest.raises(
        CheckpointError, match=r"unexpected tensors .*bert\.encoder\.layer\.0\.output\.LayerNorm\.scale"
    ):
        Classifier.from_pretrained(folder)


def test_h5_without_its_head_is_an_error(tmp_path):
    folder = copy_fixture("roberta", tmp_path)
    _edit_h5(folder / "tf_model.h5", "roberta", "classifier", "classifier/out_proj/bias:0", None)
    with pytest.raises(CheckpointError, match=r"RobertaForSequenceClassification.*classifier\.out_proj\.bias"):
        Classifier.from_pretrained(folder)


def test_corrupt_h5_is_a_clear_error(tmp_path):
    folder = copy_fixture("bert", tmp_path)
    (folder / "tf_model.h5").write_bytes(b"not an hdf5 file")
    with pytest.raises(CheckpointError, match="cannot read weights from .*tf_model.h5"):
        Classifier.from_pretrained(folder)


def test_format_preference_safetensors_then_bin_then_h5(tmp_path):
    """One folder, three formats with different classifier biases: the loaded logits show which file was read."""
    folder = copy_fixture("distilbert", tmp_path)
    converted = convert_checkpoint(folder, tmp_path / "converted")
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(converted / "model.safetensors"))
    for shift, (name, save) in enumerate(
        [("pytorch_model.bin", lambda t, p: torch.save(t, p)), ("model.safetensors", lambda t, p: save_file(t, p))],
        start=1,
    ):
        shifted = dict(tensors, **{"classifier.bias": tensors["classifier.bias"] + shift})
        save(shifted, str(folder / name))
    texts = recorded("distilbert")["single"]["texts"]
    tf_logits = np.array(recorded("distilbert")["single"]["logits"])
    for expected_format, shift, remove in (("safetensors", 2, "model.safetensors"), ("bin", 1, "pytorch_model.bin"),
                                           ("h5", 0, None)):  # fmt: skip
        assert open_checkpoint(folder).weight_format == expected_format
        logits = Classifier.from_pretrained(folder).logits(texts)
        np.testing.assert_allclose(logits, tf_logits + shift, atol=1e-4, rtol=0)
        if remove:
            (folder / remove).unlink()


def test_inspect_reads_h5():
    from textclass.checkpoint.describe import describe

    info = describe(FIXTURES / "bert")
    assert info["weight_files"] == ["tf_model.h5"] and info["has_classification_head"]
    with h5py.File(FIXTURES / "bert" / "tf_model.h5") as file:
        sizes = []
        file.visititems(lambda _, obj: sizes.append(obj.size) if isinstance(obj, h5py.Dataset) else None)
    assert info["parameters"] == sum(sizes) and info["weight_dtype"] == "float32"


NAME_CASES = [
    ("distilbert/transformer/layer_._0/ffn/lin1/kernel:0", "distilbert.transformer.layer.0.ffn.lin1.weight"),
    ("bert/embeddings/word_embeddings/weight:0", "bert.embeddings.word_embeddings.weight"),
    ("bert/embeddings/position_embeddings/embeddings:0", "bert.embeddings.position_embeddings.weight"),
    ("roberta/encoder/layer_._11/output/LayerNorm/beta:0", "roberta.encoder.layer.11.output.LayerNorm.bias"),
    ("mlm___cls/predictions/bias:0", "cls.predictions.bias"),
    ("classifier/out_proj/moving_mean:0", "classifier.out_proj.moving_mean"),  # unknown: kept, then "unexpected"
]


@pytest.mark.parametrize(("tf_name", "expected"), NAME_CASES)
def test_tf_name_translation(tf_name, expected):
    assert pytorch_name(tf_name) == (expected, tf_name.endswith("kernel:0"))  # only Dense kernels are transposed


def test_convert_from_bin_with_tied_weights(tmp_path):
    """A pytorch_model.bin whose MLM decoder shares the word embeddings (as BERT pretraining saves it) converts."""
    from safetensors.torch import load_file

    source = tmp_path / "bin-model"
    converted = convert_checkpoint(FIXTURES / "bert", tmp_path / "from-h5")
    shutil.copytree(converted, source)
    (source / "model.safetensors").unlink()
    tensors = load_file(str(converted / "model.safetensors"))
    tensors["cls.predictions.decoder.weight"] = tensors["bert.embeddings.word_embeddings.weight"]  # same storage
    torch.save(tensors, source / "pytorch_model.bin")
    out = convert_checkpoint(source, tmp_path / "from-bin")
    written = load_file(str(out / "model.safetensors"))
    assert written.keys() == tensors.keys()
    for name, tensor in tensors.items():
        assert torch.equal(written[name], tensor), name
    record = recorded("bert")["single"]
    np.testing.assert_allclose(Classifier.from_pretrained(out).logits(record["texts"]), record["logits"], atol=1e-4)
