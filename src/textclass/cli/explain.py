"""`textclass explain TEXT`: the text coloured by how much each word pushes the label (rich), JSON, or an HTML file.

Text is data, never markup: the terminal gets rich Text objects (so "[bold]" prints as written) and the HTML
file gets every piece of text escaped.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from textclass.cli.common import BackendOption, DeviceOption, DtypeOption, ModelOption, fail
from textclass.tasks.explain import DEFAULT_STEPS

GREEN, RED = (46, 160, 67), (218, 54, 51)


def explain(
    text: Annotated[str, typer.Argument(help="Text to explain.")],
    model: ModelOption = None,
    method: Annotated[
        str, typer.Option(help="occlusion (runs on the default path) or integrated_gradients (needs torch).")
    ] = "occlusion",
    target: Annotated[str | None, typer.Option(help="Label to explain (default: the predicted one).")] = None,
    baseline: Annotated[
        str | None, typer.Option(help="delete, pad or mask (default: delete for occlusion, pad for gradients).")
    ] = None,
    unit: Annotated[str, typer.Option(help="Occlusion: remove a word or a token at a time.")] = "word",
    steps: Annotated[int, typer.Option(help="Integrated gradients: quadrature points.")] = DEFAULT_STEPS,
    as_json: Annotated[bool, typer.Option("--json", help="Print the attributions as JSON.")] = False,
    html_file: Annotated[
        Path | None, typer.Option("--html", help="Also write the coloured text to this HTML file.")
    ] = None,
    device: DeviceOption = None,
    dtype: DtypeOption = None,
    backend: BackendOption = None,
) -> None:
    """Show which words made the model choose its label: green raises the label's score, red lowers it."""
    from textclass.errors import TextclassError

    try:
        from textclass.classifier import Classifier
        from textclass.tasks.explain import check_options
        from textclass.tasks.inputs import require_text

        check_options(method, baseline, unit, steps)  # bad options and a missing extra: before the model loads
        require_text([text])
        clf = Classifier.from_pretrained(model, device=device, dtype=dtype, backend=backend)
        result = clf.explain(text, target=target, method=method, baseline=baseline, unit=unit, steps=steps)
    except TextclassError as exc:
        fail(str(exc))
    if html_file is not None:
        try:
            html_file.write_text(to_html(text, result), encoding="utf-8")
        except OSError as exc:
            fail(f"cannot write {html_file}: {exc.strerror or exc}")
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False))
        return
    from rich.console import Console

    console = Console(highlight=False)
    for line in terminal_lines(text, result):
        console.print(line)


def pieces(text: str, result: dict[str, Any]) -> list[tuple[str, float | None]]:
    """The text cut into (piece, attribution) with None between words and after the explained part, in order."""
    out: list[tuple[str, float | None]] = []
    at = 0
    for word in result["words"]:
        if word["start"] > at:
            out.append((text[at : word["start"]], None))
        out.append((text[word["start"] : word["end"]], word["attribution"]))
        at = max(at, word["end"])
    if at < len(text):
        out.append((text[at:], None))
    return out


def tint(attribution: float, strongest: float) -> tuple[tuple[int, int, int], float]:
    """The colour for an attribution (green: raises the label, red: lowers it) and its strength in [0, 1]."""
    return (GREEN if attribution >= 0 else RED), min(1.0, abs(attribution) / strongest) if strongest > 0 else 0.0


def terminal_lines(text: str, result: dict[str, Any]) -> list[Any]:
    """rich Text lines: the verdict, the coloured text, and the words that weigh most."""
    from rich.color import Color
    from rich.style import Style
    from rich.text import Text

    strongest = max((abs(w["attribution"]) for w in result["words"]), default=0.0)
    coloured = Text()
    for piece, attribution in pieces(text, result):
        if attribution is None:
            coloured.append(piece)
            continue
        (red, green, blue), strength = tint(attribution, strongest)
        # Blend from white towards the colour; black letters stay readable on any terminal theme.
        mix = [round(255 + (channel - 255) * strength) for channel in (red, green, blue)]
        coloured.append(piece, Style(color="black", bgcolor=Color.from_rgb(*mix)) if strength >= 0.05 else None)
    heading = Text.assemble((result["label"], "bold"), f"  {result['score']:.4f}   ",
                            ("raises", Style(color=Color.from_rgb(*GREEN))), " / ",
                            ("lowers", Style(color=Color.from_rgb(*RED))), " its score")  # fmt: skip
    top = sorted(result["words"], key=lambda w: -abs(w["attribution"]))[:5]
    weights = Text("strongest: ") + Text(", ").join(Text(f"{w['word']} {w['attribution']:+.3f}") for w in top)
    return [heading, coloured, weights]


def to_html(text: str, result: dict[str, Any]) -> str:
    """A standalone page with the coloured text; every piece of text is escaped, nothing runs."""
    strongest = max((abs(w["attribution"]) for w in result["words"]), default=0.0)
    spans = []
    for piece, attribution in pieces(text, result):
        if attribution is None:
            spans.append(html.escape(piece))
            continue
        (red, green, blue), strength = tint(attribution, strongest)
        spans.append(f'<span style="background: rgba({red}, {green}, {blue}, {0.85 * strength:.3f})" '
                     f'title="{attribution:+.4f}">{html.escape(piece)}</span>')  # fmt: skip
    label = html.escape(result["label"])
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>textclass explain: {label}</title>\n"
        "<style>body { font: 16px/1.9 system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; }"
        " .text { white-space: pre-wrap; } span { border-radius: 3px; padding: .1rem 0; }</style>\n"
        f"</head>\n<body>\n<p><b>{label}</b> {result['score']:.4f}: green words raise its score, red ones lower it.</p>"
        f'\n<p class="text">{"".join(spans)}</p>\n</body>\n</html>\n'
    )
