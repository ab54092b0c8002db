"""docs/walkthrough.md runs: every ```python block in one namespace, its printed output checked, and the CLI lines.

An ```output block after a python block is compared with what the block printed (doctest rules: `...` matches
anything). ```output bundled blocks show what the real bundled model answers; they are checked only against it.
```console blocks run their `$ textclass ...` lines (placeholders below) unless tagged not-run.

Two runs: against the bundled sentiment-en model (skipped until it ships, or pointed at a candidate checkpoint
with TEXTCLASS_WALKTHROUGH_MODEL=DIR), and against a tiny random BERT with the bert-base-uncased vocabulary
and the same labels, which checks everything that does not depend on trained weights.
"""

from __future__ import annotations

import contextlib
import doctest
import io
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import build_checkpoint

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "walkthrough.md"
TF_FIXTURE = ROOT / "tests" / "fixtures" / "tf" / "distilbert"
FENCE = re.compile(r"^```(\w*)[ \t]*([^\n]*)\n(.*?)^```[ \t]*$", re.M | re.S)
KINDS = {"python", "output", "console"}


@dataclass
class Block:
    kind: str
    tags: set[str]
    body: str
    line: int


def doc_blocks() -> list[Block]:
    text = DOC.read_text(encoding="utf-8")
    return [
        Block(m.group(1), set(m.group(2).split()), m.group(3), text.count("\n", 0, m.start()) + 1)
        for m in FENCE.finditer(text)
    ]


@pytest.fixture(params=["bundled", "tiny"])
def default_model(request, monkeypatch, tmp_path_factory) -> tuple[Path | None, bool]:
    """(folder that `from_pretrained()` with no argument loads, whether it is the real bundled model)."""
    import textclass.checkpoint.locate

    if request.param == "bundled":
        candidate = os.environ.get("TEXTCLASS_WALKTHROUGH_MODEL")
        if candidate:
            folder = Path(candidate)
        elif "sentiment-en" in textclass.checkpoint.locate.bundled_models():
            return None, True
        else:
            pytest.skip(
                "the bundled sentiment-en model is not in the package yet (issue 6); the tiny run checks the rest. "
                "Set TEXTCLASS_WALKTHROUGH_MODEL=DIR to run the walkthrough against a candidate checkpoint."
            )
    else:
        vocab_txt = request.getfixturevalue("vocab_txt")
        folder = tmp_path_factory.mktemp("walkthrough-tiny")
        build_checkpoint(folder, "bert", vocab_txt, num_labels=2, id2label={0: "NEGATIVE", 1: "POSITIVE"})
    monkeypatch.setattr(textclass.checkpoint.locate, "bundled_models", lambda: {"sentiment-en": folder})
    return folder, request.param == "bundled"


def run_console(block: Block, placeholders: dict[str, str]) -> None:
    from typer.testing import CliRunner

    from textclass.cli.app import app

    for line in block.body.splitlines():
        if not line.startswith("$ "):
            continue
        argv = [placeholders.get(arg, arg) for arg in shlex.split(line[2:])]
        assert argv[0] == "textclass", f"walkthrough.md line {block.line}: only textclass commands run here"
        result = CliRunner().invoke(app, argv[1:])
        assert result.exit_code == 0, f"walkthrough.md line {block.line}: {line}\n{result.output}"


def test_walkthrough_runs(default_model, tmp_path):
    _, real_model = default_model
    blocks = doc_blocks()
    assert sum(b.kind == "python" for b in blocks) >= 10, "the walkthrough lost its code blocks?"
    placeholders = {"my-tf-model": str(TF_FIXTURE), "my-model": str(tmp_path / "my-model")}
    namespace: dict = {"__name__": "walkthrough"}
    checker = doctest.OutputChecker()
    printed: str | None = None
    for block in blocks:
        where = f"walkthrough.md line {block.line}"
        assert block.kind in KINDS, f"{where}: unknown block kind {block.kind!r}; use one of {sorted(KINDS)}"
        if block.kind == "python":
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(block.body, where, "exec"), namespace)
            printed = out.getvalue()
        elif block.kind == "output":
            assert printed is not None, f"{where}: an output block must follow a python block"
            if "bundled" not in block.tags or real_model:
                assert checker.check_output(block.body, printed, doctest.ELLIPSIS), (
                    f"{where}: expected\n{block.body}\ngot\n{printed}"
                )
            printed = None
        elif "not-run" in block.tags:
            # Illustrative blocks are only for commands that do not exist yet.
            assert "textclass train" in block.body, f"{where}: only the train example may be marked not-run"
        else:
            run_console(block, placeholders)


def test_walkthrough_tokenizer_output_is_the_seeds():
    """The ids and tokens the walkthrough shows are the ones printed in the seed notebook."""
    text = DOC.read_text(encoding="utf-8")
    assert "[101, 1045, 1005, 2310, 2042, 3403, 2005, 1037, 17662, 12172, 2607, 2026, 2878, 2166, 1012, 102]" in text
    assert "[CLS] i've been waiting for a huggingface course my whole life. [SEP]" in text
