"""A trial that crashes resumes from its last checkpoint, up to `failure.max_retries`; past
that it ends ERROR and the study goes on; a study fails only when no trial succeeded."""

from __future__ import annotations

from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from anneal import Study, StudySpec, StudyState, TrialState
from anneal.types import EventKind, StudyEvent
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration

EPOCHS = 5
# Each epoch takes longer than a trial's report interval, so every epoch reaches Tune with its checkpoint.
SECONDS_PER_EPOCH = 0.6


def crash_spec(name: str, *, trials: int, max_retries: int, **changes: Any) -> StudySpec:
    data: dict[str, Any] = {
        "name": name,
        "trainer": "quadratic",
        "dataset": {"name": "iris"},
        "params": {"epochs": EPOCHS, "seconds_per_epoch": SECONDS_PER_EPOCH},
        "search_space": {"x": {"float": {"low": -1.0, "high": 1.0}}},
        "objective": {"metric": "loss", "mode": "min"},
        "search": {"sampler": "random", "seed": 0},
        "budget": {"max_trials": trials, "max_concurrent_trials": 2},
        "failure": {"max_retries": max_retries, "checkpoint_interval_s": 0},
    }
    data.update(changes)
    return StudySpec.parse(data)


def run(stack: Stack, spec: StudySpec) -> tuple[Study, list[StudyEvent]]:
    with stack.client() as client:
        created = client.create_study(spec)
        events = list(client.watch_study(created.study_id))
        return client.get_study(created.study_id), events


def test_crashed_trials_resume_from_their_checkpoint_until_retries_run_out(stack: Stack) -> None:
    # Crashes from epoch 2 on: never, once (then it resumes) and three times (past one retry).
    # With seed 5 the random sampler gives the three trials crashes 1, 3 and 0, in some order.
    space = {"crashes": {"categorical": [0, 1, 3]}, "x": {"float": {"low": -1.0, "high": 1.0}}}
    params = {"epochs": EPOCHS, "seconds_per_epoch": SECONDS_PER_EPOCH, "crash_at_epoch": 2}
    spec = crash_spec("it-crashes", trials=3, max_retries=1, params=params, search_space=space)
    study, events = run(stack, spec.model_copy(update={"search": spec.search.model_copy(update={"seed": 5})}))
    assert study.state is StudyState.SUCCEEDED, study.error
    by_crashes = {int(t.config["crashes"]): t for t in study.trials}
    assert sorted(by_crashes) == [0, 1, 3]
    mlflow = MlflowClient(stack.settings.mlflow_tracking_uri)

    # Crashed once, after epoch 2: resumed from that epoch's checkpoint, not from epoch 0,
    # so every epoch is in its MLflow run once.
    resumed = by_crashes[1]
    assert (resumed.state, resumed.epochs) == (TrialState.COMPLETED, EPOCHS)
    starts = [
        e for e in events if e.kind is EventKind.TRIAL_STARTED and e.trial and e.trial.trial_id == resumed.trial_id
    ]
    assert len(starts) == 2, "the trial ran once more after its crash"
    history = mlflow.get_metric_history(resumed.mlflow_run_id, "loss")
    assert sorted(m.step for m in history) == list(range(1, EPOCHS + 1))

    # Crashed on its first try and on its one retry: ERROR, with the error in the store and MLflow.
    failed = by_crashes[3]
    assert failed.state is TrialState.ERROR
    assert "injected crash 2 of 3" in failed.error
    failed_run = mlflow.get_run(failed.mlflow_run_id)
    assert failed_run.info.status == "FAILED"
    assert "injected crash" in failed_run.data.tags["anneal.error"]

    assert by_crashes[0].state is TrialState.COMPLETED
    assert study.best_trial is not None and study.best_trial.state is TrialState.COMPLETED


def test_a_study_whose_every_trial_failed_ends_failed_and_says_why(stack: Stack) -> None:
    params = {"epochs": EPOCHS, "seconds_per_epoch": SECONDS_PER_EPOCH, "crash_at_epoch": 1, "crashes": 5}
    study, events = run(stack, crash_spec("it-crash-all", trials=2, max_retries=1, params=params))
    assert study.state is StudyState.FAILED
    assert study.error == "no trial reported loss: 2 of 2 trials failed"
    assert all(t.state is TrialState.ERROR for t in study.trials)
    assert events[-1].kind is EventKind.STUDY_ENDED and events[-1].message == study.error
