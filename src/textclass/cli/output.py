"""What `textclass classify` does after parsing: classify, then print a table, JSON or JSON lines.

Kept free of typer so the quick entry point (entry.py) and the full CLI (cli.py) share it.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def version_line() -> str:
    """`textclass --version`: the package's version, and the Python it runs on."""
    from textclass import __version__

    return f"textclass {__version__} (Python {sys.version.split()[0]})"


def classify_and_print(
    texts: list[str],
    model: str | None = None,
    top_k: int = 1,
    format: str = "table",  # noqa: A002 - the CLI option's name
    function_to_apply: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    backend: str | None = None,
    long_text: dict[str, Any] | None = None,
) -> None:
    """Raises TextclassError for anything the user can fix (bad model path, bad option value).

    long_text: Classifier's long-text options (long_text, chunk_tokens, stride, aggregate); with chunking, rows
    say how many windows each text took.
    """
    from textclass.classifier import Classifier
    from textclass.tasks.inputs import require_text

    require_text(texts)  # before the model loads
    clf = Classifier.from_pretrained(model, device=device, dtype=dtype, backend=backend)
    ranked = clf(texts, top_k=None if top_k == 0 else top_k, function_to_apply=function_to_apply, **(long_text or {}))
    rows = [
        {"text": text, "label": r[0]["label"], "score": r[0]["score"], "scores": r} for text, r in zip(texts, ranked)
    ]
    for row in rows:
        if "windows" in row["scores"][0]:
            row["windows"] = row["scores"][0]["windows"]
    show_all = top_k != 1
    if format == "json":
        print(json.dumps([r["scores"] if show_all else r["scores"][0] for r in rows], ensure_ascii=False))
    elif format == "jsonl":
        for row in rows:
            if not show_all:
                del row["scores"]
            print(json.dumps(row, ensure_ascii=False))
    else:
        print_table(rows, show_all)


def print_table(rows: list[dict[str, Any]], show_all: bool) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    windows = any("windows" in row for row in rows)
    table = Table(show_lines=False)
    table.add_column("text", overflow="fold", ratio=3)
    table.add_column("label")
    table.add_column("score", justify="right")
    if windows:
        table.add_column("windows", justify="right")
    for row in rows:
        if show_all:
            labels = "\n".join(r["label"] for r in row["scores"])
            scores = "\n".join(f"{r['score']:.4f}" for r in row["scores"])
        else:
            labels, scores = row["label"], f"{row['score']:.4f}"
        cells = [Text(row["text"]), Text(labels), scores]  # Text: "[bold]" in a text is not rich markup
        table.add_row(*cells, *([str(row["windows"])] if windows else []))
    Console().print(table)
