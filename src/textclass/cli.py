"""The `textclass` command line: parses arguments, calls the typed API, prints. Nothing more.

Heavy imports (torch, the model) happen inside commands so `--help` and errors are instant.
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from textclass.errors import TextclassError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Classify text with Hugging Face sequence-classification checkpoints.",
)

ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model", "-m", help="Checkpoint folder, hub id (org/name) or bundled model name (default: the bundled model)."
    ),
]


class OutputFormat(str, Enum):
    table = "table"
    json = "json"
    jsonl = "jsonl"


def fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def read_texts(texts: list[str] | None, input_file: Path | None) -> list[str]:
    if texts and input_file:
        fail("give texts as arguments or with --input, not both")
    if texts:
        return list(texts)
    if input_file is not None:
        if str(input_file) == "-":
            raw = sys.stdin.buffer.read()
            source = "standard input"
        else:
            if not input_file.is_file():
                fail(f"input file {input_file} does not exist")
            raw = input_file.read_bytes()
            source = str(input_file)
    elif not sys.stdin.isatty():
        raw, source = sys.stdin.buffer.read(), "standard input"
    else:
        fail("no texts to classify; pass TEXT arguments, --input FILE, or pipe lines on standard input")
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        fail(
            f"{source} is not UTF-8 text (byte {exc.start}: {raw[exc.start : exc.start + 1]!r}); re-encode it as UTF-8"
        )
    lines = content.splitlines()
    if not lines:
        fail(f"{source} is empty; expected one text per line")
    return lines


@app.command()
def classify(
    texts: Annotated[list[str] | None, typer.Argument(help="Texts to classify.", show_default=False)] = None,
    model: ModelOption = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Labels per text; 0 for all.", min=0)] = 1,
    output_format: Annotated[OutputFormat, typer.Option("--format", "-f")] = OutputFormat.table,
    input_file: Annotated[
        Path | None, typer.Option("--input", "-i", help="File with one text per line ('-' for stdin).")
    ] = None,
    function_to_apply: Annotated[
        str | None, typer.Option("--function", help="softmax, sigmoid or none (default: from the config).")
    ] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 (default: GPU when there is one).")] = None,
    dtype: Annotated[
        str | None,
        typer.Option(help="fp32 (exact, torch), bf16, fp16 or int8 (default: onnx fp32 on CPU, bf16 on GPU)."),
    ] = None,
    backend: Annotated[
        str | None, typer.Option(help="torch or onnx (ONNX Runtime, CPU default; exported once and cached).")
    ] = None,
) -> None:
    """Classify texts and print labels with scores."""
    items = read_texts(texts, input_file)
    from textclass.cli_output import classify_and_print

    try:
        classify_and_print(items, model, top_k, output_format.value, function_to_apply, device, dtype, backend)
    except TextclassError as exc:
        fail(str(exc))


@app.command()
def tokenize(
    text: Annotated[str, typer.Argument(help="Text to tokenize.")],
    model: ModelOption = None,
    pair: Annotated[str | None, typer.Option(help="Second text of a pair.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show the seed's steps: tokens, input ids, attention mask, and the ids decoded back to text."""
    try:
        from textclass.bundled import resolve_model
        from textclass.checkpoint import open_checkpoint

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
        from textclass.bundled import resolve_model
        from textclass.inspect import describe

        info = describe(resolve_model(model))
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
    from textclass.bundled import DEFAULT_MODEL, bundled_models

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


from textclass.commands import convert as convert_command  # noqa: E402

app.command("convert")(convert_command.convert)

from textclass.commands import train as train_command  # noqa: E402

app.command("train")(train_command.train)
app.command("eval")(train_command.evaluate)

from textclass.commands import batch as batch_command  # noqa: E402

app.command("batch")(batch_command.batch)

from textclass.commands import serve as serve_command  # noqa: E402

app.command("serve")(serve_command.serve)

from textclass.commands import tasks as task_commands  # noqa: E402

app.command("rerank")(task_commands.rerank)
app.command("zero-shot")(task_commands.zero_shot)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
