"""The server's Prometheus metrics: Predict calls by deployment and status code, studies and
trials by state read from the store, open WatchStudy streams, driver restarts, and the
endpoint that serves them on loopback. No Ray: the Jobs API is faked and Predict's route
to a replica is a function."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from anneal.errors import InvalidArgument, NotFound
from anneal.settings import Settings
from anneal.spec import StudySpec
from anneal.types import EventKind, Prediction, StudyState, TrialState
from anneal.v1 import anneal_pb2 as pb
from cluster.server.authlimit import REFUSALS
from cluster.server.batching import PredictBatcher
from cluster.server.metrics import UNKNOWN_DEPLOYMENT, ServerMetrics, serve_metrics
from cluster.server.predict import Route
from cluster.server.service import AnnealService
from cluster.server.servicer import AnnealServicer, status_of
from cluster.store.store import Store
from tests.unit.fakes import FakeJobs
from tests.unit.helpers import principal
from tests.unit.test_access import put_deployment
from tests.unit.test_store import trial

ALICE = principal("alice")
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scraped(metrics: ServerMetrics) -> Samples:
    """Every sample of a scrape, by name and labels, as a scraper parses the text."""
    text = generate_latest(metrics.registry).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


@pytest.fixture
def service(tmp_path: Path, store: Store, jobs: FakeJobs) -> AnnealService:
    return AnnealService.build(Settings.load(home=tmp_path), store, jobs)


class Context:
    """The part of a gRPC context the servicer uses: the principal the interceptor set, abort."""

    def __init__(self) -> None:
        self.principal = ALICE
        self.code: grpc.StatusCode | None = None

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.code = code
        raise RuntimeError(details)


def call_predict(service: AnnealService, deployment: str, *rows: list[float]) -> grpc.StatusCode:
    context = Context()
    request = pb.PredictRequest(deployment=deployment, rows=[pb.Row(values=row) for row in rows])
    servicer = AnnealServicer(service, stopping=cast(Any, None))
    try:
        servicer.Predict(request, cast(grpc.ServicerContext, context))
    except RuntimeError:
        assert context.code is not None
        return context.code
    return grpc.StatusCode.OK


def test_predict_calls_are_counted_by_stored_deployment_and_status_code(
    service: AnnealService, store: Store, example_spec: StudySpec
) -> None:
    study_id = store.create_study(example_spec, owner="alice").study_id
    put_deployment(store, "alice", study_id)
    answer = Prediction(label=1, probabilities=[0.0, 1.0])
    route = Route(PredictBatcher(lambda rows: [answer for _ in rows], max_rows=8), input_shape=None)
    assert call_predict(service, "digits-mlp") is grpc.StatusCode.INVALID_ARGUMENT  # no rows; no route yet
    service.predictions._routes[("alice", "digits-mlp")] = route  # a replica that answers every row
    assert call_predict(service, "digits-mlp", [0.0, 1.0]) is grpc.StatusCode.OK
    assert call_predict(service, "alice/digits-mlp", [0.0, 1.0]) is grpc.StatusCode.OK
    assert call_predict(service, "no-such-model", [0.0]) is grpc.StatusCode.NOT_FOUND

    samples = scraped(service.metrics)
    assert sample(samples, "anneal_predict_requests_total", deployment="alice/digits-mlp", code="OK") == 2
    assert sample(samples, "anneal_predict_requests_total", deployment="alice/digits-mlp", code="INVALID_ARGUMENT") == 1
    assert sample(samples, "anneal_predict_requests_total", deployment=UNKNOWN_DEPLOYMENT, code="NOT_FOUND") == 1
    assert not any(("no-such-model" in value) for _, labels in samples for _, value in labels)
    ok = {"deployment": "alice/digits-mlp", "code": "OK"}
    assert sample(samples, "anneal_predict_latency_seconds_count", **ok) == 2
    assert sample(samples, "anneal_predict_latency_seconds_bucket", le="+Inf", **ok) == 2


def test_a_deployment_lookup_that_fails_labels_the_call_unknown_and_keeps_its_error(service: AnnealService) -> None:
    def lookup() -> tuple[str, str]:
        raise OSError("the store is gone")

    with pytest.raises(InvalidArgument):
        with service.metrics.predict_call(lookup, status_of):
            raise InvalidArgument("rows: send at least one row")
    samples = scraped(service.metrics)
    assert sample(samples, "anneal_predict_requests_total", deployment=UNKNOWN_DEPLOYMENT, code="INVALID_ARGUMENT") == 1


def test_an_unexpected_error_is_counted_internal(service: AnnealService) -> None:
    with pytest.raises(KeyError):
        with service.metrics.predict_call(lambda: ("alice", "m"), status_of):
            raise KeyError("boom")
    assert status_of(NotFound("no deployment")) is grpc.StatusCode.NOT_FOUND
    samples = scraped(service.metrics)
    assert sample(samples, "anneal_predict_requests_total", deployment="alice/m", code="INTERNAL") == 1


def test_studies_and_trials_by_state_are_read_from_the_store_at_each_scrape(
    service: AnnealService, store: Store, example_spec: StudySpec
) -> None:
    samples = scraped(service.metrics)
    for state in StudyState:
        assert sample(samples, "anneal_studies", state=state.value) == 0
    for trial_state in TrialState:
        assert sample(samples, "anneal_trials", state=trial_state.value) == 0
    study_id = store.create_study(example_spec).study_id
    store.transition(study_id, [StudyState.PENDING], StudyState.RUNNING)
    store.record_trial(study_id, trial("t0", TrialState.COMPLETED), EventKind.TRIAL_ENDED)
    store.record_trial(study_id, trial("t1"), EventKind.TRIAL_STARTED)
    samples = scraped(service.metrics)
    assert sample(samples, "anneal_studies", state="RUNNING") == 1
    assert sample(samples, "anneal_trials", state="COMPLETED") == 1
    assert sample(samples, "anneal_trials", state="RUNNING") == 1


def test_a_store_that_fails_leaves_the_other_metrics_in_the_scrape(
    service: AnnealService, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable() -> None:
        raise OSError("the database is gone")

    service.metrics.driver_restarted()
    monkeypatch.setattr(store, "studies_by_state", unreachable)
    samples = scraped(service.metrics)
    assert sample(samples, "anneal_driver_restarts_total") == 1
    assert not any(name == "anneal_studies" for name, _ in samples)


def test_open_watch_streams_are_counted_while_they_are_open(
    service: AnnealService, store: Store, example_spec: StudySpec
) -> None:
    study_id = service.studies.create_study(example_spec, ALICE).study_id
    store.transition(study_id, [StudyState.PENDING], StudyState.RUNNING)
    watch = service.studies.watch_study(study_id, ALICE, poll_s=0.01)
    assert next(watch).kind is EventKind.STUDY_STARTED  # the stream holds its slot now
    assert sample(scraped(service.metrics), "anneal_watch_streams_open") == 1
    watch.close()
    assert sample(scraped(service.metrics), "anneal_watch_streams_open") == 0


def test_each_driver_the_keeper_starts_again_is_counted(
    service: AnnealService, store: Store, jobs: FakeJobs, example_spec: StudySpec
) -> None:
    study_id = store.create_study(example_spec).study_id
    store.update_study(study_id, ray_job_id="anneal-driver")
    store.transition(study_id, [StudyState.PENDING], StudyState.RUNNING)
    jobs.gone.add("anneal-driver")
    service.keeper.tend_drivers()
    assert len(jobs.restarts) == 1
    assert sample(scraped(service.metrics), "anneal_driver_restarts_total") == 1


def test_two_servers_in_one_process_count_apart(tmp_path: Path, store: Store, jobs: FakeJobs) -> None:
    first, second = (AnnealService.build(Settings.load(home=tmp_path), store, jobs) for _ in range(2))
    first.metrics.driver_restarted()
    assert sample(scraped(first.metrics), "anneal_driver_restarts_total") == 1
    assert sample(scraped(second.metrics), "anneal_driver_restarts_total") == 0


def test_the_endpoint_answers_a_scrape_on_loopback_until_it_stops(service: AnnealService) -> None:
    running = serve_metrics(service.metrics.registry, "127.0.0.1", 0)
    assert running.server.server_address[0] == "127.0.0.1"
    with urllib.request.urlopen(f"http://127.0.0.1:{running.port}/metrics", timeout=10) as response:
        names = {family.name for family in text_string_to_metric_families(response.read().decode())}
    assert {"anneal_predict_requests", "anneal_studies", "anneal_trials", "anneal_watch_streams_open"} <= names
    running.stop()
    assert not running.thread.is_alive()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", running.port), timeout=5)


def test_refused_authentications_are_counted_by_reason(service: AnnealService) -> None:
    assert all(sample(scraped(service.metrics), "anneal_auth_failures_total", reason=r) == 0 for r in REFUSALS)
    for reason in ("invalid_token", "invalid_token", "rate_limited"):
        service.metrics.auth_refused(reason)
    samples = scraped(service.metrics)
    assert sample(samples, "anneal_auth_failures_total", reason="invalid_token") == 2
    assert sample(samples, "anneal_auth_failures_total", reason="rate_limited") == 1
    assert sample(samples, "anneal_auth_failures_total", reason="missing_token") == 0
