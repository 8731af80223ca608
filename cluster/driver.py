"""The study driver: runs one study as a Ray job, from PENDING to its end.

It builds the Tuner, records every trial in the store (for WatchStudy) and in
MLflow (a child run per trial), then packages, scores, logs and registers the
best model, and deploys it when the spec asks.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ray
from ray import tune

from anneal.settings import Settings
from anneal.spec import StudySpec
from anneal.types import Study, StudyState
from cluster.auth import LOCAL_PRINCIPAL
from cluster.recording import TrialRecorder, trial_config
from cluster.resume import plan_resume, snapshot_trial_ids
from cluster.serving import LoadedModel, app_name, write_model_package
from cluster.store import Store
from cluster.tracking import MlflowTracker
from cluster.trial import ADOPTED_AS, load_checkpoint_state
from cluster.tuning import build_tuner, planned_epochs, restore_tuner
from cluster.warm import prestart_trial_workers
from cluster.writer import TrialWriter
from trainers.contract import TrainerInfo
from trainers.datasets import load_dataset
from trainers.registry import check_spec

log = logging.getLogger("anneal.driver")

# How often a standby driver looks for a study handed to it, and how long it waits for one.
STANDBY_POLL_S = 0.05
STANDBY_IDLE_S = 3600.0
# How long a driver whose study failed watches for its cluster going away (then the failure
# is the cluster's, not the study's) before it records the study FAILED.
CLUSTER_LOSS_WAIT_S = 10.0


class ClusterLost(RuntimeError):
    """The Ray cluster under the driver went away; the study stays active, to be resumed."""


def cluster_lost(gcs_address: str, supervisor: int, wait_s: float = CLUSTER_LOSS_WAIT_S) -> bool:
    """True when the job's supervisor is gone or the cluster's GCS stops answering within `wait_s`."""
    host, _, port = gcs_address.rpartition(":")
    deadline = time.monotonic() + wait_s
    while True:
        if os.getppid() != supervisor:
            return True
        try:
            socket.create_connection((host, int(port)), timeout=1.0).close()
        except OSError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.5)


def _cancel_on_sigterm() -> None:
    # Ray stops a job with SIGTERM; Tune stops gracefully on SIGINT, so pass it on.
    signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGINT))


def connect_ray(settings: Settings) -> None:
    if not ray.is_initialized():
        ray.init(address=settings.ray_address or "auto", log_to_driver=False, logging_level=logging.WARNING)


def start_writer(settings: Settings) -> TrialWriter:
    return TrialWriter(settings.store_url, settings.mlflow_tracking_uri, settings.mlflow_artifact_root)


def prepare_driver(settings: Settings) -> TrialWriter:
    """Pays a driver's one-time costs before it has a study: the Ray connection, MLflow's
    SQL store, the trial writer's process and warm trial workers. (torch, Tune and MLflow
    were imported with this module.)"""
    connect_ray(settings)
    if settings.warm_trial_workers:
        prestart_trial_workers(settings.warm_trial_workers, keep_alive_s=STANDBY_IDLE_S)
    MlflowTracker(settings.mlflow_tracking_uri, settings.mlflow_artifact_root).open_store()
    return start_writer(settings)


def wait_for_assignment(
    settings: Settings,
    job_id: str,
    *,
    supervisor: int,
    poll_s: float = STANDBY_POLL_S,
    idle_s: float = STANDBY_IDLE_S,
) -> str | None:
    """A standby driver's wait: the id of the PENDING study the server hands to the Ray job
    `job_id`, or None when none came within `idle_s` or the job's process `supervisor` (this
    process's parent when it started) is gone."""
    store = Store(settings.store_url)
    deadline = time.monotonic() + idle_s
    while time.monotonic() < deadline:
        if os.getppid() != supervisor:
            # The job's supervisor is gone (Ray stopped, `anneal down`): nobody can hand a study over.
            log.info("the Ray job supervisor is gone; the standby driver %s exits", job_id)
            return None
        study_id = store.study_for_job(job_id, StudyState.PENDING)
        if study_id is not None:
            return study_id
        time.sleep(poll_s)
    return None


def run_study(
    settings: Settings,
    study_id: str,
    *,
    supervisor: int,
    allow_import_paths: bool = False,
    writer: TrialWriter | None = None,
    resume: bool = False,
) -> Study:
    """Runs a recorded study to its end and returns it as the store has it then. `writer`,
    when given (a standby driver started it ahead), records its trials; it is closed here.
    With `resume`, a RUNNING study whose driver died goes on from Tune's last snapshot.
    `supervisor` is this process's parent when it started (for a Ray job, the job's process):
    once it is gone, a failure is the cluster's, not the study's."""
    writer = writer or start_writer(settings)
    try:
        return _run_study(settings, study_id, allow_import_paths, writer, resume, supervisor)
    finally:
        writer.close()


def _run_study(
    settings: Settings, study_id: str, allow_import_paths: bool, writer: TrialWriter, resume: bool, supervisor: int
) -> Study:
    store = Store(settings.store_url)
    study = store.get_study(study_id)
    spec = study.spec
    # Only a study `anneal run` recorded (the cluster's own users) may name module:function.
    allowed = allow_import_paths and study.owner == LOCAL_PRINCIPAL
    info = check_spec(spec, allow_import_paths=allowed, data_roots=settings.data_roots)
    tracker = MlflowTracker(settings.mlflow_tracking_uri, settings.mlflow_artifact_root)
    resumed: Study | None = None
    if resume and study.state is StudyState.RUNNING and study.mlflow_run_id:
        log.warning("resuming study %s, whose previous driver died", study_id)
        tracker.resume_study(study.mlflow_experiment_id, study.mlflow_run_id)
        resumed = study
    else:
        tracker.start_study(study_id, spec.name, spec.to_yaml(), spec.params)
        if not store.transition(
            study_id,
            [StudyState.PENDING],
            StudyState.RUNNING,
            mlflow_experiment_id=tracker.experiment_id,
            mlflow_run_id=tracker.parent_run_id,
        ):
            tracker.end_run(tracker.parent_run_id, "KILLED")
            return store.get_study(study_id)
    try:
        _tune_and_finish(settings, store, tracker, writer, study, info, resumed, supervisor)
    except BaseException as error:
        gcs = ray.get_runtime_context().gcs_address if ray.is_initialized() else ""
        if isinstance(error, ClusterLost) or (gcs and cluster_lost(gcs, supervisor)):
            # Not the study's failure: it stays RUNNING, and the server resumes it on the cluster that comes back.
            log.warning("the Ray cluster went away under study %s, which stays %s: %r", study_id, "RUNNING", error)
            raise
        store.transition(study_id, [StudyState.RUNNING], StudyState.FAILED, error=f"the study driver failed: {error!r}")
        tracker.end_run(tracker.parent_run_id, "FAILED", repr(error))
        raise
    return store.get_study(study_id)


def _tune_and_finish(
    settings: Settings,
    store: Store,
    tracker: MlflowTracker,
    writer: TrialWriter,
    study: Study,
    info: TrainerInfo,
    resumed: Study | None,
    supervisor: int,
) -> None:
    study_id, spec = study.study_id, study.spec
    connect_ray(settings)
    _cancel_on_sigterm()
    writer.start(study_id, tracker.experiment_id, tracker.parent_run_id, resumed.trials if resumed else None)
    recorder = TrialRecorder(writer, spec.params, planned_epochs(spec, info) or 0)
    if resumed is None:
        tuner = build_tuner(
            spec,
            info,
            experiment_name=study_id,
            storage_path=settings.tune_storage,
            callbacks=[recorder],
            data_roots=settings.data_roots,
        )
    else:
        tuner = _resumed_tuner(settings, writer, recorder, resumed, info)
    grid = tuner.fit()
    # Tune may end its trials as errors when their nodes vanish with the whole cluster.
    if cluster_lost(ray.get_runtime_context().gcs_address, supervisor, wait_s=0):
        raise ClusterLost(f"the Ray cluster went away while study {study_id} ran")
    cancelled = store.get_study(study_id).state is StudyState.CANCELLED
    # Every trial is in the store and MLflow before the study ends; runs a cancel cut short end KILLED.
    writer.flush(end_open_runs="KILLED" if cancelled else "")
    if cancelled:
        tracker.end_run(tracker.parent_run_id, "KILLED")
        return
    results = [grid[i] for i in range(len(grid))]
    metric, sign = spec.objective.metric, (1 if spec.objective.mode == "max" else -1)
    scored = [
        r
        for r in results
        if r.error is None and r.metrics and math.isfinite(r.metrics.get(metric, math.nan)) and r.checkpoint
    ]
    if not scored:
        errors = sum(1 for r in results if r.error is not None)
        reason = f"no trial reported {metric}: {errors} of {len(results)} trials failed"
        store.transition(study_id, [StudyState.RUNNING], StudyState.FAILED, error=reason)
        tracker.end_run(tracker.parent_run_id, "FAILED", reason)
        return
    best = max(scored, key=lambda r: sign * (r.metrics or {})[metric])
    best_id = str((best.config or {}).get(ADOPTED_AS) or (best.metrics or {})["trial_id"])
    config = {**spec.params, **trial_config(best.config or {})}
    model_name = app_name(study.owner, spec.name)  # registered models are per owner too
    finish = _package_best(spec, info, tracker, best_id, config, best.checkpoint, model_name, settings.data_roots)
    store.transition(study_id, [StudyState.RUNNING], StudyState.SUCCEEDED, best_trial_id=best_id, **finish)
    tracker.end_run(tracker.parent_run_id, "FINISHED")
    log.info("study %s succeeded: best trial %s, %s", study_id, best_id, finish["best_test_metrics"])
    if spec.deploy.auto:
        from cluster.service import deploy_study

        deploy_study(store, settings, study_id, spec.deploy.replicas)


