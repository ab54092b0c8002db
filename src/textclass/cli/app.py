"""The `textclass` command line: parses arguments, calls the typed API, prints. Nothing more.

Heavy imports (torch, the model) happen inside commands so `--help` and errors are instant.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from textclass.cli.common import (
    AggregateOption,
    BackendOption,
    ChunkTokensOption,
    DeviceOption,
    DtypeOption,
    FormatOption,
    InputOption,
    LongTextOption,
    ModelOption,
    OutputFormat,
    StrideOption,
    fail,
    read_texts,
)
from textclass.errors import TextclassError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Classify text with Hugging Face sequence-classification checkpoints.",
)


@app.command()
def classify(
    texts: Annotated[list[str] | None, typer.Argument(help="Texts to classify.", show_default=False)] = None,
    model: ModelOption = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Labels per text; 0 for all.", min=0)] = 1,
    output_format: FormatOption = OutputFormat.table,
    input_file: InputOption = None,
    function_to_apply: Annotated[
        str | None, typer.Option("--function", help="softmax, sigmoid or none (default: from the config).")
    ] = None,
    device: DeviceOption = None,
    dtype: DtypeOption = None,
    backend: BackendOption = None,
    long_text: LongTextOption = "truncate",
    chunk_tokens: ChunkTokensOption = None,
    stride: StrideOption = None,
    aggregate: AggregateOption = "mean",
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Say which mode runs and why (stderr).")] = False,
) -> None:
    """Classify texts and print labels with scores."""
    import logging

    items = read_texts(texts, input_file)
    logger, handler = logging.getLogger("textclass"), logging.StreamHandler()
    level = logger.level
    if verbose:  # textclass's INFO lines, e.g. the mode chosen at load and why
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    from textclass.cli.output import classify_and_print

    try:
        long = {"long_text": long_text, "chunk_tokens": chunk_tokens, "stride": stride, "aggregate": aggregate}
        classify_and_print(items, model, top_k, output_format.value, function_to_apply, device, dtype, backend, long)
    except TextclassError as exc:
        fail(str(exc))
    finally:  # in-process callers (tests, notebooks) keep their logging as it was, not a handler on a closed stream
        logger.removeHandler(handler)
        logger.setLevel(level)


@app.command()
def tokenize(
    text: Annotated[str, typer.Argument(help="Text to tokenize.")],
    model: ModelOption = None,
    pair: Annotated[str | None, typer.Option(help="Second text of a pair.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show how the model's tokenizer splits a text (or a pair): its tokens, their ids, the attention mask, and
    the ids decoded back to text."""
    try:
        from textclass.checkpoint import open_checkpoint
        from textclass.checkpoint.locate import resolve_model

        checkpoint = open_checkpoint(resolve_model(model))
        tokenizer = checkpoint.load_tokenizer()
        encoded = tokenizer(text, pair, truncation=True)
        result = {
            "tokens": tokenizer.convert_ids_to_tokens(encoded["input_ids"]),
            "input_ids": encoded["input_ids"],
            "attention_mask": encoded["attention_mask"],
            "decoded": tokenizer.decode(encoded["input_ids"]),
        }
        if "token_type_ids" in encoded:
            result["token_type_ids"] = encoded["token_type_ids"]
    except TextclassError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False))
        return
    from rich.console import Console

    console = Console()
    console.print(f"[bold]tokens[/]     {result['tokens']}")
    console.print(f"[bold]input_ids[/]  {result['input_ids']}")
    console.print(f"[bold]attention[/]  {result['attention_mask']}")
    console.print(f"[bold]decoded[/]    {result['decoded']}")


@app.command()
def inspect(
    model: ModelOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Describe a checkpoint: family, sizes, labels, parameters, weight dtype and files."""
    try:
        from textclass.checkpoint import open_checkpoint
        from textclass.checkpoint.describe import describe
        from textclass.checkpoint.locate import resolve_model
        from textclass.runtime.precision import default_precision

        checkpoint = open_checkpoint(resolve_model(model))
        info = {**describe(checkpoint.folder), **default_precision(checkpoint)}
    except TextclassError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps(info, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=False)
    for key, value in info.items():
        if key == "parameters":
            value = f"{value:,}"
        elif key == "weight_bytes":
            value = f"{value / 1e6:.1f} MB"
        elif isinstance(value, list):
            value = ", ".join(map(str, value))
        table.add_row(key, str(value))
    Console().print(table)


@app.command()
def models(as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False) -> None:
    """List the models bundled with textclass (usable offline, by name: --model NAME)."""
    from textclass.checkpoint.locate import DEFAULT_MODEL, bundled_models

    rows = []
    for name, folder in bundled_models().items():
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        labels = [config.get("id2label", {}).get(str(i)) for i in range(len(config.get("id2label", {})))]
        rows.append({"name": name, "default": name == DEFAULT_MODEL, "model_type": config.get("model_type"),
                     "labels": labels, "folder": str(folder)})  # fmt: skip
    if as_json:
        typer.echo(json.dumps(rows))
        return
    if not rows:
        typer.echo("no bundled models installed")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "type", "labels", "folder")
    for row in rows:
        table.add_row(row["name"] + (" (default)" if row["default"] else ""), row["model_type"],
                      ", ".join(map(str, row["labels"])), row["folder"])  # fmt: skip
    Console().print(table)


from textclass.cli import convert as convert_command  # noqa: E402

app.command("convert")(convert_command.convert)

from textclass.cli import train as train_command  # noqa: E402

app.command("train")(train_command.train)
app.command("eval")(train_command.evaluate)

from textclass.cli import batch as batch_command  # noqa: E402

app.command("batch")(batch_command.batch)

from textclass.cli import serve as serve_command  # noqa: E402

app.command("serve")(serve_command.serve)

from textclass.cli import tasks as task_commands  # noqa: E402

app.command("rerank")(task_commands.rerank)
app.command("zero-shot")(task_commands.zero_shot)

from textclass.cli import explain as explain_command  # noqa: E402

app.command("explain")(explain_command.explain)

from textclass.cli import check as check_command  # noqa: E402

app.command("check")(check_command.check)

from textclass.cli import cache as cache_command  # noqa: E402

app.add_typer(cache_command.app, name="cache")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
