"""The study spec: what is accepted, what is refused, and that every refusal names its field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from anneal.errors import FieldError, InvalidSpec
from anneal.spec import StudySpec
from tests.unit.helpers import ROOT, typed
from trainers.registry import check_spec


def set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Sets data[a][b][c] = value for "a.b.c", creating missing mappings."""
    *parents, last = dotted.split(".")
    for key in parents:
        data = data.setdefault(key, {})
    data[last] = value


def refused(data: Any) -> InvalidSpec:
    with pytest.raises(InvalidSpec) as caught:
        StudySpec.parse(data)
    return caught.value


# ------------------------------------------------------------------ valid specs


def test_example_loads(example_spec: StudySpec) -> None:
    spec = example_spec
    assert spec.name == "digits-mlp"
    assert spec.trainer == "mlp_classifier"
    assert spec.dataset.name == "digits"
    assert spec.params == {"epochs": 12, "batch_size": 32}
    assert list(spec.search_space) == ["lr", "hidden_size", "optimizer"]
    assert [d.kind for d in spec.search_space.values()] == ["float", "int", "categorical"]
    assert spec.search_space["lr"].float_range is not None and spec.search_space["lr"].float_range.log
    assert spec.search_space["optimizer"].categorical == ["adam", "sgd"]
    assert (spec.objective.metric, spec.objective.mode) == ("val_accuracy", "max")
    assert spec.scheduler.kind == "asha"
    assert spec.scheduler.asha is not None and spec.scheduler.asha.grace_period == 3
    assert spec.budget.time_budget_s == 600
    assert spec.failure.max_retries == 2


def test_example_passes_the_registry(example_spec: StudySpec) -> None:
    assert check_spec(example_spec).name == "mlp_classifier"


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_is_valid(path: Path) -> None:
    spec = StudySpec.load(path)
    assert check_spec(spec).name == spec.trainer
    assert StudySpec.from_yaml(spec.to_yaml()) == spec


def test_defaults_are_applied(minimal_data: dict[str, Any]) -> None:
    spec = StudySpec.parse(minimal_data)
    assert spec.params == {}
    assert (spec.dataset.validation_fraction, spec.dataset.test_fraction, spec.dataset.split_seed) == (0.2, 0.2, 0)
    assert spec.search.sampler == "tpe"
    assert spec.search.seed is None
    assert spec.scheduler.kind == "none"
    assert (spec.budget.max_trials, spec.budget.max_concurrent_trials, spec.budget.time_budget_s) == (16, 2, None)
    assert (spec.resources.cpu, spec.resources.gpu) == (1.0, 0.0)
    assert spec.failure.max_retries == 1
    assert (spec.deploy.auto, spec.deploy.replicas) == (False, 1)
    assert spec.search_space["lr"].float_range is not None and spec.search_space["lr"].float_range.log is False


@pytest.mark.parametrize("kind", ["asha", "median", "none"])
def test_scheduler_shorthand(minimal_data: dict[str, Any], kind: str) -> None:
    minimal_data["scheduler"] = kind
    spec = StudySpec.parse(minimal_data)
    assert spec.scheduler.kind == kind
    assert spec.scheduler == StudySpec.parse({**minimal_data, "scheduler": {kind: {}}}).scheduler


def test_scheduler_shorthand_takes_defaults(minimal_data: dict[str, Any]) -> None:
    spec = StudySpec.from_yaml("scheduler: asha\n" + yaml.safe_dump(minimal_data))
    assert spec.scheduler.asha is not None
    assert (spec.scheduler.asha.grace_period, spec.scheduler.asha.reduction_factor) == (1, 3)


def test_yaml_round_trip_of_example(example_spec: StudySpec) -> None:
    again = StudySpec.from_yaml(example_spec.to_yaml())
    assert again == example_spec
    assert typed(again.to_dict()) == typed(example_spec.to_dict())
    assert list(again.search_space) == list(example_spec.search_space)


