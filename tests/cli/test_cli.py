"""The command line: outputs, and one-line errors with a non-zero exit for every kind of bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from clikit import assert_clean_error
from textclass.cli.app import app

runner = CliRunner()


def run(*args: str, stdin: str | bytes | None = None):
    return runner.invoke(app, list(args), input=stdin)


def test_classify_formats(tiny_checkpoints):
    folder = str(tiny_checkpoints["bert"][0])
    table = run("classify", "good", "bad", "--model", folder)
    assert table.exit_code == 0 and "LABEL_" in table.stdout

    jsonl = run("classify", "good", "fine", "--model", folder, "--format", "jsonl")
    rows = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert [r["text"] for r in rows] == ["good", "fine"]
    assert all(r["label"].startswith("LABEL_") and 0 < r["score"] < 1 and "scores" not in r for r in rows)

    every = run("classify", "good", "--model", folder, "--format", "jsonl", "--top-k", "0")
    row = json.loads(every.stdout)
    assert len(row["scores"]) == 3 and row["scores"][0]["label"] == row["label"]

    as_json = run("classify", "good", "bad", "--model", folder, "--format", "json")
    assert [len(x) for x in [json.loads(as_json.stdout)]] == [2]


def test_classify_from_file_and_stdin(tiny_checkpoints, tmp_path):
    folder = str(tiny_checkpoints["bert"][0])
    texts = tmp_path / "texts.txt"
    texts.write_text("first\n\n  \nthird\n", encoding="utf-8")
    from_file = run("classify", "--model", folder, "--input", str(texts), "--format", "jsonl")
    assert [json.loads(x)["text"] for x in from_file.stdout.splitlines()] == ["first", "third"]  # blank: skipped
    assert "blank" not in from_file.stderr
    verbose = run("classify", "--model", folder, "--input", str(texts), "--format", "jsonl", "-v")
    assert f"{texts}: skipped 2 blank lines" in verbose.stderr.splitlines()
    piped = run("classify", "--model", folder, "--format", "jsonl", "--input", "-", stdin="one\ntwo\n")
    assert [json.loads(x)["text"] for x in piped.stdout.splitlines()] == ["one", "two"]


def test_table_prints_texts_as_written(tiny_checkpoints):
    """Texts are data, not rich markup: brackets print as typed and nothing is styled away."""
    texts = ["a [mask] b [bold]x", "[red]y[/red] [/]"]
    table = run("classify", *texts, "--model", str(tiny_checkpoints["bert"][0]))
    assert table.exit_code == 0, table.output
    assert all(text in table.stdout for text in texts), table.stdout


def test_commands_share_one_backend_dtype_and_model_option():
    """classify, serve, batch, eval (and the task commands) take the same --model, --backend, --dtype and --device,
    each defined once; eval too defaults to the bundled model."""
    import typer

    commands = typer.main.get_command(app).commands
    first = {p.name: p for p in commands["classify"].params}
    for name in ("serve", "batch", "eval", "rerank", "zero-shot"):
        params = {p.name: p for p in commands[name].params}
        for option in ("model", "backend", "dtype", "device"):
            # serve's --model is repeatable (NAME=PATH for several models): same flags, its own help.
            same_help = params[option].help == first[option].help or (name, option) == ("serve", "model")
            assert params[option].opts == first[option].opts and same_help, (name, option)
        assert not params["model"].required and params["model"].default is None, name
    assert "int8" in first["dtype"].help and "onnx" in first["backend"].help
    assert commands["tokenize"].help.startswith("Show how the model's tokenizer splits a text")


def test_eval_defaults_to_the_bundled_model(tmp_path):
    data = tmp_path / "reviews.csv"
    data.write_text('text,label\n"a wonderful, moving film",POSITIVE\ndull and far too long,NEGATIVE\n')
    result = run("eval", "--data", str(data), "--json", "--backend", "onnx")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["rows"] == 2 and report["model"].endswith("sentiment-en") and "accuracy" in report


def test_tokenize_json_reproduces_seed(minilm_dir):
    result = run("tokenize", "I've been waiting for a HuggingFace course my whole life.", "--model", str(minilm_dir),
                 "--json")  # fmt: skip
    out = json.loads(result.stdout)
    assert out["input_ids"][:4] == [101, 1045, 1005, 2310] and out["tokens"][0] == "[CLS]"
    assert out["decoded"] == "[CLS] i've been waiting for a huggingface course my whole life. [SEP]"
    assert out["attention_mask"] == [1] * 16


def test_inspect(minilm_dir):
    info = json.loads(run("inspect", "--model", str(minilm_dir), "--json").stdout)
    assert info["family"] == "bert" and info["layers"] == 6 and info["hidden_size"] == 384
    assert info["parameters"] == 22_713_728 and info["has_classification_head"] is False


@pytest.fixture
def broken(tiny_checkpoints, copy_checkpoint, tmp_path):
    """name -> (args, expected fragment of the one-line error)."""
    ok = tiny_checkpoints["bert"][0]
    no_config = copy_checkpoint(ok)
    (no_config / "config.json").unlink()
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for item in ok.iterdir():
        (corrupt / item.name).write_bytes(item.read_bytes())
    (corrupt / "model.safetensors").write_bytes(b"\x00garbage" * 100)
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    for item in ok.iterdir():
        (truncated / item.name).write_bytes(item.read_bytes())
    data = (ok / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[: len(data) // 2])
    missing = tmp_path / "missing"
    missing.mkdir()
    for item in ok.iterdir():
        (missing / item.name).write_bytes(item.read_bytes())
    tensors = load_file(ok / "model.safetensors")
    del tensors["bert.embeddings.LayerNorm.weight"]
    save_file(tensors, missing / "model.safetensors")
    unsupported = tmp_path / "unsupported"
    unsupported.mkdir()
    (unsupported / "config.json").write_text(json.dumps({"model_type": "llama"}))
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9 cr\xe8me\n".encode("latin-1"))
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    blank = tmp_path / "blank.txt"
    blank.write_bytes(b"\n  \n\t\n")
    return {
        "missing folder": (["--model", str(tmp_path / "nope"), "x"], "does not exist"),
        "no config.json": (["--model", str(no_config), "x"], "has no config.json"),
        "corrupt safetensors": (["--model", str(corrupt), "x"], "corrupt or truncated"),
        "truncated safetensors": (["--model", str(truncated), "x"], "corrupt or truncated"),
        "missing tensor": (["--model", str(missing), "x"], "bert.embeddings.LayerNorm.weight"),
        "unsupported type": (["--model", str(unsupported), "x"], "'llama' is not supported"),
        "non-UTF-8 file": (["--model", str(ok), "--input", str(latin1)], "not UTF-8"),
        "empty file": (["--model", str(ok), "--input", str(empty)], "is empty"),
        "blank lines only": (["--model", str(ok), "--input", str(blank)], "its 3 lines are blank"),
        "empty text": (["--model", str(ok), "fine", " "], "input 1 is empty (or only whitespace)"),
        "empty text alone": (["--model", str(ok), ""], "input 0 is empty (or only whitespace)"),
        "missing input file": (["--model", str(ok), "--input", str(tmp_path / "none.txt")], "does not exist"),
        "bad function": (["--model", str(ok), "--function", "relu", "x"], "function_to_apply"),
    }


CASES = ["missing folder", "no config.json", "corrupt safetensors", "truncated safetensors", "missing tensor",
         "unsupported type", "non-UTF-8 file", "empty file", "blank lines only", "empty text", "empty text alone",
         "missing input file", "bad function"]  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_error(broken, case):
    args, fragment = broken[case]
    assert_clean_error(run("classify", *args), fragment)


def test_input_may_be_a_pipe_but_not_a_folder(tiny_checkpoints, tmp_path):
    """--input reads a named pipe as it reads a file (`--input <(grep ... texts.txt)`); a folder is a clear error."""
    import threading

    folder = str(tiny_checkpoints["bert"][0])
    pipe = tmp_path / "texts"
    os.mkfifo(pipe)
    writer = threading.Thread(target=lambda: pipe.write_text("good\n\nbad\n"), daemon=True)  # never a hang
    writer.start()
    piped = run("classify", "--model", folder, "--input", str(pipe), "--format", "jsonl")
    writer.join(timeout=10)
    assert piped.exit_code == 0, piped.output
    assert [json.loads(line)["text"] for line in piped.stdout.splitlines()] == ["good", "bad"]
    assert_clean_error(run("classify", "--model", folder, "--input", str(tmp_path)), "is a folder")


def test_real_process_exit_codes(tiny_checkpoints, tmp_path):
    """The installed entry point, not just the in-process runner: exit status and stderr."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "textclass", "classify", "--model", str(tmp_path / "nope"), "x"]
    bad = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert bad.returncode == 1 and bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr
    cmd = [
        sys.executable,
        "-m",
        "textclass",
        "classify",
        "--model",
        str(tiny_checkpoints["bert"][0]),
        "hi",
        "-f",
        "jsonl",
    ]
    good = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert good.returncode == 0 and json.loads(good.stdout)["text"] == "hi"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["classify", "a", "b"], {"texts": ["a", "b"], "model": None, "top_k": 1, "format": "table"}),
        (
            ["classify", "-m", "M", "a", "-k", "0", "--format", "jsonl"],
            {"texts": ["a"], "model": "M", "top_k": 0, "format": "jsonl"},
        ),  # fmt: skip
        (["classify"], None),  # nothing to classify: stdin or an error, the full CLI decides
        (["classify", "--help"], None),
        (["classify", "a", "--dtype", "int8"], None),  # options the quick path does not know
        (["classify", "a", "-k", "x"], None),  # bad values get the full CLI's explanation
        (["classify", "a", "-k", "-1"], None),
        (["classify", "a", "-f", "xml"], None),
        (["classify", "a", "--model"], None),
        (["classify", "-", "a"], None),
        (["tokenize", "a"], None),
    ],
)
def test_quick_entry_takes_only_plain_classify_calls(argv, expected):
    from textclass.cli.entry import quick_classify_args

    assert quick_classify_args(argv) == expected


