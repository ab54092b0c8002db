"""Starting and stopping the server: logging, model load, uvicorn, and a clean exit on SIGTERM/SIGINT."""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import queue
import signal
import sys
import time
from typing import Any

from textclass.errors import TextclassError
from textclass.server.settings import ServerSettings

log = logging.getLogger("textclass.server")


class JsonLines(logging.Formatter):
    """One JSON object a line; messages that are JSON objects already are merged in, not quoted."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        message = record.getMessage()
        parsed = getattr(record, "fields", None)  # structured records (the access log) come as a dict
        if parsed is None and message.startswith("{"):
            try:
                parsed = json.loads(message)
            except json.JSONDecodeError:
                pass
        if isinstance(parsed, dict):
            entry.update(parsed)
        else:
            entry["message"] = message
        if record.exc_text or record.exc_info:
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: int = logging.INFO, access_log: bool = True) -> logging.handlers.QueueListener:
    """JSON lines on stderr, formatted and written by a listener thread: the event loop only enqueues a
    record, so a slow stderr (a pipe, a container's log driver) never holds up a response. The caller
    stops the returned listener, which flushes what is queued."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines())
    records: queue.SimpleQueue = queue.SimpleQueue()
    listener = _Listener(records, handler)
    root = logging.getLogger()
    root.handlers[:] = [_Enqueue(records)]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []  # propagate to the JSON handler
    logging.getLogger("textclass.access").setLevel(logging.INFO if access_log else logging.WARNING)
    listener.start()
    return listener


class _Enqueue(logging.handlers.QueueHandler):
    """Queues the record with its message and traceback rendered now (its arguments may change or die after
    this call) but not yet formatted as JSON, which the listener thread does."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record.msg, record.args = record.getMessage(), None
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        return record


class _Listener(logging.handlers.QueueListener):
    """Writes records in batches: it wakes for the first record, waits WRITE_EVERY seconds for more, then
    formats them all and writes them with one call. Woken per record, it took the GIL from the event loop and
    made a system call for every request's access line (2-3% of served throughput under 64 clients)."""

    def _monitor(self) -> None:
        records = self.queue
        while True:
            batch = [records.get()]  # blocks while nothing is logged
            time.sleep(WRITE_EVERY)
            while not records.empty():
                batch.append(records.get_nowait())
            last = self._sentinel in batch  # stop(): write what came before it, then end
            self._write([record for record in batch if record is not self._sentinel])
            if last:
                return

    def _write(self, batch: list[logging.LogRecord]) -> None:
        for handler in self.handlers:
            if not isinstance(handler, logging.StreamHandler):
                for record in batch:
                    handler.handle(record)
                continue
            lines = []
            for record in batch:
                if not handler.filter(record):  # what handler.handle checks first
                    continue
                try:
                    lines.append(handler.format(record) + "\n")
                except Exception:  # noqa: BLE001 - logging's own policy: report and carry on
                    handler.handleError(record)
            if lines:
                with handler.lock:  # type: ignore[union-attr]
                    handler.stream.write("".join(lines))
                    handler.flush()

    def stop(self) -> None:
        """Write what is queued, then log straight to stderr: records after the server stops are not lost."""
        super().stop()
        logging.getLogger().handlers[:] = list(self.handlers)


WRITE_EVERY = 0.02  # seconds a log line may wait to be written with others


_LISTENER: list[logging.handlers.QueueListener] = []  # so that a forced exit still writes what is queued


def serve(settings: ServerSettings) -> None:
    """Load the model, then serve until SIGTERM/SIGINT; in-flight requests are answered before exit."""
    listener = configure_logging(access_log=settings.access_log)
    _LISTENER[:] = [listener]
    try:
        _serve(settings)
    finally:
        listener.stop()


def serve_ray(settings: ServerSettings, ray_settings: object) -> None:
    """`--engine ray`: the same app as a Ray Serve deployment (ray_serve.py), logged as the local server logs."""
    from textclass.server.ray_serve import serve_on_ray

    listener = configure_logging(access_log=settings.access_log)
    _LISTENER[:] = [listener]
    try:
        serve_on_ray(settings, ray_settings)  # type: ignore[arg-type]
    finally:
        listener.stop()


def _serve(settings: ServerSettings) -> None:
    import uvicorn

    from textclass.server.app import create_app
    from textclass.server.loading import load_models
    from textclass.server.threads import lingering_threads

    log.info(json.dumps({"event": "config", **settings.public()}))
    app = create_app(load_models(settings), settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,  # keep our JSON handler
        access_log=False,  # the Gatekeeper writes structured access logs
        # The Guard answers what is still running after --graceful-timeout (503) and uvicorn's wait then ends; this
        # is only the backstop should a response not finish sending.
        timeout_graceful_shutdown=settings.graceful_timeout + 3,
        # uvicorn's 5 s default closes pooled client connections that sit idle behind a slow batch, and a
        # request sent just then fails on the client (ReadError); seen under load in bench/load.py.
        timeout_keep_alive=60,
        lifespan="on",
    )
    # uvicorn re-raises the signal it caught once it has shut down, which would end the process with
    # 143/130; a no-op handler underneath makes a requested stop exit 0. It is installed only now, so
    # Ctrl-C during the model load still interrupts.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    server = _uvicorn_server(config, app.state.guard)
    server.run()
    if not server.started:  # the warm-up batch failed: uvicorn logged why and returned without serving
        raise TextclassError("the server did not start; see the log above")
    left = lingering_threads()
    if left:  # a library's worker still running: nothing may keep a stopped server alive
        log.warning(json.dumps({"event": "exit_with_threads_running", "threads": left}))
        for listener in _LISTENER:
            listener.stop()  # write what is queued: os._exit skips the usual clean-up
        os._exit(0)


def _uvicorn_server(config: Any, guard: list) -> Any:
    """uvicorn's Server, telling the Guard when a stop signal arrives (it starts the grace period's clock)."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            if guard:
                guard[0].begin_drain()
            super().handle_exit(sig, frame)

    return Server(config)
