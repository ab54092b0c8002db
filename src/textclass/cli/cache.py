"""`textclass cache`: what the artefact cache (onnx/cache.py) holds, and `textclass cache prune` to remove it."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer

app = typer.Typer(
    no_args_is_help=False,
    help="List the ONNX graphs textclass cached (key, model, mode, size, last used); `prune` removes them.",
)


@app.callback(invoke_without_command=True)
def show(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the cache's entries, most recently used first."""
    if ctx.invoked_subcommand is not None:
        return
    from textclass.onnx.cache import cache_root, entries

    found = entries()
    if as_json:
        typer.echo(json.dumps({"cache": str(cache_root()), "entries": [_as_dict(entry) for entry in found]}))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not found:
        console.print(f"the cache at {cache_root()} is empty")
        return
    table = Table("key", "model", "mode", "size", "last used", "state")
    table.columns[1].overflow = "fold"  # a checkpoint's whole path, wrapped rather than cut
    for entry in found:
        table.add_row(entry.key, entry.checkpoint or entry.folder.name, entry.mode or "-", _size(entry.size),
                      _ago(entry.last_used), entry.state)  # fmt: skip
    console.print(table)
    console.print(f"{len(found)} entries, {_size(sum(e.size for e in found))} in {cache_root()}")


@app.command()
def prune(
    everything: Annotated[bool, typer.Option("--all", help="Remove every entry.")] = False,
    older_than: Annotated[
        float | None, typer.Option(help="Also remove entries not used for this many days.", min=0)
    ] = None,
    larger_than: Annotated[float | None, typer.Option(help="Also remove entries over this many MB.", min=0)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would go; remove nothing.")] = False,
) -> None:
    """Remove cached graphs. Without options: the entries that can never be used again (their checkpoint changed
    or is gone, damaged ones, an older textclass's folders). --older-than and --larger-than add the entries they
    select (given together, entries matching both); --all empties the cache. A graph removed is rebuilt when
    next needed."""
    from textclass.onnx.cache import entries
    from textclass.onnx.cache import prune as remove

    now = time.time()

    def chosen(entry) -> bool:  # noqa: ANN001 - an onnx.cache.Entry
        if everything or entry.state != "current":
            return True
        if older_than is None and larger_than is None:
            return False
        old = older_than is None or now - entry.last_used > older_than * 86400
        large = larger_than is None or entry.size > larger_than * 2**20
        return old and large

    going = [entry for entry in entries() if chosen(entry)]
    for entry in going:
        typer.echo(f"{'would remove' if dry_run else 'removing'} {entry.folder} ({_size(entry.size)}, {entry.state})")
    freed = sum(entry.size for entry in going) if dry_run else remove(going)
    typer.echo(f"{'would free' if dry_run else 'freed'} {_size(freed)} ({len(going)} entries)")


def _as_dict(entry) -> dict:  # noqa: ANN001 - an onnx.cache.Entry
    return {"key": entry.key, "model": entry.checkpoint, "mode": entry.mode, "bytes": entry.size,
            "last_used": entry.last_used, "state": entry.state, "folder": str(entry.folder)}  # fmt: skip


def _size(size: int) -> str:
    return f"{size / 2**20:.1f} MB" if size < 2**30 else f"{size / 2**30:.2f} GB"


def _ago(moment: float) -> str:
    seconds = max(0.0, time.time() - moment)
    for unit, length in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= length:
            return f"{seconds / length:.0f} {unit} ago"
    return "just now"
