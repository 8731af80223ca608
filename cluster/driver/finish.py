"""A study's end, once Tune's has come: its best trial picked, that trial's model packaged,
scored on the held-out rows, logged and registered in MLflow, and the end recorded."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from ray import tune

from anneal.pareto import oriented
from anneal.spec import StudySpec
from anneal.types import StudyState
from cluster.driver.recording import trial_config
from cluster.driver.studyrun import StudyRun
from cluster.driver.tuning import stopped_early
from cluster.driver.writer import TrialWriter
from cluster.serving.deploy import app_name
from cluster.serving.package import LoadedModel, write_model_package
from cluster.serving.pyfunc import model_requirements, save_mlflow_model
from cluster.tracking.tracker import MlflowTracker
from cluster.trial.context import load_checkpoint_state
from cluster.trial.function import ADOPTED_AS
from trainers.contract import DataShape, Task
from trainers.scores import RegressionTally

log = logging.getLogger("anneal.driver")


@dataclass(frozen=True)
class BestTrial:
    trial_id: str
    config: dict[str, Any]  # the fixed params with the trial's sampled config
    checkpoint: tune.Checkpoint  # its final one


@dataclass(frozen=True)
class RegisteredModel:
    test_metrics: dict[str, float]  # on the held-out rows; empty without any
    model_uri: str  # where the logged MLflow Model's files are (its artifact location)
    name: str  # the registered model, per owner
    version: int


def pick_best(spec: StudySpec, results: list[tune.Result]) -> BestTrial | None:
    """The best trial among those that ended without an error, left a checkpoint and reported
    every objective, finite: best on the first objective, a tie going to the next. With several
    objectives only trials that ran to their end count, so the best is on the Pareto front.
    None when no trial qualifies."""
    several = spec.is_multi_objective()
    scored = [
        (point, r)
        for r in results
        if r.error is None
        and r.metrics
        and r.checkpoint
        and (point := oriented(r.metrics, spec.goals)) is not None
        and not (several and stopped_early(r.metrics, error=False))
    ]
    if not scored:
        return None
    best = max(scored, key=lambda scored_result: scored_result[0])[1]
    trial_id = str((best.config or {}).get(ADOPTED_AS) or (best.metrics or {})["trial_id"])
    checkpoint = cast(tune.Checkpoint, best.checkpoint)  # the filter above kept trials with one
    return BestTrial(trial_id, {**spec.params, **trial_config(best.config or {})}, checkpoint)


def no_best_reason(spec: StudySpec, results: list[tune.Result]) -> str:
    errors = sum(1 for r in results if r.error is not None)
    metrics = " and ".join(goal.metric for goal in spec.goals)
    return f"no trial reported {metrics}: {errors} of {len(results)} trials failed"


def package_best(run: StudyRun, best: BestTrial, shape: DataShape, directory: Path) -> None:
    """Writes the best trial's model package (`cluster.serving.package`) into `directory`."""
    weights = run.info.load().model_state(load_checkpoint_state(best.checkpoint))
    write_model_package(directory, run.spec.trainer, run.info.task, best.config, shape, weights)


def score(model: LoadedModel, batches: Iterable[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """The model's metrics on the held-out rows, batch by batch, from its outputs as a Serve
    replica computes them: accuracy for classification; RMSE and R² for regression."""
    rows = correct = 0
    tally = RegressionTally()
    for x, y in batches:
        out = model.outputs(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
        rows += len(y)
        if model.task is Task.REGRESSION:
            tally.add(out.numpy(), y)
        else:
            correct += int((out.argmax(dim=1).numpy() == np.asarray(y)).sum())
    if rows == 0:
        return {}
    return tally.scores("test_") if model.task is Task.REGRESSION else {"test_accuracy": correct / rows}


def register_best(run: StudyRun, best: BestTrial, package: Path, test_metrics: dict[str, float]) -> RegisteredModel:
    """Logs the package as an MLflow Model, and its scores, under the study's parent run, and
    registers it as a new version of the owner's model named after the study."""
    name = app_name(run.study.owner, run.spec.name)  # registered models are per owner too
    model_dir = package.with_name(f"{package.name}-mlflow")
    save_mlflow_model(model_dir, LoadedModel(package, run.info), package, model_requirements())
    logged = run.tracker.log_best(best.trial_id, model_dir, test_metrics)
    version = run.tracker.register(name, logged)
    return RegisteredModel(test_metrics, logged.artifact_location, name, version)


def succeed(run: StudyRun, best: BestTrial, model: RegisteredModel) -> None:
    run.store.transition(
        run.study_id,
        [StudyState.RUNNING],
        StudyState.SUCCEEDED,
        best_trial_id=best.trial_id,
        best_test_metrics=model.test_metrics,
        model_uri=model.model_uri,
        registered_model=model.name,
        registered_model_version=model.version,
    )
    run.tracker.end_run(run.tracker.parent_run_id, "FINISHED")
    log.info("study %s succeeded: best trial %s, %s", run.study_id, best.trial_id, model.test_metrics)


def end_trial_runs(writer: TrialWriter, tracker: MlflowTracker, status: str) -> None:
    """After the driver failed, with the study ended: stops the trial writer (it writes what it
    holds, which the ended study's store refuses), then ends each MLflow run of a trial still
    open with `status`, so no run of the study is left RUNNING. A failure here is only logged."""
    try:
        writer.close()
        left = tracker.end_open_trial_runs(status)
    except Exception:
        log.warning("the trial runs of a failed study could not all be ended", exc_info=True)
        return
    if left:
        log.info("the runs of %d trials cut short ended %s: %s", len(left), status, ", ".join(left))


def fail(run: StudyRun, reason: str) -> None:
    run.store.transition(run.study_id, [StudyState.RUNNING], StudyState.FAILED, error=reason)
    run.tracker.end_run(run.tracker.parent_run_id, "FAILED", reason)
