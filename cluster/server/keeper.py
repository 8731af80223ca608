"""The driver keeper: a thread of the server that keeps every active study driven.

Every second it looks for active studies whose driver's Ray job is gone (killed, its node or
the cluster lost) and submits a new driver, which resumes the study; and, while nothing
runs, it keeps one standby driver up (`cluster.server.jobs`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from anneal.settings import Settings
from anneal.types import StudyState
from cluster.server.jobs import Jobs, job_id_for
from cluster.store.store import Store
from cluster.tracking.tracker import MlflowTracker

log = logging.getLogger("anneal.keeper")

DRIVER_KEEPER_INTERVAL_S = 1.0


class DriverKeeper:
    def __init__(
        self, settings: Settings, store: Store, jobs: Jobs, *, restarted: Callable[[], None] = lambda: None
    ) -> None:
        self.settings = settings
        self.store = store
        self.jobs = jobs
        self.restarted = restarted  # told of each driver it starts again (the server's metrics count them)

    def keep_drivers(self, stop: threading.Event, interval_s: float = DRIVER_KEEPER_INTERVAL_S) -> None:
        """Runs `tend_drivers` every `interval_s` until `stop` is set (the server's keeper thread)."""
        try:
            self.jobs.adopt_standby(lambda job_id: self.store.study_for_job(job_id) is not None)
        except Exception:
            log.exception("could not list the cluster's jobs to adopt a standby driver")
        while not stop.wait(interval_s):
            try:
                self.tend_drivers()
            except Exception:
                log.exception("the study driver keeper failed a pass; it tries again")

    def tend_drivers(self) -> None:
        """Starts a new driver for every active study whose driver's job is gone, and starts a
        standby when none is up. Only while no study or study driver runs: its start-up would
        slow them."""
        for study_id, state, job_id, restarts in self.store.driven_studies():
            if self.jobs.is_gone(job_id):
                self._restart_driver(study_id, state, job_id, restarts)
        busy = self.store.count_studies([StudyState.PENDING, StudyState.RUNNING]) or self.jobs.drivers_running()
        if not busy and self.jobs.wants_standby():
            self.jobs.start_standby()

    def _end_runs(self, study_id: str, reason: str) -> None:
        """Ends the MLflow runs a study that failed with no driver left open: its trials' as
        KILLED, its own as FAILED (no driver is left to end them)."""
        study = self.store.get_study(study_id)
        if not study.mlflow_run_id:
            return  # its driver never got as far as MLflow
        try:
            tracker = MlflowTracker(self.settings.mlflow_tracking_uri, self.settings.mlflow_artifact_root)
            tracker.resume_study(study.mlflow_experiment_id, study.mlflow_run_id)
            tracker.end_open_trial_runs("KILLED")
            tracker.end_run(study.mlflow_run_id, "FAILED", reason)
        except Exception:
            log.warning("could not end the MLflow runs of failed study %s", study_id, exc_info=True)

    def _restart_driver(self, study_id: str, state: StudyState, dead_job_id: str, restarts: int) -> None:
        """A RUNNING study resumes from Tune's last snapshot; a PENDING one (its driver, or the
        standby handed it, ended before it started) starts. Past `driver_restarts`, it fails."""
        if restarts >= self.settings.driver_restarts:
            reason = (
                f"the study driver ended {restarts + 1} times before the study did; "
                f"the last, Ray job {dead_job_id}, {self.jobs.last_words(dead_job_id)}"
            )
            if self.store.transition(study_id, [state], StudyState.FAILED, error=reason):
                log.error("study %s failed: %s", study_id, reason)
                self._end_runs(study_id, reason)
            return
        new_job_id = job_id_for(study_id, restarts + 1)
        if not self.store.claim_driver(study_id, dead_job_id, new_job_id):
            return
        log.warning(
            "the driver of %s study %s (Ray job %s) is gone; submitting %s",
            state.value,
            study_id,
            dead_job_id,
            new_job_id,
        )
        self.jobs.submit_restart(study_id, new_job_id, resume=state is StudyState.RUNNING)
        self.restarted()
