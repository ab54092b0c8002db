"""What `textclass serve` was asked for: one frozen record, logged at startup and shown by GET /info."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from textclass.errors import InputError

# Tokens of model work one request may ask for: its texts (as truncated), windows (long_text "chunk"), zero-shot
# and rerank pairs, explain's variants (and integrated gradients' texts × steps). 16,384 is the largest request the
# other defaults admit without chunking (32 texts × 512 tokens), or a ~12,000-word document in 512-token windows.
# Measured on 2 cores (bench/serve_models.py): 65,536 tokens took 7 s of the bundled MiniLM but over 60 s of a
# base-size model (MPNet), past the request timeout; a quarter of that stays within it.
DEFAULT_MAX_REQUEST_TOKENS = 16_384
# A request still running after this many seconds is answered 503 and its queued work dropped: long enough for the
# largest request the token limit admits on a small CPU with a base-size model, short enough that a stuck client
# or an unexpected slow path frees the server within a minute (TEI and most proxies default to 60 s as well).
DEFAULT_REQUEST_TIMEOUT = 60.0
# After SIGTERM: seconds in-flight requests may take to finish before they are answered 503. Kubernetes gives a pod
# 30 s between SIGTERM and SIGKILL; 10 s leaves the rest for the process to exit.
DEFAULT_GRACEFUL_TIMEOUT = 10.0
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # one URL path segment: /models/{name}/...


@dataclass(frozen=True)
class ServerSettings:
    model: str | None = None  # checkpoint folder, hub id or bundled name; None: the bundled default
    model_id: str | None = None  # the model's name for clients (/info, /ui); None: model_name(folder)
    # Several models (`--model NAME=PATH`, repeated): (name, source) pairs, the first also served at the root.
    # Empty: the one model above.
    models: tuple[tuple[str, str], ...] = ()
    host: str = "127.0.0.1"
    port: int = 8080
    # Padded tokens (rows × longest) per model forward pass; the batcher cuts at it too. None: the device's
    # default (api.DEFAULT_MAX_BATCH_TOKENS).
    max_batch_tokens: int | None = None
    max_client_batch_size: int = 32  # texts one request may send
    max_request_tokens: int = DEFAULT_MAX_REQUEST_TOKENS  # tokens of model work one request may ask for
    max_rerank_documents: int = 1000  # documents one Cohere/Jina rerank request may send (/v1, /v2/rerank)
    payload_limit: int = 2_000_000  # request body bytes
    max_concurrent_requests: int = 512  # classification requests admitted at once (per model); more get 429
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT  # seconds one request may take; then 503
    api_key: str | None = None  # when set, every route but the probes, metrics and docs (middleware.is_open) needs it
    device: str | None = None
    dtype: str | None = None
    backend: str | None = None
    graceful_timeout: float = DEFAULT_GRACEFUL_TIMEOUT  # seconds to finish in-flight requests after SIGTERM
    access_log: bool = True  # one JSON line per request

    def public(self) -> dict[str, Any]:
        """The settings safe to log: the API key only as set or not."""
        values = asdict(self)
        values["api_key"] = "set" if self.api_key else None
        return values


def parse_model_specs(values: list[str] | tuple[str, ...]) -> tuple[tuple[str, str], ...] | None:
    """`--model` values: NAME=PATH pairs for several models, or None for one bare path (today's single model).

    A bare path among named ones, `=DIR`, `a=`, a name that cannot be a URL segment or a repeated name is an
    InputError naming the spec. A path holding "=" can be named (`name=dir=x`: the first "=" separates)."""
    if len(values) == 1 and "=" not in values[0]:
        return None
    specs: list[tuple[str, str]] = []
    for value in values:
        name, sign, source = value.partition("=")
        if not sign:
            raise InputError(f"--model {value!r}: with several models each one needs a name, as NAME=PATH")
        if not name or not source:
            raise InputError(f"--model {value!r}: expected NAME=PATH with both parts, e.g. sent=./my-sentiment")
        if not MODEL_NAME.match(name):
            raise InputError(f"--model {value!r}: the name {name!r} must be letters, digits, '.', '_' or '-' "
                             "(at most 64, starting with a letter or digit): it becomes /models/NAME/")  # fmt: skip
        if any(name == seen for seen, _ in specs):
            raise InputError(f"--model {value!r}: the name {name!r} is given twice; each model needs its own")
        specs.append((name, source))
    return tuple(specs)


def model_name(folder: Path) -> str:
    """The model's name without the server's filesystem layout: a hub id for a hub download (the cache keeps
    it as .../models--org--name/snapshots/<revision>), else the folder's last part (a bundled model's name)."""
    folder = Path(folder).resolve()
    repo = folder.parent.parent.name
    if folder.parent.name == "snapshots" and repo.startswith("models--"):
        return repo.removeprefix("models--").replace("--", "/")
    return folder.name
