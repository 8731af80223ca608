"""A standby driver: a study driver's Ray job started before its study, warmed up, waiting.

A Ray job's start-up (a fresh Python process importing torch, Tune, Optuna and MLflow, a Ray
connection, MLflow's SQL store, the trial writer's process, trial workers) takes seconds.
The server keeps one standby up (`cluster.server.jobs`); it hands a study over by recording
the standby's job id on it, and the study starts within milliseconds.
"""

from __future__ import annotations

import logging
import os
import time

import cluster.driver.run  # noqa: F401  (a study's own imports: torch, Tune, Optuna, paid before it comes)
from anneal.settings import Settings
from anneal.types import StudyState
from cluster.driver.warm import prestart_trial_workers
from cluster.driver.writer import TrialWriter, start_writer
from cluster.environment import connect_ray
from cluster.store.store import Store
from cluster.tracking.tracker import MlflowTracker

log = logging.getLogger("anneal.driver")

# How often a standby driver looks for a study handed to it, and how long it waits for one.
STANDBY_POLL_S = 0.05
STANDBY_IDLE_S = 3600.0


def prepare_driver(settings: Settings) -> TrialWriter:
    """Pays a driver's one-time costs before it has a study: the Ray connection, MLflow's
    SQL store, the trial writer's process and warm trial workers."""
    connect_ray(settings)
    if settings.warm_trial_workers:
        asked = prestart_trial_workers(settings.warm_trial_workers, keep_alive_s=STANDBY_IDLE_S)
        log.info("asked the raylets for %d warm trial workers", asked)
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


def wait_as_standby(settings: Settings, job_id: str, supervisor: int) -> tuple[str, TrialWriter] | None:
    """Warms up, then waits for the study the server hands to this standby's Ray job: its id
    and the trial writer started for it; None when none came."""
    writer = prepare_driver(settings)
    study_id = wait_for_assignment(settings, job_id, supervisor=supervisor)
    if study_id is None:
        writer.close()
        return None
    return study_id, writer
