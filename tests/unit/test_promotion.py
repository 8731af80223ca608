"""Promotion-type ASHA: a trial waits, paused at its rung, until it ranks in the top
1/reduction_factor there; free slots go to promotable trials before new ones; once no new trial
can start, the looser top is promoted and the rest stopped."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import optuna
import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from anneal.errors import InvalidSpec
from anneal.spec import StudySpec
from anneal.types import EventKind
from anneal.types import TrialState as AnnealState
from cluster.driver.promotion import PromotionASHA
from cluster.driver.recording import TrialRecorder
from cluster.driver.tuning import AdoptingOptunaSearch, decision_epochs, optuna_space
from cluster.driver.writermessages import Record
from cluster.trial.context import CHECKPOINTED, EPOCH
from cluster.worker.handover import Pacing
from trainers.builtins import BUILT_INS

MLP = BUILT_INS["mlp_classifier"]


@dataclass
class FakeTrial:
    trial_id: str
    status: str = Trial.PENDING


@dataclass
class FakeSearch:
    finished: bool = False

    def is_finished(self) -> bool:
        return self.finished


@dataclass
class FakeController:
    """What Tune lets a scheduler see of its controller: the trials, the searcher, stop_trial."""

    scheduler: PromotionASHA
    trials: list[FakeTrial] = field(default_factory=list)
    search_alg: FakeSearch = field(default_factory=FakeSearch)
    stopped: list[str] = field(default_factory=list)

    def get_trials(self) -> list[FakeTrial]:
        return self.trials

    def stop_trial(self, trial: FakeTrial) -> None:
        self.stopped.append(trial.trial_id)
        trial.status = Trial.TERMINATED
        self.scheduler.on_trial_remove(self, trial)  # type: ignore[arg-type]

    def add(self, trial_id: str) -> FakeTrial:
        trial = FakeTrial(trial_id)
        self.trials.append(trial)
        self.scheduler.on_trial_add(self, trial)  # type: ignore[arg-type]
        return trial

    def report(self, trial: FakeTrial, epoch: int, value: float, checkpointed: bool = True) -> str:
        trial.status = Trial.RUNNING
        result: dict[str, Any] = {EPOCH: epoch, "score": value, CHECKPOINTED: checkpointed}
        decision = self.scheduler.on_trial_result(self, trial, result)  # type: ignore[arg-type]
        if decision == TrialScheduler.PAUSE:
            trial.status = Trial.PAUSED
        return decision

    def choose(self) -> str | None:
        chosen = self.scheduler.choose_trial_to_run(self)  # type: ignore[arg-type]
        return chosen.trial_id if chosen is not None else None

    def end(self, trial: FakeTrial) -> None:
        trial.status = Trial.TERMINATED
        self.scheduler.on_trial_complete(self, trial, {})  # type: ignore[arg-type]


def asha(mode: str = "max", slots: int = 2) -> tuple[PromotionASHA, FakeController]:
    """Rungs at 1, 3 and 9 of 27 epochs, a third promoted."""
    scheduler = PromotionASHA("score", mode, time_attr=EPOCH, max_t=27, grace_period=1, reduction_factor=3, slots=slots)
    return scheduler, FakeController(scheduler)


def test_it_waits_at_the_rungs_below_max_t() -> None:
    scheduler, _ = asha()
    assert scheduler.rungs == [1, 3, 9]


def test_the_first_trials_at_a_rung_wait_and_the_third_promotes_the_best() -> None:
    scheduler, tune = asha()
    a, b, c = tune.add("a"), tune.add("b"), tune.add("c")
    assert tune.report(a, 1, 0.5) == TrialScheduler.PAUSE
    assert tune.report(b, 1, 0.9) == TrialScheduler.PAUSE
    # With a and b paused, their slots are free, and neither ranks in the top ⌊2/3⌋ = 0.
    assert scheduler.admits_new_trial()
    assert tune.report(c, 1, 0.1) == TrialScheduler.PAUSE
    # Now the top ⌊3/3⌋ = 1 is b: it is owed the next slot, ahead of any new trial.
    assert not scheduler.admits_new_trial()
    assert tune.choose() == "b"
    assert scheduler.paused == {"a": 1, "c": 1}


def test_a_trial_still_saving_its_pause_is_resumed_only_once_tune_holds_it_paused() -> None:
    _, tune = asha()
    a, b, c = tune.add("a"), tune.add("b"), tune.add("c")
    tune.report(a, 1, 0.9)
    a.status = Trial.RUNNING  # Tune pauses a trial once its checkpoint is saved
    tune.report(b, 1, 0.5)
    tune.report(c, 1, 0.1)
    assert tune.choose() is None
    a.status = Trial.PAUSED
    assert tune.choose() == "a"


def test_a_trial_in_the_top_when_it_arrives_goes_on_without_waiting() -> None:
    _, tune = asha()
    a, b, c = tune.add("a"), tune.add("b"), tune.add("c")
    tune.report(a, 1, 0.5)
    tune.report(b, 1, 0.4)
    assert tune.report(c, 1, 0.9) == TrialScheduler.CONTINUE


def test_min_mode_ranks_the_lowest_first() -> None:
    _, tune = asha(mode="min")
    a, b, c = tune.add("a"), tune.add("b"), tune.add("c")
    tune.report(a, 1, 0.5)
    tune.report(b, 1, 0.9)
    assert tune.report(c, 1, 0.1) == TrialScheduler.CONTINUE


def test_a_trial_promoted_from_a_rung_is_not_promoted_from_it_again() -> None:
    scheduler, tune = asha()
    trials = [tune.add(name) for name in "abc"]
    for trial, value in zip(trials, (0.9, 0.5, 0.1), strict=True):
        tune.report(trial, 1, value)
    assert tune.choose() == "a"
    tune.trials[0].status = Trial.RUNNING
    # Between its rungs a result decides nothing; at rung 3 it is alone, so it waits.
    assert tune.report(trials[0], 2, 0.92) == TrialScheduler.CONTINUE
    assert tune.report(trials[0], 3, 0.95) == TrialScheduler.PAUSE
    assert scheduler.next_promotion(ending=False) is None


def test_slots_are_kept_without_counting_paused_trials() -> None:
    scheduler, tune = asha(slots=2)
    a, b = tune.add("a"), tune.add("b")
    tune.report(a, 1, 0.5)
    tune.report(b, 1, 0.6)
    assert scheduler.running() == 0 and scheduler.admits_new_trial()
    c, d = tune.add("c"), tune.add("d")
    assert scheduler.running() == 2 and not scheduler.admits_new_trial()
    tune.report(c, 1, 0.1)  # the top third of three is b, owed the slot c freed
    assert tune.choose() == "b"
    assert scheduler.running() == 2 and tune.choose() is None  # b and d hold the slots
    tune.end(d)
    assert scheduler.running() == 1


def test_a_trial_without_a_rung_checkpoint_cannot_wait_and_is_decided_as_ray_decides() -> None:
    _, tune = asha()
    a, b = tune.add("a"), tune.add("b")
    # Alone at its rung, in the top ⌈1/3⌉ = 1: it goes on, as with Ray's ASHA.
    assert tune.report(a, 1, 0.5, checkpointed=False) == TrialScheduler.CONTINUE
    assert tune.report(b, 1, 0.4, checkpointed=False) == TrialScheduler.STOP


def test_once_no_trial_can_start_the_looser_top_is_promoted_and_the_rest_stopped() -> None:
    scheduler, tune = asha(slots=2)
    a, b = tune.add("a"), tune.add("b")
    tune.report(a, 1, 0.5)
    tune.report(b, 1, 0.9)
    assert tune.choose() is None  # the searcher may still suggest: they wait
    tune.search_alg.finished = True
    # ⌈2/3⌉ = 1: b goes on from rung 1, and waits alone at rung 3.
    assert tune.choose() == "b"
    b.status = Trial.RUNNING
    assert tune.report(b, 3, 0.95) == TrialScheduler.PAUSE
    # ⌈1/3⌉ = 1 at rung 3, the highest first: b again, not a.
    assert tune.choose() == "b"
    b.status = Trial.RUNNING
    tune.end(b)
    # a is left, outside the top of its rung, with nothing running: it is stopped.
    assert tune.choose() is None
    assert tune.stopped == ["a"] and scheduler.paused == {} and scheduler.live == set()


def test_a_restored_tuner_does_not_count_its_ended_trials_as_running() -> None:
    scheduler, tune = asha()
    ended = FakeTrial("old", Trial.TERMINATED)
    scheduler.on_trial_add(tune, ended)  # type: ignore[arg-type]
    assert scheduler.running() == 0


def spec_data(**changes: Any) -> dict[str, Any]:
    return {
        "name": "promote",
        "trainer": "mlp_classifier",
        "dataset": {"name": "digits"},
        "params": {"epochs": 27},
        "search_space": {"lr": {"float": {"low": 1e-3, "high": 1e-1, "log": True}}},
        "objective": {"metric": "val_accuracy", "mode": "max"},
        **changes,
    }


def test_trials_checkpoint_at_the_rungs_of_a_promotion_asha_only() -> None:
    def pacing(kind: str) -> Pacing:
        spec = StudySpec.parse(spec_data(scheduler={"asha": {"grace_period": 1, "type": kind}}))
        # A checkpoint interval no epoch reaches: only the rungs and the end may persist.
        return Pacing(0.0, 3600.0, decision_epochs(spec, MLP))

    promotion, stopping = pacing("promotion"), pacing("stopping")
    assert [epoch for epoch in range(1, 28) if promotion.due(epoch == 27, True, epoch)[1]] == [1, 3, 9, 27]
    assert [epoch for epoch in range(1, 28) if stopping.due(epoch == 27, True, epoch)[1]] == [27]


def test_the_searcher_suggests_only_when_the_scheduler_admits_a_new_trial() -> None:
    space = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    admitted = [False]
    search = AdoptingOptunaSearch(space=space, metric="score", mode="max", admits=lambda: admitted[0])
    assert search.suggest("t1") is None
    admitted[0] = True
    assert set(search.suggest("t1") or {}) == {"x"}


def test_a_trial_stopped_while_paused_reaches_optuna_as_pruned() -> None:
    spec = StudySpec.parse(spec_data())
    search = AdoptingOptunaSearch(space=optuna_space(spec), metric="val_accuracy", mode="max")
    search.suggest("t1")
    search.on_trial_result("t1", {"val_accuracy": 0.5, EPOCH: 1})
    search.on_trial_complete("t1", None)  # Tune's stop_trial of a PAUSED trial passes no result
    assert [trial.state for trial in search._ot_study.trials] == [optuna.trial.TrialState.PRUNED]


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"resources": {"workers": 2}}, "data-parallel"),
        (
            {
                "objective": None,
                "objectives": [{"metric": "val_accuracy", "mode": "max"}, {"metric": "num_parameters", "mode": "min"}],
            },
            "several objectives",
        ),
    ],
)
def test_promotion_is_refused_where_it_cannot_pause_or_rank(changes: dict[str, Any], reason: str) -> None:
    data = spec_data(scheduler={"asha": {"type": "promotion"}}, **changes)
    data = {key: value for key, value in data.items() if value is not None}
    with pytest.raises(InvalidSpec, match=rf"scheduler\.asha\.type.*{reason}"):
        StudySpec.parse(data)


@dataclass
class Collected:
    """A trial writer that keeps what the recorder hands it."""

    records: list[Record] = field(default_factory=list)

    def put(self, record: Record) -> None:
        self.records.append(record)


def test_a_pause_is_recorded_once_and_a_resumed_trial_starts_again() -> None:
    writer = Collected()
    recorder = TrialRecorder(writer, {"epochs": 27}, 27)  # type: ignore[arg-type]
    tune_trial = SimpleNamespace(
        trial_id="t1", config={"lr": 0.01}, last_result={EPOCH: 3, "val_accuracy": 0.9}, status=Trial.PAUSED
    )
    recorder.on_step_end(0, [tune_trial])  # type: ignore[list-item]
    recorder.on_step_end(1, [tune_trial])  # type: ignore[list-item]
    tune_trial.status = Trial.RUNNING
    recorder.on_trial_start(2, [tune_trial], tune_trial)  # type: ignore[list-item, arg-type]
    tune_trial.status = Trial.PAUSED
    recorder.on_step_end(3, [tune_trial])  # type: ignore[list-item]
    assert [(r.kind, r.trial.state, r.trial.epochs) for r in writer.records] == [
        (EventKind.TRIAL_PAUSED, AnnealState.PAUSED, 3),
        (EventKind.TRIAL_STARTED, AnnealState.RUNNING, 3),
        (EventKind.TRIAL_PAUSED, AnnealState.PAUSED, 3),
    ]
    assert writer.records[0].trial.metrics == {"val_accuracy": 0.9}
