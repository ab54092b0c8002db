"""What `textclass classify` does after parsing: classify, then print a table, JSON or JSON lines.

Kept free of typer so the quick entry point (entry.py) and the full CLI (cli.py) share it.
"""

from __future__ import annotations

import json
from typing import Any


def classify_and_print(
    texts: list[str],
    model: str | None = None,
    top_k: int = 1,
    format: str = "table",  # noqa: A002 - the CLI option's name
    function_to_apply: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    backend: str | None = None,
) -> None:
    """Raises TextclassError for anything the user can fix (bad model path, bad option value)."""
    from textclass.api import Classifier

    clf = Classifier.from_pretrained(model, device=device, dtype=dtype, backend=backend)
    ranked = clf(texts, top_k=None if top_k == 0 else top_k, function_to_apply=function_to_apply)
    rows = [
        {"text": text, "label": r[0]["label"], "score": r[0]["score"], "scores": r} for text, r in zip(texts, ranked)
    ]
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

    table = Table(show_lines=False)
    table.add_column("text", overflow="fold", ratio=3)
    table.add_column("label")
    table.add_column("score", justify="right")
    for row in rows:
        if show_all:
            labels = "\n".join(r["label"] for r in row["scores"])
            scores = "\n".join(f"{r['score']:.4f}" for r in row["scores"])
        else:
            labels, scores = row["label"], f"{row['score']:.4f}"
        table.add_row(row["text"], labels, scores)
    Console().print(table)
