"""The model routes' hot path: POST /, /predict and /rerank without FastAPI's per-request layers.

FastAPI declares these routes (OpenAPI, /docs) and would serve them the same way; this ASGI layer answers
them first, because on a small CPU the framework's layers (routing, dependency solving, exception
middleware, Response objects) cost about as much as the request's own work: measured on 2 cores, the
event loop spent ~1 ms of Python per request outside the route, mostly with cold caches after a model
run. Same request models (pydantic parses and validates the JSON in one compiled pass), same route
functions, same error bodies; it sits inside the Gatekeeper, so API key, body limit, metrics and access
log apply unchanged. Anything off the happy path that FastAPI words itself (a body that is not JSON or does
not validate, another content type, a dropped client) is handed to FastAPI with the body replayed.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from textclass.errors import TextclassError
from textclass.server.errors import ApiError, error_body, send_json

# A route function: parsed body -> (JSON content, extra headers).
Handler = Callable[[Any], Awaitable[tuple[Any, dict[str, str]]]]


def render(content: Any) -> bytes:
    """JSON exactly as Starlette's JSONResponse writes it, so both paths answer the same bytes."""
    return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()


class FastPath:
    def __init__(self, app: ASGIApp, routes: dict[str, tuple[type[BaseModel], Handler, Any]]):
        """`routes`: path -> (request model, route function, the FastAPI route it stands for)."""
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        entry = self.routes.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if entry is None or not _sends_json(scope):
            await self.app(scope, receive, send)  # FastAPI's answer, whatever it is (405, 422 for a form body, ...)
            return
        model, handler, route = entry
        received: list[Message] = []
        try:
            body = await _read_body(receive, received)
        except HTTPException as exc:  # the Gatekeeper's body limit on a chunked body
            await send_json(send, exc.status_code, error_body(str(exc.detail), exc.status_code), {})
            return
        try:
            request = None if body is None else model.model_validate_json(body)
        except ValidationError:
            request = None
        if request is None:
            # A dropped client or a body that does not validate: rare, so FastAPI answers it exactly as it would
            # have (its wording of JSON errors, a BOM it tolerates), from the messages replayed.
            await self.app(scope, _replay(received, receive), send)
            return
        scope["route"] = route  # the Gatekeeper labels metrics by route template
        headers: dict[str, str] = {}
        try:
            content, headers = await handler(request)
            status, payload = 200, render(content)
        except ApiError as exc:
            status, payload, headers = exc.status, error_body(exc.message, exc.status, exc.error_type), exc.headers
        except TextclassError as exc:
            status, payload = 422, error_body(str(exc), 422)
        await send_json(send, status, payload, headers)


def _sends_json(scope: Scope) -> bool:
    """Content-Type application/json or application/*+json, the bodies FastAPI parses as JSON."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            kind = value.split(b";", 1)[0].strip().lower()
            return kind == b"application/json" or (kind.startswith(b"application/") and kind.endswith(b"+json"))
    return False


async def _read_body(receive: Receive, received: list[Message]) -> bytes | None:
    """The whole body, or None when the client disconnected; every message is kept in `received`."""
    while True:
        message = await receive()
        received.append(message)
        if message["type"] == "http.disconnect":
            return None
        if not message.get("more_body"):
            return b"".join(m.get("body", b"") for m in received)


def _replay(received: list[Message], receive: Receive) -> Receive:
    pending = list(received)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed
