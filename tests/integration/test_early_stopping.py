"""Early stopping acts in time, even on epochs of about 10 ms that end within one of a trial's
batched reports to Tune: ASHA stops trials at its rungs, the median rule at its checks."""

from __future__ import annotations

from typing import Any

import pytest

from anneal.types import Study, StudyState, TrialState
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
