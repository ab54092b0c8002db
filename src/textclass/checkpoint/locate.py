"""Models shipped inside the package, so textclass classifies offline on a fresh machine."""

from __future__ import annotations

from pathlib import Path

from textclass.errors import CheckpointError

BUNDLED_DIR = Path(__file__).parents[1] / "bundled"
DEFAULT_MODEL = "sentiment-en"


def bundled_models() -> dict[str, Path]:
    """Name -> folder of every bundled checkpoint (a folder under textclass/models with a config.json)."""
    return {p.name: p for p in sorted(BUNDLED_DIR.iterdir()) if (p / "config.json").is_file()}


def resolve_model(name_or_path: str | None) -> str:
    """None means the default bundled model; a bundled model's name means that model; else a path or hub id."""
    if name_or_path is None:
        name_or_path = DEFAULT_MODEL
        if DEFAULT_MODEL not in bundled_models():
            raise CheckpointError(
                f"the bundled model {DEFAULT_MODEL!r} is not installed in {BUNDLED_DIR}; pass --model DIR"
            )
    found = bundled_models().get(str(name_or_path))
    return str(found) if found is not None else str(name_or_path)
