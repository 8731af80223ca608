"""Two objectives on the real stack: accuracy against model size, tuned by NSGA-II with
MO-ASHA stopping trials at its rungs; GetStudy and WatchStudy show the same Pareto front, the
study's best trial is on it, and another trial of the front can be deployed and answers."""

from __future__ import annotations

import pytest

from anneal.pareto import dominates, oriented
from anneal.types import EventKind, StudyState, TrialState
from tests.integration.conftest import Stack, small_spec

pytestmark = pytest.mark.integration

DIGIT_ROW = [0.0] * 64


def test_a_two_objective_study_keeps_its_pareto_front_and_deploys_a_trial_of_it(stack: Stack) -> None:
    spec = small_spec(
        "it-pareto",
        params={"epochs": 9, "batch_size": 64},
        search_space={
            "lr": {"float": {"low": 3e-3, "high": 3e-2, "log": True}},
            "hidden_size": {"int": {"low": 4, "high": 96, "log": True}},
        },
        objective=None,
        objectives=[{"metric": "val_accuracy", "mode": "max"}, {"metric": "num_parameters", "mode": "min"}],
        search={"sampler": "nsga2", "seed": 1},
        scheduler={"asha": {"grace_period": 1, "reduction_factor": 3}},
        budget={"max_trials": 12, "max_concurrent_trials": 2},
    )
    with stack.client() as client:
        created = client.create_study(spec)
        events = list(client.watch_study(created.study_id))
        study = client.get_study(created.study_id)
    assert study.state is StudyState.SUCCEEDED, study.error
    completed = [t for t in study.trials if t.state is TrialState.COMPLETED]
    assert any(t.state is TrialState.STOPPED_EARLY for t in study.trials), [t.state for t in study.trials]
    assert {t.epochs for t in completed} == {9}

    front = study.pareto_front
    assert front and study.best_trial is not None and front[0].trial_id == study.best_trial.trial_id
    points = {t.trial_id: oriented(t.metrics, spec.goals) for t in completed}
    for member in front:
        assert not any(dominates(p, points[member.trial_id]) for p in points.values() if p)  # type: ignore[arg-type]
    ended = [e for e in events if e.kind in (EventKind.TRIAL_ENDED, EventKind.STUDY_ENDED)]
    assert ended[-1].kind is EventKind.STUDY_ENDED
    assert ended[-1].pareto_front == [t.trial_id for t in front]

    chosen = front[-1]  # the smallest model of the front
    with stack.client() as client:
        deployment = client.deploy(study.study_id, name="it-pareto", trial_id=chosen.trial_id)
        try:
            assert deployment.trial_id == chosen.trial_id
            [prediction] = client.predict("it-pareto", [DIGIT_ROW])
            assert 0 <= prediction.label < 10
        finally:
            client.delete_deployment("it-pareto")