def test_yaml_round_trip_of_minimal_spec(minimal_data: dict[str, Any]) -> None:
    spec = StudySpec.parse(minimal_data)
    assert StudySpec.from_yaml(spec.to_yaml()) == spec


def test_yaml_round_trip_keeps_scalar_types(minimal_data: dict[str, Any]) -> None:
    minimal_data["params"] = {"epochs": 3, "dropout": 0.5, "optimizer": "sgd", "flag": True, "label": "1"}
    minimal_data["search_space"]["choice"] = {"categorical": ["1", 1, 1.5, True, "yes"]}
    spec = StudySpec.parse(minimal_data)
    again = StudySpec.from_yaml(spec.to_yaml())
    assert typed(again.params) == typed(spec.params)
    assert typed(again.search_space["choice"].categorical) == typed(["1", 1, 1.5, True, "yes"])


def test_load_reads_a_file(tmp_path: Path, example_spec: StudySpec) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(example_spec.to_yaml())
    assert StudySpec.load(path) == example_spec
    assert StudySpec.load(str(path)) == example_spec


# ------------------------------------------------------------------ refusals

BAD_CASES: list[tuple[str, str, Any, str, str]] = [
    # (id, dotted key to set, value, field path named, fragment of the message)
    ("empty search_space", "search_space", {}, "search_space", "at least one parameter"),
    (
        "float low == high",
        "search_space.lr",
        {"float": {"low": 0.1, "high": 0.1}},
        "search_space.lr.float.low",
        "must be < high",
    ),
    (
        "float low > high",
        "search_space.lr",
        {"float": {"low": 0.5, "high": 0.1}},
        "search_space.lr.float.low",
        "must be < high",
    ),
    (
        "float not finite",
        "search_space.lr",
        {"float": {"low": 0.0, "high": float("inf")}},
        "search_space.lr.float.low",
        "finite",
    ),
    (
        "int low == high",
        "search_space.hidden_size",
        {"int": {"low": 32, "high": 32}},
        "search_space.hidden_size.int.low",
        "must be < high",
    ),
    (
        "int low > high",
        "search_space.hidden_size",
        {"int": {"low": 64, "high": 8}},
        "search_space.hidden_size.int.low",
        "must be < high",
    ),
    (
        "int not whole",
        "search_space.hidden_size",
        {"int": {"low": 1.5, "high": 8}},
        "search_space.hidden_size.int.low",
        "integer",
    ),
    (
        "float log low 0",
        "search_space.lr",
        {"float": {"low": 0.0, "high": 1.0, "log": True}},
        "search_space.lr.float.low",
        "must be > 0 when log is true",
    ),
    (
        "float log low < 0",
        "search_space.lr",
        {"float": {"low": -1.0, "high": 1.0, "log": True}},
        "search_space.lr.float.low",
        "must be > 0 when log is true",
    ),
    (
        "int log low 0",
        "search_space.hidden_size",
        {"int": {"low": 0, "high": 8, "log": True}},
        "search_space.hidden_size.int.low",
        "must be > 0 when log is true",
    ),
    (
        "categorical empty",
        "search_space.optimizer",
        {"categorical": []},
        "search_space.optimizer.categorical",
        "at least one choice",
    ),
    (
        "categorical repeated",
        "search_space.optimizer",
        {"categorical": ["adam", "adam"]},
        "search_space.optimizer.categorical",
        "distinct",
    ),
    (
        "domain with two kinds",
        "search_space.lr",
        {"float": {"low": 0.1, "high": 1.0}, "categorical": [1]},
        "search_space.lr",
        "exactly one",
    ),
    ("domain with no kind", "search_space.lr", {}, "search_space.lr", "exactly one"),
    ("unknown domain kind", "search_space.lr", {"uniform": [0, 1]}, "search_space.lr.uniform", "not permitted"),
    ("param fixed and tuned", "params.lr", 0.01, "params.lr", "fixed or tuned"),
    ("unknown sampler", "search.sampler", "grid", "search.sampler", "tpe"),
    ("unknown mode", "objective.mode", "up", "objective.mode", "max"),
    ("empty metric", "objective.metric", "", "objective.metric", "at least 1"),
    ("unknown scheduler", "scheduler", "hyperband", "scheduler.hyperband", "not permitted"),
    ("two schedulers", "scheduler", {"asha": {}, "median": {}}, "scheduler", "exactly one"),
    (
        "asha reduction_factor 1",
        "scheduler",
        {"asha": {"reduction_factor": 1}},
        "scheduler.asha.reduction_factor",
        "greater than or equal to 2",
    ),
    (
        "median grace_period 0",
        "scheduler",
        {"median": {"grace_period": 0}},
        "scheduler.median.grace_period",
        "greater than or equal to 1",
    ),
    ("max_trials 0", "budget.max_trials", 0, "budget.max_trials", "greater than or equal to 1"),
    ("max_trials < 0", "budget.max_trials", -3, "budget.max_trials", "greater than or equal to 1"),
    (
        "max_concurrent_trials 0",
        "budget.max_concurrent_trials",
        0,
        "budget.max_concurrent_trials",
        "greater than or equal to 1",
    ),
    (
        "max_concurrent_trials < 0",
        "budget.max_concurrent_trials",
        -1,
        "budget.max_concurrent_trials",
        "greater than or equal to 1",
    ),
    ("time_budget_s 0", "budget.time_budget_s", 0, "budget.time_budget_s", "greater than 0"),
    ("time_budget_s < 0", "budget.time_budget_s", -60, "budget.time_budget_s", "greater than 0"),
    ("cpu < 0", "resources.cpu", -1, "resources.cpu", "greater than or equal to 0"),
    ("gpu < 0", "resources.gpu", -0.5, "resources.gpu", "greater than or equal to 0"),
    ("no cpu and no gpu", "resources", {"cpu": 0, "gpu": 0}, "resources.cpu", "some cpu or gpu"),
    ("fractional gpu above 1", "resources.gpu", 1.5, "resources.gpu", "whole number"),
    ("max_retries < 0", "failure.max_retries", -1, "failure.max_retries", "greater than or equal to 0"),
    (
        "checkpoint_interval_s < 0",
        "failure.checkpoint_interval_s",
        -1,
        "failure.checkpoint_interval_s",
        "greater than or equal to 0",
    ),
    ("replicas 0", "deploy.replicas", 0, "deploy.replicas", "greater than or equal to 1"),
    (
        "replicas with autoscaling",
        "deploy",
        {"replicas": 2, "max_replicas": 4},
        "deploy.replicas",
        "either replicas (fixed) or min_replicas/max_replicas",
    ),
    ("autoscaling without a maximum", "deploy", {"min_replicas": 2}, "deploy.max_replicas", "is needed with"),
    ("min above max", "deploy", {"min_replicas": 3, "max_replicas": 2}, "deploy.min_replicas", "<= max_replicas"),
    (
        "target 0",
        "deploy",
        {"max_replicas": 2, "target_ongoing_requests": 0},
        "deploy.target_ongoing_requests",
        "greater than 0",
    ),
    ("validation_fraction 0", "dataset.validation_fraction", 0, "dataset.validation_fraction", "greater than 0"),
    ("test_fraction 1", "dataset.test_fraction", 1, "dataset.test_fraction", "less than 1"),
    (
        "fractions leave no training rows",
        "dataset",
        {"name": "digits", "validation_fraction": 0.5, "test_fraction": 0.4},
        "dataset.test_fraction",
        "< 0.9",
    ),
    ("unknown top-level field", "colour", "red", "colour", "Extra inputs are not permitted"),
    ("unknown nested field", "budget.max_trails", 3, "budget.max_trails", "Extra inputs are not permitted"),
    ("name with upper case", "name", "Digits-MLP", "name", "pattern"),
    ("name with underscore", "name", "digits_mlp", "name", "pattern"),
    ("name starting with a dash", "name", "-digits", "name", "pattern"),
    ("name ending with a dash", "name", "digits-", "name", "pattern"),
    ("empty name", "name", "", "name", "pattern"),
    ("name too long", "name", "a" * 64, "name", "pattern"),
    ("empty trainer", "trainer", "", "trainer", "at least 1"),
    ("unknown dataset format", "dataset.format", "orc", "dataset.format", "'parquet' or 'csv'"),
    ("a label without a format", "dataset.label", "y", "dataset.label", "needs a format"),
    ("features without a format", "dataset.features", ["a"], "dataset.features", "needs a format"),
    (
        "a format without a path",
        "dataset",
        {"name": "t", "format": "parquet", "label": "y"},
        "dataset.path",
        "needed with format parquet",
    ),
    (
        "a format without a label",
        "dataset",
        {"name": "t", "path": "t.parquet", "format": "parquet"},
        "dataset.label",
        "the column the model predicts",
    ),
    (
        "the label among the features",
        "dataset",
        {"name": "t", "path": "t.csv", "format": "csv", "label": "y", "features": ["a", "y"]},
        "dataset.features.1",
        "is the label",
    ),
    (
        "a feature twice",
        "dataset",
        {"name": "t", "path": "t.csv", "format": "csv", "label": "y", "features": ["a", "a"]},
        "dataset.features.1",
        "more than once",
    ),
    (
        "an empty feature name",
        "dataset",
        {"name": "t", "path": "t.csv", "format": "csv", "label": "y", "features": [""]},
        "dataset.features.0",
        "1 to 256 characters",
    ),
]


