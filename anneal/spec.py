"""The study spec: what a user asks anneal to tune.

One spec, three spellings: YAML (users), this pydantic model (Python), and the
`anneal.v1.StudySpec` message (wire; see `anneal.convert`). Validation here is
structural; the server also checks the spec against its trainer registry.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from anneal.errors import FieldError, InvalidSpec

Scalar = bool | int | float | str
Sampler = Literal["tpe", "random", "gp", "cmaes", "nsga2"]
Mode = Literal["max", "min"]
DatasetFormat = Literal["parquet", "csv"]
AshaType = Literal["stopping", "promotion"]

SAMPLERS: tuple[str, ...] = ("tpe", "random", "gp", "cmaes", "nsga2")
# The samplers that optimise several objectives at once (Optuna's GP and CMA-ES take one).
MULTI_OBJECTIVE_SAMPLERS: tuple[str, ...] = ("tpe", "nsga2", "random")
MAX_OBJECTIVES = 4
MODES: tuple[str, ...] = ("max", "min")
NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
# CPUs a study of a table dataset leaves free of trials for Ray Data's read tasks (a fifth of
# a CPU each, two at a time): a cluster whose every CPU a trial holds would never run them.
TABLE_READ_CPUS = 0.5
MAX_COLUMN_NAME = 256
MAX_FEATURE_COLUMNS = 10_000
# The most rows one batch of Predict calls may merge (deploy.max_batch_size, and Deploy's override).
MAX_BATCH_SIZE = 4096


def _field_error(field: str, message: str) -> PydanticCustomError:
    """A validation error that belongs to a sub-field of the model being validated."""
    return PydanticCustomError("anneal_field", "{field}: {message}", {"field": field, "message": message})


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class FloatRange(_Spec):
    low: float = Field(description="Smallest value (inclusive).")
    high: float = Field(description="Largest value (inclusive).")
    log: bool = Field(False, description="Sample uniformly in log space; needs low > 0.")

    @model_validator(mode="after")
    def _check_bounds(self) -> FloatRange:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise _field_error("low", "bounds must be finite numbers")
        if self.log and self.low <= 0:
            raise _field_error("low", "must be > 0 when log is true")
        if self.low >= self.high:
            raise _field_error("low", f"must be < high ({self.high})")
        return self


class IntRange(_Spec):
    low: int = Field(description="Smallest value (inclusive).")
    high: int = Field(description="Largest value (inclusive).")
    log: bool = Field(False, description="Sample uniformly in log space; needs low > 0.")

    @model_validator(mode="after")
    def _check_bounds(self) -> IntRange:
        if self.log and self.low <= 0:
            raise _field_error("low", "must be > 0 when log is true")
        if self.low >= self.high:
            raise _field_error("low", f"must be < high ({self.high})")
        return self


class _OneOf(_Spec):
    """A choice between alternatives spelled as keys (`{float: {...}}`): exactly one is given."""

    # attribute name -> the key users write
    _alternatives: ClassVar[dict[str, str]]

    @model_validator(mode="after")
    def _exactly_one(self) -> _OneOf:
        given = [a for a in self._alternatives if getattr(self, a) is not None]
        if len(given) != 1:
            keys = list(self._alternatives.values())
            raise ValueError(f"give exactly one of {', '.join(keys[:-1])} or {keys[-1]}")
        return self

    @property
    def kind(self) -> str:
        """The key of the alternative given, e.g. "float" or "asha"."""
        return next(key for attr, key in self._alternatives.items() if getattr(self, attr) is not None)


class Domain(_OneOf):
    """One dimension of the search space: exactly one of float, int or categorical."""

    float_range: FloatRange | None = Field(None, alias="float", description="A real interval.")
    int_range: IntRange | None = Field(None, alias="int", description="An integer interval.")
    categorical: list[Scalar] | None = Field(None, description="A list of choices.")
    when: dict[str, list[Scalar]] | None = Field(
        None,
        description="Tuned only when each named categorical parameter takes one of the given values "
        "(e.g. {optimizer: [sgd]}); a parent may itself be conditional. Otherwise the trial leaves it out.",
    )

    def active_given(self, chosen: Mapping[str, Any]) -> bool:
        """Whether a trial whose parameters so far are `chosen` tunes this one."""
        return all(parent in chosen and chosen[parent] in values for parent, values in (self.when or {}).items())

    @field_validator("categorical")
    @classmethod
    def _check_choices(cls, choices: list[Scalar] | None) -> list[Scalar] | None:
        if choices is not None:
            if not choices:
                raise ValueError("needs at least one choice")
            if len(set(map(repr, choices))) != len(choices):
                raise ValueError("choices must be distinct")
        return choices

    _alternatives: ClassVar[dict[str, str]] = {"float_range": "float", "int_range": "int", "categorical": "categorical"}


class DatasetSpec(_Spec):
    name: str = Field(description="A dataset the trainer knows, e.g. digits, wine, breast_cancer, iris.")
    validation_fraction: float = Field(0.2, gt=0, lt=1, description="Share of rows held out to score each trial.")
    test_fraction: float = Field(
        0.2, ge=0, lt=1, description="Share of rows held out from tuning to score the final model."
    )
    split_seed: int = Field(0, description="Seed of the shuffle that makes the splits.")
    path: str = Field(
        "",
        max_length=1024,
        description="A file, or for Parquet a folder of files, under one of the server's data roots, relative "
        "to a root or absolute; empty reads the bundled dataset `name`. Without `format`, a small CSV file "
        "(a header line, numbers only, the label last), read whole.",
    )
    format: DatasetFormat | None = Field(
        None,
        description="parquet or csv: the table at `path` is streamed to the trial's workers with Ray Data, "
        "its `label` and `features` columns only; it may be larger than memory.",
    )
    label: str = Field("", max_length=MAX_COLUMN_NAME, description="The column the model predicts; needs `format`.")
    features: list[str] = Field(
        default_factory=list,
        max_length=MAX_FEATURE_COLUMNS,
        description="The columns the model reads, each numeric (or a fixed-size array of numbers for a tensor "
        "input); empty means every column but the label. Needs `format`.",
    )

    @model_validator(mode="after")
    def _leave_training_rows(self) -> DatasetSpec:
        if self.validation_fraction + self.test_fraction >= 0.9:
            raise _field_error("test_fraction", "validation_fraction + test_fraction must be < 0.9")
        return self

    @model_validator(mode="after")
    def _check_columns(self) -> DatasetSpec:
        if self.format is None:
            for name in ("label", "features"):
                if getattr(self, name):
                    raise _field_error(name, "needs a format (parquet or csv)")
            return self
        if not self.path:
            raise _field_error("path", f"is needed with format {self.format}")
        if not self.label:
            raise _field_error("label", f"is needed with format {self.format}: the column the model predicts")
        for index, column in enumerate(self.features):
            if not column or len(column) > MAX_COLUMN_NAME:
                raise _field_error(f"features.{index}", f"must be a column name of 1 to {MAX_COLUMN_NAME} characters")
            if column == self.label:
                raise _field_error(f"features.{index}", f"{column!r} is the label")
            if column in self.features[:index]:
                raise _field_error(f"features.{index}", f"{column!r} is given more than once")
        return self


class Objective(_Spec):
    metric: str = Field(min_length=1, description="The metric the trainer reports that is optimised.")
    mode: Mode = Field(description="max or min.")


# The most earlier studies one study may warm-start from.
MAX_WARM_START = 16


class SearchSpec(_Spec):
    sampler: Sampler = Field("tpe", description="Optuna sampler: tpe, random, gp, cmaes or nsga2.")
    seed: int | None = Field(None, description="Seed of the sampler; unset means not reproducible.")
    warm_start: list[str] = Field(
        default_factory=list,
        max_length=MAX_WARM_START,
        description="Ids of earlier studies of yours with the same objective: their completed trials reach the "
        "sampler before its first suggestion, for the parameters both studies tune over the same domain; they "
        "are not run again.",
    )

    @field_validator("warm_start")
    @classmethod
    def _check_warm_start(cls, studies: list[str]) -> list[str]:
        for index, study_id in enumerate(studies):
            if not study_id:
                raise _field_error(str(index), "is empty; give a study id")
            if study_id in studies[:index]:
                raise _field_error(str(index), f"{study_id!r} is given more than once")
        return studies


class AshaConfig(_Spec):
    grace_period: int = Field(1, ge=1, description="Epochs every trial runs before it can be stopped.")
    reduction_factor: int = Field(3, ge=2, description="Keep 1/reduction_factor of the trials at each rung.")
    type: AshaType = Field(
        "stopping",
        description="stopping: a trial goes on from a rung unless it ranks below the top 1/reduction_factor "
        "of those recorded there, so the first trials at a rung go on; promotion: a trial waits, paused at "
        "its rung checkpoint, until it ranks in the top 1/reduction_factor there, while new trials start.",
    )


class MedianConfig(_Spec):
    grace_period: int = Field(1, ge=1, description="Epochs every trial runs before it can be stopped.")
    min_samples_required: int = Field(3, ge=1, description="Trials needed before the median is used.")


class NoScheduler(_Spec):
    pass


class SchedulerSpec(_OneOf):
    """How bad trials are stopped early: exactly one of asha, median or none."""

    asha: AshaConfig | None = Field(None, description="Asynchronous successive halving.")
    median: MedianConfig | None = Field(None, description="Median stopping rule.")
    none: NoScheduler | None = Field(None, description="Run every trial to the end.")

    @model_validator(mode="before")
    @classmethod
    def _accept_bare_name(cls, value: Any) -> Any:
        # `scheduler: asha` is shorthand for `scheduler: {asha: {}}`.
        return {value: {}} if isinstance(value, str) else value

    _alternatives: ClassVar[dict[str, str]] = {"asha": "asha", "median": "median", "none": "none"}


class Budget(_Spec):
    max_trials: int = Field(16, ge=1, description="How many trials to run in all.")
    max_concurrent_trials: int = Field(2, ge=1, description="How many trials run at once.")
    time_budget_s: float | None = Field(
        None, gt=0, description="Stop starting trials after this many seconds; unset means no limit."
    )


MAX_WORKERS = 256


class Resources(_Spec):
    workers: int = Field(
        1, ge=1, le=MAX_WORKERS, description="Processes that train one trial data-parallel; 1 trains it in one."
    )
    cpu: float = Field(1.0, ge=0, description="CPUs per worker; fractions allowed.")
    gpu: float = Field(0.0, ge=0, description="GPUs per worker; fractions allowed below 1, with one worker only.")

    @model_validator(mode="after")
    def _check(self) -> Resources:
        if self.cpu == 0 and self.gpu == 0:
            raise _field_error("cpu", "a trial needs some cpu or gpu")
        if self.gpu > 1 and not float(self.gpu).is_integer():
            raise _field_error("gpu", "above 1 must be a whole number")
        if self.workers > 1 and not float(self.gpu).is_integer():
            # NCCL refuses two ranks of one process group on one GPU.
            raise _field_error("gpu", "must be a whole number when workers > 1: each worker needs GPUs of its own")
        return self

    def trial_total(self) -> dict[str, float]:
        """What one trial holds at once, over all of its workers."""
        return {"CPU": self.workers * self.cpu, "GPU": self.workers * self.gpu}


class FailurePolicy(_Spec):
    max_retries: int = Field(1, ge=0, description="Times a crashed trial is restarted from its last checkpoint.")
    checkpoint_interval_s: float = Field(
        10.0,
        ge=0,
        le=86_400,
        description="Most trial time a crash can lose: a trial persists a checkpoint at most this often, and "
        "always at its last epoch. Each costs a copy into the Tune storage; 0 persists every reported epoch.",
    )


class Autoscaling(_Spec):
    """Ray Serve's autoscaling of a deployment: replicas between the bounds, aiming at a number
    of requests in flight per replica."""

    min_replicas: int = Field(1, ge=1, description="Fewest replicas, kept however idle.")
    max_replicas: int = Field(ge=1, description="Most replicas load may add.")
    target_ongoing_requests: float = Field(
        2.0, gt=0, le=1000, description="Requests in flight per replica that autoscaling aims for."
    )
    upscale_delay_s: float = Field(
        5.0, ge=0, le=3600, description="How long load stays above the target before a replica is added."
    )
    downscale_delay_s: float = Field(
        60.0, ge=0, le=3600, description="How long load stays below the target before a replica is removed."
    )

    @model_validator(mode="after")
    def _check_bounds(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise _field_error("min_replicas", f"must be <= max_replicas ({self.max_replicas})")
        return self


AUTOSCALING_FIELDS = tuple(Autoscaling.model_fields)


class DeployPolicy(_Spec):
    auto: bool = Field(False, description="Deploy the best model to Ray Serve when the study succeeds.")
    replicas: int = Field(
        1, ge=1, description="Serve replicas of the deployed model, fixed; leave it at 1 with autoscaling."
    )
    max_batch_size: int = Field(
        32,
        ge=1,
        le=MAX_BATCH_SIZE,
        description="Most rows of concurrent Predict calls sent to a replica at once; 1 turns batching off.",
    )
    min_replicas: int | None = Field(None, ge=1, description="Autoscaling: fewest replicas (default 1).")
    max_replicas: int | None = Field(
        None, ge=1, description="Autoscaling: most replicas; setting it turns autoscaling on."
    )
    target_ongoing_requests: float | None = Field(
        None, gt=0, le=1000, description="Autoscaling: requests in flight per replica it aims for (default 2)."
    )
    upscale_delay_s: float | None = Field(
        None, ge=0, le=3600, description="Autoscaling: seconds above the target before a replica is added (default 5)."
    )
    downscale_delay_s: float | None = Field(
        None, ge=0, le=3600, description="Autoscaling: seconds below the target before one is removed (default 60)."
    )

    @model_validator(mode="after")
    def _check_scaling(self) -> DeployPolicy:
        tuning = [name for name in AUTOSCALING_FIELDS if getattr(self, name) is not None]
        if tuning and self.max_replicas is None:
            raise _field_error("max_replicas", f"is needed with {tuning[0]}: autoscaling goes up to it")
        if tuning and self.replicas != 1:
            raise _field_error("replicas", "set either replicas (fixed) or min_replicas/max_replicas (autoscaling)")
        if self.max_replicas is not None and (self.min_replicas or 1) > self.max_replicas:
            raise _field_error("min_replicas", f"must be <= max_replicas ({self.max_replicas})")
        return self

    def with_overrides(self, overrides: dict[str, Any]) -> DeployPolicy:
        """This policy with a Deploy request's fields in place of its own: fixed `replicas`
        turn autoscaling off, and autoscaling fields turn fixed replicas off. Raises a
        ValidationError naming the field."""
        merged = self.model_dump()
        if "replicas" in overrides:
            merged.update(dict.fromkeys(AUTOSCALING_FIELDS))
        if any(name in overrides for name in AUTOSCALING_FIELDS):
            merged["replicas"] = 1
        return DeployPolicy.model_validate({**merged, **overrides})

    def autoscaling(self) -> Autoscaling | None:
        """Serve's autoscaling of the deployment; None for a fixed number of replicas."""
        if self.max_replicas is None:
            return None
        given = {name: getattr(self, name) for name in AUTOSCALING_FIELDS if getattr(self, name) is not None}
        return Autoscaling(**given)

    def least_replicas(self) -> int:
        """The replicas it keeps at the least: the fixed number, or autoscaling's minimum."""
        scaling = self.autoscaling()
        return scaling.min_replicas if scaling is not None else self.replicas


