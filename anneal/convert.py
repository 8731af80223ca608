"""The one place where domain types meet wire messages (`anneal.v1`).

Every converter comes in a pair, and tests round-trip each field and enum value.
Spec fields with defaults are `optional` on the wire, so an absent field takes
the model's default while an explicit zero survives the trip.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from anneal.errors import InvalidSpec
from anneal.spec import AUTOSCALING_FIELDS, Autoscaling, DatasetSpec, Objective, Scalar, StudySpec
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
    Tensor,
    TrainerDescription,
    TrainerParameter,
    Trial,
    TrialState,
)
from anneal.v1 import anneal_pb2 as pb

# ------------------------------------------------------------------ scalars


def scalar_to_pb(value: Scalar) -> pb.Scalar:
    # bool before int: True is an int in Python.
    if isinstance(value, bool):
        return pb.Scalar(bool_value=value)
    if isinstance(value, int):
        return pb.Scalar(int_value=value)
    if isinstance(value, float):
        return pb.Scalar(float_value=value)
    return pb.Scalar(string_value=str(value))


def scalar_from_pb(message: pb.Scalar) -> Scalar | None:
    kind = message.WhichOneof("kind")
    return None if kind is None else getattr(message, kind)


def scalars_to_pb(values: Mapping[str, Scalar], target: Any) -> None:
    for key, value in values.items():
        target[key].CopyFrom(scalar_to_pb(value))


def scalars_from_pb(values: Mapping[str, pb.Scalar]) -> dict[str, Any]:
    return {key: scalar_from_pb(value) for key, value in values.items()}


def time_to_pb(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment.astimezone(timezone.utc))
    return stamp


def time_from_pb(stamp: Timestamp, path: str = "time") -> datetime:
    """The moment; a timestamp outside years 1 to 9999 (or with nanos out of range) is refused."""
    try:
        return stamp.ToDatetime(tzinfo=timezone.utc)
    except (ValueError, OverflowError) as error:
        raise InvalidSpec.field(path, f"is not a valid time: {error}") from None


# ------------------------------------------------------------------ enums

_SAMPLER_TO_PB = {
    "tpe": pb.SAMPLER_TPE,
    "random": pb.SAMPLER_RANDOM,
    "gp": pb.SAMPLER_GP,
    "cmaes": pb.SAMPLER_CMAES,
    "nsga2": pb.SAMPLER_NSGA2,
}
_MODE_TO_PB = {"max": pb.OBJECTIVE_MODE_MAX, "min": pb.OBJECTIVE_MODE_MIN}
_STUDY_STATE_TO_PB = {state: pb.StudyState.Value(f"STUDY_STATE_{state.value}") for state in StudyState}
_TRIAL_STATE_TO_PB = {state: pb.TrialState.Value(f"TRIAL_STATE_{state.value}") for state in TrialState}
_EVENT_KIND_TO_PB = {kind: pb.EventKind.Value(f"EVENT_KIND_{kind.value}") for kind in EventKind}
_DEPLOYMENT_STATE_TO_PB = {
    state: pb.DeploymentState.Value(f"DEPLOYMENT_STATE_{state.value}") for state in DeploymentState
}
_TASK_TO_PB = {task: pb.Task.Value(f"TASK_{task.name}") for task in Task}
_FORMAT_TO_PB = {"parquet": pb.DATASET_FORMAT_PARQUET, "csv": pb.DATASET_FORMAT_CSV}
_ASHA_TYPE_TO_PB = {"stopping": pb.ASHA_TYPE_STOPPING, "promotion": pb.ASHA_TYPE_PROMOTION}


def _invert(table: Mapping[Any, int]) -> dict[int, Any]:
    return {number: name for name, number in table.items()}


_SAMPLER_FROM_PB = _invert(_SAMPLER_TO_PB)
_MODE_FROM_PB = _invert(_MODE_TO_PB)
_STUDY_STATE_FROM_PB = _invert(_STUDY_STATE_TO_PB)
_TRIAL_STATE_FROM_PB = _invert(_TRIAL_STATE_TO_PB)
_EVENT_KIND_FROM_PB = _invert(_EVENT_KIND_TO_PB)
_DEPLOYMENT_STATE_FROM_PB = _invert(_DEPLOYMENT_STATE_TO_PB)
_TASK_FROM_PB = _invert(_TASK_TO_PB)
_FORMAT_FROM_PB = _invert(_FORMAT_TO_PB)
_ASHA_TYPE_FROM_PB = _invert(_ASHA_TYPE_TO_PB)


def _required_enum_from_pb(table: Mapping[int, Any], number: int, path: str) -> Any:
    """A state or kind every message of its type carries: UNSPECIFIED, or a number this
    version does not know (a newer peer's), is refused naming the field."""
    if number not in table:
        raise InvalidSpec.field(path, f"unknown value {number}")
    return table[number]


def _field_path(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _enum_from_pb(table: Mapping[int, Any], number: int) -> Any:
    """UNSPECIFIED (0) means absent; an unknown number is passed on for validation to reject."""
    if number == 0:
        return None
    return table.get(number, f"<unknown enum value {number}>")


# ------------------------------------------------------------------ the spec


def _optional_fields(message: Message, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: getattr(message, name) for name in names if message.HasField(name)}


def spec_to_pb(spec: StudySpec) -> pb.StudySpec:
    message = pb.StudySpec(
        name=spec.name,
        trainer=spec.trainer,
        dataset=_dataset_to_pb(spec.dataset),
        objective=_objective_to_pb(spec.objective) if spec.objective is not None else None,
        objectives=[_objective_to_pb(goal) for goal in spec.objectives or []],
        search=pb.SearchSpec(
            sampler=_SAMPLER_TO_PB[spec.search.sampler], seed=spec.search.seed, warm_start=spec.search.warm_start
        ),
        budget=pb.Budget(**spec.budget.model_dump()),
        resources=pb.Resources(**spec.resources.model_dump()),
        failure=pb.FailurePolicy(**spec.failure.model_dump()),
        deploy=pb.DeployPolicy(**spec.deploy.model_dump()),
    )
    scalars_to_pb(spec.params, message.params)
    for name, domain in spec.search_space.items():
        parameter = message.search_space.add(name=name)
        if domain.float_range is not None:
            parameter.float.CopyFrom(pb.FloatDomain(**domain.float_range.model_dump()))
        elif domain.int_range is not None:
            parameter.int.CopyFrom(pb.IntDomain(**domain.int_range.model_dump()))
        else:
            parameter.categorical.choices.extend(scalar_to_pb(c) for c in domain.categorical or [])
        for parent, values in (domain.when or {}).items():
            parameter.when.add(parent=parent, values=[scalar_to_pb(v) for v in values])
    kind = spec.scheduler.kind
    fields = getattr(spec.scheduler, kind).model_dump()
    if kind == "asha":
        fields["type"] = _ASHA_TYPE_TO_PB[fields["type"]]
    getattr(message.scheduler, kind).CopyFrom(getattr(pb, _SCHEDULER_MESSAGES[kind])(**fields))
    return message


def _objective_to_pb(objective: Objective) -> pb.Objective:
    return pb.Objective(metric=objective.metric, mode=_MODE_TO_PB[objective.mode])


def _objective_from_pb(message: pb.Objective) -> dict[str, Any]:
    data: dict[str, Any] = {"metric": message.metric}
    mode = _enum_from_pb(_MODE_FROM_PB, message.mode)
    if mode is not None:
        data["mode"] = mode
    return data


_SCHEDULER_MESSAGES = {"asha": "AshaScheduler", "median": "MedianScheduler", "none": "NoScheduler"}


def _dataset_to_pb(dataset: DatasetSpec) -> pb.DatasetSpec:
    fields = dataset.model_dump(exclude={"format"})
    return pb.DatasetSpec(**fields, format=_FORMAT_TO_PB.get(dataset.format or "", pb.DATASET_FORMAT_UNSPECIFIED))


def spec_from_pb(message: pb.StudySpec) -> StudySpec:
    """The wire spec as plain data, validated by the model (raises InvalidSpec)."""
    return StudySpec.parse(spec_data_from_pb(message))


def spec_data_from_pb(message: pb.StudySpec) -> dict[str, Any]:
    names = [p.name for p in message.search_space]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InvalidSpec.field(f"search_space.{repeated[0]}", "is given more than once")
    data: dict[str, Any] = {
        "name": message.name,
        "trainer": message.trainer,
        "params": scalars_from_pb(message.params),
        "search_space": {p.name: _domain_from_pb(p) for p in message.search_space},
    }
    if message.HasField("dataset"):
        data["dataset"] = {
            "name": message.dataset.name,
            **_optional_fields(message.dataset, ("validation_fraction", "test_fraction", "split_seed")),
            **({"path": message.dataset.path} if message.dataset.path else {}),
            **({"label": message.dataset.label} if message.dataset.label else {}),
            **({"features": list(message.dataset.features)} if message.dataset.features else {}),
        }
        dataset_format = _enum_from_pb(_FORMAT_FROM_PB, message.dataset.format)
        if dataset_format is not None:
            data["dataset"]["format"] = dataset_format
    if message.HasField("objective"):
        data["objective"] = _objective_from_pb(message.objective)
    if message.objectives:
        data["objectives"] = [_objective_from_pb(goal) for goal in message.objectives]
    if message.HasField("search"):
        search = _optional_fields(message.search, ("seed",))
        sampler = _enum_from_pb(_SAMPLER_FROM_PB, message.search.sampler)
        if sampler is not None:
            search["sampler"] = sampler
        if message.search.warm_start:
            search["warm_start"] = list(message.search.warm_start)
        data["search"] = search
    kind = message.scheduler.WhichOneof("kind")
    if kind is not None:
        config = getattr(message.scheduler, kind)
        optional = tuple(f.name for f in config.DESCRIPTOR.fields if f.name != "type")
        fields = _optional_fields(config, optional)
        if kind == "asha" and (asha_type := _enum_from_pb(_ASHA_TYPE_FROM_PB, config.type)) is not None:
            fields["type"] = asha_type
        data["scheduler"] = {kind: fields}
    for section in ("budget", "resources", "failure", "deploy"):
        if message.HasField(section):
            sub = getattr(message, section)
            data[section] = _optional_fields(sub, tuple(f.name for f in sub.DESCRIPTOR.fields))
    return data


def _domain_from_pb(parameter: pb.Parameter) -> dict[str, Any]:
    domain = _kind_from_pb(parameter)
    if parameter.when:
        parents = [condition.parent for condition in parameter.when]
        repeated = [parent for index, parent in enumerate(parents) if parent in parents[:index]]
        if repeated:
            raise InvalidSpec.field(f"search_space.{parameter.name}.when.{repeated[0]}", "is given more than once")
        domain["when"] = {c.parent: [scalar_from_pb(v) for v in c.values] for c in parameter.when}
    return domain


def _kind_from_pb(parameter: pb.Parameter) -> dict[str, Any]:
    kind = parameter.WhichOneof("domain")
    if kind == "float":
        return {"float": {"low": parameter.float.low, "high": parameter.float.high, "log": parameter.float.log}}
    if kind == "int":
        return {"int": {"low": parameter.int.low, "high": parameter.int.high, "log": parameter.int.log}}
    if kind == "categorical":
        return {"categorical": [scalar_from_pb(c) for c in parameter.categorical.choices]}
    return {}


# ------------------------------------------------------------------ results


def trial_to_pb(trial: Trial) -> pb.Trial:
    message = pb.Trial(
        trial_id=trial.trial_id,
        state=_TRIAL_STATE_TO_PB[trial.state],
        metrics=trial.metrics,
        epochs=trial.epochs,
        mlflow_run_id=trial.mlflow_run_id,
        error=trial.error,
    )
    scalars_to_pb(trial.config, message.config)
    return message


def trial_from_pb(message: pb.Trial, path: str = "") -> Trial:
    """The trial; `path` names it inside its parent message in errors (e.g. `trials[2]`)."""
    return Trial(
        trial_id=message.trial_id,
        state=_required_enum_from_pb(_TRIAL_STATE_FROM_PB, message.state, _field_path(path, "state")),
        config=scalars_from_pb(message.config),
        metrics=dict(message.metrics),
        epochs=message.epochs,
        mlflow_run_id=message.mlflow_run_id,
        error=message.error,
    )


def study_to_pb(study: Study) -> pb.Study:
    message = pb.Study(
        study_id=study.study_id,
        name=study.name,
        spec=spec_to_pb(study.spec),
        state=_STUDY_STATE_TO_PB[study.state],
        ray_job_id=study.ray_job_id,
        created_at=time_to_pb(study.created_at),
        updated_at=time_to_pb(study.updated_at),
        trials=[trial_to_pb(t) for t in study.trials],
        best_test_metrics=study.best_test_metrics,
        mlflow_experiment_id=study.mlflow_experiment_id,
        mlflow_run_id=study.mlflow_run_id,
        registered_model=study.registered_model,
        registered_model_version=study.registered_model_version,
        error=study.error,
        model_uri=study.model_uri,
        driver_restarts=study.driver_restarts,
        owner=study.owner,
        warm_start_trials=study.warm_start_trials,
        pareto_front=[trial.trial_id for trial in study.pareto_front],
    )
    if study.best_trial is not None:
        message.best_trial.CopyFrom(trial_to_pb(study.best_trial))
    return message


def study_from_pb(message: pb.Study) -> Study:
    return Study(
        study_id=message.study_id,
        name=message.name,
        spec=spec_from_pb(message.spec),
        state=_required_enum_from_pb(_STUDY_STATE_FROM_PB, message.state, "state"),
        ray_job_id=message.ray_job_id,
        created_at=time_from_pb(message.created_at, "created_at"),
        updated_at=time_from_pb(message.updated_at, "updated_at"),
        trials=[trial_from_pb(t, f"trials[{i}]") for i, t in enumerate(message.trials)],
        best_trial=trial_from_pb(message.best_trial, "best_trial") if message.HasField("best_trial") else None,
        best_test_metrics=dict(message.best_test_metrics),
        mlflow_experiment_id=message.mlflow_experiment_id,
        mlflow_run_id=message.mlflow_run_id,
        registered_model=message.registered_model,
        registered_model_version=message.registered_model_version,
        error=message.error,
        model_uri=message.model_uri,
        driver_restarts=message.driver_restarts,
        owner=message.owner,
        warm_start_trials=message.warm_start_trials,
    )


def event_to_pb(event: StudyEvent) -> pb.StudyEvent:
    message = pb.StudyEvent(
        sequence=event.sequence,
        study_id=event.study_id,
        kind=_EVENT_KIND_TO_PB[event.kind],
        time=time_to_pb(event.time),
        message=event.message,
        pareto_front=event.pareto_front,
    )
    if event.trial is not None:
        message.trial.CopyFrom(trial_to_pb(event.trial))
    if event.study_state is not None:
        message.study_state = _STUDY_STATE_TO_PB[event.study_state]
    return message


def event_from_pb(message: pb.StudyEvent) -> StudyEvent:
    return StudyEvent(
        sequence=message.sequence,
        study_id=message.study_id,
        kind=_required_enum_from_pb(_EVENT_KIND_FROM_PB, message.kind, "kind"),
        time=time_from_pb(message.time),
        trial=trial_from_pb(message.trial, "trial") if message.HasField("trial") else None,
        study_state=_STUDY_STATE_FROM_PB.get(message.study_state),
        message=message.message,
        pareto_front=list(message.pareto_front),
    )


def deployment_to_pb(deployment: Deployment) -> pb.Deployment:
    message = pb.Deployment(
        name=deployment.name,
        study_id=deployment.study_id,
        state=_DEPLOYMENT_STATE_TO_PB[deployment.state],
        replicas=deployment.replicas,
        route=deployment.route,
        model_uri=deployment.model_uri,
        updated_at=time_to_pb(deployment.updated_at),
        error=deployment.error,
        max_batch_size=deployment.max_batch_size,
        owner=deployment.owner,
        registered_model=deployment.registered_model,
        model_version=deployment.model_version,
        trial_id=deployment.trial_id,
        replicas_running=deployment.replicas_running,
        replicas_wanted=deployment.replicas_wanted,
        serve_status=deployment.serve_status,
        serve_message=deployment.serve_message,
    )
    if deployment.previous is not None:
        message.previous.CopyFrom(pb.ModelVersion(**deployment.previous.model_dump()))
    if deployment.autoscaling is not None:
        message.autoscaling.CopyFrom(pb.Autoscaling(**deployment.autoscaling.model_dump()))
    return message


def deployment_from_pb(message: pb.Deployment) -> Deployment:
    return Deployment(
        name=message.name,
        study_id=message.study_id,
        state=_required_enum_from_pb(_DEPLOYMENT_STATE_FROM_PB, message.state, "state"),
        replicas=message.replicas,
        route=message.route,
        model_uri=message.model_uri,
        updated_at=time_from_pb(message.updated_at, "updated_at"),
        error=message.error,
        max_batch_size=message.max_batch_size,
        owner=message.owner,
        registered_model=message.registered_model,
        model_version=message.model_version,
        trial_id=message.trial_id,
        previous=_model_version_from_pb(message.previous) if message.HasField("previous") else None,
        autoscaling=_autoscaling_from_pb(message.autoscaling) if message.HasField("autoscaling") else None,
        replicas_running=message.replicas_running,
        replicas_wanted=message.replicas_wanted,
        serve_status=message.serve_status,
        serve_message=message.serve_message,
    )


def _model_version_from_pb(message: pb.ModelVersion) -> ModelVersion:
    return ModelVersion(
        study_id=message.study_id,
        registered_model=message.registered_model,
        version=message.version,
        model_uri=message.model_uri,
        trial_id=message.trial_id,
    )


def _autoscaling_from_pb(message: pb.Autoscaling) -> Autoscaling:
    return Autoscaling(
        min_replicas=message.min_replicas,
        max_replicas=message.max_replicas,
        target_ongoing_requests=message.target_ongoing_requests,
        upscale_delay_s=message.upscale_delay_s,
        downscale_delay_s=message.downscale_delay_s,
    )


def deploy_overrides_from_pb(request: pb.DeployRequest) -> dict[str, Any]:
    """The deploy policy fields a Deploy request sets (0 or unset keeps the study's)."""
    overrides: dict[str, Any] = {
        name: getattr(request, name) for name in ("replicas", "max_batch_size") if getattr(request, name)
    }
    overrides.update(_optional_fields(request, AUTOSCALING_FIELDS))
    return overrides


def tensor_to_pb(tensor: Any) -> pb.Tensor:
    """Nested sequences of numbers, or anything with `tolist()` (a numpy array, a torch tensor),
    as a Tensor message; a ragged one is refused here."""
    if hasattr(tensor, "shape") and hasattr(tensor, "reshape"):  # an array: its own shape, even with a 0 in it
        shape = [int(d) for d in tensor.shape]
        nested = tensor.reshape(-1).tolist()
        flat_shape = [len(nested)]
    else:
        nested = tensor
        shape = []
        level = nested
        while isinstance(level, list | tuple):
            shape.append(len(level))
            level = level[0] if level else None
        flat_shape = shape
    values: list[float] = []
    _flatten(nested, flat_shape, values)
    return pb.Tensor(shape=shape, values=values)


def _flatten(nested: Any, shape: list[int], into: list[float]) -> None:
    if not shape:
        if isinstance(nested, list | tuple):
            raise ValueError("a ragged tensor: its nesting differs between elements")
        if isinstance(nested, bool) or not isinstance(nested, numbers.Real):
            raise ValueError(f"a tensor holds numbers only, not {type(nested).__name__}")
        into.append(float(nested))
        return
    if not isinstance(nested, list | tuple) or len(nested) != shape[0]:
        raise ValueError(f"a ragged tensor: an element's length differs from {shape[0]}")
    for item in nested:
        _flatten(item, shape[1:], into)


def tensor_from_pb(message: pb.Tensor) -> Tensor:
    return Tensor(shape=tuple(message.shape), values=list(message.values))


def prediction_to_pb(prediction: Prediction) -> pb.Prediction:
    return pb.Prediction(label=prediction.label, probabilities=prediction.probabilities, values=prediction.values)


def prediction_from_pb(message: pb.Prediction) -> Prediction:
    return Prediction(label=message.label, probabilities=list(message.probabilities), values=list(message.values))


# ------------------------------------------------------------------ trainers


def trainer_to_pb(trainer: TrainerDescription) -> pb.Trainer:
    message = pb.Trainer(
        name=trainer.name,
        description=trainer.description,
        task=_TASK_TO_PB[trainer.task] if trainer.task is not None else pb.TASK_UNSPECIFIED,
        input_shape=trainer.input_shape,
        metrics=trainer.metrics,
        datasets=trainer.datasets,
        epochs_parameter=trainer.epochs_parameter,
        available=trainer.available,
        error=trainer.error,
        source=trainer.source,
    )
    for parameter in trainer.parameters:
        added = message.parameters.add(name=parameter.name, description=parameter.description)
        if parameter.default is not None:
            added.default_value.CopyFrom(scalar_to_pb(parameter.default))
    return message


def trainer_from_pb(message: pb.Trainer) -> TrainerDescription:
    return TrainerDescription(
        name=message.name,
        description=message.description,
        task=_TASK_FROM_PB.get(message.task),
        input_shape=tuple(message.input_shape),
        parameters=[
            TrainerParameter(
                name=p.name,
                default=scalar_from_pb(p.default_value) if p.HasField("default_value") else None,
                description=p.description,
            )
            for p in message.parameters
        ],
        metrics=list(message.metrics),
        datasets=list(message.datasets),
        epochs_parameter=message.epochs_parameter,
        available=message.available,
        error=message.error,
        source=message.source,
    )
