"""`textclass rerank` and `textclass zero-shot`: parse, call Classifier.rerank / zero_shot, print."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from textclass.cli.common import (
    BackendOption,
    DeviceOption,
    DtypeOption,
    FormatOption,
    InputOption,
    ModelOption,
    OutputFormat,
    fail,
    read_texts,
)
from textclass.tasks.zero_shot import DEFAULT_HYPOTHESIS_TEMPLATE


def rerank(
    query: Annotated[str, typer.Argument(help="The query the texts are ranked against.")],
    input_file: InputOption = None,
    model: ModelOption = None,
    top_n: Annotated[int | None, typer.Option("--top-n", "-n", help="Keep the N best texts.", min=1)] = None,
    raw_scores: Annotated[bool, typer.Option("--raw-scores", help="Logits instead of sigmoid scores.")] = False,
    output_format: FormatOption = OutputFormat.table,
    device: DeviceOption = None,
    dtype: DtypeOption = None,
    backend: BackendOption = None,
) -> None:
    """Rank texts (one per line, from --input or standard input) by relevance to QUERY with a cross-encoder."""
    from textclass.errors import TextclassError

    texts = read_texts(None, input_file)
    try:
        from textclass.classifier import Classifier

        clf = Classifier.from_pretrained(model, device=device, dtype=dtype, backend=backend)
        ranked = clf.rerank(query, texts, top_n=top_n, return_text=True, raw_scores=raw_scores)
    except TextclassError as exc:
        fail(str(exc))
    if output_format is OutputFormat.table:
        print_table(["rank", "index", "score", "text"],
                    [[str(rank), str(r["index"]), f"{r['score']:.4f}", r["text"]] for rank, r in
                     enumerate(ranked, 1)])  # fmt: skip
    else:
        print_json(ranked, output_format)


def zero_shot(
    texts: Annotated[list[str] | None, typer.Argument(help="Texts to classify.", show_default=False)] = None,
    labels: Annotated[
        str | None, typer.Option("--labels", "-l", help="Candidate labels, comma-separated: a,b,c (required).")
    ] = None,
    multi_label: Annotated[
        bool, typer.Option("--multi-label", help="Score each label on its own (several can be true).")
    ] = False,
    template: Annotated[
        str, typer.Option("--template", help='The NLI hypothesis; "{}" is replaced by the label.')
    ] = DEFAULT_HYPOTHESIS_TEMPLATE,
    input_file: InputOption = None,
    model: ModelOption = None,
    output_format: FormatOption = OutputFormat.table,
    device: DeviceOption = None,
    dtype: DtypeOption = None,
    backend: BackendOption = None,
) -> None:
    """Classify texts into labels chosen now, with an NLI model (e.g. one fine-tuned on MNLI)."""
    from textclass.errors import TextclassError

    if not labels:
        fail("give the candidate labels with --labels, comma-separated: --labels sports,politics,science")
    items = read_texts(texts, input_file)
    try:
        from textclass.classifier import Classifier

        clf = Classifier.from_pretrained(model, device=device, dtype=dtype, backend=backend)
        results = clf.zero_shot(items, labels, hypothesis_template=template, multi_label=multi_label)
    except TextclassError as exc:
        fail(str(exc))
    if output_format is OutputFormat.table:
        print_table(["text", "label", "score"],
                    [[r["sequence"], "\n".join(r["labels"]), "\n".join(f"{s:.4f}" for s in r["scores"])]
                     for r in results])  # fmt: skip
    else:
        print_json(results, output_format)


def print_json(rows: list[dict[str, Any]], output_format: OutputFormat) -> None:
    """json: one array; jsonl: one object a line."""
    if output_format is OutputFormat.json:
        typer.echo(json.dumps(rows, ensure_ascii=False))
        return
    for row in rows:
        typer.echo(json.dumps(row, ensure_ascii=False))


def print_table(columns: list[str], rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(*columns)
    table.columns[columns.index("text")].overflow = "fold"  # long texts wrap; labels and scores stay whole
    for row in rows:
        table.add_row(*map(Text, row))  # plain text: "[mask]" in a text is not rich markup
    Console().print(table)
