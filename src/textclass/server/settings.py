"""What `textclass serve` was asked for: one frozen record, logged at startup and shown by GET /info."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ServerSettings:
    model: str | None = None  # checkpoint folder, hub id or bundled name; None: the bundled default
    model_id: str | None = None  # the model's name for clients (/info, /ui); None: model_name(folder)
    host: str = "127.0.0.1"
    port: int = 8080
    # Padded tokens (rows × longest) per model forward pass; the batcher cuts at it too. None: the device's
    # default (api.DEFAULT_MAX_BATCH_TOKENS).
    max_batch_tokens: int | None = None
    max_client_batch_size: int = 32  # texts one request may send
    max_rerank_documents: int = 1000  # documents one Cohere/Jina rerank request may send (/v1, /v2/rerank)
    payload_limit: int = 2_000_000  # request body bytes
    max_concurrent_requests: int = 512  # classification requests admitted at once; more get 429
    api_key: str | None = None  # when set, POST routes and /info need `Authorization: Bearer <key>`
    device: str | None = None
    dtype: str | None = None
    backend: str | None = None
    graceful_timeout: float = 30.0  # seconds to finish in-flight requests after SIGTERM
    access_log: bool = True  # one JSON line per request

    def public(self) -> dict[str, Any]:
        """The settings safe to log: the API key only as set or not."""
        values = asdict(self)
        values["api_key"] = "set" if self.api_key else None
        return values


def model_name(folder: Path) -> str:
    """The model's name without the server's filesystem layout: a hub id for a hub download (the cache keeps
    it as .../models--org--name/snapshots/<revision>), else the folder's last part (a bundled model's name)."""
    folder = Path(folder).resolve()
    repo = folder.parent.parent.name
    if folder.parent.name == "snapshots" and repo.startswith("models--"):
        return repo.removeprefix("models--").replace("--", "/")
    return folder.name
