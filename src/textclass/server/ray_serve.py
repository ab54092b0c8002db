"""`textclass serve --engine ray`: the same app (routes, limits, batcher, the multi-model form too) as a Ray Serve
deployment, one copy per replica, each loading its models once.

Ray Serve's proxy takes HTTP on --host/--port and routes each request to a replica; inside it our app runs as it does
alone (Gatekeeper, Guard, FastPath, each model's batcher), so batches form per replica. Ray replaces a replica that
dies (its health check is every model's batcher alive) and scales between MIN and MAX on ongoing requests per replica.
Without --address, a cluster is started for this process on 127.0.0.1 and goes with it; with one, only this
deployment is added and, at SIGTERM, removed (Serve itself too, when this process started it).
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from textclass.errors import InputError, TextclassError
from textclass.extras import MissingExtra
from textclass.server.settings import ServerSettings

log = logging.getLogger("textclass.server")
APP_NAME = "textclass"  # the Serve application and its one deployment
CONNECT_TIMEOUT = 8.0  # seconds to reach a cluster named by --address before saying it is not there


@dataclass(frozen=True)
class RaySettings:
    replicas: int = 1
    autoscale: tuple[int, int] | None = None  # (min, max) replicas, instead of a fixed count
    target_ongoing_requests: float = 32.0  # autoscaling's target of requests queued or running per replica
    address: str | None = None  # "auto" or HOST:PORT of a running cluster; None: a local one on 127.0.0.1
    cpus_per_replica: float = 1.0


def parse_autoscale(value: str) -> tuple[int, int]:
    """`--autoscale MIN:MAX` (MIN may be 0 only if MAX is at least 1)."""
    low, sign, high = value.partition(":")
    if not sign or not low.strip().isdigit() or not high.strip().isdigit():
        raise InputError(f"--autoscale {value!r}: expected MIN:MAX replicas, e.g. 1:4")
    low_n, high_n = int(low), int(high)
    if high_n < 1 or low_n > high_n:
        raise InputError(f"--autoscale {value!r}: MAX must be at least 1 and at least MIN")
    return low_n, high_n


def require_ray_serve() -> None:
    try:
        import ray  # noqa: F401
        from ray import serve  # noqa: F401
    except ImportError as exc:  # ray without its serve extra fails here too (grpc, starlette...)
        raise MissingExtra("--engine ray needs Ray Serve, which is not installed: pip install 'textclass[ray]' "
                           f"(it carries ray[serve]; {exc.name or 'ray'} is missing)") from exc  # fmt: skip


def deployment_options(settings: ServerSettings, ray_settings: RaySettings) -> dict[str, Any]:
    """What Ray Serve is told about the deployment: replicas or autoscaling, and room for our own batching (a
    replica takes up to --max-concurrent-requests at once, as the single server does, so batches can form)."""
    options: dict[str, Any] = {
        "max_ongoing_requests": settings.max_concurrent_requests,
        "health_check_period_s": 5.0,
        "health_check_timeout_s": 30.0,
        "graceful_shutdown_timeout_s": settings.graceful_timeout,
        "ray_actor_options": {"num_cpus": ray_settings.cpus_per_replica},
    }
    if ray_settings.autoscale is None:
        options["num_replicas"] = ray_settings.replicas
    else:
        low, high = ray_settings.autoscale
        options["autoscaling_config"] = {"min_replicas": low, "max_replicas": high, "initial_replicas": max(low, 1),
                                         "target_ongoing_requests": ray_settings.target_ongoing_requests}  # fmt: skip
    return options


def application(settings: ServerSettings, ray_settings: RaySettings) -> Any:
    """The Serve application: one deployment whose replicas each build the app (and load the models) once."""
    from ray import serve

    @serve.ingress()
    class Replica:
        def __init__(self, settings: ServerSettings):  # (Serve's wrapper owns the name `app`)
            self.settings = settings
            self.served_app: Any = None

        def __serve_build_asgi_app__(self) -> Any:
            from textclass.server.app import create_app
            from textclass.server.loading import load_models

            self.served_app = create_app(load_models(self.settings), self.settings)
            return self.served_app

        def check_health(self) -> None:
            """Ray's liveness probe of this replica: a model whose batcher died fails it, and Ray replaces it."""
            fleet = None if self.served_app is None else self.served_app.state.fleet
            sick = [] if fleet is None else [m.name for m in fleet if m.ready and not m.batcher.alive]
            if sick:
                raise RuntimeError(f"model worker stopped: {', '.join(sick)}")

    deployment = serve.deployment(Replica, name=APP_NAME, **deployment_options(settings, ray_settings))
    return deployment.bind(settings)


