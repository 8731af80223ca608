"""The gRPC servicer, thin: unpack, call the domain, map errors, pack; the one mapping from
exceptions to status codes; and which calls the audit log records, naming what."""

from __future__ import annotations

import functools
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc

from anneal import convert
from anneal.errors import AnnealError
from anneal.types import EventKind
from anneal.v1 import anneal_pb2 as pb
from anneal.v1 import anneal_pb2_grpc as pb_grpc
from cluster.server.interceptor import principal_of
from cluster.server.limits import check_spec_size
from cluster.server.service import AnnealService
from trainers.registry import describe

log = logging.getLogger("anneal.server")

# Status messages go percent-encoded in a header (8 KiB soft limit): up to three bytes each.
MAX_MESSAGE_BYTES = 2048
F = TypeVar("F", bound=Callable[..., Any])


def status_of(error: Exception) -> grpc.StatusCode:
    """The one mapping from exceptions to status codes: an AnnealError answers its class's code;
    anything else (a bare AnnealError included, which has none) is an internal error."""
    if isinstance(error, AnnealError) and error.code is not grpc.StatusCode.UNKNOWN:
        return error.code
    return grpc.StatusCode.INTERNAL


def _abort(context: grpc.ServicerContext, error: Exception) -> None:
    """Answers `error` with its code (`status_of`) and message; an error without a code of its
    own with an incident id instead, its details left in the log."""
    code = status_of(error)
    if isinstance(error, AnnealError) and code is error.code:
        context.abort(code, _fitting(str(error)))
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


Target = Callable[[Any, Any], dict[str, str]]


def audited(target: Target) -> Callable[[F], F]:
    """Records the call in the audit log once it has ended: what `target(request, response)`
    names (the response is None when the call failed) and the code the call answers. Inside
    `mapped`, so it sees the error itself rather than gRPC's abort."""

    def decorate(method: F) -> F:
        @functools.wraps(method)
        def wrapper(self: AnnealServicer, request: Any, context: grpc.ServicerContext) -> Any:
            response, code = None, grpc.StatusCode.OK
            try:
                response = method(self, request, context)
                return response
            except Exception as error:
                code = status_of(error)
                raise
            finally:
                _audit(self.service, method.__name__, code, context, lambda: target(request, response))

        return wrapper  # type: ignore[return-value]

    return decorate


def _audit(
    service: AnnealService,
    rpc: str,
    code: grpc.StatusCode,
    context: grpc.ServicerContext,
    target: Callable[[], dict[str, str]],
) -> None:
    """The call's audit line; a failure to write it is logged and never changes the call's answer."""
    try:
        principal = getattr(context, "principal", None)
        name = principal.name if principal else ""
        service.audit.record(principal=name, rpc=rpc, code=code, peer=context.peer(), **target())
    except Exception:
        log.exception("could not write the audit line of a %s call", rpc)


def _study_created(request: pb.CreateStudyRequest, study: pb.Study | None) -> dict[str, str]:
    return {"study_name": request.spec.name, "study_id": study.study_id if study else ""}


def _study_named(request: pb.CancelStudyRequest, _: pb.Study | None) -> dict[str, str]:
    return {"study_id": request.study_id}


def _deployed(request: pb.DeployRequest, deployment: pb.Deployment | None) -> dict[str, str]:
    return {
        **_deployment_named(request, deployment),
        "study_id": deployment.study_id if deployment else request.study_id,
        "trial_id": request.trial_id,
        "model": request.model,
        "version": str(request.version) if request.version else "",
    }


def _deployment_named(request: Any, deployment: pb.Deployment | None) -> dict[str, str]:
    """The deployment as `owner/name` once the call found it, else as the caller named it."""
    return {"deployment": f"{deployment.owner}/{deployment.name}" if deployment else request.name}