@pytest.mark.parametrize(
    ("key", "value", "path", "fragment"), [case[1:] for case in BAD_CASES], ids=[case[0] for case in BAD_CASES]
)
def test_bad_spec_is_refused_naming_the_field(
    example_data: dict[str, Any], key: str, value: Any, path: str, fragment: str
) -> None:
    set_path(example_data, key, value)
    error = refused(example_data)
    assert [e.path for e in error.errors] == [path]
    assert fragment in error.errors[0].message
    assert str(error) == f"{path}: {error.errors[0].message}"


def test_log_bound_message_is_exact(example_data: dict[str, Any]) -> None:
    example_data["search_space"]["lr"] = {"float": {"low": 0, "high": 1, "log": True}}
    assert str(refused(example_data)) == "search_space.lr.float.low: must be > 0 when log is true"


@pytest.mark.parametrize("missing", ["name", "trainer", "dataset", "search_space", "objective"])
def test_required_field_missing(example_data: dict[str, Any], missing: str) -> None:
    del example_data[missing]
    message = "Field required (or objectives, for several)" if missing == "objective" else "Field required"
    assert refused(example_data).errors == [FieldError(missing, message)]


def test_every_problem_is_reported_at_once(example_data: dict[str, Any]) -> None:
    example_data["name"] = "Bad Name"
    example_data["search"]["sampler"] = "grid"
    example_data["budget"]["max_trials"] = 0
    paths = {e.path for e in refused(example_data).errors}
    assert paths == {"name", "search.sampler", "budget.max_trials"}


