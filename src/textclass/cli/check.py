"""`textclass check`: does this machine's fast mode keep the accuracy contract on my texts?"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from textclass.cli.common import BackendOption, DtypeOption, ModelOption, TextColumnOption, fail

CONTRACT_FAILED = 2  # exit status when the measurement worked and the contract does not hold


def check(
    data: Annotated[Path, typer.Option("--data", "-d", help="Texts: .txt (one a line), CSV, TSV, JSONL or Parquet.")],
    model: ModelOption = None,
    text_column: TextColumnOption = None,
    limit: Annotated[int, typer.Option(help="Texts to use, from the top (0: all).", min=0)] = 2000,
    dtype: DtypeOption = None,
    backend: BackendOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Measure the default mode (or --dtype/--backend) against exact fp32 on your texts: label agreement, |Δp|,
    batch dependence, speed of both, and whether the accuracy contract holds (exit status 2 when it does not)."""
    from textclass.accuracy.check import measure, read_texts
    from textclass.errors import TextclassError

    try:
        texts = read_texts(str(data), text_column, limit or None)
        result = measure(model, texts, dtype=dtype, backend=backend)
    except TextclassError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps(result.as_dict()))
    else:
        _print(result, data)
    if not result.verdict.holds:
        raise typer.Exit(CONTRACT_FAILED)


def _print(result, data: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    verdict = result.verdict
    console = Console()
    console.print(f"[bold]{result.mode}[/] against exact fp32 ({result.reference}) on {verdict.texts:,} texts "
                  f"from {data}")  # fmt: skip
    console.print(f"why this mode: {result.reason}", markup=False)
    table = Table("clause", "measured", "bound", "holds")
    for clause in verdict.clauses:
        percent = clause.name == "label agreement"
        shown = (lambda v: f"{v:.2%}") if percent else (lambda v: f"{v:.2g}" if v < 1e-3 else f"{v:.4f}")
        table.add_row(clause.name, shown(clause.value), f"{clause.rule} {shown(clause.bound)}",
                      "[green]yes[/]" if clause.holds else "[red]no[/]")  # fmt: skip
    table.add_row("max |Δp| (reported, not bounded)", f"{verdict.max_delta:.4f}", "", "")
    table.add_row("texts whose label changed", f"{verdict.flips:,}", "", "")
    console.print(table)
    speedup = result.mode_texts_per_second / result.reference_texts_per_second
    console.print(f"speed: {result.mode} {result.mode_texts_per_second:,.0f} texts/s, {result.reference} "
                  f"{result.reference_texts_per_second:,.0f} texts/s ({speedup:.2f}×)")  # fmt: skip
    if result.rescored is not None:
        console.print(f"near ties scored again in fp32: {result.rescored:.1%} of the texts")
    if result.mode == result.reference:  # the mode checked is exact fp32 itself: nothing to pin, no speed to compare
        console.print(f"{result.mode} is exact fp32 already: the figures above are its own run-to-run differences")
    elif result.mode_texts_per_second < result.reference_texts_per_second:
        console.print(f"{result.mode} ran slower than exact fp32 on these texts: pin {result.reference} (--dtype fp32, "
                      f'or "textclass_precision": "{result.reference.replace("float32", "fp32")}" in config.json)',
                      markup=False)  # fmt: skip
    if verdict.holds:
        console.print("[green]The accuracy contract holds on these texts.[/]")
    else:
        console.print("[red]The accuracy contract does not hold on these texts[/]: pin exact fp32 with "
                      "dtype='float32' (--dtype fp32), or in the checkpoint's config.json with "
                      '"textclass_precision": "onnx-fp32".')  # fmt: skip
