"""The Python client: typed calls to an anneal server over gRPC."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import grpc

from anneal import convert
from anneal.errors import AnnealError, error_from_status
from anneal.spec import StudySpec
from anneal.types import Deployment, Prediction, Study, StudyEvent
from anneal.v1 import anneal_pb2 as pb
from anneal.v1.anneal_pb2_grpc import AnnealServiceStub

T = TypeVar("T")


def _call(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except grpc.RpcError as error:
        raise error_from_status(error.code(), error.details() or "") from None


class Client:
    """`Client("127.0.0.1:50051")`; every method returns domain types and raises AnnealError subclasses."""

    def __init__(self, address: str = "127.0.0.1:50051", *, timeout_s: float = 60.0) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self._channel = grpc.insecure_channel(address)
        self._stub = AnnealServiceStub(self._channel)

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
            raise AnnealError(f"no anneal server answered at {self.address} within {timeout_s:.0f} s") from None

    # ------------------------------------------------------------ studies

    def create_study(self, spec: StudySpec) -> Study:
        request = pb.CreateStudyRequest(spec=convert.spec_to_pb(spec))
        return convert.study_from_pb(_call(lambda: self._stub.CreateStudy(request, timeout=self.timeout_s)))

    def get_study(self, study_id: str) -> Study:
        request = pb.GetStudyRequest(study_id=study_id)
        return convert.study_from_pb(_call(lambda: self._stub.GetStudy(request, timeout=self.timeout_s)))

    def list_studies(self) -> list[Study]:
        response = _call(lambda: self._stub.ListStudies(pb.ListStudiesRequest(), timeout=self.timeout_s))
        return [convert.study_from_pb(s) for s in response.studies]

    def watch_study(self, study_id: str, after_sequence: int = 0) -> Iterator[StudyEvent]:
        """Yields the study's events, from the first (or after `after_sequence`) until it ends."""
        request = pb.WatchStudyRequest(study_id=study_id, after_sequence=after_sequence)
        stream = self._stub.WatchStudy(request)
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
        return convert.study_from_pb(_call(lambda: self._stub.CancelStudy(request, timeout=self.timeout_s)))

    # ------------------------------------------------------------ serving

    def deploy(self, study_id: str, replicas: int = 0, max_batch_size: int = 0) -> Deployment:
        """Serves the study's best model; 0 keeps the study's deploy settings."""
        request = pb.DeployRequest(study_id=study_id, replicas=replicas, max_batch_size=max_batch_size)
        return convert.deployment_from_pb(_call(lambda: self._stub.Deploy(request, timeout=max(self.timeout_s, 300))))

    def get_deployment(self, name: str) -> Deployment:
        request = pb.GetDeploymentRequest(name=name)
        return convert.deployment_from_pb(_call(lambda: self._stub.GetDeployment(request, timeout=self.timeout_s)))

    def predict(self, deployment: str, rows: Sequence[Sequence[float]]) -> list[Prediction]:
        request = pb.PredictRequest(deployment=deployment, rows=[pb.Row(values=list(map(float, r))) for r in rows])
        response = _call(lambda: self._stub.Predict(request, timeout=self.timeout_s))
        return [convert.prediction_from_pb(p) for p in response.predictions]
