"""`textclass batch` without the extras it may use (Parquet's pyarrow, Ray), and resume that follows the job: CSV,
TSV, JSONL and .txt in and JSONL out on the standard library alone, the same bytes and the same resume guarantee
as with pyarrow installed; what needs an extra says so in one line and leaves nothing behind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

ENTRY = "sys.argv[0] = 'textclass'; from textclass.cli.entry import main; main()"


def textclass(*args: str, missing: tuple[str, ...] = (), crash_at: str | None = None) -> subprocess.CompletedProcess:
    """The command in a fresh process where importing the `missing` modules fails, as in an install without them."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    env["OMP_NUM_THREADS"] = "1"
    env.pop("TEXTCLASS_BATCH_CRASH_AT", None)
    if crash_at:
        env["TEXTCLASS_BATCH_CRASH_AT"] = crash_at
    code = f"import sys; sys.modules.update(dict.fromkeys({missing!r})); {ENTRY}"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=180)


def one_line_error(done: subprocess.CompletedProcess, *fragments: str) -> None:
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert "Traceback" not in done.stderr and len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def model(tiny_checkpoints, tmp_path_factory) -> Path:
    # A copy of its own: a test here adds files beside it.
    return Path(shutil.copytree(tiny_checkpoints["distilbert"][0], tmp_path_factory.mktemp("light") / "model"))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("inputs")
    texts = [f"row {i}: {'good' if i % 3 else 'bad'} film, {'x' * (i % 7)}" for i in range(90)]
    texts[4], texts[50] = "", "caf\udce9"  # an empty text; a byte that is not UTF-8 (written as latin-1 below)
    lines = ["id,text", *(f'{i},"{t}"' for i, t in enumerate(texts))]
    (folder / "in.csv").write_bytes("\n".join(lines).encode("utf-8", "surrogateescape") + b"\n")
    (folder / "in.tsv").write_bytes("\n".join(["id\ttext", *(f"{i}\t{t}" for i, t in enumerate(texts))])
                                    .encode("utf-8", "surrogateescape"))  # fmt: skip
    (folder / "in.jsonl").write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n"
                                             for i, t in enumerate(texts) if i != 50))  # fmt: skip
    (folder / "in.txt").write_text("\n".join(t for i, t in enumerate(texts) if i != 50) + "\n")  # a blank line
    return {name: folder / f"in.{name}" for name in ("csv", "tsv", "jsonl", "txt")}


def test_text_formats_need_no_pyarrow(model, inputs, tmp_path):
    for name, source in inputs.items():
        ids = [] if name == "txt" else ["--id-column", "id"]
        light, full = tmp_path / f"{name}-light.jsonl", tmp_path / f"{name}-full.jsonl"
        done = textclass("batch", "-q", "-m", str(model), "-i", str(source), "-o", str(light), "--chunk-rows", "16",
                         *ids, missing=("pyarrow",))  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert textclass("batch", "-q", "-m", str(model), "-i", str(source), "-o", str(full), "--chunk-rows", "16",
                         *ids).returncode == 0  # fmt: skip
        assert light.read_bytes() == full.read_bytes(), name
        rows = [json.loads(line) for line in light.read_text().splitlines()]
        assert len(rows) == (88 if name == "txt" else 90 - (name == "jsonl"))
        if name in ("csv", "tsv"):
            assert rows[4]["error"] == "empty text" and rows[50]["error"] == "invalid UTF-8 at byte 3 of the text"
    # The resume guarantee without pyarrow: killed after two parts, resumed, byte for byte the uninterrupted run.
    args = ["batch", "-q", "-m", str(model), "-i", str(inputs["csv"]), "-o", str(tmp_path / "resumed.jsonl"),
            "--chunk-rows", "16", "--id-column", "id"]  # fmt: skip
    assert textclass(*args, missing=("pyarrow",), crash_at="part-listed:1").returncode < 0
    assert json.loads((tmp_path / "resumed.jsonl.parts" / "manifest.json").read_text())["rows_done"] == 32
    assert textclass(*args, "--resume", missing=("pyarrow",)).returncode == 0
    assert (tmp_path / "resumed.jsonl").read_bytes() == (tmp_path / "csv-full.jsonl").read_bytes()


def test_parquet_without_pyarrow_names_the_extra(model, inputs, tmp_path):
    parquet = tmp_path / "in.parquet"
    parquet.write_bytes(b"PAR1")  # never opened: the extra is missing
    cases = [
        ["batch", "-i", str(inputs["csv"]), "-o", str(tmp_path / "out.parquet")],
        ["batch", "-i", str(parquet), "-o", str(tmp_path / "out.jsonl")],
        ["check", "--data", str(parquet)],
        ["eval", "--data", str(parquet)],
    ]
    for args in cases:
        one_line_error(textclass(*args, "-m", str(model), missing=("pyarrow",)), "needs pyarrow",
                       "pip install 'textclass[parquet]'")  # fmt: skip
    assert not list(tmp_path.glob("out.*"))


def test_a_run_that_fails_before_its_first_row_leaves_nothing(model, inputs, tmp_path):
    out = tmp_path / "out.jsonl"
    args = ["batch", "-q", "-m", str(model), "-i", str(inputs["jsonl"]), "-o", str(out)]
    one_line_error(textclass(*args, "--engine", "ray", missing=("ray",)), "pip install 'textclass[ray]'")
    assert not list(tmp_path.iterdir())
    broken = Path(shutil.copytree(model, tmp_path / "broken", ignore=shutil.ignore_patterns("*.onnx*")))
    (broken / "model.safetensors").write_bytes(b"not weights")
    one_line_error(textclass("batch", "-q", "-m", str(broken), "-i", str(inputs["jsonl"]), "-o", str(out)))
    assert not out.exists() and not (tmp_path / "out.jsonl.parts").exists()
    assert textclass(*args).returncode == 0  # the plain run after them is not blocked
    assert len(out.read_text().splitlines()) == 89


def test_resume_follows_the_models_sources_not_generated_files(model, inputs, tmp_path):
    out = tmp_path / "out.jsonl"
    args = ["batch", "-q", "-m", str(model), "-i", str(inputs["csv"]), "-o", str(out), "--chunk-rows", "16"]
    assert textclass(*args, crash_at="part-listed:0").returncode < 0
    # What textclass generates beside a checkpoint changes: a rebuilt ONNX cache, a model card.
    for name in ("model.fp32.onnx", "model.int8.onnx", "README.md"):
        (model / name).write_bytes(b"rebuilt")
    assert textclass(*args, "--resume", crash_at="part-listed:2").returncode < 0
    # The model's own files are the job: a changed config refuses the resume and names why.
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "id2label": {"0": "A", "1": "B", "2": "C"}}))
    one_line_error(textclass(*args, "--resume"), "cannot resume", "model_files changed")
    (model / "config.json").write_text(json.dumps(config))  # size and mtime differ from the first run's: refused
    one_line_error(textclass(*args, "--resume"), "model_files changed")
    for name in ("model.fp32.onnx", "model.int8.onnx", "README.md"):
        (model / name).unlink()
