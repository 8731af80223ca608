"""The Python client: typed calls to an anneal server over gRPC."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import grpc

from anneal import convert
from anneal.errors import ConfigurationError, InvalidArgument, InvalidSpec, Unavailable, error_from_status
from anneal.settings import DEV_TOKEN_FILE, Settings, is_loopback
from anneal.spec import StudySpec
from anneal.tls import read_pem
from anneal.types import Deployment, Prediction, Study, StudyEvent, TrainerDescription
from anneal.v1 import anneal_pb2 as pb
from anneal.v1.anneal_pb2_grpc import AnnealServiceStub

T = TypeVar("T")


def _call(fn: Callable[[], T], invalid: type[InvalidArgument] = InvalidArgument) -> T:
    try:
        return fn()
    except grpc.RpcError as error:
        raise error_from_status(error.code(), error.details() or "", invalid) from None


class Client:
    """`Client("127.0.0.1:50051", token=...)`; every method returns domain types and raises
    AnnealError subclasses. With `ca_file` the channel is TLS (verifying the server with that
    CA); `cert_file` and `key_file` add this client's certificate, for mutual TLS. A token goes
    in plaintext only to a loopback address, unless `insecure` says otherwise."""

    def __init__(
        self,
        address: str = "127.0.0.1:50051",
        *,
        token: str = "",
        ca_file: str = "",
        cert_file: str = "",
        key_file: str = "",
        timeout_s: float = 60.0,
        insecure: bool = False,
    ) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        tls = bool(ca_file or cert_file)
        if token and not tls and not insecure and not is_loopback(address):
            raise ConfigurationError(
                f"refusing to send a token in plaintext to {address}, which is not loopback: "
                "give the server's CA (ca_file, ANNEAL_TLS_CA_FILE), or pass insecure"
            )
        if tls:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=read_pem(ca_file, "server CA") if ca_file else None,
                private_key=read_pem(key_file, "TLS key") if key_file else None,
                certificate_chain=read_pem(cert_file, "TLS certificate") if cert_file else None,
            )
            self._channel = grpc.secure_channel(address, credentials)
        else:
            self._channel = grpc.insecure_channel(address)
        self._stub = AnnealServiceStub(self._channel)

    @classmethod
    def from_settings(cls, settings: Settings, **changes: Any) -> Client:
        """A client as settings say: address, TLS files, and the token (`token`, else the
        development token a server on this machine keeps under home)."""
        token = settings.token
        dev_token = settings.home / DEV_TOKEN_FILE
        if not token and dev_token.exists() and is_loopback(settings.grpc_address):
            token = dev_token.read_text().strip()
        return cls(
            settings.grpc_address,
            token=token,
            ca_file=settings.tls_ca_file,
            cert_file=settings.tls_cert_file,
            key_file=settings.tls_key_file,
            insecure=settings.insecure,
            **changes,
        )

    def _unary(
        self,
        method: Callable[..., T],
        request: object,
        timeout_s: float | None = None,
        invalid: type[InvalidArgument] = InvalidArgument,
    ) -> T:
        """One call; INVALID_ARGUMENT raises `invalid` (InvalidSpec for a call that sends a spec)."""
        return _call(lambda: method(request, timeout=timeout_s or self.timeout_s, metadata=self._metadata), invalid)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def wait_until_ready(self, timeout_s: float = 30.0) -> None:
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout_s)
        except grpc.FutureTimeoutError:
            raise Unavailable(f"no anneal server answered at {self.address} within {timeout_s:.0f} s") from None

    # ------------------------------------------------------------ studies

    def create_study(self, spec: StudySpec) -> Study:
        request = pb.CreateStudyRequest(spec=convert.spec_to_pb(spec))
        return convert.study_from_pb(self._unary(self._stub.CreateStudy, request, invalid=InvalidSpec))

    def get_study(self, study_id: str) -> Study:
        request = pb.GetStudyRequest(study_id=study_id)
        return convert.study_from_pb(self._unary(self._stub.GetStudy, request))

    def list_studies(self) -> list[Study]:
        response = self._unary(self._stub.ListStudies, pb.ListStudiesRequest())
        return [convert.study_from_pb(s) for s in response.studies]

    def watch_study(self, study_id: str, after_sequence: int = 0) -> Iterator[StudyEvent]:
        """Yields the study's events, from the first (or after `after_sequence`) until it ends."""
        request = pb.WatchStudyRequest(study_id=study_id, after_sequence=after_sequence)
        stream = self._stub.WatchStudy(request, metadata=self._metadata)
        try:
            for message in stream:
                yield convert.event_from_pb(message)
        except grpc.RpcError as error:
            raise error_from_status(error.code(), error.details() or "") from None
        finally:
            stream.cancel()

    def wait_for_study(self, study_id: str, timeout_s: float = 3600.0, poll_s: float = 0.5) -> Study:
        """Blocks until the study ends and returns it."""
        deadline = time.monotonic() + timeout_s
        while True:
            study = self.get_study(study_id)
            if study.state.is_terminal:
                return study
            if time.monotonic() > deadline:
                raise TimeoutError(f"study {study_id} still {study.state.value} after {timeout_s:.0f} s")
            time.sleep(poll_s)

    def cancel_study(self, study_id: str) -> Study:
        request = pb.CancelStudyRequest(study_id=study_id)
        return convert.study_from_pb(self._unary(self._stub.CancelStudy, request))

    # ------------------------------------------------------------ trainers

    def list_trainers(self) -> list[TrainerDescription]:
        """Every trainer the server can run, with what a spec may set; packages that failed to
        load on the server come last, with `available` false and their error."""
        response = self._unary(self._stub.ListTrainers, pb.ListTrainersRequest())
        return [convert.trainer_from_pb(t) for t in response.trainers]

    # ------------------------------------------------------------ serving

    def deploy(
        self,
        study_id: str = "",
        replicas: int = 0,
        max_batch_size: int = 0,
        *,
        name: str = "",
        model: str = "",
        version: int = 0,
        trial_id: str = "",
        **autoscaling: Any,
    ) -> Deployment:
        """Serves a study's best model (or its trial `trial_id`'s), or version `version` of the
        registered `model`, as the deployment `name` (the study's name by default). A
        deployment already serving there rolls over to it and keeps what it served as
        `previous`. 0 keeps the study's deploy settings; `autoscaling` takes min_replicas,
        max_replicas, target_ongoing_requests, upscale_delay_s and downscale_delay_s."""
        request = pb.DeployRequest(
            study_id=study_id,
            replicas=replicas,
            max_batch_size=max_batch_size,
            name=name,
            model=model,
            version=version,
            trial_id=trial_id,
            **autoscaling,
        )
        return convert.deployment_from_pb(self._unary(self._stub.Deploy, request, timeout_s=max(self.timeout_s, 300)))

    def rollback(self, name: str) -> Deployment:
        """Serves the deployment's previous version again."""
        request = pb.RollbackRequest(name=name)
        return convert.deployment_from_pb(self._unary(self._stub.Rollback, request, timeout_s=max(self.timeout_s, 300)))

    def delete_deployment(self, name: str) -> Deployment:
        """Undeploys: the Serve application goes, its replicas' CPUs are freed."""
        request = pb.DeleteDeploymentRequest(name=name)
        return convert.deployment_from_pb(
            self._unary(self._stub.DeleteDeployment, request, timeout_s=max(self.timeout_s, 120))
        )

    def get_deployment(self, name: str) -> Deployment:
        request = pb.GetDeploymentRequest(name=name)
        return convert.deployment_from_pb(self._unary(self._stub.GetDeployment, request))

    def list_deployments(self) -> list[Deployment]:
        response = self._unary(self._stub.ListDeployments, pb.ListDeploymentsRequest())
        return [convert.deployment_from_pb(d) for d in response.deployments]

    def predict(self, deployment: str, rows: Sequence[Sequence[float]]) -> list[Prediction]:
        request = pb.PredictRequest(deployment=deployment, rows=[pb.Row(values=list(map(float, r))) for r in rows])
        response = self._unary(self._stub.Predict, request)
        return [convert.prediction_from_pb(p) for p in response.predictions]

    def predict_tensors(self, deployment: str, tensors: Sequence[Any]) -> list[Prediction]:
        """Predictions for examples given as tensors of the model's input shape: nested lists
        of numbers, or arrays (anything with `tolist()`)."""
        request = pb.PredictRequest(deployment=deployment, tensors=[convert.tensor_to_pb(t) for t in tensors])
        response = self._unary(self._stub.Predict, request)
        return [convert.prediction_from_pb(p) for p in response.predictions]
