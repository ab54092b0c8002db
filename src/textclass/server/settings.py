"""What `textclass serve` was asked for: one frozen record, logged at startup and shown by GET /info."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class ServerSettings:
    model: str | None = None  # checkpoint folder, hub id or bundled name; None: the bundled default
    host: str = "127.0.0.1"
    port: int = 8080
    max_batch_tokens: int = 16384  # padded tokens one model batch may hold
    max_client_batch_size: int = 32  # texts one request may send
    payload_limit: int = 2_000_000  # request body bytes
    max_concurrent_requests: int = 512  # classification requests admitted at once; more get 429
    api_key: str | None = None  # when set, POST routes and /info need `Authorization: Bearer <key>`
    device: str | None = None
    dtype: str | None = None
    graceful_timeout: float = 30.0  # seconds to finish in-flight requests after SIGTERM
    access_log: bool = True  # one JSON line per request

    def public(self) -> dict[str, Any]:
        """The settings safe to log: the API key only as set or not."""
        values = asdict(self)
        values["api_key"] = "set" if self.api_key else None
        return values
