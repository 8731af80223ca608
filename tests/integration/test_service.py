"""The gRPC surface: status codes, health, reflection, cancel."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest
import ray
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from ray.job_submission import JobStatus, JobSubmissionClient

from anneal import InvalidSpec, NotFound, StudyState, convert
from anneal.errors import ResourceExhausted
from anneal.types import Task
from anneal.v1 import anneal_pb2 as pb
from anneal.v1.anneal_pb2_grpc import AnnealServiceStub
from cluster.server.jobs import STANDBY_METADATA
from tests.integration.conftest import Stack, small_spec
from tests.plugins import installed, write_broken_package

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda m: m.ClearField("search_space"), "search_space"),
        (lambda m: setattr(m.search_space[0].float, "low", 0.0), "search_space.lr.float.low"),
        (lambda m: setattr(m, "trainer", "no_such_trainer"), "trainer"),
        (lambda m: setattr(m.dataset, "name", "mnist"), "dataset.name"),
        (lambda m: setattr(m.search, "sampler", 42), "search.sampler"),
        (lambda m: setattr(m.budget, "max_trials", -1), "budget.max_trials"),
        (lambda m: setattr(m.objective, "metric", "f1"), "objective.metric"),
    ],
)
def test_invalid_spec_is_invalid_argument_naming_the_field(stack: Stack, mutate: object, field: str) -> None:
    message = convert.spec_to_pb(small_spec("it-bad"))
    mutate(message)  # type: ignore[operator]
    with stack.channel() as channel:
        with pytest.raises(grpc.RpcError) as caught:
            request = pb.CreateStudyRequest(spec=message)
            AnnealServiceStub(channel).CreateStudy(request, timeout=30, metadata=stack.metadata())
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert f"{field}:" in (caught.value.details() or "")


def test_client_raises_invalid_spec_and_nothing_is_recorded(stack: Stack) -> None:
    with stack.client() as client:
        before = len(client.list_studies())
        with pytest.raises(InvalidSpec) as caught:
            client.create_study(small_spec("it-bad", trainer="nope"))
        assert caught.value.errors[0].path == "trainer"
        assert len(client.list_studies()) == before


def test_list_trainers_describes_each_trainer_and_a_broken_package(stack: Stack, tmp_path: Path) -> None:
    write_broken_package(tmp_path)
    with installed(tmp_path), stack.client("fuzz") as client:
        trainers = {t.name: t for t in client.list_trainers()}
        # A spec built from the listing alone passes every check; fuzz's quota of 0 studies then refuses it.
        regressor = trainers["mlp_regressor"]
        tuned = next(p.name for p in regressor.parameters if "Learning rate" in p.description)
        spec = small_spec(
            "from-the-listing",
            trainer=regressor.name,
            dataset={"name": regressor.datasets[0]},
            objective={"metric": next(m for m in regressor.metrics if m.endswith("rmse")), "mode": "min"},
            search_space={tuned: {"float": {"low": 1e-3, "high": 1e-1, "log": True}}},
        )
        with pytest.raises(ResourceExhausted, match="quota is 0"):
            client.create_study(spec)
        with pytest.raises(InvalidSpec, match="unavailable on the server: ImportError"):
            client.create_study(small_spec("broken", trainer="broken"))
    assert {"mlp_classifier", "mlp_regressor", "quadratic"} <= trainers.keys()
    assert regressor.task is Task.REGRESSION and regressor.available and regressor.source == "built-in"
    assert "val_rmse" in regressor.metrics and regressor.epochs_parameter == "epochs"
    assert {p.name: p.default for p in regressor.parameters}["epochs"] == 50
    broken = trainers["broken"]
    assert not broken.available and "no_such_dependency" in broken.error
    assert broken.source.startswith("anneal_broken_trainer 0.1, entry point broken")


def test_unknown_study_is_not_found(stack: Stack) -> None:
    with stack.client() as client:
        for call in (client.get_study, client.cancel_study, client.deploy):
            with pytest.raises(NotFound):
                call("st-missing")
        with pytest.raises(NotFound):
            list(client.watch_study("st-missing"))


def test_health_serves_and_reflection_lists_the_service(stack: Stack) -> None:
    with stack.channel() as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        responses = stub.ServerReflectionInfo(iter([request]), metadata=stack.metadata())
        names = {s.name for r in responses for s in r.list_services_response.service}
    assert "anneal.v1.AnnealService" in names and "grpc.health.v1.Health" in names


CANCEL_WITHIN_S = 10.0


def test_cancel_stops_a_running_study_and_frees_its_resources(stack: Stack) -> None:
    spec = small_spec(
        "it-cancel",
        params={"epochs": 200, "batch_size": 8},
        budget={"max_trials": 50, "max_concurrent_trials": 2},
    )
    jobs = JobSubmissionClient(stack.settings.ray_dashboard_url)
    with stack.client() as client:
        study = client.create_study(spec)
        deadline = time.monotonic() + 120
        while not any(t.epochs >= 1 for t in client.get_study(study.study_id).trials):
            assert time.monotonic() < deadline, "no trial reported within 120 s"
            time.sleep(0.5)

        total = ray.cluster_resources().get("CPU", 0)
        cancelled = client.cancel_study(study.study_id)
        assert cancelled.state is StudyState.CANCELLED
        assert client.cancel_study(study.study_id).state is StudyState.CANCELLED  # twice is harmless

        # Every trial's CPUs are free, and the study's Ray job has ended, within 10 s of the cancel.
        deadline = time.monotonic() + CANCEL_WITHIN_S
        while ray.available_resources().get("CPU", 0) < total - 1.0:  # Serve replicas may hold some
            assert time.monotonic() < deadline, f"CPUs still held: {ray.available_resources()}"
            time.sleep(0.2)
        while jobs.get_job_status(study.ray_job_id) not in (JobStatus.STOPPED, JobStatus.FAILED):
            assert time.monotonic() < deadline, "the Ray job did not stop"
            time.sleep(0.2)
        time.sleep(2)
        final = client.get_study(study.study_id)
        assert final.state is StudyState.CANCELLED
        assert all(t.state.is_terminal for t in final.trials)
        assert len(final.trials) < 50


def running_standby(stack: Stack, timeout_s: float = 120.0, other_than: str = "") -> str:
    """The standby driver the server keeps up, once it is running."""
    jobs = JobSubmissionClient(stack.settings.ray_dashboard_url)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for job in jobs.list_jobs():
            if (job.metadata or {}).get(STANDBY_METADATA) and job.status is JobStatus.RUNNING and job.submission_id:
                if job.submission_id == other_than:
                    continue
                return job.submission_id
        time.sleep(0.5)
    raise AssertionError(f"no standby study driver running after {timeout_s:.0f} s")


def test_a_study_starts_on_the_standby_driver_and_a_new_one_follows(stack: Stack) -> None:
    standby = running_standby(stack)
    with stack.client() as client:
        created = client.create_study(small_spec("it-standby"))
        assert created.ray_job_id == standby  # handed over, not a Ray job of its own
        study = client.wait_for_study(created.study_id, timeout_s=120, poll_s=0.5)
    assert study.state is StudyState.SUCCEEDED, study.error
    assert len(study.trials) == 4
    running_standby(stack, other_than=standby)  # the keeper starts the next one
