"""`textclass serve`: argument parsing only; the server lives in textclass.server."""

from __future__ import annotations

from typing import Annotated

import typer

from textclass.cli.common import BackendOption, DeviceOption, DtypeOption, fail
from textclass.server.settings import DEFAULT_GRACEFUL_TIMEOUT, DEFAULT_MAX_REQUEST_TOKENS, DEFAULT_REQUEST_TIMEOUT


def serve(
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model", "-m",
            help="Checkpoint folder, hub id or bundled name (default: the bundled model). Repeat as NAME=PATH to "
            "serve several, each under /models/NAME/ (the first also at the root).",
        ),
    ] = None,  # fmt: skip
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
            "what it takes from the queue (default: 1024 on CPU, 256 on a CPU with AMX, 16384 on a GPU).",
            min=1,
        ),
    ] = None,
    max_client_batch_size: Annotated[int, typer.Option(help="Texts one request may send (more: 413).", min=1)] = 32,
    max_request_tokens: Annotated[
        int,
        typer.Option(
            help="Tokens of model work one request may ask for, over its texts, windows, pairs and explain's "
            "variants (more: 413, before any model work) (default: 16384).",
            min=1,
        ),
    ] = DEFAULT_MAX_REQUEST_TOKENS,
    max_rerank_documents: Annotated[
        int, typer.Option(help="Documents one rerank request to /v2/rerank or /v1/rerank may send (more: 413).", min=1)
    ] = 1000,
    payload_limit: Annotated[int, typer.Option(help="Request body limit in bytes (more: 413).", min=1)] = 2_000_000,
    max_concurrent_requests: Annotated[
        int, typer.Option(help="Requests handled at once per model (more: 429 with Retry-After).", min=1)
    ] = 512,
    request_timeout: Annotated[
        float, typer.Option(help="Seconds a request may run; then 503 and its work is dropped (default: 60).", min=0.1)
    ] = DEFAULT_REQUEST_TIMEOUT,
    graceful_timeout: Annotated[
        float,
        typer.Option(help="After SIGTERM, seconds in-flight requests may take; the rest get 503 (default: 10).", min=0),
    ] = DEFAULT_GRACEFUL_TIMEOUT,
    api_key: Annotated[
        str | None,
        typer.Option(help="Require `Authorization: Bearer KEY` on every route but the health probes, /metrics "
                     "and the docs.", envvar="TEXTCLASS_API_KEY"),  # fmt: skip
    ] = None,
    device: DeviceOption = None,
    dtype: DtypeOption = None,
    backend: BackendOption = None,
    access_log: Annotated[
        bool, typer.Option(help="One JSON line per request on stderr (a proxy's log may already have them).")
    ] = True,
    engine: Annotated[
        str, typer.Option(help="local: one process; ray: a Ray Serve deployment of the same app (textclass[ray]).")
    ] = "local",
    replicas: Annotated[int, typer.Option(help="Ray: replicas, each loading the models once.", min=1)] = 1,
    autoscale: Annotated[
        str | None, typer.Option(help="Ray: MIN:MAX replicas, scaled on --target-ongoing-requests per replica.")
    ] = None,
    target_ongoing_requests: Annotated[
        float, typer.Option(help="Ray autoscaling: requests queued or running per replica to aim for.", min=0.1)
    ] = 32.0,
    address: Annotated[
        str | None,
        typer.Option(help="Ray: join the cluster at auto or HOST:PORT (default: start a local one on 127.0.0.1)."),
    ] = None,
    print_config: Annotated[
        bool, typer.Option(help="Ray: print a Serve config for `serve deploy` (KubeRay) and exit.")
    ] = False,
) -> None:
    """Serve classifiers over HTTP: TEI's /predict, InferenceClient's POST /, /health, /metrics, /ui."""
    from textclass.errors import TextclassError
    from textclass.server.run import serve as run_server
    from textclass.server.run import serve_ray as run_ray
    from textclass.server.settings import ServerSettings, parse_model_specs

    try:
        specs = parse_model_specs(model) if model else None
        if specs is not None and model_id is not None:
            raise TextclassError("--model-id names a single model; with NAME=PATH models the names are given")
        settings = ServerSettings(
            model=model[0] if model and specs is None else None,
            model_id=model_id,
            models=specs or (),
            host=host,
            port=port,
            max_batch_tokens=max_batch_tokens,
            max_client_batch_size=max_client_batch_size,
            max_request_tokens=max_request_tokens,
            max_rerank_documents=max_rerank_documents,
            payload_limit=payload_limit,
            max_concurrent_requests=max_concurrent_requests,
            request_timeout=request_timeout,
            graceful_timeout=graceful_timeout,
            api_key=api_key,
            device=device,
            dtype=dtype,
            backend=backend,
            access_log=access_log,
        )
        if engine not in ("local", "ray"):
            raise TextclassError(f"--engine must be local or ray; got {engine!r}")
        if engine == "local":
            if autoscale or address or print_config or replicas != 1:
                raise TextclassError("--replicas, --autoscale, --address and --print-config need --engine ray")
            run_server(settings)
            return
        from textclass.server import ray_serve

        ray_settings = ray_serve.RaySettings(replicas=replicas, target_ongoing_requests=target_ongoing_requests,
                                             autoscale=ray_serve.parse_autoscale(autoscale) if autoscale else None,
                                             address=address)  # fmt: skip
        if print_config:
            typer.echo(ray_serve.print_config(settings, ray_settings))
            return
        ray_serve.require_ray_serve()
        run_ray(settings, ray_settings)
    except TextclassError as exc:
        fail(str(exc))
