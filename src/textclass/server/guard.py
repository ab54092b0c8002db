"""Every HTTP request runs under a deadline and can be stopped: the request timeout, the shutdown drain, and a
JSON answer for anything unexpected.

- A request past `--request-timeout` is cancelled and answered 503: cancelling its await drops its rows still
  queued for the batcher (batcher.py skips cancelled jobs), so its work is abandoned, not left running.
- On SIGTERM/SIGINT (run.py calls `begin_drain`), requests already in flight get `--graceful-timeout` seconds;
  those still running then are cancelled and answered 503, so uvicorn's own wait ends and the process exits.
- Any exception a route lets through is logged with its traceback and answered as a JSON 500 with error_type;
  the client never sees plain text or a traceback.

Plain ASGI, inside the Gatekeeper (so metrics and the access log see these answers) and outside everything else.
"""

from __future__ import annotations

import asyncio
import logging

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from textclass.server.errors import error_body, send_json

log = logging.getLogger("textclass.server")


class Guard:
    def __init__(self, app: ASGIApp, request_timeout: float, graceful_timeout: float):
        self.app = app
        self.request_timeout = request_timeout
        self.graceful_timeout = graceful_timeout
        self.in_flight: set[anyio.CancelScope] = set()
        self.draining = False
        self.drain_expired = False
        self.loop: asyncio.AbstractEventLoop | None = None  # set at startup, for the signal handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                self.loop = asyncio.get_running_loop()
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        deadline = anyio.CancelScope(deadline=anyio.current_time() + self.request_timeout)
        if self.drain_expired:
            deadline.cancel()
        self.in_flight.add(deadline)
        try:
            with deadline:
                await self.app(scope, receive, watched)
        except Exception as exc:  # noqa: BLE001 - a bug: the log gets the traceback, the client JSON
            log.error("unexpected error on %s %s", scope["method"], scope["path"], exc_info=exc)
            if not started:
                message = f"unexpected server error ({type(exc).__name__}); the server log has the details"
                await send_json(send, 500, error_body(message, 500), {})
            return
        finally:
            self.in_flight.discard(deadline)
        if deadline.cancelled_caught and not started:
            await send_json(send, 503, error_body(self._why_stopped(), 503), {})

    def _why_stopped(self) -> str:
        if self.drain_expired:
            return (f"the server is shutting down and this request did not finish within the {self.graceful_timeout:g}"
                    " s grace period (--graceful-timeout); retry on another replica")  # fmt: skip
        return (f"the request took longer than the {self.request_timeout:g} s request timeout (--request-timeout) "
                "and its work was abandoned; send fewer or shorter texts")  # fmt: skip

    # ---- shutdown ---------------------------------------------------------------------------------------------
    def begin_drain(self) -> None:
        """From a signal handler: stop-side state now, in-flight requests cancelled after the grace period."""
        if self.loop is None or self.draining:
            return
        self.loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        self.draining = True
        assert self.loop is not None
        self.loop.call_later(self.graceful_timeout, self._expire)

    def _expire(self) -> None:
        self.drain_expired = True
        if self.in_flight:
            log.warning("cancelling %d request(s) still running after the %g s grace period",
                        len(self.in_flight), self.graceful_timeout)  # fmt: skip
        for scope in list(self.in_flight):
            scope.cancel()
