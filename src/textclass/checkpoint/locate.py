"""Where a checkpoint is: a local folder, a bundled model's name, or a hub id (downloaded once).

Bundled models ship inside the package (textclass/bundled/), so textclass classifies offline on a fresh machine.
A name that is no local folder is answered at once, never by minutes of hub retries: one that looks like a path
(`./x`, `/x`, `~/x`, `runs/a/b`, `checkpoints/run1` where `checkpoints/` is a folder here) is a folder that does not
exist; a bare name is no bundled model (the error lists them); an `org/name` is a hub id, served from the hub's
local cache, else fetched (saying so) when the hub answers a quick probe, else refused in one line that says both.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
from pathlib import Path
from urllib.parse import urlsplit

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


HUB_PROBE_SECONDS = 1.5  # how long the hub may take to accept a connection before we call it unreachable


def resolve_folder(path_or_id: str | os.PathLike[str]) -> Path:
    path = Path(path_or_id).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{path} is a file; expected a Hugging Face checkpoint folder")
    text = str(path_or_id)
    missing = f"model folder {text} does not exist ({path.absolute()})"
    if _looks_like_path(text):
        raise CheckpointError(f"{missing}; pass a checkpoint folder, a bundled model's name or a hub id (org/name)")
    if "/" not in text:
        bundled = ", ".join(bundled_models()) or "none installed"
        raise CheckpointError(f"{text!r} is neither a folder here nor a bundled model (bundled: {bundled}); pass a "
                              "checkpoint folder, a bundled model's name or a hub id (org/name)")  # fmt: skip
    return _download(text, missing)


def _looks_like_path(text: str) -> bool:
    """Whether a --model value that names no folder was meant as one rather than as a hub id (org/name)."""
    if text.startswith((".", "/", "~")) or "\\" in text or os.sep in text.replace("/", "") or text.count("/") > 1:
        return True
    if not _HUB_ID.match(text):
        return True  # a hub id holds letters, digits, - _ . only
    parent = text.split("/")[0]
    return "/" in text and Path(parent).expanduser().is_dir()  # `checkpoints/run1` beside a checkpoints/ folder


def _download(repo_id: str, missing: str) -> Path:
    """A hub checkpoint: from the hub's local cache, else fetched (config, tokenizer and one weight format).
    `missing` says that no such folder exists: errors say it first, then why the hub could not help."""
    try:
        from huggingface_hub import list_repo_files, snapshot_download
    except ImportError as exc:  # pragma: no cover - huggingface_hub is a dependency
        raise CheckpointError("downloading from the hub needs huggingface_hub: pip install huggingface_hub") from exc
    try:  # a copy already in the local hub cache works offline, at once
        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached (huggingface_hub raises several kinds): look online
        pass
    unreachable = _hub_unreachable()
    if unreachable:
        raise CheckpointError(f"{missing}, and as a hub id it is not in the local hub cache and the Hugging Face hub "
                              f"cannot be reached ({unreachable}); pass a local checkpoint folder")  # fmt: skip
    logging.getLogger("textclass").warning("textclass: fetching %s from the Hugging Face hub (once)", repo_id)
    try:
        files = set(list_repo_files(repo_id))
        weights = next((name for _, name in WEIGHT_FILES if name in files), None)
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
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{missing}, and as a hub id the Hugging Face hub could not give it ({reason}); check "
                              "the name, or pass a local checkpoint folder") from None  # fmt: skip


def _hub_unreachable() -> str | None:
    """Why the hub cannot be reached (offline mode, or no connection within HUB_PROBE_SECONDS), or None.

    The probe runs on a daemon thread so a resolver that hangs cannot hold the caller: name lookup has no timeout
    of its own."""
    if os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE"):
        return "HF_HUB_OFFLINE is set"
    endpoint = urlsplit(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (80 if endpoint.scheme == "http" else 443)
    outcome: list[str | None] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=HUB_PROBE_SECONDS).close()
            outcome.append(None)
        except OSError as exc:
            outcome.append(f"{host}: {exc.strerror or type(exc).__name__}")

    thread = threading.Thread(target=probe, name="textclass-hub-probe", daemon=True)
    thread.start()
    thread.join(HUB_PROBE_SECONDS)
    return outcome[0] if outcome else f"{host}: no answer in {HUB_PROBE_SECONDS:g} s"