class AnnealServicer(pb_grpc.AnnealServiceServicer):
    def __init__(self, service: AnnealService, stopping: threading.Event) -> None:
        self.service = service
        self.stopping = stopping

    @mapped
    @audited(_study_created)
    def CreateStudy(self, request: pb.CreateStudyRequest, context: grpc.ServicerContext) -> pb.Study:
        check_spec_size(request.spec.ByteSize(), self.service.settings)
        spec = convert.spec_from_pb(request.spec)
        return convert.study_to_pb(self.service.studies.create_study(spec, principal_of(context)))

    @mapped
    def GetStudy(self, request: pb.GetStudyRequest, context: grpc.ServicerContext) -> pb.Study:
        return convert.study_to_pb(self.service.studies.get_study(request.study_id, principal_of(context)))

    @mapped
    def ListStudies(self, request: pb.ListStudiesRequest, context: grpc.ServicerContext) -> pb.ListStudiesResponse:
        studies = self.service.studies.list_studies(principal_of(context))
        return pb.ListStudiesResponse(studies=[convert.study_to_pb(s) for s in studies])

    def WatchStudy(self, request: pb.WatchStudyRequest, context: grpc.ServicerContext) -> Iterator[pb.StudyEvent]:
        gone = threading.Event()
        context.add_callback(gone.set)  # the client went away

        def stopped() -> bool:
            return gone.is_set() or self.stopping.is_set()

        ended = False
        try:
            principal = principal_of(context)
            studies = self.service.studies
            events = studies.watch_study(request.study_id, principal, request.after_sequence, stopped=stopped)
            for event in events:
                ended = event.kind is EventKind.STUDY_ENDED
                yield convert.event_to_pb(event)
        except Exception as error:
            _abort(context, error)
        if not ended and self.stopping.is_set():  # in the grace period: the client hears why and can resume
            context.abort(grpc.StatusCode.UNAVAILABLE, "the server is shutting down; watch again")

    @mapped
    @audited(_study_named)
    def CancelStudy(self, request: pb.CancelStudyRequest, context: grpc.ServicerContext) -> pb.Study:
        return convert.study_to_pb(self.service.studies.cancel_study(request.study_id, principal_of(context)))

    @mapped
    @audited(_deployed)
    def Deploy(self, request: pb.DeployRequest, context: grpc.ServicerContext) -> pb.Deployment:
        deployment = self.service.deployments.deploy(
            principal_of(context),
            study_id=request.study_id,
            name=request.name,
            model=request.model,
            version=request.version,
            overrides=convert.deploy_overrides_from_pb(request),
            trial_id=request.trial_id,
        )
        return convert.deployment_to_pb(deployment)

    @mapped
    def GetDeployment(self, request: pb.GetDeploymentRequest, context: grpc.ServicerContext) -> pb.Deployment:
        return convert.deployment_to_pb(self.service.deployments.get_deployment(request.name, principal_of(context)))

    @mapped
    @audited(_deployment_named)
    def Rollback(self, request: pb.RollbackRequest, context: grpc.ServicerContext) -> pb.Deployment:
        return convert.deployment_to_pb(self.service.deployments.rollback(request.name, principal_of(context)))

    @mapped
    @audited(_deployment_named)
    def DeleteDeployment(self, request: pb.DeleteDeploymentRequest, context: grpc.ServicerContext) -> pb.Deployment:
        return convert.deployment_to_pb(self.service.deployments.delete(request.name, principal_of(context)))

    @mapped
    def ListDeployments(
        self, request: pb.ListDeploymentsRequest, context: grpc.ServicerContext
    ) -> pb.ListDeploymentsResponse:
        listed = self.service.deployments.list_deployments(principal_of(context))
        return pb.ListDeploymentsResponse(deployments=[convert.deployment_to_pb(d) for d in listed])

    @mapped
    def Predict(self, request: pb.PredictRequest, context: grpc.ServicerContext) -> pb.PredictResponse:
        router, principal = self.service.predictions, principal_of(context)
        deployment = functools.partial(router.known_deployment, request.deployment, principal)
        with self.service.metrics.predict_call(deployment, status_of):
            rows = [list(row.values) for row in request.rows]
            tensors = [convert.tensor_from_pb(t) for t in request.tensors]
            predictions = router.predict(request.deployment, rows, principal, tensors)
            return pb.PredictResponse(predictions=[convert.prediction_to_pb(p) for p in predictions])

    @mapped
    def ListTrainers(self, request: pb.ListTrainersRequest, context: grpc.ServicerContext) -> pb.ListTrainersResponse:
        return pb.ListTrainersResponse(trainers=[convert.trainer_to_pb(t) for t in describe()])
