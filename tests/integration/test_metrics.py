"""The server's Prometheus endpoint, scraped over HTTP as Prometheus would, after real calls:
a study created and watched to its end, its model deployed, and Predict answered OK,
NOT_FOUND and INVALID_ARGUMENT."""

from __future__ import annotations

import time
import urllib.request

import pytest

from anneal import InvalidArgument, NotFound, StudyState
from anneal.types import DeploymentState, EventKind
from tests.integration.conftest import Stack, small_spec
from tests.integration.test_serving import _wait_for_deployment
from trainers.datasets import load_splits

pytestmark = pytest.mark.integration

NAME = "it-metrics"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(stack: Stack) -> Samples:
    """Every sample the endpoint answers, by name and labels."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{stack.metrics_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def active(samples: Samples) -> float:
    return value(samples, "anneal_studies", state="PENDING") + value(samples, "anneal_studies", state="RUNNING")


def wait_for_open_streams(stack: Stack, count: float, timeout_s: float = 10.0) -> None:
    """A stream the client left is released at the server's next poll (every 0.25 s)."""
    deadline = time.monotonic() + timeout_s
    while value(scrape(stack), "anneal_watch_streams_open") != count:
        assert time.monotonic() < deadline, f"anneal_watch_streams_open did not reach {count}"
        time.sleep(0.1)


def test_a_scrape_shows_studies_trials_streams_and_predict_calls(stack: Stack, serve_apps: list[str]) -> None:
    spec = small_spec(
        NAME,
        params={"epochs": 2, "batch_size": 64},
        budget={"max_trials": 1, "max_concurrent_trials": 1},
        deploy={"auto": True, "replicas": 1},
    )
    serve_apps.append(NAME)
    before = scrape(stack)
    streams_before = value(before, "anneal_watch_streams_open")
    with stack.client() as client:
        study = client.create_study(spec)
        assert active(scrape(stack)) >= active(before) + 1  # PENDING, or RUNNING already

        events = client.watch_study(study.study_id)
        kinds = [next(events).kind]
        assert value(scrape(stack), "anneal_watch_streams_open") == streams_before + 1
        kinds += [event.kind for event in events]  # to the study's end
        assert kinds[-1] is EventKind.STUDY_ENDED
        wait_for_open_streams(stack, streams_before)

        assert client.get_study(study.study_id).state is StudyState.SUCCEEDED
        assert _wait_for_deployment(client, NAME).state is DeploymentState.RUNNING
        d = spec.dataset
        data = load_splits(d.name, d.validation_fraction, d.test_fraction, d.split_seed)
        rows = data.x_test[:2].tolist()
        assert len(client.predict(NAME, rows)) == 2
        with pytest.raises(NotFound):
            client.predict("no-such-model", rows)
        with pytest.raises(InvalidArgument):
            client.predict(NAME, [])
    with stack.client("admin") as admin:
        assert len(admin.predict(f"alice/{NAME}", rows)) == 2  # the same deployment, named by its owner

    # The store is the session's: other tests' studies count too.
    after = scrape(stack)
    assert value(after, "anneal_studies", state="SUCCEEDED") >= value(before, "anneal_studies", state="SUCCEEDED") + 1
    assert value(after, "anneal_trials", state="COMPLETED") >= value(before, "anneal_trials", state="COMPLETED") + 1

    label = f"alice/{NAME}"
    assert value(after, "anneal_predict_requests_total", deployment=label, code="OK") == 2
    assert value(after, "anneal_predict_requests_total", deployment=label, code="INVALID_ARGUMENT") == 1
    assert value(after, "anneal_predict_requests_total", deployment="unknown", code="NOT_FOUND") >= 1
    assert value(after, "anneal_predict_latency_seconds_count", deployment=label, code="OK") == 2
    assert value(after, "anneal_predict_latency_seconds_bucket", deployment=label, code="OK", le="+Inf") == 2
    assert 0 < value(after, "anneal_predict_latency_seconds_sum", deployment=label, code="OK") < 60
    assert ("anneal_driver_restarts_total", frozenset()) in after
