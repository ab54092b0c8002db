"""A checkpoint folder opened: its config.json read into the family's config, its weight files found.

What a folder holds is read by the modules beside this one: weights.py (tensors), tokenizer.py, describe.py.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textclass.checkpoint.locate import WEIGHT_FILES, resolve_folder
from textclass.errors import CheckpointError
from textclass.models import Family, family_for
from textclass.models.config import EncoderConfig

if TYPE_CHECKING:
    from textclass.checkpoint.tokenizer import Tokenizer


@dataclass(frozen=True)
class Checkpoint:
    folder: Path
    family: Family
    config: EncoderConfig
    weight_format: str  # "safetensors", "bin" or "h5"
    weight_files: tuple[Path, ...]

    def load_tokenizer(self) -> Tokenizer:
        """The checkpoint's tokenizer, truncating at what the model holds, with token types if its family has them."""
        from textclass.checkpoint.tokenizer import Tokenizer

        return Tokenizer.from_folder(self.folder, self.config.max_tokens, return_token_type_ids=self.family.token_types)

    @property
    def is_classifier_config(self) -> bool:
        """Whether config.json says it was saved from a *ForSequenceClassification model."""
        architectures = self.config.raw.get("architectures") or []
        return any(a.endswith("ForSequenceClassification") for a in architectures)


def open_checkpoint(path_or_id: str | os.PathLike[str]) -> Checkpoint:
    folder = resolve_folder(path_or_id)
    raw = load_config_json(folder)
    family = family_for(raw.get("model_type"))
    config = family.read_config(raw, raw["model_type"])
    weight_format, files = _weight_files(folder)
    return Checkpoint(folder, family, config, weight_format, files)


def _weight_files(folder: Path) -> tuple[str, tuple[Path, ...]]:
    for weight_format, name in WEIGHT_FILES:
        path = folder / name
        if not path.is_file():
            continue
        if not name.endswith(".index.json"):
            return weight_format, (path,)
        try:
            weight_map = json.loads(path.read_text(encoding="utf-8"))["weight_map"]
        except (json.JSONDecodeError, KeyError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{path} is not a valid shard index (needs a 'weight_map')") from exc
        shards = tuple(folder / shard for shard in dict.fromkeys(weight_map.values()))
        for shard in shards:
            if not shard.is_file():
                raise CheckpointError(f"{path} lists shard {shard.name}, which is missing")
        return weight_format, shards
    expected = ", ".join(name for _, name in WEIGHT_FILES)
    raise CheckpointError(f"{folder} has no weights; expected one of {expected}")


def load_config_json(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{folder} has no config.json; expected a Hugging Face checkpoint folder")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path} must hold a JSON object")
    return raw