@pytest.mark.parametrize("text", ["", "42", "- a\n- b\n", "just words"])
def test_yaml_that_is_not_a_mapping_is_refused(text: str) -> None:
    with pytest.raises(InvalidSpec, match="must be a mapping"):
        StudySpec.from_yaml(text)


def test_malformed_yaml_is_refused() -> None:
    with pytest.raises(InvalidSpec, match="not valid YAML"):
        StudySpec.from_yaml("name: [unclosed\n")


def test_parse_refuses_a_non_mapping() -> None:
    assert refused(["name", "x"]).errors == [FieldError("", "a study spec must be a mapping")]


# ------------------------------------------------------------------ registry checks


def registry_refusal(data: dict[str, Any]) -> InvalidSpec:
    spec = StudySpec.parse(data)
    with pytest.raises(InvalidSpec) as caught:
        check_spec(spec)
    return caught.value


def test_unknown_trainer(example_data: dict[str, Any]) -> None:
    example_data["trainer"] = "xgboost"
    error = registry_refusal(example_data)
    assert [e.path for e in error.errors] == ["trainer"]
    assert "xgboost" in error.errors[0].message and "mlp_classifier" in error.errors[0].message


def test_unknown_dataset(example_data: dict[str, Any]) -> None:
    example_data["dataset"]["name"] = "mnist"
    error = registry_refusal(example_data)
    assert [e.path for e in error.errors] == ["dataset.name"]
    assert "mnist" in error.errors[0].message and "digits" in error.errors[0].message


