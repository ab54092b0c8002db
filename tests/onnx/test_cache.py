"""The one artefact cache (onnx/cache.py): one key per artefact, one folder per key, never stale, never written beside
a checkpoint or into the package; `textclass cache` lists it and `textclass cache prune` empties it."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import CORPUS
from textclass import Classifier
from textclass.checkpoint import open_checkpoint
from textclass.checkpoint.locate import DEFAULT_MODEL, bundled_models
from textclass.onnx import cache

TEXTS = CORPUS + ["", "ok", "word " * 40]


@pytest.fixture(autouse=True)
def user_cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TEXTCLASS_CACHE", str(tmp_path / "user-cache"))
    return tmp_path / "user-cache"


@pytest.fixture
def bert(tiny_checkpoints, copy_checkpoint) -> Path:
    return copy_checkpoint(tiny_checkpoints["bert"][0])


def entry_folders(user_cache: Path, mode: str | None = None) -> list[Path]:
    folders = sorted(p for p in (user_cache / "onnx").iterdir() if not p.name.startswith("."))
    return [p for p in folders if mode is None or f"-{mode}-" in p.name]


def no_export(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("exported although the cache holds the graph")

    monkeypatch.setattr(cache, "export_graphs", refuse)


def test_one_folder_per_key_beside_nothing(bert, user_cache):
    exact = Classifier.from_pretrained(bert, dtype="fp32").logits(TEXTS)  # torch, the reference
    onnx_fp32 = Classifier.from_pretrained(bert, backend="onnx", dtype="fp32")
    np.testing.assert_allclose(onnx_fp32.logits(TEXTS), exact, atol=1e-4, rtol=1e-4)
    (entry,) = entry_folders(user_cache)
    assert onnx_fp32.engine.path == entry / "model.onnx"
    assert sorted(p.name for p in entry.iterdir()) == ["entry.json", "model.onnx", "model.onnx.data"]
    record = json.loads((entry / "entry.json").read_text())
    assert record["checkpoint"] == str(bert.resolve()) and record["mode"] == "fp32"
    import onnxruntime

    inputs = record["inputs"]
    assert inputs["onnxruntime"] == onnxruntime.__version__ and inputs["settings"]["mode"] == "fp32"
    assert inputs["weights"] == [["model.safetensors", (bert / "model.safetensors").stat().st_size,
                                  (bert / "model.safetensors").stat().st_mtime_ns]]  # fmt: skip
    assert not list(bert.glob("*.onnx*"))  # never beside the checkpoint


def test_cached_graph_is_reused_and_a_changed_file_rebuilds_it(bert, user_cache, monkeypatch):
    first = Classifier.from_pretrained(bert, backend="onnx", dtype="fp32").logits(TEXTS)
    with monkeypatch.context() as patched:
        no_export(patched)
        np.testing.assert_array_equal(Classifier.from_pretrained(bert, backend="onnx", dtype="fp32").logits(TEXTS),
                                      first)  # fmt: skip
    (old,) = entry_folders(user_cache)
    weights = bert / "model.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))  # as a copy would
    again = Classifier.from_pretrained(bert, backend="onnx", dtype="fp32")
    (new,) = entry_folders(user_cache)  # the new entry replaced the old one, which can never match again
    assert new != old and again.engine.path.parent == new
    np.testing.assert_array_equal(again.logits(TEXTS), first)
    config = json.loads((bert / "config.json").read_text())
    (bert / "config.json").write_text(json.dumps({**config, "id2label": {"0": "a", "1": "b", "2": "c"}}))
    Classifier.from_pretrained(bert, backend="onnx", dtype="fp32")
    assert entry_folders(user_cache) != [new]  # config.json's bytes are part of the key


def test_int8_comes_from_the_fused_graph_and_leaves_fp32_for_rescoring(bert, user_cache, monkeypatch):
    """int8 built first also keeps the fp32 graph it came from (rescoring opens it next); int8 built from a cached
    fp32 graph is the same graph, bit for bit."""
    int8 = Classifier.from_pretrained(bert, dtype="int8")
    assert len(entry_folders(user_cache, "fp32")) == 1 and len(entry_folders(user_cache, "int8")) == 1
    expected = int8.logits(TEXTS)
    with monkeypatch.context() as patched:
        no_export(patched)
        Classifier.from_pretrained(bert, backend="onnx", dtype="fp32")  # the fp32 entry made on the way
        shutil.rmtree(entry_folders(user_cache, "int8")[0])
        rebuilt = Classifier.from_pretrained(bert, dtype="int8")  # quantized from the cached fp32 graph
    np.testing.assert_array_equal(rebuilt.logits(TEXTS), expected)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "entry"])
def test_damaged_entry_is_rebuilt(bert, user_cache, damage, caplog):
    expected = Classifier.from_pretrained(bert, dtype="int8").logits(TEXTS)
    (entry,) = entry_folders(user_cache, "int8")
    graph = entry / "model.onnx"
    if damage == "garbage":  # same size: only ONNX Runtime can tell
        graph.write_bytes(os.urandom(graph.stat().st_size))
    elif damage == "truncated":
        data = entry / "model.onnx.data"
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    else:
        (entry / "entry.json").write_text("{not json")
    with caplog.at_level("WARNING", logger="textclass"):
        clf = Classifier.from_pretrained(bert, dtype="int8")
    np.testing.assert_array_equal(clf.logits(TEXTS), expected)
    assert "rebuilding it" in caplog.text
    from textclass.runtime.cpu import int8_plan

    assert cache.find(clf.checkpoint, "int8", int8_plan()) == graph  # the same key, whole again


def test_without_a_writable_cache_it_still_classifies(bert, tmp_path, monkeypatch, caplog):
    not_a_folder = tmp_path / "cache-is-a-file"
    not_a_folder.write_text("")
    monkeypatch.setenv("TEXTCLASS_CACHE", str(not_a_folder))  # mkdir fails there, as in a read-only home
    reference = Classifier.from_pretrained(bert, dtype="fp32").logits(TEXTS)
    with caplog.at_level("WARNING", logger="textclass"):
        clf = Classifier.from_pretrained(bert, backend="onnx", dtype="fp32")
    np.testing.assert_allclose(clf.logits(TEXTS), reference, atol=1e-4, rtol=1e-4)
    assert "no writable cache" in caplog.text and not list(bert.glob("*.onnx*"))


@pytest.mark.skipif(DEFAULT_MODEL not in bundled_models(), reason="bundled model not installed")
def test_the_bundled_graph_is_used_as_shipped_and_is_its_checkpoint(user_cache, tmp_path, monkeypatch):
    """The bundled model's model.fp32.onnx (reading its safetensors) is trusted: never validated, never rewritten,
    its optimized form cached; nothing is written into the package. It must be a faithful export of the shipped
    weights (a stale one would be trusted too): rebuilt here and compared."""
    folder = bundled_models()[DEFAULT_MODEL]
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    with monkeypatch.context() as patched:
        no_export(patched)
        clf = Classifier.from_pretrained(backend="onnx", dtype="fp32")
    shipped = clf.logits(TEXTS)
    assert clf.engine.path.is_relative_to(user_cache)  # its optimized form: links folded once, not at every start
    Classifier.from_pretrained(dtype="int8")  # this CPU's int8: in the user cache too
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before
    from textclass.onnx.export import export_onnx

    export_onnx(open_checkpoint(folder), tmp_path / "fresh.onnx", "fp32")
    from textclass.runtime.onnx_engine import OnnxEngine

    fresh = Classifier(clf.checkpoint, clf.tokenizer, OnnxEngine(tmp_path / "fresh.onnx", "fp32"), True, "cpu", 1024)
    np.testing.assert_allclose(fresh.logits(TEXTS), shipped, atol=1e-5, rtol=0)


def test_cache_command_lists_and_prunes(bert, tiny_checkpoints, copy_checkpoint, user_cache):
    from textclass.cli.app import app

    other = copy_checkpoint(tiny_checkpoints["distilbert"][0])
    Classifier.from_pretrained(bert, dtype="int8")  # int8 and the fp32 it came from
    Classifier.from_pretrained(other, backend="onnx", dtype="fp32")
    (user_cache / "ort" / "0123abcd-ort1.0").mkdir(parents=True)  # an older textclass's saved graph
    runner = CliRunner()
    listed = json.loads(runner.invoke(app, ["cache", "--json"]).stdout)
    rows = {(Path(e["model"]).name if e["model"] else "", e["mode"], e["state"]) for e in listed["entries"]}
    assert rows == {(bert.name, "int8", "current"), (bert.name, "fp32", "current"), (other.name, "fp32", "current"),
                    ("", "", "old layout")}  # fmt: skip
    assert all(e["bytes"] > 0 and len(e["key"]) == 16 for e in listed["entries"] if e["mode"])
    shown = runner.invoke(app, ["cache"])
    assert shown.exit_code == 0 and "int8" in shown.stdout and "4 entries" in shown.stdout

    shutil.rmtree(other)  # its entry can never be used again: the default prune removes it, and the old folder
    dry = runner.invoke(app, ["cache", "prune", "--dry-run"])
    assert "would remove" in dry.stdout and len(entry_folders(user_cache)) == 3
    assert runner.invoke(app, ["cache", "prune"]).exit_code == 0
    assert {p.name.split("-")[-2] for p in entry_folders(user_cache)} == {"fp32", "int8"}
    assert not (user_cache / "ort").exists() or not list((user_cache / "ort").iterdir())
    runner.invoke(app, ["cache", "prune", "--larger-than", "1000"])  # tiny entries: nothing that large
    assert len(entry_folders(user_cache)) == 2
    runner.invoke(app, ["cache", "prune", "--older-than", "1"])  # used just now
    assert len(entry_folders(user_cache)) == 2
    os.utime(entry_folders(user_cache, "fp32")[0] / "entry.json", (0, 0))  # last used in 1970
    runner.invoke(app, ["cache", "prune", "--older-than", "1"])
    assert [p.name.split("-")[-2] for p in entry_folders(user_cache)] == ["int8"]
    assert runner.invoke(app, ["cache", "prune", "--all"]).exit_code == 0
    assert entry_folders(user_cache) == [] and "is empty" in " ".join(runner.invoke(app, ["cache"]).stdout.split())
