"""The `textclass` command line: parses arguments, calls the typed API, prints. Nothing more.

Heavy imports (torch, the model) happen inside commands so `--help` and errors are instant.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from textclass.cli.common import (
    AggregateOption,
    BackendOption,
    ChunkTokensOption,
    DeviceOption,
    DtypeOption,
    FormatOption,
    InputOption,
    LongTextOption,
    MaxWindowsOption,
    ModelOption,
    OutputFormat,
    StrideOption,
    fail,
    read_texts,
)
from textclass.errors import TextclassError

# Click's UsageError, from typer's own Click (vendored in newer typer versions, click itself in older ones).
_UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


class _Commands(TyperGroup):
    """The command group, with a mistyped option or value reported as every other bad input is: one line,
    `error: ...`, exit status 1 (Click's own is a usage block and status 2, which `check` gives its contract)."""

    def make_context(self, *args: Any, **kwargs: Any) -> typer.Context:
        try:
            return super().make_context(*args, **kwargs)
        except _UsageError as exc:
            _usage_error(exc)

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except _UsageError as exc:
            _usage_error(exc)


def _usage_error(exc: Any) -> NoReturn:
    if type(exc).__name__ == "NoArgsIsHelpError":
        raise exc  # a bare `textclass`: the help, as asked for
    where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
    fail(f"{exc.format_message().rstrip('.')}{where}")


app = typer.Typer(
    cls=_Commands,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Classify text with Hugging Face sequence-classification checkpoints.",
    # Click's own help layout: it wraps to the terminal (80 columns and less) and never cuts an option's name, where
    # rich's panels cut `--max-client-batch-size` to `--max-batch-toke…` at 80 columns.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},  # every command's -h, inherited by subcommands
)


def _print_version(value: bool) -> None:
    if value:
        from textclass.cli.output import version_line

        typer.echo(version_line())
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Classify text with Hugging Face sequence-classification checkpoints."""


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
    max_windows: MaxWindowsOption = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Say which mode runs and why, and blank lines skipped (stderr).")
    ] = False,
) -> None:
    """Classify texts and print labels with scores."""
    import logging

    items = read_texts(texts, input_file, verbose)
    logger, handler = logging.getLogger("textclass"), logging.StreamHandler()
    level = logger.level
    if verbose:  # textclass's INFO lines, e.g. the mode chosen at load and why
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    from textclass.cli.output import classify_and_print

    try:
        long = {"long_text": long_text, "chunk_tokens": chunk_tokens, "stride": stride, "aggregate": aggregate,
                "max_windows": max_windows}
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
        from textclass.runtime.load import default_precision

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
