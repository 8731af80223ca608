"""The gRPC front door. The servicer is thin: unpack, call the domain, map errors, pack."""

from __future__ import annotations

import functools
import logging
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from anneal import convert
from anneal.errors import AnnealError
from anneal.settings import Settings
from anneal.types import EventKind
from anneal.v1 import anneal_pb2 as pb
from anneal.v1 import anneal_pb2_grpc as pb_grpc
from cluster.auth import ServerSecurity, TokenInterceptor, principal_of, server_security
from cluster.service import AnnealService, check_spec_size

log = logging.getLogger("anneal.server")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["AnnealService"].full_name
MAX_WORKERS = 64
# Status messages go percent-encoded in a header (8 KiB soft limit): up to three bytes each.
MAX_MESSAGE_BYTES = 2048
# Calls past this many at once are answered RESOURCE_EXHAUSTED at once, not queued without end.
MAX_CONCURRENT_RPCS = 256
F = TypeVar("F", bound=Callable[..., Any])


def _abort(context: grpc.ServicerContext, error: Exception) -> None:
    """The one mapping from exceptions to status codes."""
    if isinstance(error, AnnealError):
        context.abort(error.code, _fitting(str(error)))
    incident = uuid.uuid4().hex[:12]
    log.error("internal error %s", incident, exc_info=error)
    context.abort(grpc.StatusCode.INTERNAL, f"internal error (incident {incident}); see the server log")


def _fitting(message: str) -> str:
    """The message cut to fit a status header: messages echo what the caller sent, and a
    header over gRPC's metadata limit would reach the caller as RESOURCE_EXHAUSTED instead."""
    encoded = message.encode()
    if len(encoded) <= MAX_MESSAGE_BYTES:
        return message
    return encoded[:MAX_MESSAGE_BYTES].decode(errors="ignore") + " …"


def mapped(method: F) -> F:
    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except Exception as error:
            _abort(context, error)

    return wrapper  # type: ignore[return-value]


class AnnealServicer(pb_grpc.AnnealServiceServicer):
    def __init__(self, service: AnnealService, stopping: threading.Event) -> None:
        self.service = service
        self.stopping = stopping

    @mapped
    def CreateStudy(self, request: pb.CreateStudyRequest, context: grpc.ServicerContext) -> pb.Study:
        check_spec_size(request.spec.ByteSize(), self.service.settings)
        spec = convert.spec_from_pb(request.spec)
        return convert.study_to_pb(self.service.create_study(spec, principal_of(context)))

    @mapped
    def GetStudy(self, request: pb.GetStudyRequest, context: grpc.ServicerContext) -> pb.Study:
        return convert.study_to_pb(self.service.get_study(request.study_id, principal_of(context)))

    @mapped
    def ListStudies(self, request: pb.ListStudiesRequest, context: grpc.ServicerContext) -> pb.ListStudiesResponse:
        studies = self.service.list_studies(principal_of(context))
        return pb.ListStudiesResponse(studies=[convert.study_to_pb(s) for s in studies])

    def WatchStudy(self, request: pb.WatchStudyRequest, context: grpc.ServicerContext) -> Iterator[pb.StudyEvent]:
        gone = threading.Event()
        context.add_callback(gone.set)  # the client went away

        def stopped() -> bool:
            return gone.is_set() or self.stopping.is_set()

        ended = False
        try:
            principal = principal_of(context)
            events = self.service.watch_study(request.study_id, principal, request.after_sequence, stopped=stopped)
            for event in events:
                ended = event.kind is EventKind.STUDY_ENDED
                yield convert.event_to_pb(event)
        except Exception as error:
            _abort(context, error)
        if not ended and self.stopping.is_set():  # in the grace period: the client hears why and can resume
            context.abort(grpc.StatusCode.UNAVAILABLE, "the server is shutting down; watch again")

    @mapped
    def CancelStudy(self, request: pb.CancelStudyRequest, context: grpc.ServicerContext) -> pb.Study:
        return convert.study_to_pb(self.service.cancel_study(request.study_id, principal_of(context)))

    @mapped
    def Deploy(self, request: pb.DeployRequest, context: grpc.ServicerContext) -> pb.Deployment:
        principal = principal_of(context)
        deployment = self.service.deploy(request.study_id, principal, request.replicas, request.max_batch_size)
        return convert.deployment_to_pb(deployment)

    @mapped
    def GetDeployment(self, request: pb.GetDeploymentRequest, context: grpc.ServicerContext) -> pb.Deployment:
        return convert.deployment_to_pb(self.service.get_deployment(request.name, principal_of(context)))

    @mapped
    def Predict(self, request: pb.PredictRequest, context: grpc.ServicerContext) -> pb.PredictResponse:
        rows = [list(row.values) for row in request.rows]
        predictions = self.service.predict(request.deployment, rows, principal_of(context))
        return pb.PredictResponse(predictions=[convert.prediction_to_pb(p) for p in predictions])


class RunningServer:
    """A started gRPC server and what is needed to stop it cleanly."""

    def __init__(
        self, server: grpc.Server, port: int, health_servicer: health.HealthServicer, stopping: threading.Event
    ):
        self.server = server
        self.port = port
        self.health = health_servicer
        self.stopping = stopping

    def stop(self, grace_s: float = 5.0) -> None:
        self.stopping.set()
        self.health.enter_graceful_shutdown()
        self.server.stop(grace_s).wait()


def start_server(
    service: AnnealService,
    address: str,
    security: ServerSecurity,
    *,
    reflection_on: bool = False,
    tend_drivers: bool = True,
) -> RunningServer:
    """Starts serving on `address` (port 0 picks a free one) and returns at once. Every call but
    the health service's needs a token of `security`; with its credentials, over TLS. Without
    `tend_drivers`, another server of the same service keeps the study drivers."""
    stopping = threading.Event()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="anneal-rpc"),
        interceptors=[TokenInterceptor(security.tokens)],
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
    server.start()
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    if tend_drivers:
        keeper = threading.Thread(
            target=service.keep_drivers, args=(stopping,), name="anneal-driver-keeper", daemon=True
        )
        keeper.start()
    return RunningServer(server, port, health_servicer, stopping)


def build_service(settings: Settings) -> AnnealService:
    from cluster.driver import connect_ray
    from cluster.jobs import JobLauncher
    from cluster.store import Store

    connect_ray(settings)
    warm_up(settings)
    return AnnealService(settings, Store(settings.store_url), JobLauncher(settings))


def warm_up(settings: Settings) -> None:
    """Pays one-time costs at start-up rather than in the first study or deploy: Serve's
    controller and HTTP proxy (loopback only), and MLflow's schema migrations."""
    from ray import serve

    from cluster.tracking import MlflowTracker

    serve.start(http_options={"host": "127.0.0.1", "port": settings.serve_http_port})
    MlflowTracker(settings.mlflow_tracking_uri, settings.mlflow_artifact_root).open_store()


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
    running = start_server(service, settings.grpc_address, security, reflection_on=settings.reflection)
    transport = "mutual TLS" if security.mutual_tls else "TLS" if security.credentials else "plaintext"
    log.info("anneal gRPC server listening on %s (%s, bearer tokens)", settings.grpc_address, transport)
    wait_for_stop_signal()
    log.info("shutting down")
    running.stop()
    service.jobs.stop_standby()
