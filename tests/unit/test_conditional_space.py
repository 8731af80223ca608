"""Conditional search spaces: a parameter tuned only when a parent categorical takes given
values (nesting allowed), refused at the door when a condition cannot hold, and sampled
define-by-run so a trial's config holds its active parameters alone."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from anneal.convert import spec_from_pb, spec_to_pb
from anneal.errors import InvalidSpec
from anneal.spec import StudySpec
from cluster.driver.tuning import AdoptingOptunaSearch, ConditionalSpace, optuna_space, searched_space
from cluster.trial.context import ENDED
from cluster.trial.function import ADOPTED_AS

SGD_ONLY = {"float": {"low": 0.5, "high": 0.99}, "when": {"optimizer": ["sgd"]}}


def conditional(example_data: dict[str, Any], **space: Any) -> StudySpec:
    data = copy.deepcopy(example_data)
    data["search_space"].update(space)
    return StudySpec.parse(data)


def nested(example_data: dict[str, Any]) -> StudySpec:
    """momentum and num_layers under sgd; dropout under sgd's two layers."""
    return conditional(
        example_data,
        momentum=SGD_ONLY,
        num_layers={"categorical": [1, 2], "when": {"optimizer": ["sgd"]}},
        dropout={"float": {"low": 0.0, "high": 0.5}, "when": {"num_layers": [2]}},
    )


def test_yaml_spells_a_condition_and_it_survives_the_wire(example_data: dict[str, Any]) -> None:
    spec = StudySpec.from_yaml(
        """
name: cond
trainer: mlp_classifier
dataset: {name: digits}
search_space:
  optimizer: {categorical: [adam, sgd]}
  momentum: {float: {low: 0.5, high: 0.99}, when: {optimizer: [sgd]}}
objective: {metric: val_accuracy, mode: max}
"""
    )
    assert spec.search_space["momentum"].when == {"optimizer": ["sgd"]}
    assert spec_from_pb(spec_to_pb(spec)) == spec
    assert spec_from_pb(spec_to_pb(nested(example_data))) == nested(example_data)


@pytest.mark.parametrize(
    ("when", "field", "message"),
    [
        ({"optimiser": ["sgd"]}, "search_space.momentum.when.optimiser", "is not another parameter of search_space"),
        ({"optimizer": ["rmsprop"]}, "search_space.momentum.when.optimizer", "'rmsprop' is not among optimizer's"),
        ({"lr": [0.01]}, "search_space.momentum.when.lr", "lr must be a categorical parameter"),
        ({"optimizer": []}, "search_space.momentum.when.optimizer", "needs at least one of its choices"),
        ({"momentum": [0.5]}, "search_space.momentum.when.momentum", "is not another parameter"),
    ],
    ids=["unknown parent", "not a choice", "not categorical", "no value", "itself"],
)
def test_a_condition_that_cannot_hold_is_refused_naming_it(
    example_data: dict[str, Any], when: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(InvalidSpec) as refused:
        conditional(example_data, momentum={"float": {"low": 0.5, "high": 0.99}, "when": when})
    (error,) = refused.value.errors
    assert error.path == field and message in error.message


def test_a_cycle_of_conditions_is_refused(example_data: dict[str, Any]) -> None:
    with pytest.raises(InvalidSpec, match=r"search_space\.\w+\.when: the conditions form a cycle: "):
        conditional(
            example_data,
            num_layers={"categorical": [1, 2], "when": {"activation": ["relu"]}},
            activation={"categorical": ["relu", "tanh"], "when": {"num_layers": [2]}},
        )


def test_parents_are_sampled_before_their_children(example_data: dict[str, Any]) -> None:
    order = nested(example_data).sampling_order()
    assert order.index("optimizer") < order.index("num_layers") < order.index("dropout")
    assert order.index("optimizer") < order.index("momentum")


def searcher(spec: StudySpec) -> AdoptingOptunaSearch:
    return AdoptingOptunaSearch(
        space=searched_space(spec),
        distributions=optuna_space(spec),
        metric="val_accuracy",
        mode="max",
        sampler=optuna.samplers.RandomSampler(seed=0),
    )


def test_a_trial_holds_its_active_parameters_alone(example_data: dict[str, Any]) -> None:
    search = searcher(nested(example_data))
    configs = [search.suggest(f"t{n}") for n in range(40)]
    for config in configs:
        assert config is not None
        sgd = config["optimizer"] == "sgd"
        assert ("momentum" in config) == sgd and ("num_layers" in config) == sgd
        assert ("dropout" in config) == (sgd and config["num_layers"] == 2)
    assert {"adam", "sgd"} == {c["optimizer"] for c in configs if c}
    assert any("dropout" in c for c in configs if c) and any("num_layers" in c for c in configs if c)


def test_a_flat_space_is_sampled_as_before(example_data: dict[str, Any]) -> None:
    assert isinstance(searched_space(StudySpec.parse(example_data)), dict)


def test_the_searcher_with_conditions_is_saved_and_restored_as_tune_does(
    example_data: dict[str, Any], tmp_path: Path
) -> None:
    spec = nested(example_data)
    assert isinstance(pickle.loads(pickle.dumps(ConditionalSpace.of(spec))), ConditionalSpace)
    saved = searcher(spec)
    saved.suggest("t0")
    saved.save(str(tmp_path / "searcher.pkl"))
    restored = searcher(spec)
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert "t0" in restored._ot_trials and restored.suggest("t1") is not None


def test_an_adopted_trial_of_a_conditional_space_is_learnt_with_its_active_parameters(
    example_data: dict[str, Any],
) -> None:
    search = searcher(nested(example_data))
    search.adoptions = [("t-lost", {"lr": 0.01, "hidden_size": 64, "optimizer": "adam"})]
    assert search.suggest("t1") == {"lr": 0.01, "hidden_size": 64, "optimizer": "adam", ADOPTED_AS: "t-lost"}
    search.on_trial_complete("t1", {"val_accuracy": 0.8, ENDED: True})
    study: optuna.Study = search._ot_study  # type: ignore[assignment]
    (learnt,) = study.trials
    assert learnt.state is TrialState.COMPLETE and learnt.params == {"lr": 0.01, "hidden_size": 64, "optimizer": "adam"}
