"""Domain types of results: studies, trials, events, deployments, predictions, trainers.

They are what the Python client returns and what the server's domain code works
with; `anneal.convert` maps them to and from the wire messages.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from anneal.pareto import non_dominated, oriented
from anneal.spec import Autoscaling, Objective, Scalar, StudySpec

# The admin principal of a server with no tokens configured, and the owner of the studies
# `anneal run` records for the cluster's own users.
LOCAL_PRINCIPAL = "local"


class StudyState(str, enum.Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STUDY_STATES


TERMINAL_STUDY_STATES = frozenset({StudyState.SUCCEEDED, StudyState.FAILED, StudyState.CANCELLED})

# Every move a study may make; the store refuses all others. An ended study never moves again.
STUDY_TRANSITIONS: dict[StudyState, frozenset[StudyState]] = {
    StudyState.PENDING: frozenset({StudyState.RUNNING, StudyState.FAILED, StudyState.CANCELLED}),
    StudyState.RUNNING: frozenset({StudyState.SUCCEEDED, StudyState.FAILED, StudyState.CANCELLED}),
    StudyState.SUCCEEDED: frozenset(),
    StudyState.FAILED: frozenset(),
    StudyState.CANCELLED: frozenset(),
}


class TrialState(str, enum.Enum):
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"  # waiting at a rung of a promotion-type ASHA, to go on or be stopped
    COMPLETED = "COMPLETED"
    STOPPED_EARLY = "STOPPED_EARLY"
    ERROR = "ERROR"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self not in (TrialState.RUNNING, TrialState.PAUSED)


class EventKind(str, enum.Enum):
    STUDY_STARTED = "STUDY_STARTED"
    TRIAL_STARTED = "TRIAL_STARTED"
    TRIAL_RESULT = "TRIAL_RESULT"
    TRIAL_PAUSED = "TRIAL_PAUSED"
    TRIAL_ENDED = "TRIAL_ENDED"
    STUDY_ENDED = "STUDY_ENDED"


class DeploymentState(str, enum.Enum):
    DEPLOYING = "DEPLOYING"
    RUNNING = "RUNNING"
    FAILED = "FAILED"
    DELETED = "DELETED"  # undeployed: its Serve application is gone
    UNHEALTHY = "UNHEALTHY"  # recorded running, but Serve reports it unhealthy or gone


class _Result(BaseModel):
    model_config = ConfigDict(frozen=True)


class Trial(_Result):
    trial_id: str
    state: TrialState
    config: dict[str, Scalar] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    epochs: int = 0
    mlflow_run_id: str = ""
    error: str = ""


class Study(_Result):
    study_id: str
    name: str
    spec: StudySpec
    state: StudyState
    ray_job_id: str = ""
    created_at: datetime
    updated_at: datetime
    trials: list[Trial] = Field(default_factory=list)
    best_trial: Trial | None = None
    best_test_metrics: dict[str, float] = Field(default_factory=dict)
    mlflow_experiment_id: str = ""
    mlflow_run_id: str = ""
    registered_model: str = ""
    registered_model_version: int = 0
    error: str = ""
    model_uri: str = ""
    driver_restarts: int = 0  # times the server started the study's driver again after it died
    warm_start_trials: int = 0  # completed trials of earlier studies its sampler learnt first (not run)
    owner: str = ""  # the principal that created it

    @property
    def pareto_front(self) -> list[Trial]:
        """With several objectives, the completed trials no other completed trial dominates,
        best first by the first objective; empty with one objective."""
        return pareto_front(self.trials, self.spec.goals) if self.spec.is_multi_objective() else []


def pareto_front(trials: Sequence[Trial], goals: Sequence[Objective]) -> list[Trial]:
    """The completed trials, reporting every objective, that no other such trial dominates,
    best first by the first objective. A trial stopped early is left out: its values are of an
    epoch before its end."""
    scored = [
        (trial, point)
        for trial in trials
        if trial.state is TrialState.COMPLETED and (point := oriented(trial.metrics, goals)) is not None
    ]
    return [scored[i][0] for i in non_dominated([point for _, point in scored])]


class StudyEvent(_Result):
    sequence: int
    study_id: str
    kind: EventKind
    time: datetime
    trial: Trial | None = None
    study_state: StudyState | None = None
    message: str = ""
    pareto_front: list[str] = Field(default_factory=list)  # trial ids; see WatchStudy


class ModelVersion(_Result):
    """A model a deployment serves or served: a registered model version, and the study it came from."""

    study_id: str
    registered_model: str = ""
    version: int = 0
    model_uri: str = ""  # where its files are
    trial_id: str = ""  # the trial whose model it is


class Deployment(_Result):
    name: str
    study_id: str
    state: DeploymentState
    replicas: int  # fixed replicas, or autoscaling's minimum
    route: str
    model_uri: str
    updated_at: datetime
    error: str = ""
    max_batch_size: int = 1
    owner: str = ""  # the principal that deployed it; names are unique per owner
    registered_model: str = ""  # the version it serves (study_id and model_uri are that version's)
    model_version: int = 0
    trial_id: str = ""
    previous: ModelVersion | None = None  # what it served before; Rollback returns to it
    autoscaling: Autoscaling | None = None
    # What Ray Serve reports now (not stored): replicas running, the application's status and message.
    replicas_running: int = 0
    replicas_wanted: int = 0
    serve_status: str = ""
    serve_message: str = ""

    def serving(self) -> ModelVersion:
        return ModelVersion(
            study_id=self.study_id,
            registered_model=self.registered_model,
            version=self.model_version,
            model_uri=self.model_uri,
            trial_id=self.trial_id,
        )


class Tensor(_Result):
    """One example for Predict as a tensor: its shape and its values in row-major order."""

    shape: tuple[int, ...]
    values: list[float]


class Prediction(_Result):
    """One row's answer. Classification fills `label` and the class `probabilities`;
    regression fills `values`, the row's predicted value(s), and leaves label 0 and no
    probabilities."""

    label: int = 0
    probabilities: list[float] = Field(default_factory=list)
    values: list[float] = Field(default_factory=list)

    def answer(self) -> dict[str, Any]:
        """The row's JSON answer (Serve's HTTP route, `anneal predict`): only the fields its
        task fills, so a classification answer reads as it did before regression existed."""
        if self.values:
            return {"values": self.values}
        return {"label": self.label, "probabilities": self.probabilities}


class Task(str, enum.Enum):
    """What a trainer's model predicts, which decides what serving answers and how the
    held-out rows score it."""

    CLASSIFICATION = "classification"  # a class per row: its label and every class's probability
    REGRESSION = "regression"  # one or more numbers per row


class TrainerParameter(_Result):
    name: str
    default: Scalar | None = None  # used when a spec neither fixes nor tunes it
    description: str = ""


class TrainerDescription(_Result):
    """A registered trainer as a client needs it to write a spec; a package that failed to load
    is described with `available` false and its `error`, named after its entry point."""

    name: str
    description: str = ""
    task: Task | None = None
    input_shape: tuple[int, ...] = ()  # empty: a row of the dataset's numeric features
    parameters: list[TrainerParameter] = Field(default_factory=list)
    metrics: list[str] = Field(default_factory=list)
    datasets: list[str] = Field(default_factory=list)
    epochs_parameter: str = ""
    available: bool = True
    error: str = ""
    source: str = ""  # "built-in", or the distribution and entry point that registers it
