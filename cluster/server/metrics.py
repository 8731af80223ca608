"""The server's Prometheus metrics, and the HTTP endpoint that serves them.

Counted as they happen: Predict calls (by deployment and status code, with their latency),
calls refused for want of a valid token (by reason), and the drivers the keeper started
again. Read at each scrape: studies and trials by state (the store owns them; drivers and
their writers change them, not this process) and the WatchStudy streams open. Each server
keeps a registry of its own rather than prometheus_client's global one, so several servers
in one process count apart.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TypeVar
from wsgiref.simple_server import WSGIServer

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from anneal.types import StudyState, TrialState
from cluster.server.access import DeploymentKey
from cluster.server.authlimit import REFUSALS
from cluster.store.store import Store

log = logging.getLogger("anneal.metrics")

# A Predict takes milliseconds (a Serve handle's round trip is a few); the last buckets
# reach the call's 30 s deadline.
PREDICT_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# The label of a call whose deployment does not exist. Every label value is a series of its
# own, so a name a caller made up must not become one; real labels are always owner/name.
UNKNOWN_DEPLOYMENT = "unknown"
STOP_TIMEOUT_S = 5.0
State = TypeVar("State", StudyState, TrialState)


class ServerMetrics:
    """One server's metrics, on its own registry."""

    def __init__(self, store: Store, open_watch_streams: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        labels = ("deployment", "code")
        self._predict_calls = Counter(
            "anneal_predict_requests",
            "Predict calls answered, by deployment (owner/name) and gRPC status code.",
            labels,
            registry=self.registry,
        )
        self._predict_latency = Histogram(
            "anneal_predict_latency_seconds",
            "Time the server took to answer Predict, by deployment (owner/name) and gRPC status code.",
            labels,
            buckets=PREDICT_BUCKETS_S,
            registry=self.registry,
        )
        self._driver_restarts = Counter(
            "anneal_driver_restarts",
            "Study drivers started again after a study's driver died; each resumes (or starts) its study.",
            registry=self.registry,
        )
        self._auth_failures = Counter(
            "anneal_auth_failures",
            "Calls refused UNAUTHENTICATED, by reason: missing_token, invalid_token, or rate_limited (the "
            "caller's address had used up its failed authentications; its token was not checked).",
            ["reason"],
            registry=self.registry,
        )
        for reason in REFUSALS:  # each series from zero, so a rate over it starts at the first refusal
            self._auth_failures.labels(reason)
        watch_streams = Gauge("anneal_watch_streams_open", "WatchStudy streams open now.", registry=self.registry)
        watch_streams.set_function(open_watch_streams)
        self.registry.register(StoreCollector(store))

    def observe_predict(self, deployment: str, code: grpc.StatusCode, seconds: float) -> None:
        self._predict_calls.labels(deployment, code.name).inc()
        self._predict_latency.labels(deployment, code.name).observe(seconds)

    @contextlib.contextmanager
    def predict_call(
        self, deployment: Callable[[], DeploymentKey | None], status_of: Callable[[Exception], grpc.StatusCode]
    ) -> Iterator[None]:
        """Counts and times the Predict call run inside, labelled once it has ended: by
        `deployment()` and by the code `status_of` gives its error (OK without one)."""
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            yield
        except Exception as error:
            code = status_of(error)
            raise
        finally:
            self.observe_predict(_label_of(deployment), code, time.perf_counter() - started)

    def auth_refused(self, reason: str) -> None:
        self._auth_failures.labels(reason).inc()

    def driver_restarted(self) -> None:
        self._driver_restarts.inc()


def _label_of(deployment: Callable[[], DeploymentKey | None]) -> str:
    """The deployment's label; a lookup that fails must not change what the call answers."""
    try:
        key = deployment()
    except Exception:
        log.warning("could not look up a Predict call's deployment for its metrics", exc_info=True)
        return UNKNOWN_DEPLOYMENT
    return UNKNOWN_DEPLOYMENT if key is None else "/".join(key)


class StoreCollector(Collector):
    """Studies and trials by state, read from the store at each scrape (two grouped queries)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def describe(self) -> Iterable[Metric]:
        # Names only: without this the registry would query the store when it is registered.
        return [_studies_family({}), _trials_family({})]

    def collect(self) -> Iterable[Metric]:
        try:
            studies, trials = self.store.studies_by_state(), self.store.trials_by_state()
        except Exception:  # the scrape still answers the metrics counted in memory
            log.warning("could not read studies and trials from the store for metrics", exc_info=True)
            return []
        return [_studies_family(studies), _trials_family(trials)]


def _studies_family(counts: Mapping[StudyState, int]) -> GaugeMetricFamily:
    return _by_state("anneal_studies", "Studies in the store, by state.", counts)


def _trials_family(counts: Mapping[TrialState, int]) -> GaugeMetricFamily:
    help_text = (
        "Trials in the store, by state: RUNNING ones have started and not ended, PAUSED ones wait at a rung; "
        "the rest ended so."
    )
    return _by_state("anneal_trials", help_text, counts)


def _by_state(name: str, help_text: str, counts: Mapping[State, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, help_text, labels=["state"])
    for state, count in counts.items():
        family.add_metric([state.value], count)
    return family


@dataclass(frozen=True)
class MetricsEndpoint:
    """The HTTP server that answers scrapes, on a thread of its own."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(STOP_TIMEOUT_S)


def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> MetricsEndpoint:
    """Serves `registry` over HTTP on `host:port` (0 picks a free port) until `stop`."""
    server, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsEndpoint(server, thread)
