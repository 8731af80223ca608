"""A Serve replica killed while clients call Predict: Serve replaces it, and Predict, which
is safe to repeat, retries a call the dead replica dropped on another replica, so no
caller sees an error."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from ray.util.state import list_actors

from anneal import StudySpec, StudyState
from cluster.serving.deploy import app_name
from tests.integration.conftest import Stack, remove_serve_app
from tests.integration.test_driver_restart import wait_for

pytestmark = pytest.mark.integration

NAME = "it-replica-killed"
CALLERS = 4
REPLACE_S = 90.0


def quick_spec() -> StudySpec:
    return StudySpec.parse(
        {
            "name": NAME,
            "trainer": "quadratic",
            "dataset": {"name": "iris"},
            "params": {"epochs": 1},
            "search_space": {"x": {"float": {"low": -1.0, "high": 1.0}}},
            "objective": {"metric": "loss", "mode": "min"},
            "budget": {"max_trials": 2, "max_concurrent_trials": 2},
        }
    )


def replica_pids(stack: Stack) -> set[int]:
    actors = list_actors(
        address=stack.settings.ray_dashboard_url,
        filters=[("class_name", "=", f"ServeReplica:{app_name('alice', NAME)}:ModelServer"), ("state", "=", "ALIVE")],
    )
    return {int(actor.pid) for actor in actors if actor.pid}


def test_predict_keeps_answering_while_a_replica_is_killed_and_replaced(stack: Stack) -> None:
    rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
    with stack.client() as client:
        study = client.wait_for_study(client.create_study(quick_spec()).study_id, timeout_s=300)
        assert study.state is StudyState.SUCCEEDED, study.error
        client.deploy(study.study_id, replicas=2)
        wait_for(lambda: len(replica_pids(stack)) == 2, REPLACE_S, "two replicas")
        before = replica_pids(stack)

        stop = threading.Event()
        answered: list[int] = []
        errors: list[BaseException] = []

        def call_predict() -> None:
            with stack.client() as caller:
                while not stop.is_set():
                    try:
                        assert len(caller.predict(NAME, rows)) == len(rows)
                        answered.append(1)
                    except Exception as error:  # counted: the test's point
                        errors.append(error)

        callers = [threading.Thread(target=call_predict) for _ in range(CALLERS)]
        for caller in callers:
            caller.start()
        try:
            wait_for(lambda: len(answered) >= 50, 60, "predictions before the kill")
            victim = min(before)
            os.kill(victim, signal.SIGKILL)
            killed_at = time.monotonic()
            during = len(answered)
            wait_for(
                lambda: len(replica_pids(stack)) == 2 and victim not in replica_pids(stack),
                REPLACE_S,
                "Serve to replace the killed replica",
            )
            replaced_s = time.monotonic() - killed_at
            after = len(answered)
            wait_for(lambda: len(answered) >= after + 50, 60, "predictions from the replaced pair")
        finally:
            stop.set()
            for caller in callers:
                caller.join(timeout=60)
            remove_serve_app(stack, NAME)

    print(
        f"replica replaced in {replaced_s:.1f} s; {len(answered)} predictions, {after - during} of them "
        f"while it was replaced; {len(errors)} errors"
    )
    assert errors == []
