"""What every request passes through before its route: API key, body size, metrics and the access log.

Plain ASGI (no BaseHTTPMiddleware) so it adds microseconds, not a task per request.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from textclass.server.errors import error_body, send_json
from textclass.server.metrics import ServerMetrics

access_log = logging.getLogger("textclass.access")
# Probes and docs answer without the key: a Kubernetes probe sends none (OIP's /v2/health/* too).
OPEN_PATHS = ("/health", "/metrics", "/docs", "/redoc", "/openapi.json", "/ui", "/v2/health/live", "/v2/health/ready")


def is_open(path: str) -> bool:
    """Routes without the API key: health (also each model's), metrics, the docs and their files, the playground."""
    return path in OPEN_PATHS or path.startswith("/docs/") or (path.startswith("/models/") and path.endswith("/health"))


class Gatekeeper:
    def __init__(self, app: ASGIApp, metrics: ServerMetrics, payload_limit: int, api_key: str | None,
                 model_of: Callable[[str], str] = lambda path: ""):  # fmt: skip
        self.app = app
        self.metrics = metrics
        self.payload_limit = payload_limit
        self.api_key = api_key.encode() if api_key else None
        self.model_of = model_of  # request path -> the model it is about, for the metrics' model label

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the log shows if the app dies before answering

        async def send_and_watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            refusal = self._refusal(scope)
            if refusal is not None:
                await send_json(send_and_watch, *refusal)
            else:
                await self.app(scope, self._counting(receive), send_and_watch)
        finally:
            self._record(scope, status, time.perf_counter() - started)

    def _refusal(self, scope: Scope) -> tuple[int, bytes, dict[str, str]] | None:
        """(status, JSON error body, headers) when the request must not reach the app."""
        headers = dict(scope["headers"])
        if self.api_key is not None and not is_open(scope["path"]):
            scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self.api_key):
                message = "missing or wrong API key; send the header `Authorization: Bearer <key>`"
                return 401, error_body(message, 401), {"www-authenticate": "Bearer"}
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.payload_limit:
            return 413, error_body(self._too_large(int(length)), 413), {}
        return None

    def _too_large(self, size: int | None) -> str:
        got = f"{size:,} bytes" if size is not None else "more"
        return f"request body is {got} but the limit is {self.payload_limit:,} bytes; send fewer or shorter texts"

    def _counting(self, receive: Receive) -> Receive:
        """Bodies without Content-Length (chunked) are counted as they arrive and cut at the limit."""
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.payload_limit:
                    # FastAPI passes HTTPException through its body parsing (it turns anything else into 400).
                    raise HTTPException(413, self._too_large(None))
            return message

        return counted

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        route = scope.get("route")
        # The route's template, not the raw path, keeps the metric's label set small.
        name = getattr(route, "path", None) or "unmatched"
        self.metrics.observe_request(self.model_of(scope["path"]), name, scope["method"], status, seconds)
        if not access_log.isEnabledFor(logging.INFO):
            return
        client = scope.get("client")
        fields: dict[str, Any] = {
            "event": "access",
            "method": scope["method"],
            "path": scope["path"],
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
            "client": f"{client[0]}:{client[1]}" if client else None,
        }
        # Handed over as a dict (run.JsonLines merges it): serializing here would be parsed back there.
        access_log.info("access", extra={"fields": fields})
