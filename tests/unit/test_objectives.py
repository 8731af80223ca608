"""Several objectives: spelt and refused at the door, told to Optuna as values, stopped early by
non-dominated rank (never by one objective in silence), and shown as a Pareto front."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState as OptunaState
from ray.tune.result import DONE
from ray.tune.schedulers import TrialScheduler

from anneal.convert import spec_from_pb, spec_to_pb, study_from_pb, study_to_pb
from anneal.errors import InvalidSpec
from anneal.pareto import crowding, dominates, fronts, non_dominated, oriented, ranked
from anneal.spec import Objective, StudySpec
from anneal.types import EventKind, Study, StudyEvent, StudyState, Trial, TrialState
from cluster.driver.paretoasha import ParetoASHA, asha_rungs
from cluster.driver.tuning import AdoptingOptunaSearch, optuna_sampler, optuna_space, scheduler
from cluster.server.studies import ParetoFront
from cluster.trial.context import ENDED, EPOCH
from trainers.builtins import BUILT_INS
from trainers.registry import check_spec

MLP = BUILT_INS["mlp_classifier"]
ACCURACY_AND_SIZE = [{"metric": "val_accuracy", "mode": "max"}, {"metric": "num_parameters", "mode": "min"}]
GOALS = [Objective(metric="val_accuracy", mode="max"), Objective(metric="num_parameters", mode="min")]


def two_objectives(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "pareto",
        "trainer": "mlp_classifier",
        "dataset": {"name": "digits"},
        "params": {"epochs": 9},
        "search_space": {
            "lr": {"float": {"low": 1e-3, "high": 1e-1, "log": True}},
            "hidden_size": {"int": {"low": 8, "high": 128}},
        },
        "objectives": ACCURACY_AND_SIZE,
        "scheduler": {"asha": {"grace_period": 1, "reduction_factor": 3}},
    }
    data.update(changes)
    return data


def refusal(data: dict[str, Any]) -> tuple[str, str]:
    with pytest.raises(InvalidSpec) as caught:
        StudySpec.parse(data)
    [error] = caught.value.errors
    return error.path, error.message


# ------------------------------------------------------------------ the spec


def test_several_objectives_are_spelt_in_yaml_and_kept_on_the_wire() -> None:
    spec = StudySpec.parse(two_objectives(search={"sampler": "nsga2", "seed": 3}))
    assert spec.goals == GOALS and spec.first_goal == GOALS[0] and spec.is_multi_objective()
    assert StudySpec.from_yaml(spec.to_yaml()) == spec
    assert spec_from_pb(spec_to_pb(spec)) == spec
    assert "objective" not in spec.to_dict()


def test_one_objective_keeps_working() -> None:
    data = two_objectives(objective={"metric": "val_accuracy", "mode": "max"})
    del data["objectives"]
    spec = StudySpec.parse(data)
    assert spec.goals == [GOALS[0]] and not spec.is_multi_objective()
    assert spec_from_pb(spec_to_pb(spec)) == spec


@pytest.mark.parametrize(
    ("changes", "path", "fragment"),
    [
        ({"objective": {"metric": "val_loss", "mode": "min"}}, "objectives", "not both"),
        ({"objectives": [ACCURACY_AND_SIZE[0], ACCURACY_AND_SIZE[0]]}, "objectives.1.metric", "more than once"),
        ({"objectives": [ACCURACY_AND_SIZE[0]]}, "objectives", "at least 2"),
        ({"search": {"sampler": "gp"}}, "search.sampler", "tpe, nsga2, random"),
        ({"search": {"sampler": "cmaes"}}, "search.sampler", "optimises one objective"),
        ({"scheduler": {"median": {}}}, "scheduler.median", "one objective"),
    ],
    ids=["both-forms", "same-metric-twice", "only-one", "gp", "cmaes", "median-rule"],
)
def test_what_cannot_serve_several_objectives_is_refused_naming_the_field(
    changes: dict[str, Any], path: str, fragment: str
) -> None:
    where, message = refusal(two_objectives(**changes))
    assert where == path and fragment in message


def test_a_metric_the_trainer_does_not_report_is_refused_at_its_objective() -> None:
    spec = StudySpec.parse(two_objectives(objectives=[ACCURACY_AND_SIZE[0], {"metric": "latency", "mode": "min"}]))
    with pytest.raises(InvalidSpec) as caught:
        check_spec(spec)
    assert [e.path for e in caught.value.errors] == ["objectives.1.metric"]


def test_a_warm_start_needs_the_same_objectives() -> None:
    spec = StudySpec.parse(two_objectives())
    single = StudySpec.parse({**two_objectives(objective=GOALS[0].model_dump()), "objectives": None})
    [error] = spec.warm_start_errors(single, 0)
    assert error.path == "search.warm_start[0]" and "num_parameters (min)" in error.message


# ------------------------------------------------------------------ fronts


def test_points_are_oriented_so_larger_is_better() -> None:
    assert oriented({"val_accuracy": 0.9, "num_parameters": 100.0}, GOALS) == (0.9, -100.0)
    assert oriented({"val_accuracy": 0.9}, GOALS) is None
    assert oriented({"val_accuracy": math.nan, "num_parameters": 1.0}, GOALS) is None


def test_the_front_holds_the_points_nothing_dominates_best_first() -> None:
    points = [(0.9, -100.0), (0.8, -10.0), (0.85, -200.0), (0.95, -500.0), (0.8, -10.0)]
    assert dominates(points[0], points[2]) and not dominates(points[1], points[4])
    assert non_dominated(points) == [3, 0, 1, 4]
    assert fronts(points) == [[3, 0, 1, 4], [2]]


def test_ranking_puts_a_fronts_spread_out_ends_first() -> None:
    points = [(1.0, 0.0), (0.6, 0.5), (0.5, 0.6), (0.0, 1.0), (0.2, 0.2)]
    room = crowding(points, [0, 1, 2, 3])
    assert room[0] == room[3] == math.inf and room[1] == room[2] < math.inf
    assert ranked(points)[:2] in ([0, 3], [3, 0]) and ranked(points)[-1] == 4


def trial(trial_id: str, accuracy: float, size: float, state: TrialState = TrialState.COMPLETED) -> Trial:
    return Trial(trial_id=trial_id, state=state, metrics={"val_accuracy": accuracy, "num_parameters": size})


def study_of(spec: StudySpec, trials: list[Trial]) -> Study:
    now = datetime.now(timezone.utc)
    return Study(
        study_id="st-1", name=spec.name, spec=spec, state=StudyState.SUCCEEDED, created_at=now, updated_at=now,
        trials=trials,
    )  # fmt: skip


def test_get_study_shows_the_front_of_completed_trials_only() -> None:
    trials = [
        trial("big", 0.97, 9000.0),
        trial("small", 0.90, 500.0),
        trial("worse", 0.89, 600.0),
        trial("stopped", 0.99, 100.0, TrialState.STOPPED_EARLY),  # its values are of an early epoch
        Trial(trial_id="silent", state=TrialState.COMPLETED, metrics={"val_accuracy": 1.0}),
    ]
    study = study_of(StudySpec.parse(two_objectives()), trials)
    assert [t.trial_id for t in study.pareto_front] == ["big", "small"]
    message = study_to_pb(study)
    assert list(message.pareto_front) == ["big", "small"]
    assert [t.trial_id for t in study_from_pb(message).pareto_front] == ["big", "small"]


def test_a_single_objective_study_has_no_front() -> None:
    data = {**two_objectives(objective=GOALS[0].model_dump()), "objectives": None}
    assert study_of(StudySpec.parse(data), [trial("a", 0.9, 1.0)]).pareto_front == []


def test_watch_events_carry_the_front_as_it_stood_then() -> None:
    front = ParetoFront(GOALS)
    now = datetime.now(timezone.utc)

    def event(sequence: int, kind: EventKind, ended: Trial | None = None) -> StudyEvent:
        return StudyEvent(sequence=sequence, study_id="st-1", kind=kind, time=now, trial=ended)

    marked = [
        front.mark(event(1, EventKind.TRIAL_ENDED, trial("a", 0.9, 1000.0))),
        front.mark(event(2, EventKind.TRIAL_RESULT, trial("b", 0.5, 10.0, TrialState.RUNNING))),
        front.mark(event(3, EventKind.TRIAL_ENDED, trial("b", 0.8, 10.0))),
        front.mark(event(4, EventKind.TRIAL_ENDED, trial("c", 0.95, 1000.0))),
        front.mark(event(5, EventKind.STUDY_ENDED)),
    ]
    assert [e.pareto_front for e in marked] == [["a"], [], ["a", "b"], ["c", "b"], ["c", "b"]]


# ------------------------------------------------------------------ early stopping


def rung_result(epoch: int, accuracy: float, size: float) -> dict[str, Any]:
    return {EPOCH: epoch, "val_accuracy": accuracy, "num_parameters": size}


def test_several_objectives_stop_early_by_pareto_rank_at_asha_rungs() -> None:
    chosen = scheduler(StudySpec.parse(two_objectives()), MLP, slots=2)
    assert isinstance(chosen, ParetoASHA)
    assert [milestone for milestone, _ in chosen.rungs] == [9, 3, 1] and asha_rungs(9, 1, 3) == [1, 3, 9]
    decide = chosen.decide
    assert decide("first", rung_result(1, 0.5, 1000.0)) == TrialScheduler.CONTINUE  # alone at its rung
    assert decide("dominated", rung_result(1, 0.4, 2000.0)) == TrialScheduler.STOP
    assert decide("dominated-too", rung_result(1, 0.45, 1500.0)) == TrialScheduler.STOP
    # The worst accuracy of the four but the smallest: on the front, so within the top 2 of 4
    # that go on, where accuracy alone (ASHA's quantile, 0.47 here) would stop it.
    assert decide("small", rung_result(1, 0.3, 100.0)) == TrialScheduler.CONTINUE
    assert decide("first", rung_result(2, 0.9, 1000.0)) == TrialScheduler.CONTINUE  # between rungs
    assert decide("first", rung_result(9, 0.9, 1000.0)) == TrialScheduler.STOP  # its max_t


def test_a_result_without_every_objective_is_not_judged() -> None:
    chosen = scheduler(StudySpec.parse(two_objectives()), MLP, slots=2)
    assert isinstance(chosen, ParetoASHA)
    assert chosen.decide("t", {EPOCH: 1, "val_accuracy": 0.1}) == TrialScheduler.CONTINUE
    assert all(not recorded for _, recorded in chosen.rungs)


def multi_searcher() -> AdoptingOptunaSearch:
    spec = StudySpec.parse(two_objectives(search={"sampler": "nsga2", "seed": 0}))
    return AdoptingOptunaSearch(
        space=optuna_space(spec),
        metric=["val_accuracy", "num_parameters"],
        mode=["max", "min"],
        sampler=optuna_sampler(spec),
    )


def test_optuna_holds_both_values_of_a_finished_trial_and_prunes_a_stopped_one() -> None:
    search = multi_searcher()
    for name, ended in (("finished", True), ("stopped", False)):
        assert search.suggest(name) is not None
        last = {**rung_result(3, 0.9, 500.0), DONE: True, ENDED: ended}
        search.on_trial_result(name, last)
        search.on_trial_complete(name, last)
    study: optuna.Study = search._ot_study  # type: ignore[assignment]
    finished, stopped = study.trials
    assert finished.state is OptunaState.COMPLETE and finished.values == [0.9, 500.0]
    assert stopped.state is OptunaState.PRUNED and stopped.values is None
    assert [t.number for t in study.best_trials] == [finished.number]