def test_quick_entry_prints_what_the_full_cli_prints_without_importing_typer(tiny_checkpoints):
    folder = str(tiny_checkpoints["bert"][0])
    args = ["classify", "good", "so-so", "--model", folder, "-k", "0", "-f", "json"]
    code = (
        "import sys; from textclass.cli.entry import main; main(hard_exit=False); "
        "print(sorted(m for m in sys.modules if m in ('typer', 'click', 'pydantic')))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    quick = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)
    assert quick.returncode == 0, quick.stderr
    printed, imported = quick.stdout.strip().splitlines()
    assert imported == "[]"
    assert json.loads(printed) == json.loads(run(*args).stdout)
    bad = subprocess.run([sys.executable, "-c", code, "classify", "x", "-m", folder + "-nope"], capture_output=True,
                         text=True, env=env)  # fmt: skip
    assert bad.returncode == 1 and bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr


@pytest.mark.parametrize(("command", "shown"), [
    ("serve", "1024 on CPU"), ("train", "text or sentence"), ("train", "all cores"), ("eval", "the model's limit"),
])  # fmt: skip
def test_help_shows_defaults_written_in_the_text(command, shown):
    """Help texts that state a default in words keep it: rich reads "[default: ...]" as markup and drops it."""
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "300", "NO_COLOR": "1"})
    assert result.exit_code == 0
    assert shown in " ".join(result.output.split())