def build(args: dict[str, Any]) -> Any:
    """`serve deploy` / `serve run` entry (import_path textclass.server.ray_serve:build): args are print_config's."""
    fields = dict(args.get("settings", {}))
    fields["models"] = tuple(tuple(pair) for pair in fields.get("models", ()))
    ray_fields = dict(args.get("ray", {}))
    if ray_fields.get("autoscale") is not None:
        ray_fields["autoscale"] = tuple(ray_fields["autoscale"])
    return application(ServerSettings(**fields), RaySettings(**ray_fields))


def print_config(settings: ServerSettings, ray_settings: RaySettings) -> str:
    """A Ray Serve config file (YAML is a superset of this JSON) for `serve deploy` on a cluster, e.g. a KubeRay
    RayService's serveConfigV2: readiness GET /health (every model warmed up), liveness Serve's own /-/healthz."""
    public = asdict(settings)
    public["api_key"] = None  # never written into a file: set TEXTCLASS_API_KEY in the cluster instead
    config = {
        "proxy_location": "EveryNode",
        "http_options": {"host": "0.0.0.0", "port": settings.port, "request_timeout_s": settings.request_timeout + 5},
        "applications": [{
            "name": APP_NAME, "route_prefix": "/", "import_path": "textclass.server.ray_serve:build",
            "args": {"settings": {**public, "host": "0.0.0.0"}, "ray": {**asdict(ray_settings), "address": None}},
            "deployments": [{"name": APP_NAME, **deployment_options(settings, ray_settings)}],
        }],
    }  # fmt: skip
    return json.dumps(config, indent=2)


def serve_on_ray(settings: ServerSettings, ray_settings: RaySettings) -> None:
    """Deploy, wait until every replica answers, then hold until SIGTERM/SIGINT and remove what was added."""
    require_ray_serve()
    import ray
    from ray import serve

    connect(ray_settings.address)
    log.info(json.dumps({"event": "config", "engine": "ray", **settings.public(), **asdict(ray_settings)}))
    serve_was_running, deployed = True, False  # until known otherwise: remove nothing this process did not add
    try:
        serve_was_running = _serve_running()
        began = time.perf_counter()
        serve.start(http_options={"host": settings.host, "port": settings.port,
                                  "request_timeout_s": settings.request_timeout + 5})  # fmt: skip
        deployed = True
        serve.run(application(settings, ray_settings), name=APP_NAME, route_prefix="/")
        log.info(json.dumps({"event": "ready", "engine": "ray", "replicas": ray_settings.autoscale or
                             ray_settings.replicas, "seconds": round(time.perf_counter() - began, 2),
                             "url": f"http://{settings.host}:{settings.port}"}))  # fmt: skip
        _wait_for_stop()
        log.info(json.dumps({"event": "stopping", "engine": "ray"}))
    finally:
        # However it ends (a stop signal, a deployment that failed to start, Ctrl-C while deploying), what this
        # process added goes: its application, and Serve if it started it; a joined cluster is left as it was found.
        # A local cluster this process started goes with it; a joined one only loses this driver's connection.
        try:
            if deployed:
                serve.delete(APP_NAME)
            if not serve_was_running:
                serve.shutdown()
        except Exception as exc:  # noqa: BLE001 - why it stopped is the error to show; this says what may be left
            log.warning(json.dumps({"event": "cleanup_failed", "engine": "ray", "app": APP_NAME, "error": str(exc)}))
        finally:
            ray.shutdown()
    log.info(json.dumps({"event": "stopped", "engine": "ray"}))


def connect(address: str | None) -> bool:
    """Join the cluster at `address` (failing within ~10 s, naming it), or start a local one on 127.0.0.1. Returns
    whether a cluster was started here."""
    import ray

    if address is None:
        ray.init(num_cpus=None, include_dashboard=False, _node_ip_address="127.0.0.1", configure_logging=False,
                 log_to_driver=False)  # fmt: skip
        return True
    if address != "auto":
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise InputError(f"--address {address!r}: expected auto or HOST:PORT of a Ray cluster's head")
        try:
            socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT).close()
        except OSError as exc:
            raise TextclassError(f"no Ray cluster answers at --address {address} ({exc.strerror or exc}); start "
                                 "one with `ray start --head`, or leave --address out for a local one") from exc
    try:
        ray.init(address=address, configure_logging=False, log_to_driver=False)
    except (ConnectionError, RuntimeError, TimeoutError) as exc:
        raise TextclassError(f"cannot join the Ray cluster at --address {address}: {exc}") from exc
    return False


def _serve_running() -> bool:
    import ray

    try:
        ray.get_actor("SERVE_CONTROLLER_ACTOR", namespace="serve")
    except ValueError:
        return False
    return True


def _wait_for_stop() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass
