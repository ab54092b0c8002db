"""The `textclass` executable: a quick path for the commonest call, everything else to the full CLI.

`textclass classify TEXT...` (optionally with --model/-m, --top-k/-k, --format/-f) runs without importing
typer, which pulls in pydantic and click (~0.2 s of the 0.5 s cold-start budget). It calls the same
function as the full `classify` command (cli_output.classify_and_print), so both print the same thing;
anything else, including any option spelled differently or a bad value, goes to the full CLI, which
parses and explains.
"""

from __future__ import annotations

import os
import sys

_VALUE_OPTIONS = {"--model": "model", "-m": "model", "--top-k": "top_k", "-k": "top_k", "--format": "format",
                  "-f": "format"}  # fmt: skip
_FORMATS = ("table", "json", "jsonl")


def quick_classify_args(argv: list[str]) -> dict | None:
    """The parsed options of a plain `classify TEXT...` call, or None when the full CLI must handle it."""
    if len(argv) < 2 or argv[0] != "classify":
        return None
    parsed: dict = {"texts": [], "model": None, "top_k": 1, "format": "table"}
    rest = iter(argv[1:])
    for arg in rest:
        if arg in _VALUE_OPTIONS:
            value = next(rest, None)
            if value is None:
                return None
            parsed[_VALUE_OPTIONS[arg]] = value
        elif arg.startswith("-"):
            return None  # --help, other options, '--', '-' for stdin: the full CLI knows them
        else:
            parsed["texts"].append(arg)
    if not parsed["texts"] or parsed["format"] not in _FORMATS:
        return None
    try:
        parsed["top_k"] = int(parsed["top_k"])
    except ValueError:
        return None
    return parsed if parsed["top_k"] >= 0 else None


def main(hard_exit: bool = True) -> None:
    if sys.argv[1:] == ["--version"]:  # answered without loading typer, like a plain classify
        from textclass.cli.output import version_line

        print(version_line())
        return
    quick = quick_classify_args(sys.argv[1:])
    if quick is None:
        from textclass.cli.app import main as full_cli

        full_cli()
        return
    from textclass.cli.output import classify_and_print
    from textclass.errors import TextclassError

    try:
        classify_and_print(quick.pop("texts"), **quick)
    except TextclassError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    if hard_exit:
        # The answer is printed; tearing down the interpreter (modules, ONNX Runtime's session and thread pool)
        # would only add ~0.05 s to every call. Nothing is left to flush but the standard streams.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    main()
