"""The classification routes' hot path: POST / and POST /predict without FastAPI's per-request layers.

FastAPI declares these routes (OpenAPI, /docs) and would serve them the same way; this ASGI layer answers
them first, because on a small CPU the framework's layers (routing, dependency solving, exception
middleware, Response objects) cost about as much as the request's own work: measured on 2 cores, the
event loop spent ~1 ms of Python per request outside the route, mostly with cold caches after a model
run. Same request models (pydantic parses and validates the JSON in one compiled pass), same route
functions, same error bodies; it sits inside the Gatekeeper, so API key, body limit, metrics and access
log apply unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from textclass.errors import TextclassError
from textclass.server.errors import ApiError, describe_validation, error_body

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
        if entry is None:
            await self.app(scope, receive, send)
            return
        model, handler, route = entry
        scope["route"] = route  # the Gatekeeper labels metrics by route template
        headers: dict[str, str] = {}
        try:
            body = await _read_body(receive)
            if body is None:  # the client went away before sending its body: nobody to answer
                return
            content, headers = await handler(model.model_validate_json(body))
            status, payload = 200, render(content)
        except ValidationError as exc:
            status, payload = 422, error_body(describe_validation(exc.errors(include_url=False)), "validation")
        except ApiError as exc:
            status, payload, headers = exc.status, error_body(exc.message, exc.error_type), exc.headers
        except HTTPException as exc:  # the Gatekeeper's body limit on a chunked body
            status, payload = exc.status_code, error_body(str(exc.detail), "payload_too_large")
        except TextclassError as exc:
            status, payload = 422, error_body(str(exc), "validation")
        raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": payload})


async def _read_body(receive: Receive) -> bytes | None:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)
