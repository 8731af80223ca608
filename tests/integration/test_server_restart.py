"""The gRPC server holds no state of its own. Killed mid-study, the study goes on as its Ray
job; a new server serves it to the end. Stopped with SIGTERM, it turns NOT_SERVING at once,
ends its in-flight calls within the grace period, and refuses new ones with UNAVAILABLE."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from anneal import StudySpec, StudyState
from anneal.errors import Unavailable
from anneal.types import EventKind
from cluster.environment import child_env
from cluster.local.cluster import free_port
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration

START_S = 120.0
GRACE_S = 5.0  # cluster.server.main.RunningServer.stop's default


def slow_spec(name: str, trials: int, epochs: int) -> StudySpec:
    return StudySpec.parse(
        {
            "name": name,
            "trainer": "quadratic",
            "dataset": {"name": "iris"},
            "params": {"epochs": epochs, "seconds_per_epoch": 0.5},
            "search_space": {"x": {"float": {"low": -1.0, "high": 1.0}}},
            "objective": {"metric": "loss", "mode": "min"},
            "budget": {"max_trials": trials, "max_concurrent_trials": 2},
        }
    )


@contextmanager
def server_process(stack: Stack) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`anneal serve` in a process of its own, on the test cluster's store, MLflow and Ray."""
    address = f"127.0.0.1:{free_port()}"
    settings = stack.settings.model_copy(update={"grpc_address": address, "standby_drivers": 0})
    process = subprocess.Popen(
        [sys.executable, "-m", "cluster.local.cli", "serve"],
        env=child_env(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with grpc.insecure_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + START_S
            while True:
                assert process.poll() is None, "the server exited during start-up"
                try:
                    reply = health.Check(health_pb2.HealthCheckRequest(), timeout=2)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.RpcError:
                    pass
                assert time.monotonic() < deadline, "the server did not come up"
                time.sleep(0.5)
        yield process, address
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def test_a_study_outlives_a_killed_server_and_a_new_server_serves_it(stack: Stack) -> None:
    # Long enough (trials of 8 s) to be running still when the new server is up.
    spec = slow_spec("it-server-killed", trials=4, epochs=16)
    with server_process(stack) as (first, address):
        with stack.client(address=address) as client:
            study_id = client.create_study(spec).study_id
            deadline = time.monotonic() + START_S
            while not client.get_study(study_id).trials:
                assert time.monotonic() < deadline, "no trial started"
                time.sleep(0.3)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)

    with server_process(stack) as (_, address), stack.client(address=address) as client:
        assert client.get_study(study_id).state is StudyState.RUNNING
        events = list(client.watch_study(study_id))  # from the first event, until the study ends
        study = client.get_study(study_id)
    assert study.state is StudyState.SUCCEEDED, study.error
    assert len(study.trials) == 4
    assert events[0].kind is EventKind.STUDY_STARTED and events[-1].kind is EventKind.STUDY_ENDED
    assert {e.trial.trial_id for e in events if e.kind is EventKind.TRIAL_ENDED and e.trial} == {
        t.trial_id for t in study.trials
    }


def test_sigterm_drains_in_flight_calls_and_refuses_new_ones(stack: Stack) -> None:
    outcome: dict[str, Any] = {}
    with server_process(stack) as (server, address), stack.client(address=address) as client:
        study_id = client.create_study(slow_spec("it-server-sigterm", trials=2, epochs=40)).study_id
        with grpc.insecure_channel(address) as channel:
            statuses = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=START_S)
            assert next(statuses).status == health_pb2.HealthCheckResponse.SERVING

            def watch() -> None:  # an in-flight call when the signal comes
                try:
                    for event in client.watch_study(study_id):
                        outcome.setdefault("first", event.kind)
                except Unavailable as error:
                    outcome["ended"], outcome["message"] = time.monotonic(), str(error)

            watcher = threading.Thread(target=watch)
            watcher.start()
            while "first" not in outcome:
                time.sleep(0.05)
            signalled = time.monotonic()
            server.send_signal(signal.SIGTERM)
            assert next(statuses).status == health_pb2.HealthCheckResponse.NOT_SERVING
            outcome["not_serving"] = time.monotonic()
            watcher.join(timeout=GRACE_S + 10)
            with pytest.raises(Unavailable):
                stack.client(address=address, timeout_s=5).get_study(study_id)
            assert server.wait(timeout=GRACE_S + 30) == 0
    with stack.client() as cleanup:
        cleanup.cancel_study(study_id)

    assert outcome["not_serving"] - signalled < 2.0
    assert outcome["ended"] - signalled <= GRACE_S + 1.0
    assert "shutting down" in outcome["message"]
