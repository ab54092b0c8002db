"""Where a checkpoint is: a local folder, a bundled model's name, or a hub id (downloaded once).

Bundled models ship inside the package (textclass/bundled/), so textclass classifies offline on a fresh machine.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from textclass.errors import CheckpointError
from textclass.models.family import TOKENIZER_FILES

BUNDLED_DIR = Path(__file__).parents[1] / "bundled"
DEFAULT_MODEL = "sentiment-en"


def bundled_models() -> dict[str, Path]:
    """Name -> folder of every bundled checkpoint (a folder under textclass/bundled with a config.json)."""
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


# In order of preference when a folder has several formats.
WEIGHT_FILES = (
    ("safetensors", "model.safetensors"),
    ("safetensors", "model.safetensors.index.json"),
    ("bin", "pytorch_model.bin"),
    ("bin", "pytorch_model.bin.index.json"),
    ("h5", "tf_model.h5"),  # transformers 4.x TensorFlow models (read with h5py, no TensorFlow)
)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def resolve_folder(path_or_id: str | os.PathLike[str]) -> Path:
    path = Path(path_or_id).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{path} is a file; expected a Hugging Face checkpoint folder")
    text = str(path_or_id)
    if _HUB_ID.match(text) and "/" in text and not text.startswith("."):
        return _download(text)
    raise CheckpointError(f"model folder {text} does not exist; pass a checkpoint folder or a hub id (org/name)")


def _download(repo_id: str) -> Path:
    """Fetch only what a classifier needs: config, tokenizer and one weight format."""
    try:
        from huggingface_hub import list_repo_files, snapshot_download
    except ImportError as exc:  # pragma: no cover - huggingface_hub is a dependency
        raise CheckpointError("downloading from the hub needs huggingface_hub: pip install huggingface_hub") from exc
    try:
        files = set(list_repo_files(repo_id))
        weights = next(
            (name for _, name in WEIGHT_FILES if name in files),
            None,
        )
        if weights is None:
            raise CheckpointError(f"hub repo {repo_id} has no model.safetensors, pytorch_model.bin or tf_model.h5")
        # Every family's tokenizer files (which family this is is only known once config.json is read):
        # SentencePiece models are spm.model (DeBERTa), spiece.model (ALBERT), sentencepiece.bpe.model (XLM-R).
        patterns = ["config.json", *TOKENIZER_FILES, "*.model", weights]
        if weights.endswith(".index.json"):
            patterns.append(weights.split(".")[0] + "-*")
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except CheckpointError:
        raise
    except Exception as online_error:
        try:  # offline: a copy already in the local hub cache still works
            return Path(snapshot_download(repo_id, local_files_only=True))
        except Exception:
            raise CheckpointError(
                f"could not download {repo_id!r} from the Hugging Face hub ({type(online_error).__name__}); "
                "are you offline? pass a local checkpoint folder instead"
            ) from online_error
