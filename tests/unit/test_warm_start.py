"""Warm starts: a study names earlier studies of its owner's (`search.warm_start`), is refused
at the door when their trials cannot teach its sampler, and its sampler learns their completed
trials before its first suggestion, without running them again."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import optuna
import pytest

from anneal.convert import spec_from_pb, spec_to_pb, study_from_pb, study_to_pb
from anneal.errors import InvalidSpec, NotFound
from anneal.settings import Settings
from anneal.spec import StudySpec
from anneal.types import EventKind, Trial, TrialState
from cluster.driver.tuning import WARM_START_ATTR, AdoptingOptunaSearch, optuna_sampler, optuna_space
from cluster.driver.warmstart import EarlierTrial, earlier_trials
from cluster.server.service import AnnealService
from cluster.store.store import Store
from tests.unit.fakes import FakeJobs
from tests.unit.helpers import principal

ALICE, BOB, ADMIN = principal("alice"), principal("bob"), principal("root", admin=True)


def spec(data: dict[str, Any], **changes: Any) -> StudySpec:
    changed = copy.deepcopy(data)
    changed.update(changes)
    return StudySpec.parse(changed)


@pytest.fixture
def service(tmp_path: Path, store: Store, jobs: FakeJobs) -> AnnealService:
    return AnnealService.build(Settings.load(home=tmp_path), store, jobs)


def warm(example_data: dict[str, Any], *study_ids: str, **changes: Any) -> StudySpec:
    return spec(example_data, name="warm", search={"sampler": "tpe", "warm_start": list(study_ids)}, **changes)


def test_the_spec_spells_warm_start_and_it_survives_the_wire(example_data: dict[str, Any]) -> None:
    warmed = warm(example_data, "st-1", "st-2")
    assert warmed.search.warm_start == ["st-1", "st-2"]
    assert spec_from_pb(spec_to_pb(warmed)) == warmed
    with pytest.raises(InvalidSpec, match=r"search.warm_start.1: 'st-1' is given more than once"):
        warm(example_data, "st-1", "st-1")


def test_the_count_of_trials_learnt_survives_the_wire(service: AnnealService, example_data: dict[str, Any]) -> None:
    study = service.studies.create_study(spec(example_data), ALICE).model_copy(update={"warm_start_trials": 7})
    assert study_from_pb(study_to_pb(study)).warm_start_trials == 7


def test_a_study_warm_starts_from_an_earlier_one_of_its_owner(
    service: AnnealService, example_data: dict[str, Any]
) -> None:
    earlier = service.studies.create_study(spec(example_data), ALICE)
    warmed = service.studies.create_study(warm(example_data, earlier.study_id), ALICE)
    assert warmed.spec.search.warm_start == [earlier.study_id]


@pytest.mark.parametrize("caller", [BOB, ADMIN], ids=["another principal", "an admin"])
def test_another_principals_study_is_not_found(
    service: AnnealService, example_data: dict[str, Any], caller: Any
) -> None:
    alices = service.studies.create_study(spec(example_data), ALICE)
    with pytest.raises(NotFound, match=f"no study '{alices.study_id}'"):
        service.studies.create_study(warm(example_data, alices.study_id), caller)


def test_a_parameter_over_another_domain_is_refused_naming_it(
    service: AnnealService, example_data: dict[str, Any]
) -> None:
    earlier = service.studies.create_study(spec(example_data), ALICE)
    space = copy.deepcopy(example_data["search_space"])
    space["lr"] = {"float": {"low": 1e-4, "high": 1e-1, "log": True}}
    with pytest.raises(InvalidSpec) as refused:
        service.studies.create_study(warm(example_data, earlier.study_id, search_space=space), ALICE)
    (error,) = refused.value.errors
    assert error.path == "search_space.lr"
    assert "is float [0.0001, 0.1] log here and float [0.001, 0.03] log in the study of search.warm_start[0]" in (
        error.message
    )


def test_another_objective_or_no_shared_parameter_is_refused(
    service: AnnealService, example_data: dict[str, Any]
) -> None:
    earlier = service.studies.create_study(spec(example_data), ALICE)
    other = {"metric": "val_loss", "mode": "min"}
    with pytest.raises(InvalidSpec, match=r"search.warm_start\[0\]: that study optimises val_accuracy \(max\)"):
        service.studies.create_study(warm(example_data, earlier.study_id, objective=other), ALICE)
    unrelated = {"dropout": {"float": {"low": 0.0, "high": 0.5}}}
    with pytest.raises(InvalidSpec, match=r"search.warm_start\[0\]: that study tunes none of this study's"):
        service.studies.create_study(warm(example_data, earlier.study_id, search_space=unrelated), ALICE)


def test_the_driver_hands_on_completed_trials_and_their_shared_parameters(
    store: Store, example_data: dict[str, Any]
) -> None:
    earlier = store.create_study(spec(example_data), owner="alice")
    finished = [
        Trial(trial_id="a", state=TrialState.COMPLETED, config={"lr": 0.01, "hidden_size": 64, "optimizer": "adam"},
              metrics={"val_accuracy": 0.9}, epochs=12),
        Trial(trial_id="b", state=TrialState.STOPPED_EARLY, config={"lr": 0.02, "hidden_size": 32, "optimizer": "sgd"},
              metrics={"val_accuracy": 0.3}, epochs=3),
        Trial(trial_id="c", state=TrialState.ERROR, config={"lr": 0.002, "hidden_size": 40, "optimizer": "sgd"}),
    ]  # fmt: skip
    for trial in finished:
        store.record_trial(earlier.study_id, trial, EventKind.TRIAL_ENDED)
    space = copy.deepcopy(example_data["search_space"])
    del space["hidden_size"]
    warmed = warm(example_data, earlier.study_id, search_space=space)
    assert earlier_trials(store, warmed) == [EarlierTrial(earlier.study_id, {"lr": 0.01, "optimizer": "adam"}, (0.9,))]


def test_the_sampler_learns_the_earlier_trials_before_its_first_suggestion(example_data: dict[str, Any]) -> None:
    warmed = warm(example_data, "st-earlier")
    search = AdoptingOptunaSearch(
        space=optuna_space(warmed), metric="val_accuracy", mode="max", sampler=optuna_sampler(warmed)
    )
    learnt = [EarlierTrial("st-earlier", {"lr": 0.001 * (n + 1), "optimizer": "adam"}, (n / 20,)) for n in range(12)]
    search.learn_earlier(learnt)
    study: optuna.Study = search._ot_study  # type: ignore[assignment]
    assert [t.value for t in study.trials] == [n / 20 for n in range(12)]
    assert {t.user_attrs[WARM_START_ATTR] for t in study.trials} == {"st-earlier"}
    assert study.best_trial.params == {"lr": 0.012, "optimizer": "adam"}
    suggested = search.suggest("t-1")
    assert suggested is not None and set(suggested) == {"lr", "hidden_size", "optimizer"}
    assert len(study.trials) == 13  # the new trial follows the learnt ones; none of them runs again
