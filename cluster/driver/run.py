"""The study driver: runs one study as a Ray job, from PENDING to its end.

It takes the study (RUNNING, with its MLflow parent run), tunes it (`cluster.driver.fit`),
and ends it (`cluster.driver.finish`): the best model packaged, scored, logged and
registered, and deployed when the spec asks. A study whose cluster goes away under it stays
RUNNING, for the server to resume on the cluster that comes back.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import tempfile
import time
from pathlib import Path

# The plots' drawing libraries (anneal.plots imports them only as it draws), imported with the
# driver: a standby driver pays for them while it waits, not its study at the end.
import matplotlib.pyplot  # noqa: F401
import optuna.importance  # noqa: F401  (scikit-learn and SciPy's statistics come with it)
import optuna.visualization  # noqa: F401  (plotly)
import ray

from anneal.plots import write_plots
from anneal.settings import Settings
from anneal.types import LOCAL_PRINCIPAL, Study, StudyState, TrialState
from cluster.driver.finish import (
    end_trial_runs,
    fail,
    no_best_reason,
    package_best,
    pick_best,
    register_best,
    score,
    succeed,
)
from cluster.driver.fit import fit
from cluster.driver.studydata import shape_of, study_data, test_rows
from cluster.driver.studyrun import StudyRun
from cluster.driver.writer import TrialWriter, start_writer
from cluster.environment import connect_ray
from cluster.serving.package import LoadedModel
from cluster.serving.rollout import deploy_study
from cluster.store.store import Store
from cluster.tracking.tracker import MlflowTracker
from trainers.registry import check_spec

log = logging.getLogger("anneal.driver")

# How long a driver whose study failed watches for its cluster going away (then the failure
# is the cluster's, not the study's) before it records the study FAILED.
CLUSTER_LOSS_WAIT_S = 10.0
# Where a study's plots (`anneal.plots`) lie among its MLflow parent run's artifacts.
PLOTS_ARTIFACT_PATH = "plots"


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
    # Only a study `anneal run` recorded (the cluster's own users) may name module:function.
    allowed = allow_import_paths and study.owner == LOCAL_PRINCIPAL
    info = check_spec(study.spec, allow_import_paths=allowed, data_roots=settings.data_roots)
    tracker = MlflowTracker(settings.mlflow_tracking_uri, settings.mlflow_artifact_root)
    resumed = resume and study.state is StudyState.RUNNING and bool(study.mlflow_run_id)
    if resumed:
        log.warning("resuming study %s, whose previous driver died", study_id)
        tracker.resume_study(study.mlflow_experiment_id, study.mlflow_run_id)
    elif not _take(store, tracker, study):
        return store.get_study(study_id)
    run = StudyRun(settings, store, tracker, writer, study, info, resumed, supervisor)
    try:
        tune_and_finish(run)
    except BaseException as error:
        if writer.lost:
            # Not the study's failure either: the study stays RUNNING, and the server's keeper
            # resumes it with a new driver, as when a driver dies.
            log.warning("the trial writer of study %s kept dying; the study stays RUNNING: %r", study_id, error)
            raise
        gcs = ray.get_runtime_context().gcs_address if ray.is_initialized() else ""
        if isinstance(error, ClusterLost) or (gcs and cluster_lost(gcs, supervisor)):
            # Not the study's failure: it stays RUNNING, and the server resumes it on the cluster that comes back.
            log.warning("the Ray cluster went away under study %s, which stays %s: %r", study_id, "RUNNING", error)
            raise
        failed = f"the study driver failed: {error!r}"
        moved = store.transition(study_id, [StudyState.RUNNING], StudyState.FAILED, error=failed)
        if moved and isinstance(error, Exception):  # an interrupt ends at once
            log_plots(run)  # the trials it completed before the failure are still worth a look
        end_trial_runs(writer, tracker, "KILLED")  # as the store ends the trials still running: CANCELLED
        tracker.end_run(tracker.parent_run_id, "FAILED", repr(error))
        raise
    return store.get_study(study_id)


def _take(store: Store, tracker: MlflowTracker, study: Study) -> bool:
    """Starts the study's MLflow parent run and moves it PENDING -> RUNNING; False (the run
    ended KILLED) when it is no longer PENDING, e.g. cancelled before its driver started."""
    spec = study.spec
    tracker.start_study(study.study_id, spec.name, spec.to_yaml(), spec.params)
    if store.transition(
        study.study_id,
        [StudyState.PENDING],
        StudyState.RUNNING,
        mlflow_experiment_id=tracker.experiment_id,
        mlflow_run_id=tracker.parent_run_id,
    ):
        return True
    tracker.end_run(tracker.parent_run_id, "KILLED")
    return False


def tune_and_finish(run: StudyRun) -> None:
    """Fits the study, then ends it: CANCELLED as asked, FAILED without a result, or SUCCEEDED
    with its best model packaged, scored, registered (and deployed when the spec asks)."""
    connect_ray(run.settings)
    _cancel_on_sigterm()
    results = fit(run)
    # Read first: stopping a cancelled study's job takes its supervisor away too, which is not a lost cluster.
    cancelled = run.store.get_study(run.study_id).state is StudyState.CANCELLED
    # Tune may end its trials as errors when their nodes vanish with the whole cluster.
    if not cancelled and cluster_lost(ray.get_runtime_context().gcs_address, run.supervisor, wait_s=0):
        raise ClusterLost(f"the Ray cluster went away while study {run.study_id} ran")
    # Every trial is in the store and MLflow before the study ends; runs a cancel cut short end KILLED.
    run.writer.flush(end_open_runs="KILLED" if cancelled else "")
    if cancelled:
        log_plots(run)
        run.tracker.end_run(run.tracker.parent_run_id, "KILLED")
        return
    best = pick_best(run.spec, results)
    if best is None:
        log_plots(run)
        fail(run, no_best_reason(run.spec, results))
        return
    experiment_dir = os.path.join(run.settings.tune_storage, run.study_id)
    data = study_data(run.spec, run.info, run.settings.data_roots, experiment_dir)
    with tempfile.TemporaryDirectory(prefix="anneal-model-") as directory:
        package = Path(directory) / "package"
        package_best(run, best, shape_of(data), package)
        test_metrics = score(LoadedModel(package, run.info), test_rows(data))
        model = register_best(run, best, package, test_metrics)
    # Last before succeed: a failure before here is plotted once, by _run_study's FAILED end.
    log_plots(run)
    succeed(run, best, model)
    if run.spec.deploy.auto:
        deploy_study(run.store, run.settings, run.study_id)


def log_plots(run: StudyRun) -> None:
    """Logs the study's plots under `plots/` of its MLflow parent run, which is still open; a
    study with no completed trial has none. The store's trials are drawn. A failure to plot is
    logged and changes nothing of the study's end."""
    started = time.monotonic()
    try:
        study = run.store.get_study(run.study_id)
        if not any(trial.state is TrialState.COMPLETED for trial in study.trials):
            log.info("study %s has no completed trial to plot", run.study_id)
            return
        with tempfile.TemporaryDirectory(prefix="anneal-plots-") as directory:
            written = write_plots(study, Path(directory))
            if written.paths:
                run.tracker.log_artifacts(run.tracker.parent_run_id, Path(directory), PLOTS_ARTIFACT_PATH)
        log.info(
            "study %s: %d plot files logged in %.1f s", run.study_id, len(written.paths), time.monotonic() - started
        )
    except Exception:
        log.warning("the plots of study %s were not logged", run.study_id, exc_info=True)
