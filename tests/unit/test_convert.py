"""Domain types <-> `anneal.v1` messages: every field and every enum value survives the trip."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from anneal import convert
from anneal.errors import InvalidSpec
from anneal.spec import MODES, SAMPLERS, Autoscaling, StudySpec
from anneal.types import (
    Deployment,
    DeploymentState,
    EventKind,
    ModelVersion,
    Prediction,
    Study,
    StudyEvent,
    StudyState,
    Task,
    TrainerDescription,
    TrainerParameter,
    Trial,
    TrialState,
)
from anneal.v1 import anneal_pb2 as pb
from tests.unit.helpers import typed
from trainers.registry import describe

CREATED = datetime(2024, 5, 1, 12, 30, 45, 123456, tzinfo=timezone.utc)
UPDATED = datetime(2024, 5, 1, 13, 0, 0, 999999, tzinfo=timezone.utc)

FULL: dict[str, Any] = {
    "name": "full-spec",
    "trainer": "mlp_classifier",
    "dataset": {
        "name": "wine",
        "validation_fraction": 0.25,
        "test_fraction": 0.15,
        "split_seed": 7,
        "path": "tables/wine.csv",
    },
    "params": {"epochs": 5, "dropout": 0.25, "optimizer": "sgd", "flag": True},
    "search_space": {
        "lr": {"float": {"low": 1e-4, "high": 0.3, "log": True}},
        "momentum": {"float": {"low": 0.5, "high": 0.99}},
        "hidden_size": {"int": {"low": 8, "high": 512, "log": True}},
        "num_layers": {"int": {"low": -2, "high": 3}},
        "batch_size": {"categorical": [16, 32, 64]},
    },
    "objective": {"metric": "val_loss", "mode": "min"},
    "search": {"sampler": "cmaes", "seed": 42},
    "scheduler": {"median": {"grace_period": 2, "min_samples_required": 5}},
    "budget": {"max_trials": 40, "max_concurrent_trials": 4, "time_budget_s": 120.5},
    "resources": {"cpu": 2.5, "gpu": 0.5},
    "failure": {"max_retries": 3, "checkpoint_interval_s": 2.5},
    "deploy": {"auto": True, "replicas": 3},
}


def spec_with(**sections: Any) -> StudySpec:
    data = copy.deepcopy(FULL)
    data.update(sections)
    return StudySpec.parse(data)


def over_the_wire(spec: StudySpec) -> StudySpec:
    wire = convert.spec_to_pb(spec).SerializeToString()
    return convert.spec_from_pb(pb.StudySpec.FromString(wire))


def assert_round_trip(spec: StudySpec) -> None:
    back = over_the_wire(spec)
    assert back == spec
    assert typed(back.to_dict()) == typed(spec.to_dict())
    assert list(back.search_space) == list(spec.search_space)  # order seeds the sampler


# ------------------------------------------------------------------ the spec


def test_full_spec_round_trips() -> None:
    assert_round_trip(spec_with())


def test_example_round_trips(example_spec: StudySpec) -> None:
    assert_round_trip(example_spec)


def test_an_autoscaled_deploy_policy_round_trips() -> None:
    deploy = {"auto": True, "min_replicas": 2, "max_replicas": 5, "target_ongoing_requests": 1.5}
    assert_round_trip(spec_with(deploy={**deploy, "upscale_delay_s": 0.5, "downscale_delay_s": 30.0}))


def test_deploy_requests_override_only_the_fields_they_set() -> None:
    request = pb.DeployRequest(study_id="st-1", max_batch_size=4, max_replicas=3, downscale_delay_s=0.0)
    assert convert.deploy_overrides_from_pb(request) == {
        "max_batch_size": 4,
        "max_replicas": 3,
        "downscale_delay_s": 0.0,
    }
    assert convert.deploy_overrides_from_pb(pb.DeployRequest(study_id="st-1")) == {}


@pytest.mark.parametrize("dataset_format", ["parquet", "csv"])
def test_each_dataset_format(dataset_format: str) -> None:
    dataset = {"name": "t", "path": "t/", "format": dataset_format, "label": "y", "features": ["b", "a"]}
    assert_round_trip(spec_with(dataset=dataset))


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_each_sampler(sampler: str) -> None:
    spec = spec_with(search={"sampler": sampler, "seed": 1})
    assert over_the_wire(spec).search.sampler == sampler


@pytest.mark.parametrize("mode", MODES)
def test_each_mode(mode: str) -> None:
    spec = spec_with(objective={"metric": "val_accuracy", "mode": mode})
    assert over_the_wire(spec).objective.mode == mode


@pytest.mark.parametrize(
    "scheduler",
    [
        {"asha": {"grace_period": 4, "reduction_factor": 5}},
        {"asha": {}},
        {"asha": {"type": "promotion"}},
        {"asha": {"type": "stopping"}},
        {"median": {"grace_period": 3, "min_samples_required": 9}},
        {"median": {}},
        {"none": {}},
    ],
    ids=["asha", "asha-defaults", "asha-promotion", "asha-stopping", "median", "median-defaults", "none"],
)
def test_each_scheduler(scheduler: dict[str, Any]) -> None:
    spec = spec_with(scheduler=scheduler)
    assert over_the_wire(spec).scheduler == spec.scheduler
    assert_round_trip(spec)


@pytest.mark.parametrize(
    "domain",
    [
        {"float": {"low": -1.5, "high": 2.25}},
        {"float": {"low": 1e-6, "high": 1.0, "log": True}},
        {"int": {"low": -10, "high": 10}},
        {"int": {"low": 1, "high": 2**40, "log": True}},
        {"categorical": ["adam", "sgd"]},
        {"categorical": [0, 1, -7, 2**40]},
        {"categorical": [0.0, 0.5, -1e-9]},
        {"categorical": [True, False]},
        {"categorical": ["1", 1, 1.5, True, ""]},
    ],
    ids=["float", "float-log", "int", "int-log", "cat-str", "cat-int", "cat-float", "cat-bool", "cat-mixed"],
)
def test_each_domain(domain: dict[str, Any]) -> None:
    space = {"tuned": domain, "other": {"float": {"low": 0.0, "high": 1.0}}}
    spec = spec_with(search_space=space, params={})
    back = over_the_wire(spec)
    assert typed(back.to_dict()["search_space"]) == typed(spec.to_dict()["search_space"])
    assert list(back.search_space) == ["tuned", "other"]


def test_params_of_each_scalar_type() -> None:
    params = {
        "s": "text",
        "empty": "",
        "digits": "12",
        "i": 7,
        "neg": -3,
        "zero": 0,
        "big": 2**62,
        "f": 0.125,
        "fzero": 0.0,
        "whole": 2.0,
        "t": True,
        "f_bool": False,
    }
    back = over_the_wire(spec_with(params=params))
    assert typed(back.params) == typed(params)


def test_explicit_zeros_survive() -> None:
    spec = spec_with(
        dataset={"name": "iris", "validation_fraction": 0.3, "test_fraction": 0.0, "split_seed": 0},
        search={"sampler": "random", "seed": 0},
        resources={"cpu": 0.0, "gpu": 1.0},
        failure={"max_retries": 0},
        deploy={"auto": False, "replicas": 1},
    )
    message = convert.spec_to_pb(spec)
    assert message.failure.HasField("max_retries") and message.failure.max_retries == 0
    assert message.resources.HasField("cpu") and message.resources.cpu == 0.0
    assert message.search.HasField("seed") and message.search.seed == 0
    assert message.dataset.HasField("test_fraction")
    back = over_the_wire(spec)
    assert back.failure.max_retries == 0  # the default is 1
    assert back.resources.cpu == 0.0  # the default is 1.0
    assert back.search.seed == 0  # the default is None
    assert back.dataset.test_fraction == 0.0  # the default is 0.2
    assert back == spec


def test_zero_gpu_and_auto_false_survive() -> None:
    spec = spec_with(resources={"cpu": 1.0, "gpu": 0.0}, deploy={"auto": False, "replicas": 2})
    message = convert.spec_to_pb(spec)
    assert message.resources.HasField("gpu") and message.deploy.HasField("auto")
    back = over_the_wire(spec)
    assert (back.resources.gpu, back.deploy.auto, back.deploy.replicas) == (0.0, False, 2)


@pytest.mark.parametrize("time_budget_s", [None, 0.5, 3600.0])
def test_time_budget(time_budget_s: float | None) -> None:
    budget = {"max_trials": 3, "max_concurrent_trials": 1, "time_budget_s": time_budget_s}
    spec = spec_with(budget=budget)
    assert convert.spec_to_pb(spec).budget.HasField("time_budget_s") == (time_budget_s is not None)
    assert over_the_wire(spec).budget.time_budget_s == time_budget_s


def test_unset_seed_stays_unset() -> None:
    spec = spec_with(search={"sampler": "tpe"})
    assert not convert.spec_to_pb(spec).search.HasField("seed")
    assert over_the_wire(spec).search.seed is None


def minimal_message() -> pb.StudySpec:
    message = pb.StudySpec(
        name="iris-mlp",
        trainer="mlp_classifier",
        dataset=pb.DatasetSpec(name="iris"),
        objective=pb.Objective(metric="val_accuracy", mode=pb.OBJECTIVE_MODE_MAX),
    )
    parameter = message.search_space.add(name="lr")
    parameter.float.low, parameter.float.high = 0.001, 0.1
    return message


def test_unset_sub_messages_take_model_defaults(minimal_data: dict[str, Any]) -> None:
    assert convert.spec_from_pb(minimal_message()) == StudySpec.parse(minimal_data)


def test_empty_sub_messages_take_model_defaults(minimal_data: dict[str, Any]) -> None:
    message = minimal_message()
    for section in ("search", "budget", "resources", "failure", "deploy"):
        getattr(message, section).SetInParent()
    message.scheduler.asha.SetInParent()
    assert convert.spec_from_pb(message) == StudySpec.parse({**minimal_data, "scheduler": "asha"})


def test_sampler_unspecified_means_default() -> None:
    message = minimal_message()
    message.search.seed = 5
    spec = convert.spec_from_pb(message)
    assert (spec.search.sampler, spec.search.seed) == ("tpe", 5)


def refusal(message: pb.StudySpec) -> InvalidSpec:
    with pytest.raises(InvalidSpec) as caught:
        convert.spec_from_pb(message)
    return caught.value


def test_unknown_sampler_number_is_refused() -> None:
    message = minimal_message()
    message.search.sampler = 99  # type: ignore[assignment]
    assert [e.path for e in refusal(message).errors] == ["search.sampler"]


def test_unknown_mode_number_is_refused() -> None:
    message = minimal_message()
    message.objective.mode = 42  # type: ignore[assignment]
    assert [e.path for e in refusal(message).errors] == ["objective.mode"]


def test_unspecified_mode_is_refused() -> None:
    message = minimal_message()
    message.objective.mode = pb.OBJECTIVE_MODE_UNSPECIFIED
    assert [e.path for e in refusal(message).errors] == ["objective.mode"]


def test_parameter_without_domain_is_refused() -> None:
    message = minimal_message()
    message.search_space.add(name="hidden_size")
    assert [e.path for e in refusal(message).errors] == ["search_space.hidden_size"]


def test_invalid_values_on_the_wire_are_refused_like_yaml() -> None:
    message = convert.spec_to_pb(spec_with())
    message.budget.max_trials = 0
    message.search_space[0].float.low = -1.0
    paths = {e.path for e in refusal(message).errors}
    assert paths == {"budget.max_trials", "search_space.lr.float.low"}


# ------------------------------------------------------------------ enum tables


@pytest.mark.parametrize(
    ("domain", "wire", "prefix"),
    [
        (StudyState, pb.StudyState, "STUDY_STATE_"),
        (TrialState, pb.TrialState, "TRIAL_STATE_"),
        (EventKind, pb.EventKind, "EVENT_KIND_"),
        (DeploymentState, pb.DeploymentState, "DEPLOYMENT_STATE_"),
    ],
    ids=["StudyState", "TrialState", "EventKind", "DeploymentState"],
)
def test_domain_enums_match_the_wire(domain: Any, wire: Any, prefix: str) -> None:
    on_wire = {name.removeprefix(prefix) for name in wire.keys()} - {"UNSPECIFIED"}
    assert on_wire == {member.value for member in domain}


def test_samplers_and_modes_match_the_wire() -> None:
    assert {n.removeprefix("SAMPLER_").lower() for n in pb.Sampler.keys()} - {"unspecified"} == set(SAMPLERS)
    assert {n.removeprefix("OBJECTIVE_MODE_").lower() for n in pb.ObjectiveMode.keys()} - {"unspecified"} == set(MODES)


# ------------------------------------------------------------------ results


def make_trial(state: TrialState = TrialState.COMPLETED, trial_id: str = "t-00001") -> Trial:
    return Trial(
        trial_id=trial_id,
        state=state,
        config={"lr": 0.01, "hidden_size": 64, "optimizer": "adam", "flag": False},
        metrics={"val_accuracy": 0.9375, "val_loss": 0.21, "train_loss": 0.0},
        epochs=12,
        mlflow_run_id="run-abc",
        error="Traceback: boom" if state is TrialState.ERROR else "",
    )


def test_trial_round_trip_keeps_config_types() -> None:
    trial = make_trial()
    back = convert.trial_from_pb(pb.Trial.FromString(convert.trial_to_pb(trial).SerializeToString()))
    assert back == trial
    assert typed(back.config) == typed(trial.config)


@pytest.mark.parametrize("state", list(TrialState))
def test_trial_each_state(state: TrialState) -> None:
    trial = make_trial(state)
    back = convert.trial_from_pb(pb.Trial.FromString(convert.trial_to_pb(trial).SerializeToString()))
    assert back == trial
    assert back.state is state


def test_trial_with_defaults_round_trips() -> None:
    trial = Trial(trial_id="t", state=TrialState.RUNNING)
    assert convert.trial_from_pb(convert.trial_to_pb(trial)) == trial


def make_study(state: StudyState, best: bool) -> Study:
    trials = [make_trial(TrialState.COMPLETED, "t-1"), make_trial(TrialState.STOPPED_EARLY, "t-2")]
    return Study(
        study_id="st-0123456789ab",
        name="full-spec",
        spec=spec_with(),
        state=state,
        ray_job_id="raysubmit_xyz",
        created_at=CREATED,
        updated_at=UPDATED,
        trials=trials,
        best_trial=trials[0] if best else None,
        best_test_metrics={"val_accuracy": 0.97, "val_loss": 0.1} if best else {},
        mlflow_experiment_id="17",
        mlflow_run_id="parent-run",
        registered_model="anneal-full-spec" if best else "",
        registered_model_version=4 if best else 0,
        error="it failed" if state is StudyState.FAILED else "",
        model_uri="mlflow-artifacts:/17/model" if best else "",
        driver_restarts=2,
        owner="alice",
    )


@pytest.mark.parametrize("best", [True, False], ids=["with-best", "without-best"])
@pytest.mark.parametrize("state", list(StudyState))
def test_study_each_state(state: StudyState, best: bool) -> None:
    study = make_study(state, best)
    message = convert.study_to_pb(study)
    assert message.HasField("best_trial") == best
    back = convert.study_from_pb(pb.Study.FromString(message.SerializeToString()))
    assert back == study
    assert back.created_at.tzinfo is not None and back.created_at == CREATED
    assert back.updated_at == UPDATED


def test_study_times_keep_the_instant_of_other_time_zones() -> None:
    local = CREATED.astimezone(timezone(timedelta(hours=-5)))
    study = make_study(StudyState.RUNNING, False).model_copy(update={"created_at": local})
    back = convert.study_from_pb(convert.study_to_pb(study))
    assert back.created_at == CREATED
    assert back.created_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize("with_trial", [True, False], ids=["with-trial", "without-trial"])
@pytest.mark.parametrize("kind", list(EventKind))
def test_event_each_kind(kind: EventKind, with_trial: bool) -> None:
    event = StudyEvent(
        sequence=123,
        study_id="st-1",
        kind=kind,
        time=CREATED,
        trial=make_trial(TrialState.RUNNING) if with_trial else None,
        study_state=None,
        message="hello",
    )
    message = convert.event_to_pb(event)
    assert message.HasField("trial") == with_trial
    back = convert.event_from_pb(pb.StudyEvent.FromString(message.SerializeToString()))
    assert back == event
    assert back.study_state is None


@pytest.mark.parametrize("state", list(StudyState))
def test_event_each_study_state(state: StudyState) -> None:
    kind = EventKind.STUDY_ENDED if state.is_terminal else EventKind.STUDY_STARTED
    event = StudyEvent(sequence=1, study_id="st-1", kind=kind, time=UPDATED, study_state=state)
    assert convert.event_from_pb(convert.event_to_pb(event)) == event


@pytest.mark.parametrize("state", list(DeploymentState))
def test_deployment_each_state(state: DeploymentState) -> None:
    deployment = Deployment(
        name="full-spec",
        study_id="st-1",
        state=state,
        replicas=3,
        route="/models/full-spec",
        model_uri="mlflow-artifacts:/17/model",
        updated_at=UPDATED,
        error="no replicas" if state is DeploymentState.FAILED else "",
        max_batch_size=16,
        owner="alice",
    )
    message = convert.deployment_to_pb(deployment).SerializeToString()
    assert convert.deployment_from_pb(pb.Deployment.FromString(message)) == deployment


def test_a_deployment_with_every_field_round_trips() -> None:
    deployment = Deployment(
        name="full-spec",
        study_id="st-2",
        state=DeploymentState.RUNNING,
        replicas=1,
        route="/models/alice/full-spec",
        model_uri="mlflow-artifacts:/2/models/m-2/artifacts",
        updated_at=UPDATED,
        max_batch_size=16,
        owner="alice",
        registered_model="alice.full-spec",
        model_version=2,
        previous=ModelVersion(study_id="st-1", registered_model="alice.full-spec", version=1, model_uri="m-1"),
        autoscaling=Autoscaling(min_replicas=1, max_replicas=4, target_ongoing_requests=3, downscale_delay_s=9),
        replicas_running=2,
        replicas_wanted=3,
        serve_status="RUNNING",
        serve_message="scaling up",
    )
    message = convert.deployment_to_pb(deployment).SerializeToString()
    assert convert.deployment_from_pb(pb.Deployment.FromString(message)) == deployment


@pytest.mark.parametrize(
    "prediction",
    [
        Prediction(label=2, probabilities=[0.125, 0.25, 0.625]),
        Prediction(label=0, probabilities=[]),
        Prediction(values=[151.25]),
        Prediction(values=[-0.5, 0.0, 1e300]),
    ],
    ids=["probabilities", "empty", "one-value", "values"],
)
def test_prediction_round_trip(prediction: Prediction) -> None:
    message = convert.prediction_to_pb(prediction).SerializeToString()
    assert convert.prediction_from_pb(pb.Prediction.FromString(message)) == prediction


def test_a_classification_prediction_carries_no_values_on_the_wire() -> None:
    """What a server answers a classification row is byte for byte what it answered before
    `values` existed, so clients built before it read it unchanged."""
    message = convert.prediction_to_pb(Prediction(label=1, probabilities=[0.25, 0.75]))
    assert not message.values
    assert message.SerializeToString() == pb.Prediction(label=1, probabilities=[0.25, 0.75]).SerializeToString()


@pytest.mark.parametrize(
    ("prediction", "answer"),
    [
        (Prediction(label=1, probabilities=[0.25, 0.75]), {"label": 1, "probabilities": [0.25, 0.75]}),
        (Prediction(values=[151.25]), {"values": [151.25]}),
    ],
    ids=["classification", "regression"],
)
def test_a_prediction_answers_in_json_with_the_fields_its_task_fills(
    prediction: Prediction, answer: dict[str, object]
) -> None:
    assert prediction.answer() == answer


def test_empty_scalar_reads_as_none() -> None:
    assert convert.scalar_from_pb(pb.Scalar()) is None


def test_repeated_parameter_name_is_refused() -> None:
    message = minimal_message()
    again = message.search_space.add(name="lr")
    again.int.low, again.int.high = 1, 5
    with pytest.raises(InvalidSpec):
        convert.spec_from_pb(message)


# ------------------------------------------------------------------ garbled results: refused, never a crash


def refused_path(decode: Any, message: Any) -> str:
    """The field the InvalidSpec raised by decoding `message` names."""
    with pytest.raises(InvalidSpec) as caught:
        decode(message)
    return caught.value.errors[0].path


@pytest.mark.parametrize(
    ("decode", "message"),
    [
        (convert.trial_from_pb, pb.Trial(state=99)),
        (convert.trial_from_pb, pb.Trial()),  # UNSPECIFIED: every trial is in some state
        (convert.deployment_from_pb, pb.Deployment(state=7)),
    ],
    ids=["trial-unknown", "trial-unspecified", "deployment"],
)
def test_unknown_state_is_refused_naming_the_field(decode: Any, message: Any) -> None:
    assert refused_path(decode, message) == "state"


def test_unknown_event_kind_is_refused_naming_the_field() -> None:
    message = convert.event_to_pb(StudyEvent(sequence=1, study_id="st-1", kind=EventKind.TRIAL_RESULT, time=CREATED))
    message.kind = 9  # a kind of a newer server
    assert refused_path(convert.event_from_pb, message) == "kind"


def test_unknown_state_of_a_study_or_its_trials_names_the_field() -> None:
    message = convert.study_to_pb(make_study(StudyState.SUCCEEDED, best=True))
    message.state = 42
    assert refused_path(convert.study_from_pb, message) == "state"
    message.state = pb.STUDY_STATE_SUCCEEDED
    message.trials[1].state = 42
    assert refused_path(convert.study_from_pb, message) == "trials[1].state"
    message.trials[1].state = pb.TRIAL_STATE_COMPLETED
    message.best_trial.state = 0
    assert refused_path(convert.study_from_pb, message) == "best_trial.state"


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [(2**62, 0), (-(2**40), 0), (0, 2_000_000_000), (0, -5)],
    ids=["after-9999", "before-year-1", "nanos-too-big", "nanos-negative"],
)
def test_time_out_of_range_is_refused_naming_the_field(seconds: int, nanos: int) -> None:
    message = convert.study_to_pb(make_study(StudyState.RUNNING, best=False))
    message.updated_at.seconds, message.updated_at.nanos = seconds, nanos
    assert refused_path(convert.study_from_pb, message) == "updated_at"
    deployment = pb.Deployment(state=pb.DEPLOYMENT_STATE_RUNNING)
    deployment.updated_at.seconds, deployment.updated_at.nanos = seconds, nanos
    assert refused_path(convert.deployment_from_pb, deployment) == "updated_at"


# ------------------------------------------------------------------ trainers


def test_every_registered_trainer_round_trips() -> None:
    for trainer in describe():
        assert convert.trainer_from_pb(pb.Trainer.FromString(convert.trainer_to_pb(trainer).SerializeToString())) == (
            trainer
        )


@pytest.mark.parametrize("task", list(Task))
def test_trainer_each_task_and_a_tensor_input(task: Task) -> None:
    trainer = TrainerDescription(
        name="cnn",
        task=task,
        input_shape=(1, 8, 8),
        parameters=[TrainerParameter(name="epochs", default=3, description="d"), TrainerParameter(name="x")],
    )
    assert convert.trainer_from_pb(convert.trainer_to_pb(trainer)) == trainer


def test_an_unavailable_trainer_round_trips() -> None:
    broken = TrainerDescription(name="broken", available=False, error="ImportError: no torchvision", source="pkg 1.0")
    assert convert.trainer_from_pb(convert.trainer_to_pb(broken)) == broken


def test_an_asha_type_this_version_does_not_know_is_refused_naming_the_field() -> None:
    message = convert.spec_to_pb(spec_with(scheduler={"asha": {}}))
    message.scheduler.asha.type = 99  # type: ignore[assignment]
    with pytest.raises(InvalidSpec, match=r"scheduler\.asha\.type"):
        convert.spec_from_pb(message)
