"""The server process (`anneal serve`): builds the service, starts the gRPC server with its
interceptor, health and reflection services, its metrics endpoint and the driver keeper's
thread, and drains on SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import signal
import threading
import time
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from anneal.settings import Settings, is_loopback
from anneal.v1 import anneal_pb2 as pb
from anneal.v1 import anneal_pb2_grpc as pb_grpc
from cluster.environment import connect_ray
from cluster.server.authlimit import FailureLimiter
from cluster.server.interceptor import TokenInterceptor
from cluster.server.metrics import MetricsEndpoint, serve_metrics
from cluster.server.security import ServerSecurity, server_security
from cluster.server.service import AnnealService
from cluster.server.servicer import AnnealServicer

log = logging.getLogger("anneal.server")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["AnnealService"].full_name
MAX_WORKERS = 64
# Calls past this many at once are answered RESOURCE_EXHAUSTED at once, not queued without end.
MAX_CONCURRENT_RPCS = 256


class RunningServer:
    """A started gRPC server and what is needed to stop it cleanly."""

    def __init__(
        self,
        server: grpc.Server,
        port: int,
        health_servicer: health.HealthServicer,
        stopping: threading.Event,
        metrics: MetricsEndpoint | None = None,
    ):
        self.server = server
        self.port = port
        self.health = health_servicer
        self.stopping = stopping
        self.metrics = metrics

    def stop(self, grace_s: float = 5.0) -> None:
        self.stopping.set()
        self.health.enter_graceful_shutdown()
        self.server.stop(grace_s).wait()
        if self.metrics is not None:  # scrapes go on answering while the calls drain
            self.metrics.stop()


def start_server(
    service: AnnealService,
    address: str,
    security: ServerSecurity,
    *,
    reflection_on: bool = False,
    tend_drivers: bool = True,
    metrics_address: tuple[str, int] | None = None,
    failure_limiter: FailureLimiter | None = None,
) -> RunningServer:
    """Starts serving on `address` (port 0 picks a free one) and returns at once. Every call but
    the health service's needs a token of `security`; with its credentials, over TLS. Without
    `tend_drivers`, another server of the same service keeps the study drivers. With
    `metrics_address` (host, port; port 0 picks a free one), the service's metrics are served
    over HTTP there. `failure_limiter` limits failed authentications per address (default:
    `FailureLimiter()`, which leaves callers on this host alone)."""
    stopping = threading.Event()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="anneal-rpc"),
        interceptors=[TokenInterceptor(security.tokens, failure_limiter, refused=service.metrics.auth_refused)],
        options=[("grpc.max_receive_message_length", service.settings.max_request_bytes)],
        maximum_concurrent_rpcs=MAX_CONCURRENT_RPCS,
    )
    pb_grpc.add_AnnealServiceServicer_to_server(AnnealServicer(service, stopping), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if reflection_on:
        names = (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME)
        reflection.enable_server_reflection(names, server)
    if security.credentials is not None:
        port = server.add_secure_port(address, security.credentials)
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    metrics = _serve_metrics_or_stop(service, server, metrics_address) if metrics_address else None
    server.start()
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    if tend_drivers:
        keeper = threading.Thread(
            target=service.keeper.keep_drivers, args=(stopping,), name="anneal-driver-keeper", daemon=True
        )
        keeper.start()
    return RunningServer(server, port, health_servicer, stopping, metrics)


def _serve_metrics_or_stop(service: AnnealService, server: grpc.Server, address: tuple[str, int]) -> MetricsEndpoint:
    """The metrics endpoint, started before the gRPC server serves: a port in use fails the
    start-up, and the gRPC server's bound port is let go."""
    try:
        return serve_metrics(service.metrics.registry, *address)
    except OSError:
        server.stop(None)
        raise


def build_service(settings: Settings) -> AnnealService:
    from cluster.server.jobs import JobLauncher
    from cluster.store.store import Store

    connect_ray(settings)
    warm_up(settings)
    return AnnealService.build(settings, Store(settings.store_url), JobLauncher(settings))


def warm_up(settings: Settings) -> None:
    """Pays one-time costs at start-up rather than in the first study or deploy: Serve's
    controller and HTTP proxy (loopback only), MLflow's schema migrations, and the trainer
    packages' imports (a broken one is logged now, not at the first study)."""
    from ray import serve

    from cluster.tracking.tracker import MlflowTracker
    from trainers.registry import catalog

    serve.start(http_options={"host": "127.0.0.1", "port": settings.serve_http_port})
    MlflowTracker(settings.mlflow_tracking_uri, settings.mlflow_artifact_root).open_store()
    found = catalog()
    log.info("trainers: %s; unavailable: %s", ", ".join(sorted(found.trainers)), len(found.unavailable))


def wait_for_stop_signal(poll_s: float = 0.2) -> int:
    """Returns the first SIGTERM or SIGINT received. The handler only appends to a list: it runs
    between the main thread's bytecodes, where taking a lock the main thread may hold (an Event's)
    would deadlock. The main thread polls because a signal the kernel hands to one of gRPC's or
    Ray's threads does not wake a main thread that waits without a timeout."""
    received: list[int] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda number, _frame: received.append(number))
    while not received:
        time.sleep(poll_s)
    return received[0]


def serve_forever(settings: Settings) -> None:
    """`anneal serve`: runs until SIGTERM or SIGINT, then drains in-flight calls."""
    security = server_security(settings)  # refuses an exposed address before anything starts
    service = build_service(settings)
    metrics_address = (settings.metrics_host, settings.metrics_port)
    running = start_server(
        service, settings.grpc_address, security, reflection_on=settings.reflection, metrics_address=metrics_address
    )
    transport = "mutual TLS" if security.mutual_tls else "TLS" if security.credentials else "plaintext"
    log.info("anneal gRPC server listening on %s (%s, bearer tokens)", settings.grpc_address, transport)
    assert running.metrics is not None
    _log_metrics_endpoint(settings.metrics_host, running.metrics.port)
    wait_for_stop_signal()
    log.info("shutting down")
    running.stop()
    service.jobs.stop_standby()


def _log_metrics_endpoint(host: str, port: int) -> None:
    address = f"{host}:{port}"
    log.info("Prometheus metrics at http://%s/metrics", address)
    if not is_loopback(address):
        log.warning("the metrics endpoint %s answers anyone who reaches it: keep it on a private network", address)
