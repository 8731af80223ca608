"""Dynamic batching merges concurrent Predict calls without mixing up or failing their answers."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import pytest

from anneal.spec import Autoscaling
from anneal.types import Deployment, DeploymentState, Prediction
from cluster.server.batching import Answers, PredictBatcher, Rows
from cluster.server.predict import batches_in_flight


class SlowModel:
    """Answers each row with its first value as the label; records the batch sizes it saw."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.gate = threading.Event()

    def __call__(self, rows: Rows) -> Answers:
        self.gate.wait(timeout=5)
        self.batches.append(len(rows))
        if any(len(r) != 2 for r in rows):
            raise ValueError("each row needs 2 values")
        return [Prediction(label=int(r[0]), probabilities=[1.0]) for r in rows]


def test_concurrent_calls_are_merged_and_answered_in_order() -> None:
    model = SlowModel()
    batcher = PredictBatcher(model, max_rows=64, dispatchers=1)
    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(batcher.predict, [[float(n), 0.0], [float(n), 1.0]], 10) for n in range(16)]
        model.gate.set()
        answers = [f.result() for f in futures]
    assert all([p.label for p in answer] == [n, n] for n, answer in enumerate(answers))
    assert sum(model.batches) == 32
    assert len(model.batches) < 16  # calls that waited shared a batch


def test_bad_rows_fail_only_their_own_call() -> None:
    model = SlowModel()
    batcher = PredictBatcher(model, max_rows=64, dispatchers=1)
    with ThreadPoolExecutor(8) as pool:
        good = [pool.submit(batcher.predict, [[float(n), 0.0]], 10) for n in range(6)]
        bad = pool.submit(batcher.predict, [[1.0, 2.0, 3.0]], 10)
        model.gate.set()
        assert [f.result()[0].label for f in good] == list(range(6))
        with pytest.raises(ValueError, match="2 values"):
            bad.result()


def test_batching_off_calls_straight_through() -> None:
    model = SlowModel()
    model.gate.set()
    batcher = PredictBatcher(model, max_rows=1)
    assert batcher.predict([[3.0, 0.0]], 1) == [Prediction(label=3, probabilities=[1.0])]
    assert model.batches == [1]


def test_predict_keeps_enough_batches_in_flight_for_autoscaling_to_see_load() -> None:
    fixed = Deployment(
        name="d", study_id="st-1", state=DeploymentState.RUNNING, replicas=3, route="/", model_uri="m",
        updated_at=datetime.now(timezone.utc),
    )  # fmt: skip
    assert batches_in_flight(fixed) == 6
    assert batches_in_flight(fixed.model_copy(update={"replicas": 1})) == 2
    scaled = fixed.model_copy(update={"autoscaling": Autoscaling(max_replicas=4, target_ongoing_requests=2.5)})
    assert batches_in_flight(scaled) == 10  # every replica autoscaling may add, at its target


def test_a_closed_batcher_answers_what_was_queued_ends_its_threads_and_goes_straight_through() -> None:
    release = threading.Event()

    def slow(rows: Rows) -> Answers:
        release.wait(5)
        return [Prediction(label=int(row[0])) for row in rows]

    batcher = PredictBatcher(slow, max_rows=8, dispatchers=2)
    with ThreadPoolExecutor(4) as pool:
        calls = [pool.submit(batcher.predict, [[float(n)]], 5) for n in range(4)]
        time.sleep(0.2)
        batcher.close()
        release.set()
        assert [call.result()[0].label for call in calls] == [0, 1, 2, 3]
    for thread in batcher._threads:
        thread.join(5)
        assert not thread.is_alive()
    assert batcher.predict([[7.0]], 5)[0].label == 7
