"""Early stopping acts in time, even on epochs of about 10 ms that end within one of a trial's
batched reports to Tune: ASHA stops trials at its rungs, the median rule at its checks, and a
promotion-type ASHA pauses trials at its rungs and resumes the ones it promotes."""

from __future__ import annotations

from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from anneal.types import EventKind, Study, StudyState, TrialState
from tests.integration.conftest import Stack, small_spec

pytestmark = pytest.mark.integration

EPOCHS = 20


def study_of_24(stack: Stack, name: str, scheduler: dict[str, Any]) -> Study:
    spec = small_spec(
        name,
        params={"epochs": EPOCHS, "batch_size": 64},
        scheduler=scheduler,
        budget={"max_trials": 24, "max_concurrent_trials": 2},
    )
    with stack.client() as client:
        study = client.wait_for_study(client.create_study(spec).study_id, timeout_s=300)
    assert study.state is StudyState.SUCCEEDED, study.error
    assert len(study.trials) == 24
    return study


def epochs_of(study: Study, state: TrialState) -> list[int]:
    return sorted(trial.epochs for trial in study.trials if trial.state is state)


def test_asha_stops_trials_at_its_rungs(stack: Stack) -> None:
    study = study_of_24(stack, "it-asha-rungs", {"asha": {"grace_period": 2, "reduction_factor": 3}})
    stopped = epochs_of(study, TrialState.STOPPED_EARLY)
    # Rungs at 2, 6 and 18 epochs (grace_period × 3^k below max_t = 20).
    assert len(stopped) >= 8 and set(stopped) <= {2, 6, 18}, stopped
    assert 2 in stopped
    assert set(epochs_of(study, TrialState.COMPLETED)) == {EPOCHS}


def test_the_median_rule_stops_trials_from_its_grace_period(stack: Stack) -> None:
    study = study_of_24(stack, "it-median-checks", {"median": {"grace_period": 3, "min_samples_required": 3}})
    stopped = epochs_of(study, TrialState.STOPPED_EARLY)
    assert stopped and all(3 <= epochs < EPOCHS for epochs in stopped), stopped
    assert set(epochs_of(study, TrialState.COMPLETED)) == {EPOCHS}


def test_promotion_asha_lets_no_trial_go_on_for_being_first_and_resumes_the_promoted(stack: Stack) -> None:
    study = study_of_24(
        stack, "it-asha-promotion", {"asha": {"grace_period": 2, "reduction_factor": 3, "type": "promotion"}}
    )
    stopped, completed = epochs_of(study, TrialState.STOPPED_EARLY), epochs_of(study, TrialState.COMPLETED)
    assert set(stopped) <= {2, 6, 18} and 2 in stopped, stopped
    assert completed and set(completed) == {EPOCHS}, completed
    mlflow = MlflowClient(stack.settings.mlflow_tracking_uri)
    histories = {
        trial.trial_id: mlflow.get_metric_history(trial.mlflow_run_id, "val_accuracy") for trial in study.trials
    }
    for trial in study.trials:
        # A trial paused at a rung and resumed from its checkpoint logs every epoch once, in one run.
        assert sorted(m.step for m in histories[trial.trial_id]) == list(range(1, trial.epochs + 1)), trial.trial_id
    # Nothing went past the first rung before three trials were recorded there (the top third of
    # one or two is nobody); Ray's stopping ASHA lets the first trial at a rung go on at once.
    at_first_rung = sorted(m.timestamp for history in histories.values() for m in history if m.step == 2)
    past_it = min(m.timestamp for history in histories.values() for m in history if m.step == 3)
    assert past_it >= at_first_rung[2]
    # WatchStudy told of each pause (the first two trials at the first rung always wait), and
    # no trial is left paused once the study ended.
    with stack.client() as client:
        kinds = [event.kind for event in client.watch_study(study.study_id)]
    assert kinds.count(EventKind.TRIAL_PAUSED) >= 2, kinds
    assert all(trial.state.is_terminal for trial in study.trials)