def _domain_text(domain: Domain) -> str:
    """A domain as a person reads it: `float [0.001, 0.1] log`, `categorical [adam, sgd]`."""
    if domain.categorical is not None:
        return f"categorical [{', '.join(map(str, domain.categorical))}]"
    bounds = domain.float_range if domain.float_range is not None else domain.int_range
    assert bounds is not None
    return f"{domain.kind} [{bounds.low:g}, {bounds.high:g}]" + (" log" if bounds.log else "")


def _goals_text(goals: list[Objective]) -> str:
    return " and ".join(f"{goal.metric} ({goal.mode})" for goal in goals)


class StudySpec(_Spec):
    """Everything anneal needs to tune one trainer on one dataset."""

    name: str = Field(pattern=NAME_PATTERN, description="Lower-case name; also the Serve application name.")
    trainer: str = Field(min_length=1, description="A registered trainer, e.g. mlp_classifier.")
    dataset: DatasetSpec = Field(description="The data and how it is split.")
    params: dict[str, Scalar] = Field(default_factory=dict, description="Fixed trainer parameters.")
    search_space: dict[str, Domain] = Field(description="The parameters to tune and their domains.")
    objective: Objective | None = Field(None, description="What to optimise; or `objectives` for several.")
    objectives: list[Objective] | None = Field(
        None,
        min_length=2,
        max_length=MAX_OBJECTIVES,
        description="Several objectives optimised together: the study keeps their Pareto front, and its best "
        "trial is the best on the first, then the next (a trial of the front).",
    )
    search: SearchSpec = Field(default_factory=SearchSpec, description="The Optuna sampler.")
    scheduler: SchedulerSpec = Field(
        default_factory=lambda: SchedulerSpec(none=NoScheduler()), description="Early stopping."
    )
    budget: Budget = Field(default_factory=Budget, description="How much to run.")
    resources: Resources = Field(default_factory=Resources, description="Per-trial resources.")
    failure: FailurePolicy = Field(default_factory=FailurePolicy, description="Retries of crashed trials.")
    deploy: DeployPolicy = Field(default_factory=DeployPolicy, description="Serving of the best model.")

    def reserved_cpus(self) -> float:
        """CPUs the study keeps free of its trials, for the tasks that read its data."""
        return TABLE_READ_CPUS if self.dataset.format is not None else 0.0

    @property
    def goals(self) -> list[Objective]:
        """What the study optimises, in order: its `objectives`, or its one `objective`."""
        if self.objectives:
            return list(self.objectives)
        assert self.objective is not None  # _one_form_of_objective holds
        return [self.objective]

    @property
    def first_goal(self) -> Objective:
        """The objective that ranks trials first: the only one, or the first of several."""
        return self.goals[0]

    def is_multi_objective(self) -> bool:
        return len(self.goals) > 1

    def warm_start_errors(self, earlier: StudySpec, index: int) -> list[FieldError]:
        """Why the trials of `earlier` (`search.warm_start[index]`) cannot teach this study's
        sampler: other objectives, a parameter both tune over different domains (the error
        names that parameter), or no parameter in common."""
        here = f"search.warm_start[{index}]"
        if earlier.goals != self.goals:
            return [
                FieldError(
                    here, f"that study optimises {_goals_text(earlier.goals)}; this one {_goals_text(self.goals)}"
                )
            ]
        errors = [
            FieldError(
                f"search_space.{name}",
                f"is {_domain_text(domain)} here and {_domain_text(earlier.search_space[name])} in the study "
                f"of {here}; warm starts need the same domain",
            )
            for name, domain in self.search_space.items()
            if name in earlier.search_space and earlier.search_space[name] != domain
        ]
        if not errors and not self.warm_parameters(earlier):
            errors.append(FieldError(here, "that study tunes none of this study's parameters"))
        return errors

    def warm_parameters(self, earlier: StudySpec) -> list[str]:
        """The parameters this study and `earlier` both tune, over the same domain."""
        return [name for name, domain in self.search_space.items() if earlier.search_space.get(name) == domain]

    @model_validator(mode="after")
    def _one_form_of_objective(self) -> StudySpec:
        """`objective` or `objectives`; several objectives need a sampler and a scheduler that
        rank by all of them, never one alone in silence."""
        if self.objective is None and self.objectives is None:
            raise _field_error("objective", "Field required (or objectives, for several)")
        if self.objective is not None and self.objectives is not None:
            raise _field_error("objectives", "give objective (one) or objectives (several), not both")
        metrics = [goal.metric for goal in self.goals]
        for index, metric in enumerate(metrics):
            if metric in metrics[:index]:
                raise _field_error(f"objectives.{index}.metric", f"{metric!r} is given more than once")
        if not self.is_multi_objective():
            return self
        if self.search.sampler not in MULTI_OBJECTIVE_SAMPLERS:
            raise _field_error(
                "search.sampler",
                f"{self.search.sampler} optimises one objective; with several, use "
                + ", ".join(MULTI_OBJECTIVE_SAMPLERS),
            )
        if self.scheduler.asha is not None and self.scheduler.asha.type == "promotion":
            raise _field_error(
                "scheduler.asha.type",
                "promotion ranks trials by one objective; with several objectives use stopping "
                "(which keeps trials by non-dominated rank)",
            )
        if self.scheduler.median is not None:
            raise _field_error(
                "scheduler.median",
                "the median rule ranks trials by one objective; with several objectives use asha "
                "(which then keeps trials by non-dominated rank) or none",
            )
        return self

    @model_validator(mode="after")
    def _pausable_trials(self) -> StudySpec:
        """Promotion pauses trials at their rung checkpoints, which anneal does for single-worker
        trials only: a data-parallel trial's Ray Train worker group would have to stop and start
        again with it, which is not built."""
        asha = self.scheduler.asha
        if asha is not None and asha.type == "promotion" and self.resources.workers > 1:
            raise _field_error(
                "scheduler.asha.type",
                "promotion pauses trials, which anneal does not do for data-parallel trials (resources.workers > 1); "
                "use stopping",
            )
        return self

    @field_validator("search_space")
    @classmethod
    def _not_empty(cls, space: dict[str, Domain]) -> dict[str, Domain]:
        if not space:
            raise ValueError("must name at least one parameter to tune")
        return space

    @model_validator(mode="after")
    def _conditions_hold(self) -> StudySpec:
        """Each `when` names a categorical parameter of the space and some of its choices, and
        the conditions form no cycle."""
        for name, domain in self.search_space.items():
            for parent, values in (domain.when or {}).items():
                where = f"search_space.{name}.when.{parent}"
                theirs = self.search_space.get(parent)
                if parent == name or theirs is None:
                    raise _field_error(where, "is not another parameter of search_space")
                if theirs.categorical is None:
                    raise _field_error(where, f"{parent} must be a categorical parameter")
                if not values:
                    raise _field_error(where, "needs at least one of its choices")
                strangers = [value for value in values if value not in theirs.categorical]
                if strangers:
                    raise _field_error(where, f"{strangers[0]!r} is not among {parent}'s choices")
        self.sampling_order()
        return self

    def sampling_order(self) -> list[str]:
        """The parameters, each after those its `when` names: the order a trial samples them in."""
        order: list[str] = []
        visiting: list[str] = []

        def visit(name: str) -> None:
            if name in order:
                return
            if name in visiting:
                cycle = " → ".join([*visiting[visiting.index(name) :], name])
                raise _field_error(f"search_space.{name}.when", f"the conditions form a cycle: {cycle}")
            visiting.append(name)
            for parent in self.search_space[name].when or {}:
                visit(parent)
            visiting.pop()
            order.append(name)

        for name in self.search_space:
            visit(name)
        return order

    def is_conditional(self) -> bool:
        return any(domain.when for domain in self.search_space.values())

    @model_validator(mode="after")
    def _fixed_or_tuned(self) -> StudySpec:
        both = sorted(set(self.params) & set(self.search_space))
        if both:
            raise _field_error(f"params.{both[0]}", "is also in search_space; a parameter is fixed or tuned, not both")
        return self

    # -------------------------------------------------------------- loading

    @classmethod
    def parse(cls, data: Any) -> StudySpec:
        """Validates plain data (a dict as YAML gives it) into a spec, or raises InvalidSpec."""
        if not isinstance(data, dict):
            raise InvalidSpec("a study spec must be a mapping")
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            raise InvalidSpec(field_errors(error)) from None

    @classmethod
    def from_yaml(cls, text: str) -> StudySpec:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise InvalidSpec(f"not valid YAML: {error}") from None
        return cls.parse(data)

    @classmethod
    def load(cls, path: str | Path) -> StudySpec:
        return cls.from_yaml(Path(path).read_text())

    def to_dict(self) -> dict[str, Any]:
        """The YAML-shaped form (aliases, defaults included)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def field_errors(error: ValidationError) -> list[FieldError]:
    """Pydantic's errors as dotted field paths with short messages."""
    found = []
    for item in error.errors():
        loc = [str(part) for part in item["loc"]]
        message = item["msg"]
        if item["type"] == "anneal_field":
            ctx = item.get("ctx") or {}
            loc.append(str(ctx["field"]))
            message = str(ctx["message"])
        elif message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        found.append(FieldError(".".join(loc), message))
    return found
