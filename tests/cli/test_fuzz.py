"""The command line fuzzed with bad input (hypothesis): random bytes and encodings in files of every extension, empty,
whitespace and huge fields, wrong types and bad option values, across classify, batch, check, eval, explain and
tokenize. Whatever comes in, a command either works (exit 0; `check` may say 2: contract not held) or fails with
one `error: ...` line and exit 1: never a traceback, never an exception out of the command.

Bounded: a few dozen examples per command on a tiny model, no example database, a deadline per example off (the
machine is shared) but the run as a whole capped by `max_examples`. Slow tier: about a minute.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from textclass.cli.app import app
from textclass.cli.entry import main as entry_main
from textclass.cli.entry import quick_classify_args

pytestmark = pytest.mark.slow
runner = CliRunner()
FUZZ = settings(max_examples=25, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])  # fmt: skip

# Text as users paste it, and as they should not: empty, whitespace, control characters, huge, odd scripts.
TEXTS = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", " ", "\t\n", "\x00", "\u200b", "[MASK]", "<s>", "💥" * 50, "a" * 5000, "word " * 20_000]),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=300),
)
# Option values of the wrong type or out of range.
BAD_NUMBERS = st.one_of(st.integers(-5, 0).map(str), st.sampled_from(["", "x", "1.5", "nan", "1e9", "0x10", "99999"]))
BAD_WORDS = st.one_of(st.sampled_from(["", "median", "xml", "relu", "LABEL_9", "spark"]), st.text(max_size=12))


def option(name: str, valid: st.SearchStrategy[str], bad: st.SearchStrategy[str] = BAD_WORDS) -> st.SearchStrategy:
    """An option left out, given a valid value or a bad one (about half, a quarter, a quarter), as [name, value]."""
    return st.one_of(st.just([]), st.just([]), valid.map(lambda v: [name, v]), bad.map(lambda v: [name, v]))


def options(*choices: st.SearchStrategy) -> st.SearchStrategy[list[str]]:
    return st.tuples(*choices).map(lambda parts: [item for part in parts for item in part])


def small(low: int, high: int) -> st.SearchStrategy[str]:
    return st.integers(low, high).map(str)


LONG_TEXT = [option("--long-text", st.sampled_from(["chunk", "truncate"])),
             option("--chunk-tokens", small(3, 64), BAD_NUMBERS), option("--stride", small(0, 8), BAD_NUMBERS),
             option("--aggregate", st.sampled_from(["mean", "max", "first"])),
             option("--max-windows", small(1, 20), BAD_NUMBERS)]  # fmt: skip


def file_bytes() -> st.SearchStrategy[bytes]:
    """What a data file may hold: random bytes, text in a wrong encoding, malformed rows, a huge field, nothing."""
    rows = st.lists(TEXTS, max_size=6)
    return st.one_of(
        st.binary(max_size=400),
        rows.map(lambda texts: ("text\n" + "\n".join(texts)).encode("utf-8", "surrogatepass")),
        rows.map(lambda texts: ("text,label\n" + "\n".join(f"{t},{i}" for i, t in enumerate(texts))).encode("utf-16")),
        rows.map(lambda texts: ("sentence\tlabel\n" + "\n".join(f"{t}\t1\tx" for t in texts)).encode("latin-1",
                                                                                                  "replace")),
        rows.map(lambda texts: "".join(json.dumps({"text": t, "label": i % 3}) + "\n"
                                       for i, t in enumerate(texts)).encode()),  # fmt: skip
        st.sampled_from([b"", b"\n\n", b"PAR1", b"PAR1\x00\x00PAR1", b'{"text": 1}\n[1]\nnull\n', b"text\n" +
                         b"x" * 300_000 + b"\n", b'[{"text": "a", "label": 0}]', b"\xef\xbb\xbftext\nhi\n"]),
    )  # fmt: skip


# The formats each command reads, twice as often as the ones it does not.
SUFFIXES = st.sampled_from([".csv", ".tsv", ".jsonl", ".txt"] * 2 + [".ndjson", ".json", ".parquet", ".xlsx", ""])


@pytest.fixture(scope="module")
def model(tiny_checkpoints):
    patch = pytest.MonkeyPatch()
    patch.setenv("HF_HUB_OFFLINE", "1")  # an org/name model never reaches for the network
    folder = str(tiny_checkpoints["bert"][0])
    assert runner.invoke(app, ["classify", "warm", "--model", folder]).exit_code == 0  # graph exported once
    yield folder
    patch.undo()


def assert_clean(result, args: list[str], allowed: tuple[int, ...] = (0, 1)) -> None:
    shown = f"textclass {' '.join(a[:60] for a in args)}"
    assert result.exception is None or isinstance(result.exception, SystemExit), (shown, result.exception)
    assert result.exit_code in allowed, (shown, result.exit_code, result.output[-2000:])
    event(f"{args[0]}: exit {result.exit_code}")  # shown by --hypothesis-show-statistics: how far inputs got
    assert "Traceback" not in result.output, shown
    if result.exit_code == 1:
        lines = [line for line in result.stderr.splitlines() if line]
        errors = [line for line in lines if line.startswith("error: ")]
        others = [line for line in lines if not line.startswith(("error: ", "textclass: "))]  # log lines may precede
        assert len(errors) == 1 and not others, (shown, result.stderr[-2000:])


def in_folder(files: dict[str, bytes]) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="textclass-fuzz-"))
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return folder


@FUZZ
@given(texts=st.lists(TEXTS, max_size=3), chosen=options(
    option("--top-k", small(0, 4), BAD_NUMBERS), option("--format", st.sampled_from(["table", "json", "jsonl"])),
    option("--function", st.sampled_from(["softmax", "sigmoid", "none"])), *LONG_TEXT))  # fmt: skip
def test_classify(model, capsys, texts, chosen):
    args = ["classify", *texts, "--model", model, *chosen]
    assert_clean(runner.invoke(app, args), args)
    if quick_classify_args(args) is not None:  # the quick entry point answers the same way
        argv, sys.argv = sys.argv, ["textclass", *args]
        try:
            entry_main(hard_exit=False)
            code = 0
        except SystemExit as exc:
            code = exc.code
        finally:
            sys.argv = argv
        captured = capsys.readouterr()
        assert code in (0, 1) and "Traceback" not in captured.err, (args, captured.err)
        if code == 1:
            assert captured.err.strip().splitlines()[-1].startswith("error: "), captured.err


@FUZZ
@given(content=file_bytes(), suffix=SUFFIXES, verbose=st.booleans())
def test_classify_input_file(model, content, suffix, verbose):
    folder = in_folder({f"in{suffix}": content})
    args = ["classify", "--model", model, "--input", str(folder / f"in{suffix}"), *(["-v"] if verbose else [])]
    assert_clean(runner.invoke(app, args), args)
    shutil.rmtree(folder)


COLUMN = st.sampled_from(["text", "sentence", "label", "id"])


OUTPUTS = st.sampled_from(["out.jsonl"] * 3 + ["out.parquet", "out.csv", "out"])


@FUZZ
@given(content=file_bytes(), suffix=SUFFIXES, out=OUTPUTS,
       chosen=options(option("--text-column", COLUMN), option("--id-column", COLUMN),
                      option("--chunk-rows", small(1, 5), BAD_NUMBERS), option("--top-k", small(0, 3), BAD_NUMBERS),
                      option("--engine", st.just("local")), *LONG_TEXT))  # fmt: skip  (Ray's start takes seconds)
def test_batch(model, content, suffix, out, chosen):
    folder = in_folder({f"in{suffix}": content})
    args = ["batch", "-q", "--model", model, "-i", str(folder / f"in{suffix}"), "-o", str(folder / out), *chosen]
    result = runner.invoke(app, args)
    assert_clean(result, args)
    if result.exit_code == 1:  # a run that fails before its first row leaves nothing behind
        assert not (folder / f"{out}.parts").exists() or (folder / f"{out}.parts" / "manifest.json").is_file()
    shutil.rmtree(folder)


@FUZZ
@given(content=file_bytes(), suffix=SUFFIXES, chosen=options(option("--text-column", COLUMN),
                                                             option("--limit", small(0, 5), BAD_NUMBERS)))
def test_check(model, content, suffix, chosen):
    folder = in_folder({f"in{suffix}": content})
    args = ["check", "--model", model, "--data", str(folder / f"in{suffix}"), "--json", *chosen]
    assert_clean(runner.invoke(app, args), args, allowed=(0, 1, 2))  # 2: measured, and the contract does not hold
    shutil.rmtree(folder)


@FUZZ
@given(content=file_bytes(), suffix=SUFFIXES, chosen=options(
    option("--label-column", COLUMN), option("--text-column", COLUMN), option("--errors", small(0, 3), BAD_NUMBERS),
    option("--max-length", small(2, 64), BAD_NUMBERS), option("--label-delimiter", st.just("|"))))  # fmt: skip
def test_eval(model, content, suffix, chosen):
    folder = in_folder({f"in{suffix}": content})
    args = ["eval", "--model", model, "--data", str(folder / f"in{suffix}"), "--json", *chosen]
    assert_clean(runner.invoke(app, args), args)
    shutil.rmtree(folder)


@FUZZ
@given(text=TEXTS, chosen=options(
    option("--method", st.sampled_from(["occlusion", "integrated_gradients"])),
    option("--target", st.sampled_from(["LABEL_0", "LABEL_2", "0", "2"]), st.sampled_from(["LABEL_9", "7", "-1", ""])),
    option("--baseline", st.sampled_from(["delete", "pad", "mask"])),
    option("--unit", st.sampled_from(["word", "token"])), option("--steps", small(1, 8), BAD_NUMBERS),
    st.sampled_from([[], ["--json"]])))  # fmt: skip
def test_explain(model, text, chosen):
    args = ["explain", text[:2000], "--model", model, *chosen]
    assert_clean(runner.invoke(app, args), args)


@FUZZ
@given(text=TEXTS, pair=st.one_of(st.none(), TEXTS), as_json=st.booleans(), model_name=st.sampled_from(
    [None, None, None, "", ".", "/", "nope/nope", "sentiment-xx", "./missing", "~/missing"]))  # fmt: skip
def test_tokenize(model, text, pair, as_json, model_name):
    args = ["tokenize", text, "--model", model if model_name is None else model_name,
            *(["--pair", pair] if pair is not None else []), *(["--json"] if as_json else [])]  # fmt: skip
    assert_clean(runner.invoke(app, args), args)
