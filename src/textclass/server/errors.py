"""Every answer other than 200 is JSON {"error", "error_type"}: what was wrong and what to do.

`error_type` takes TEI's values (`ErrorType` in text-embeddings-inference's router/src/lib.rs, v1.9.3), so a
client written for TEI can switch on them. STATUSES is the one table behind every error answer (the routes,
the fast path, the Gatekeeper, FastAPI's own errors): the HTTP status gives the error_type and what /docs says.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException
from starlette.types import Send

from textclass.errors import TextclassError
from textclass.server.schemas import NOT_BLANK, ErrorResponse, ErrorType

STATUSES: dict[int, tuple[ErrorType, str]] = {
    400: ("Validation", "The body is not UTF-8 text, or not readable as a request"),
    401: ("Validation", "Missing or wrong API key (when the server has one)"),
    404: ("Validation", "No such route, or no model of that name (the answer lists the names)"),
    405: ("Validation", "The route does not take this method"),
    413: ("Validation", "Too many inputs, a body over the payload limit, or an input too long with truncate=false"),
    422: ("Validation", "Malformed JSON, wrong types or values, or empty inputs"),
    424: ("Backend", "The served model cannot do this task"),
    429: ("Overloaded", "Too many concurrent requests; retry after Retry-After seconds"),
    500: ("Backend", "The model failed on the batch holding this request, or a bug (the server log has details)"),
    503: ("Unhealthy", "The model is not ready yet, or the server is shutting down"),
}


def error_type(status: int) -> ErrorType:
    return STATUSES[status][0] if status in STATUSES else "Backend" if status >= 500 else "Validation"


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """FastAPI's `responses=` for a route that can answer these error statuses."""
    return {status: {"model": ErrorResponse, "description": STATUSES[status][1]} for status in statuses}


class ApiError(Exception):
    """An answer other than 200: the status and a message saying what to do. kind: TEI's error_type, only where
    it is not the status's (a tokenizer failure is "Tokenizer")."""

    def __init__(
        self, status: int, message: str, *, headers: dict[str, str] | None = None, kind: ErrorType | None = None
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.error_type = kind or error_type(status)


def error_body(message: str, status: int, kind: ErrorType | None = None) -> bytes:
    return json.dumps({"error": message, "error_type": kind or error_type(status)}).encode()


async def send_json(send: Send, status: int, payload: bytes, headers: dict[str, str]) -> None:
    """A JSON answer straight through ASGI, for the layers in front of FastAPI (the Gatekeeper, the fast path)."""
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})


def add_error_handlers(app: FastAPI, not_found: Callable[[str], str | None] = lambda path: None) -> None:
    """JSON errors for every fault FastAPI and Starlette raise; `not_found(path)`: a 404's message for that path
    (a model name that is not served lists the names), None for the usual one."""
    def reply(status: int, message: str, headers: dict[str, str] | None = None, kind: ErrorType | None = None):
        return Response(error_body(message, status, kind), status, headers, media_type="application/json")

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return reply(exc.status, exc.message, exc.headers, exc.error_type)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        body = exc.body if isinstance(exc.body, dict) else {}
        if request.url.path.endswith("/predict") and "inputs" in body:
            problem = tei_inputs_problem(body["inputs"])
            if problem is not None:
                return reply(422, problem)
        return reply(422, describe_validation(exc.errors()))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        message = not_found(request.url.path) if exc.status_code == 404 else None
        return reply(exc.status_code, message or str(exc.detail), exc.headers)

    @app.exception_handler(TextclassError)
    async def user_error(request: Request, exc: TextclassError) -> Response:
        return reply(422, str(exc))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        # A bug, not the client's fault: still a JSON body; Starlette logs the traceback after this answer.
        return reply(500, f"unexpected server error ({type(exc).__name__}); the server log has the details")


# What a field must be, for the fields whose pydantic messages would list every union member or a regex.
EXPECTED = {
    "inputs": "a string, a list of strings, or a list of [text] / [text, text_pair] lists",
    "ids": "a list of token ids (0 to 4294967295) or a list of such lists",
    "parameters.candidate_labels": "at least one label and at most 64: a list of strings, or one string 'a,b,c'",
    "parameters.hypothesis_template": 'a string with one "{}" where the label goes and no other braces',
}
_TYPE_TAGS = {"str", "int", "float", "bool", "none"}


