"""The light install: without torch, textclass classifies, evaluates, inspects and converts safetensors and
tf_model.h5 checkpoints; what needs torch says which extra to install, in one line, with no traceback.

Each case runs in a fresh process where `import torch` and `import transformers` fail, as in a venv that
has only the core dependencies (CI also runs a real one: .ci/run).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # the quick tier (-m 'not slow') leaves these out

TF_FIXTURE = Path(__file__).parent / "fixtures" / "tf" / "bert"
LIGHT = ("torch", "transformers")  # what the core install lacks


@pytest.fixture
def tiny_bert(tiny_checkpoints) -> Path:
    return tiny_checkpoints["bert"][0]


def run_python(code: str, tmp_path: Path, *args: str, missing: tuple[str, ...] = LIGHT) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter where importing the `missing` modules fails."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "TEXTCLASS_CACHE": str(tmp_path / "cache")}
    block = f"import sys; sys.modules.update(dict.fromkeys({missing!r})); "
    return subprocess.run([sys.executable, "-c", block + code, *args], capture_output=True, text=True, env=env)


def textclass(tmp_path: Path, *args: str, missing: tuple[str, ...] = LIGHT) -> subprocess.CompletedProcess:
    """The `textclass` command without torch (and without what else `missing` names)."""
    code = "sys.argv[0] = 'textclass'; from textclass.cli.entry import main; main()"
    return run_python(code, tmp_path, *args, missing=missing)


def one_line_error(done: subprocess.CompletedProcess, *expected: str) -> None:
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for part in expected:
        assert part in lines[0]


def test_classify_builds_the_graph_without_torch(tiny_bert, tmp_path):
    folder = Path(shutil.copytree(tiny_bert, tmp_path / "ckpt"))
    # dtype fp32 without torch is ONNX Runtime fp32 (the same maths as torch fp32, the reference).
    done = textclass(tmp_path, "classify", "great movie", "awful", "--model", str(folder), "--format", "json",
                     "--top-k", "0", "--dtype", "fp32")  # fmt: skip
    assert done.returncode == 0, done.stderr
    # built by onnx/graph.py into the user cache, never beside the checkpoint
    assert list((tmp_path / "cache" / "onnx").glob("ckpt-fp32-*/model.onnx")) and not list(folder.glob("*.onnx"))
    from textclass import Classifier

    expected = Classifier.from_pretrained(folder, dtype="fp32")(["great movie", "awful"], top_k=None)  # torch
    for got, want in zip(json.loads(done.stdout), expected):
        assert [r["label"] for r in got] == [r["label"] for r in want]
        np.testing.assert_allclose([r["score"] for r in got], [r["score"] for r in want], atol=1e-5)
    for mode in ([], ["--dtype", "int8"]):  # the CPU default, and int8 asked for: no torch either
        done = textclass(tmp_path, "classify", "great movie", "--model", str(folder), *mode)
        assert done.returncode == 0, done.stderr


def test_torch_modes_name_the_extra(tiny_bert, tmp_path):
    folder = str(tiny_bert)
    for option in (["--dtype", "bf16"], ["--backend", "torch"], ["--device", "cuda"]):
        one_line_error(textclass(tmp_path, "classify", "hi", "--model", folder, *option),
                       "needs PyTorch", "pip install 'textclass[torch]'")  # fmt: skip
    done = run_python(f"from textclass import Classifier; Classifier.from_pretrained({folder!r}, dtype='bfloat16')",
                      tmp_path)  # fmt: skip
    assert done.returncode == 1 and "MissingExtra: dtype bfloat16 on the torch backend needs PyTorch" in done.stderr
    # Integrated gradients are torch's: the CLI says so in one line, the Python API raises MissingExtra.
    one_line_error(textclass(tmp_path, "explain", "a fine film", "--model", folder, "--method",
                             "integrated_gradients"), "explaining with integrated gradients needs PyTorch",
                   "pip install 'textclass[torch]'")  # fmt: skip
    done = run_python(f"from textclass import Classifier; Classifier.from_pretrained({folder!r}).explain('a fine "
                      "film', method='integrated_gradients')", tmp_path)  # fmt: skip
    assert done.returncode == 1 and "MissingExtra: explaining with integrated gradients needs PyTorch" in done.stderr


def test_pytorch_bin_names_the_extra(tiny_bert, tmp_path):
    from safetensors.numpy import load_file

    folder = Path(shutil.copytree(tiny_bert, tmp_path / "bin"))
    import torch

    tensors = {name: torch.from_numpy(array) for name, array in load_file(folder / "model.safetensors").items()}
    torch.save(tensors, folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    one_line_error(
        textclass(tmp_path, "classify", "hi", "--model", str(folder)),
        "reading pytorch_model.bin (a PyTorch pickle) needs PyTorch",
        "pip install 'textclass[torch]'",
    )


def test_train_names_the_extra_and_eval_needs_no_torch(tiny_bert, tmp_path):
    data = tmp_path / "dev.jsonl"
    rows = [
        {"text": text, "label": label}
        for text, label in [("good", "LABEL_0"), ("bad", "LABEL_1"), ("fine", "LABEL_2"), ("great", "LABEL_0")]
    ]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    one_line_error(textclass(tmp_path, "train", "--model", str(tiny_bert), "--train", str(data), "--out",
                             str(tmp_path / "out")), "textclass train needs PyTorch", "textclass[train]")  # fmt: skip
    folder = Path(shutil.copytree(tiny_bert, tmp_path / "ckpt"))
    done = textclass(tmp_path, "eval", "--model", str(folder), "--data", str(data), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rows"] == 4


def test_tf_h5_without_torch(tmp_path):
    """tf_model.h5 reads with h5py into numpy: classify (the graph built from it), inspect and convert."""
    folder = Path(shutil.copytree(TF_FIXTURE, tmp_path / "tf-bert"))
    record = json.loads((folder / "expected_logits.json").read_text())["single"]
    code = (
        "import json; from textclass import Classifier; "
        "clf = Classifier.from_pretrained(sys.argv[1], dtype='fp32'); "
        "print(json.dumps(clf.logits(json.loads(sys.argv[2])).tolist())); print(clf.precision)"
    )
    done = run_python(code, tmp_path, str(folder), json.dumps(record["texts"]))
    assert done.returncode == 0, done.stderr
    logits, precision = done.stdout.splitlines()
    assert precision == "onnx-float32"
    np.testing.assert_allclose(json.loads(logits), record["logits"], atol=1e-4)  # what TensorFlow computed

    done = textclass(tmp_path, "inspect", "--model", str(folder), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["has_classification_head"] is True
    done = textclass(tmp_path, "convert", "--model", str(folder), "--out", str(tmp_path / "converted"))
    assert done.returncode == 0, done.stderr
    done = run_python(code, tmp_path, str(tmp_path / "converted"), json.dumps(record["texts"]))
    np.testing.assert_allclose(json.loads(done.stdout.splitlines()[0]), record["logits"], atol=1e-4)
