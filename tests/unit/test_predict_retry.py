"""Predict checks its rows before they reach a replica, and is sent again when its replica
was lost, until its deadline; other errors are not retried."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import cast

import pytest
from ray.exceptions import ActorDiedError, RayTaskError
from ray.serve.exceptions import ReplicaUnavailableError

from anneal.errors import InvalidArgument
from anneal.settings import Settings
from anneal.types import Prediction
from cluster.server import predict
from cluster.server.batching import PredictBatcher, Rows
from cluster.server.predict import PredictRouter, Route, ask, check_rows, fits_direct, retry_lost_replicas
from cluster.serving.replica import RowsRefused
from cluster.store.store import Store
from tests.unit.helpers import principal

ANSWER = [Prediction(label=1, probabilities=[0.0, 1.0]), Prediction(values=[151.25])]


class Flaky:
    """Loses its replica on the first `losses` sends, then answers."""

    def __init__(self, losses: int, error: Exception) -> None:
        self.losses = losses
        self.error = error
        self.sends = 0

    def __call__(self, timeout_s: float) -> list[Prediction]:
        self.sends += 1
        assert timeout_s > 0
        if self.sends <= self.losses:
            raise self.error
        return ANSWER


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(predict, "PREDICT_RETRY_WAITS_S", (0.0,))


@pytest.mark.parametrize("error", [ActorDiedError(), ReplicaUnavailableError("replaced")], ids=["died", "replaced"])
def test_a_call_whose_replica_was_lost_is_sent_again(error: Exception) -> None:
    send = Flaky(3, error)
    assert retry_lost_replicas(send, timeout_s=5, name="m") == ANSWER
    assert send.sends == 4


def test_the_deadline_ends_the_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(predict, "PREDICT_RETRY_WAITS_S", (0.05,))
    send = Flaky(10_000, ActorDiedError())
    with pytest.raises(ActorDiedError):
        retry_lost_replicas(send, timeout_s=0.3, name="m")
    assert 2 <= send.sends <= 8


def test_other_errors_are_not_retried() -> None:
    send = Flaky(1, ValueError("bad rows"))
    with pytest.raises(ValueError):
        retry_lost_replicas(send, timeout_s=5, name="m")
    assert send.sends == 1


@pytest.mark.parametrize(
    ("rows", "field", "message"),
    [
        ([[1.0, 2.0], [1.0]], "rows[1]", "has 1 values; rows[0] has 2"),
        ([[1.0, float("nan")]], "rows[0]", "NaN"),
        ([[1.0, 2.0], [float("inf"), 0.0]], "rows[1]", "infinite"),
        ([[1.0, 2.0], [float("-inf"), 0.0]], "rows[1]", "infinite"),
    ],
    ids=["ragged", "nan", "inf", "minus-inf"],
)
def test_predict_refuses_rows_it_cannot_answer_honestly(rows: list[list[float]], field: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        check_rows(rows)
    assert type(raised.value) is InvalidArgument  # rows are not a spec
    (error,) = raised.value.errors
    assert error.path == field and message in error.message


def test_predict_accepts_finite_rows_of_one_width() -> None:
    check_rows([[0.0, -1.5], [1e300, 2.0]])


def test_predict_hands_on_the_replicas_predictions_of_either_task(tmp_path: Path) -> None:
    """A replica answers `Prediction`s, classification and regression alike; the router passes
    them on as they came, in the order of the rows."""

    def replica(rows: Rows) -> list[Prediction]:
        return [ANSWER[int(row[0])] for row in rows]

    # The route is kept already, so Predict looks nothing up in the store.
    router = PredictRouter(Settings.load(home=tmp_path), cast(Store, None))
    router._routes[("alice", "m")] = Route(PredictBatcher(replica, max_rows=1), input_shape=())
    answers = router.predict("m", [[1.0], [0.0]], principal("alice"))
    assert answers == [ANSWER[1], ANSWER[0]]


class Handle:
    """A Serve handle whose `predict.remote(rows).result(timeout_s)` raises `error`."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.predict = self

    def remote(self, rows: Rows) -> Handle:
        return self

    def result(self, timeout_s: float) -> list[Prediction]:
        raise self.error


REFUSAL = "each row needs 64 values, got shape (1, 2)"


def refused_as_task() -> Exception:
    """What `ray.get` raises for a replica's RowsRefused: a RayTaskError that is one too."""
    try:
        raise RowsRefused(REFUSAL)
    except RowsRefused as cause:
        return RayTaskError("predict", "Traceback ... RowsRefused", cause).as_instanceof_cause()


@pytest.mark.parametrize("error", [refused_as_task(), RowsRefused(REFUSAL)], ids=["as a Ray task", "over direct gRPC"])
def test_a_model_refusing_its_rows_is_the_callers_error_over_either_transport(error: Exception) -> None:
    with pytest.raises(RowsRefused) as refused:
        ask(Handle(error), [[1.0, 2.0]], timeout_s=1)
    assert str(refused.value) == REFUSAL


def test_another_value_error_on_the_way_is_not_the_callers() -> None:
    """Ray raises ValueErrors of its own (an object whose owner is unknown, say)."""
    with pytest.raises(ValueError, match="owner is unknown") as raised:
        ask(Handle(ValueError("an object whose owner is unknown")), [[1.0]], timeout_s=1)
    assert not isinstance(raised.value, RowsRefused)


def test_a_replica_that_failed_otherwise_is_not_the_callers_error() -> None:
    with pytest.raises(ActorDiedError):
        ask(Handle(ActorDiedError()), [[1.0]], timeout_s=1)


def test_small_batches_go_over_the_direct_channel_and_large_ones_as_ray_tasks() -> None:
    assert fits_direct([[0.0] * 64] * predict.DIRECT_MAX_ROWS)
    assert not fits_direct([[0.0]] * (predict.DIRECT_MAX_ROWS + 1))
    assert not fits_direct([[0.0] * (predict.DIRECT_MAX_VALUES + 1)])  # one wide row: an image, say


def test_calls_racing_to_a_deployment_make_one_route(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each route initialises the app's Serve handle; several would report load to Serve's
    autoscaler under one handle id, the idle ones hiding the busy one's."""
    router = PredictRouter(Settings.load(home=tmp_path), cast(Store, None))
    made: list[Route] = []

    def new_route(key: object, name: str) -> Route:
        time.sleep(0.05)  # a store read and a Serve controller round trip
        made.append(Route(PredictBatcher(lambda rows: ANSWER, max_rows=1), input_shape=()))
        return made[-1]

    monkeypatch.setattr(router, "_new_route", new_route)
    routes: list[Route] = []
    threads = [threading.Thread(target=lambda: routes.append(router._route(("alice", "m"), "m"))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == 1 and routes == made * 8
