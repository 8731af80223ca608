"""Early stopping acts in time: a trial hands its epochs to Tune at once where its scheduler
decides (ASHA's rungs, the median rule's checks) and in batches between, and a trial the
scheduler stopped reaches Optuna as pruned, not as a finished trial scored where it stopped."""

from __future__ import annotations

from typing import Any

import optuna
import pytest
import torch
from optuna.trial import TrialState
from ray.tune.result import DONE
from ray.tune.schedulers.async_hyperband import _Bracket

from anneal.spec import StudySpec
from cluster.driver.tuning import AdoptingOptunaSearch, decision_epochs, optuna_sampler, optuna_space
from cluster.trial import context as trial
from cluster.trial.context import ENDED, EPOCH, HISTORY, TuneTrainContext
from cluster.worker.handover import DecisionEpochs, Pacing
from trainers.builtins import BUILT_INS
from trainers.datasets import load_splits

MLP = BUILT_INS["mlp_classifier"]


def spec_with(scheduler: dict[str, Any], epochs: int = 20) -> StudySpec:
    return StudySpec.parse(
        {
            "name": "stops",
            "trainer": "mlp_classifier",
            "dataset": {"name": "digits"},
            "params": {"epochs": epochs},
            "search_space": {"lr": {"float": {"low": 1e-3, "high": 1e-1, "log": True}}},
            "objective": {"metric": "val_accuracy", "mode": "max"},
            "scheduler": scheduler,
        }
    )


@pytest.mark.parametrize(
    ("grace", "factor", "epochs"), [(2, 3, 20), (1, 3, 27), (1, 2, 10), (3, 4, 100), (2, 3, 18), (5, 2, 5)]
)
def test_asha_decides_at_the_rungs_ray_makes(grace: int, factor: int, epochs: int) -> None:
    spec = spec_with({"asha": {"grace_period": grace, "reduction_factor": factor}}, epochs)
    rungs = {milestone for milestone, _ in _Bracket(grace, max(epochs, grace), factor, 0)._rungs}
    assert decision_epochs(spec, MLP).rungs == rungs


def test_the_digits_asha_of_the_issue_decides_at_epochs_2_6_and_18() -> None:
    decides = decision_epochs(spec_with({"asha": {"grace_period": 2, "reduction_factor": 3}}), MLP)
    assert [epoch for epoch in range(1, 21) if epoch in decides] == [2, 6, 18]


def test_the_median_rule_decides_at_every_epoch_from_its_grace_period() -> None:
    decides = decision_epochs(spec_with({"median": {"grace_period": 3}}), MLP)
    assert [epoch for epoch in range(1, 8) if epoch in decides] == [3, 4, 5, 6, 7]


def test_without_early_stopping_nothing_is_handed_over_at_once() -> None:
    decides = decision_epochs(spec_with({"none": {}}), MLP)
    assert not any(epoch in decides for epoch in range(1, 100))


def test_pacing_hands_over_at_a_decision_at_once_and_batches_between() -> None:
    pacing = Pacing(report_interval_s=3600, checkpoint_interval_s=3600, decisions=DecisionEpochs(frozenset({2, 6})))
    handed = [epoch for epoch in range(1, 11) if pacing.due(final=epoch == 10, has_checkpoint=True, epoch=epoch)[0]]
    assert handed == [2, 6, 10]
    assert pacing.due(final=False, has_checkpoint=True, epoch=6) == (True, False)  # a decision persists nothing


def test_a_trial_hands_tune_each_decision_epoch_in_a_result_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    results: list[dict[str, Any]] = []
    monkeypatch.setattr(trial.tune, "report", lambda result, checkpoint=None: results.append(result))
    monkeypatch.setattr(trial.tune, "get_checkpoint", lambda: None)
    iris = load_splits("iris", 0.2, 0.2, 0)
    context = TuneTrainContext(
        {}, iris, torch.device("cpu"), num_threads=1, checkpoint_interval_s=3600,
        report_interval_s=3600, decisions=DecisionEpochs(frozenset({2, 6})),
    )  # fmt: skip
    for epoch in range(1, 9):
        context.report({"val_accuracy": epoch / 10}, final=epoch == 8)
    assert [r[EPOCH] for r in results] == [2, 6, 8]
    assert [[e[EPOCH] for e in r[HISTORY]] for r in results] == [[1, 2], [3, 4, 5, 6], [7, 8]]


def searcher() -> AdoptingOptunaSearch:
    spec = spec_with({"asha": {"grace_period": 2, "reduction_factor": 3}})
    return AdoptingOptunaSearch(
        space=optuna_space(spec), metric="val_accuracy", mode="max", sampler=optuna_sampler(spec)
    )


def result(epochs: list[float], *, done: bool) -> dict[str, Any]:
    history = [{"val_accuracy": value, EPOCH: n} for n, value in enumerate(epochs, start=1)]
    # Tune sets `done` on the result its scheduler stopped a trial at too: only ENDED tells.
    return {**history[-1], HISTORY: history, DONE: True, ENDED: done, "training_iteration": 1}


def ended(search: AdoptingOptunaSearch, name: str, epochs: list[float], *, done: bool, error: bool = False) -> None:
    search.suggest(name)
    search.on_trial_result(name, result(epochs, done=done))
    search.on_trial_complete(name, result(epochs, done=done), error=error)


def test_a_trial_the_scheduler_stopped_is_pruned_in_optuna_with_each_epochs_value() -> None:
    search = searcher()
    ended(search, "stopped", [0.1, 0.2], done=False)
    ended(search, "finished", [0.3, 0.5, 0.9], done=True)
    ended(search, "failed", [0.4], done=False, error=True)
    study: optuna.Study = search._ot_study  # type: ignore[assignment]
    stopped, finished, failed = study.trials
    assert stopped.state is TrialState.PRUNED and stopped.intermediate_values == {1: 0.1, 2: 0.2}
    assert finished.state is TrialState.COMPLETE and finished.value == 0.9
    assert finished.intermediate_values == {1: 0.3, 2: 0.5, 3: 0.9}
    assert failed.state is TrialState.FAIL
    assert study.best_trial.number == finished.number  # the pruned trial's 0.2 is no final score


def test_an_adopted_trial_the_scheduler_stopped_is_pruned_too() -> None:
    search = searcher()
    search.adoptions = [("t-old", {"lr": 0.01})]
    assert search.suggest("t1") is not None
    search.on_trial_complete("t1", result([0.1, 0.2], done=False))
    study: optuna.Study = search._ot_study  # type: ignore[assignment]
    assert [t.state for t in study.trials] == [TrialState.PRUNED]