def _resumed_tuner(
    settings: Settings, writer: TrialWriter, recorder: TrialRecorder, study: Study, info: TrainerInfo
) -> tune.Tuner:
    """The Tuner of a study whose driver died: restored from Tune's last snapshot, which the
    store's records complete (`cluster.resume`); a new one when Tune never took a snapshot."""
    experiment_dir = os.path.join(settings.tune_storage, study.study_id)
    snapshot = snapshot_trial_ids(experiment_dir)
    plan = plan_resume(study, experiment_dir, snapshot)
    if snapshot is None or not tune.Tuner.can_restore(experiment_dir):
        recorder.resume(writer, study.trials)
        return build_tuner(
            study.spec,
            info,
            experiment_name=study.study_id,
            storage_path=settings.tune_storage,
            callbacks=[recorder],
            carried=plan.carried,
            adoptions=plan.adoptions,
            data_roots=settings.data_roots,
        )
    tuner, callbacks = restore_tuner(
        study.spec, info, experiment_dir, plan.carried, plan.adoptions, data_roots=settings.data_roots
    )
    restored = [callback for callback in callbacks if isinstance(callback, TrialRecorder)]
    if len(restored) != 1:
        raise RuntimeError(f"Tune's snapshot of {study.study_id} holds {len(restored)} trial recorders, not one")
    restored[0].resume(writer, study.trials)
    return tuner


def _package_best(
    spec: StudySpec,
    info: TrainerInfo,
    tracker: MlflowTracker,
    trial_id: str,
    config: dict[str, Any],
    checkpoint: Any,
    model_name: str,
    data_roots: Sequence[str],
) -> dict[str, Any]:
    """Writes the best model package, scores it on the held-out rows, logs and registers it."""
    trainer = info.load()
    weights = trainer.model_state(load_checkpoint_state(checkpoint))
    data = load_dataset(spec.dataset, data_roots)
    with tempfile.TemporaryDirectory(prefix="anneal-model-") as directory:
        package = Path(directory)
        write_model_package(package, spec.trainer, config, data.shape, weights)
        test_metrics = score(LoadedModel(package), data.x_test, data.y_test)
        model_uri = tracker.log_best(trial_id, package, test_metrics)
    version = tracker.register(model_name, model_uri)
    return {
        "best_test_metrics": test_metrics,
        "model_uri": model_uri,
        "registered_model": model_name,
        "registered_model_version": version,
    }


def score(model: LoadedModel, x: Any, y: Any) -> dict[str, float]:
    if len(y) == 0:
        return {}
    predictions = model.predict(x.tolist())
    correct = sum(1 for (label, _), truth in zip(predictions, y, strict=True) if label == int(truth))
    return {"test_accuracy": correct / len(y)}