def describe_validation(errors: Any) -> str:
    """One line per wrong field, saying what was expected: pydantic lists every union member separately."""
    messages: dict[str, str] = {}
    empty: set[str] = set()
    for error in errors:
        # The field's path, without "body" and without the union member pydantic tried ("list[str]", "str", ...).
        path = [str(part) for part in error.get("loc", ()) if part != "body" and not _type_tag(part)]
        if error.get("type") == "json_invalid":
            reason = error.get("ctx", {}).get("error", error.get("msg"))
            return f"request body is not valid JSON ({reason}); send a JSON object with Content-Type: application/json"
        field = ".".join(path[:2] if path[:1] == ["parameters"] else path[:1]) or "body"
        if field in empty:
            continue
        if field == "body":
            messages[field] = "request body must be a JSON object (send Content-Type: application/json)"
        elif error.get("type") == "missing":
            messages[field] = f"{field} is required"
        elif error.get("type") == "too_short" and error.get("ctx", {}).get("actual_length") == 0 and path == [field]:
            messages[field] = f"{field} must not be empty"
            empty.add(field)
        elif error.get("type") == "string_pattern_mismatch" and error.get("ctx", {}).get("pattern") == NOT_BLANK:
            where = field + "".join(f"[{part}]" for part in path[1:] if part.isdigit())
            messages[field] = f"{where} is empty or only whitespace; every text needs something to classify"
            empty.add(field)
        elif field in EXPECTED:
            messages[field] = f"{field} must be {EXPECTED[field]}"
        else:
            messages.setdefault(field, f"{'.'.join(path)}: {error.get('msg')}")
    return "; ".join(messages.values()) or "request body does not match the expected schema"


TEI_SHAPES = 'a string, a pair ["text", "text_pair"], or a batch [["text"], ["text", "text_pair"], ...]'


def tei_inputs_problem(inputs: Any) -> str | None:
    """What is wrong with /predict's `inputs`, as TEI reads it: a string is one text; a list starting with a string
    is one input ([text] or [text, text_pair]); a list starting with a list is a batch of such lists. None when
    the shape is right (another field, or a blank text, is what failed)."""
    if isinstance(inputs, str):
        return None
    if not isinstance(inputs, list):
        return f"inputs must be {TEI_SHAPES}; got {_json_kind(inputs)}"
    if not inputs:
        return "inputs must not be empty"
    if isinstance(inputs[0], str):
        if len(inputs) > 2:
            return (f"inputs is a list of {len(inputs)} strings, but a list of strings is one input: [text] or a "
                    'pair [text, text_pair]; send a batch as a list of lists, e.g. [["a"], ["b"], ["c"]]')  # fmt: skip
        bad = next((i for i, item in enumerate(inputs) if not isinstance(item, str)), None)
        return None if bad is None else (f"inputs[{bad}] is {_json_kind(inputs[bad])}, but inputs[0] is a string: "
                                         f"inputs must be {TEI_SHAPES}")  # fmt: skip
    for index, item in enumerate(inputs):
        if not isinstance(item, list):
            return (f"inputs[{index}] is {_json_kind(item)}, but inputs is a batch (it starts with a list): every "
                    "item must be [text] or [text, text_pair]")  # fmt: skip
        if not 1 <= len(item) <= 2:
            return f"inputs[{index}] has {len(item)} strings; in a batch every item is [text] or [text, text_pair]"
        bad = next((j for j, text in enumerate(item) if not isinstance(text, str)), None)
        if bad is not None:
            return f"inputs[{index}][{bad}] must be a string; got {_json_kind(item[bad])}"
    return None


def _json_kind(value: Any) -> str:
    kinds = {bool: "a boolean", int: "a number", float: "a number", dict: "an object", list: "a list", str: "a string"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


def _type_tag(part: object) -> bool:
    if not isinstance(part, str):
        return False  # a list index
    return "[" in part or part.startswith(("constrained-", "function-")) or part in _TYPE_TAGS