def test_metric_the_trainer_does_not_report(example_data: dict[str, Any]) -> None:
    example_data["objective"]["metric"] = "f1"
    error = registry_refusal(example_data)
    assert [e.path for e in error.errors] == ["objective.metric"]
    assert "val_accuracy" in error.errors[0].message


def test_unknown_tuned_parameter(example_data: dict[str, Any]) -> None:
    example_data["search_space"]["learning_rate"] = {"float": {"low": 0.01, "high": 0.1}}
    assert [e.path for e in registry_refusal(example_data).errors] == ["search_space.learning_rate"]


def test_unknown_fixed_parameter(example_data: dict[str, Any]) -> None:
    example_data["params"]["layers"] = 2
    assert [e.path for e in registry_refusal(example_data).errors] == ["params.layers"]


def test_registry_reports_every_problem(example_data: dict[str, Any]) -> None:
    example_data["dataset"]["name"] = "mnist"
    example_data["objective"]["metric"] = "f1"
    example_data["params"]["layers"] = 2
    paths = [e.path for e in registry_refusal(example_data).errors]
    assert paths == ["dataset.name", "objective.metric", "params.layers"]


@pytest.mark.parametrize("dataset", ["digits", "wine", "breast_cancer", "iris"])
def test_registry_accepts_each_bundled_dataset(example_data: dict[str, Any], dataset: str) -> None:
    example_data["dataset"]["name"] = dataset
    check_spec(StudySpec.parse(example_data))


@pytest.mark.parametrize("metric", ["val_accuracy", "val_loss", "train_loss"])
def test_registry_accepts_each_reported_metric(example_data: dict[str, Any], metric: str) -> None:
    example_data["objective"]["metric"] = metric
    check_spec(StudySpec.parse(example_data))


def test_import_paths_only_when_allowed(example_data: dict[str, Any]) -> None:
    example_data["trainer"] = "trainers.registry:no_such_function"
    spec = StudySpec.parse(example_data)
    with pytest.raises(InvalidSpec) as caught:
        check_spec(spec)
    assert [e.path for e in caught.value.errors] == ["trainer"]
    with pytest.raises(InvalidSpec) as caught:
        check_spec(spec, allow_import_paths=True)
    assert [e.path for e in caught.value.errors] == ["trainer"]
    assert "cannot load" in caught.value.errors[0].message


def test_deploy_overrides_switch_between_fixed_and_autoscaled_replicas() -> None:
    from anneal.spec import DeployPolicy

    fixed = DeployPolicy(replicas=3)
    scaled = fixed.with_overrides({"max_replicas": 4, "downscale_delay_s": 1.0})
    assert scaled.autoscaling() is not None and scaled.least_replicas() == 1
    assert (scaled.autoscaling().max_replicas, scaled.autoscaling().target_ongoing_requests) == (4, 2.0)  # type: ignore[union-attr]
    back = scaled.with_overrides({"replicas": 2})
    assert back.autoscaling() is None and back.least_replicas() == 2
    assert fixed.with_overrides({}) == fixed
