"""`textclass serve`: argument parsing only; the server lives in textclass.server."""

from __future__ import annotations

from typing import Annotated

import typer

from textclass.cli.common import BackendOption, DeviceOption, DtypeOption, ModelOption, fail


def serve(
    model: ModelOption = None,
    model_id: Annotated[
        str | None,
        typer.Option(help="The model's name for clients (/info, /ui) (default: the bundled model's or folder's name)."),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 for all interfaces).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8080,
    max_batch_tokens: Annotated[
        int | None,
        typer.Option(
            help="Padded tokens (rows × longest) per model forward pass: the one budget, by which the batcher cuts "
            "what it takes from the queue (default: 1024 on CPU, 16384 on a GPU).",
            min=1,
        ),
    ] = None,
    max_client_batch_size: Annotated[int, typer.Option(help="Texts one request may send (more: 413).", min=1)] = 32,
    max_rerank_documents: Annotated[
        int, typer.Option(help="Documents one rerank request to /v2/rerank or /v1/rerank may send (more: 413).", min=1)
    ] = 1000,
    payload_limit: Annotated[int, typer.Option(help="Request body limit in bytes (more: 413).", min=1)] = 2_000_000,
    max_concurrent_requests: Annotated[
        int, typer.Option(help="Classification requests handled at once (more: 429 with Retry-After).", min=1)
    ] = 512,
    api_key: Annotated[
        str | None,
        typer.Option(help="Require `Authorization: Bearer KEY` on POST routes and /info.", envvar="TEXTCLASS_API_KEY"),
    ] = None,
    device: DeviceOption = None,
    dtype: DtypeOption = None,
    backend: BackendOption = None,
    access_log: Annotated[
        bool, typer.Option(help="One JSON line per request on stderr (a proxy's log may already have them).")
    ] = True,
) -> None:
    """Serve a classifier over HTTP: TEI's /predict, InferenceClient's POST /, /health, /metrics, /ui."""
    from textclass.errors import TextclassError
    from textclass.server.run import serve as run_server
    from textclass.server.settings import ServerSettings

    settings = ServerSettings(
        model=model,
        model_id=model_id,
        host=host,
        port=port,
        max_batch_tokens=max_batch_tokens,
        max_client_batch_size=max_client_batch_size,
        max_rerank_documents=max_rerank_documents,
        payload_limit=payload_limit,
        max_concurrent_requests=max_concurrent_requests,
        api_key=api_key,
        device=device,
        dtype=dtype,
        backend=backend,
        access_log=access_log,
    )
    try:
        run_server(settings)
    except TextclassError as exc:
        fail(str(exc))
