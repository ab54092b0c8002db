"""Every answer other than 200 is JSON {"error", "error_type"}: what was wrong and what to do."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException
from starlette.types import Send

from textclass.errors import TextclassError


class ApiError(Exception):
    """An answer other than 200: status, a message saying what to do, and TEI's error_type."""

    def __init__(self, status: int, error_type: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.headers = headers or {}


def error_body(message: str, error_type: str) -> bytes:
    return json.dumps({"error": message, "error_type": error_type}).encode()


async def send_json(send: Send, status: int, payload: bytes, headers: dict[str, str]) -> None:
    """A JSON answer straight through ASGI, for the layers in front of FastAPI (the Gatekeeper, the fast path)."""
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})


def add_error_handlers(app: FastAPI) -> None:
    def reply(status: int, error_type: str, message: str, headers: dict[str, str] | None = None) -> Response:
        return Response(error_body(message, error_type), status, headers, media_type="application/json")

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return reply(exc.status, exc.error_type, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        return reply(422, "validation", describe_validation(exc.errors()))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        kinds = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
        return reply(exc.status_code, kinds.get(exc.status_code, "http"), str(exc.detail), exc.headers)

    @app.exception_handler(TextclassError)
    async def user_error(request: Request, exc: TextclassError) -> Response:
        return reply(422, "validation", str(exc))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        # A bug, not the client's fault: still a JSON body; Starlette logs the traceback after this answer.
        return reply(500, "internal", f"unexpected server error ({type(exc).__name__}); the server log has the details")


EXPECTED = {
    "inputs": "a string, a list of strings, or a list of [text] / [text, text_pair] lists",
    "ids": "a list of token ids or a list of such lists",
}


def describe_validation(errors: Any) -> str:
    """One line per wrong field, saying what was expected: pydantic lists every union member separately."""
    messages: dict[str, str] = {}
    for error in errors:
        loc = [str(part) for part in error.get("loc", ()) if part != "body"]
        if error.get("type") == "json_invalid":
            reason = error.get("ctx", {}).get("error", error.get("msg"))
            return f"request body is not valid JSON ({reason}); send a JSON object with Content-Type: application/json"
        field = loc[0] if loc else "body"
        if field == "body":
            messages[field] = "request body must be a JSON object (send Content-Type: application/json)"
        elif error.get("type") == "missing":
            messages[field] = f"{field} is required"
        elif field in EXPECTED:
            messages[field] = f"{field} must be {EXPECTED[field]}"
        else:
            messages.setdefault(field, f"{'.'.join(loc)}: {error.get('msg')}")
    return "; ".join(messages.values()) or "request body does not match the expected schema"
