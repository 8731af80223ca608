"""Studies run as Ray jobs (Ray Jobs API): the server submits, stops and inspects them.

A Ray job's start-up (job supervisor, a fresh Python process, imports of torch, Tune
and MLflow) takes seconds. So the launcher keeps a standby driver: a job started ahead
of time, with those imports done, that waits for the server to hand it a study (see
`cluster.driver.standby`). A study handed to it starts in milliseconds; one created
while no standby is up gets a job of its own.

`Jobs` is what the server's domain and keeper ask of a launcher; `JobLauncher` answers it
through Ray's Jobs API.
"""

from __future__ import annotations

import logging
import shlex
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from anneal.errors import ConfigurationError
from anneal.settings import Settings
from cluster.environment import job_env
from cluster.server.standbyretry import StandbyRetry
from cluster.trial.warm import SETUP_HOOK

if TYPE_CHECKING:
    from ray.job_submission import JobStatus

log = logging.getLogger("anneal.jobs")

# A cluster that just started (or is busy) may not have its job agent up yet: Ray answers a
# submission with this, and a submission a little later succeeds.
AGENT_NOT_READY = "No available agent to submit job"
AGENT_WAIT_S = 30.0
STANDBY_PREFIX = "anneal-standby-"
STANDBY_METADATA = "anneal.standby"


def job_id_for(study_id: str, restart: int = 0) -> str:
    """The id of the Ray job that drives the study; restarts of its driver get their own."""
    return f"anneal-{study_id}" + (f"-r{restart}" if restart else "")


class Jobs(Protocol):
    """The study drivers' Ray jobs, as the server's domain and driver keeper use them."""

    def submit(self, study_id: str) -> str:
        """The job that will run the study (the standby, or a new job); the caller records it on the study."""

    def submit_restart(self, study_id: str, job_id: str, *, resume: bool) -> str:
        """A new job `job_id` that drives the study; `resume` goes on from Tune's last snapshot."""

    def stop(self, job_id: str) -> None:
        """Stops the job unless it has ended."""

    def is_gone(self, job_id: str) -> bool:
        """True when the job has ended or the cluster no longer knows it."""

    def last_words(self, job_id: str) -> str:
        """How the job ended, for a study's error."""

    def drivers_running(self) -> bool:
        """True while a job given a study has not ended."""

    def capacity(self) -> dict[str, float]:
        """The cluster's total resources as Ray counts them ("CPU", "GPU", ...)."""

    def wants_standby(self) -> bool:
        """True when standbys are configured and none is up."""

    def start_standby(self) -> str:
        """Starts a standby driver; returns its job id."""

    def stop_standby(self) -> None:
        """Stops the standby, which holds no study."""

    def adopt_standby(self, holds_study: Callable[[str], bool]) -> str | None:
        """Takes over a standby still up that holds no study (after a server restart)."""


class JobLauncher:
    """Submits `anneal run` to the cluster's job API, with the settings as its environment."""

    def __init__(self, settings: Settings) -> None:
        from ray.job_submission import JobSubmissionClient

        if not settings.ray_dashboard_url:
            raise ConfigurationError(
                "ray_dashboard_url is not set: start a cluster with `anneal up` or pass --ray-dashboard-url"
            )
        self.settings = settings
        self.client = JobSubmissionClient(settings.ray_dashboard_url)
        self._standby: str | None = None
        self._handed: set[str] = set()  # jobs given a study, until they end
        self._retry = StandbyRetry()  # when the next standby may start; guarded by _lock
        self._lock = threading.Lock()

    def submit(self, study_id: str) -> str:
        """The job that will run the study: the standby driver when one is up, else a new job.

        The caller hands the study over by recording the returned job id on it.
        """
        with self._lock:
            standby, self._standby = self._standby, None
        if standby and self._is_up(standby):
            job_id = standby
            with self._lock:
                self._retry.succeeded()  # it started and waited: standbys start
        else:
            job_id = self.submit_own_job(study_id)
        with self._lock:
            self._handed.add(job_id)
        return job_id

    def _is_up(self, job_id: str) -> bool:
        try:
            return not self.is_gone(job_id)
        except RuntimeError:  # cannot tell: a job of its own is sure to run the study
            return False

    def submit_own_job(self, study_id: str) -> str:
        return self.submit_restart(study_id, job_id_for(study_id), resume=False)

    def submit_restart(self, study_id: str, job_id: str, *, resume: bool) -> str:
        """A job of its own that drives the study: its first, or a new driver for a study whose
        driver's job ended with the study still active."""
        arguments = f"--study {shlex.quote(study_id)}" + (" --resume" if resume else "")
        self._submit(arguments, job_id, {"anneal.study_id": study_id})
        with self._lock:
            self._handed.add(job_id)
        return job_id

    def last_words(self, job_id: str) -> str:
        """How the job ended, as Ray tells it (status and message), for a study's error."""
        try:
            info = self.client.get_job_info(job_id)
        except RuntimeError:
            return "the cluster no longer knows it"
        return f"{info.status.value}: {(info.message or '').strip()[-500:]}"

    def drivers_running(self) -> bool:
        """True while a job given a study has not ended: after its study, it may still be
        deploying the best model, which a standby's start-up would slow."""
        with self._lock:
            handed = list(self._handed)
        ended = {job_id for job_id in handed if self.is_gone(job_id)}
        with self._lock:
            self._handed -= ended
        return len(ended) < len(handed)

    def capacity(self) -> dict[str, float]:
        import ray

        return {name: float(amount) for name, amount in ray.cluster_resources().items()}

    def wants_standby(self) -> bool:
        """True when standbys are configured, none is up, and the wait after standbys that
        failed to start is over (`StandbyRetry`)."""
        if self.settings.standby_drivers < 1:
            return False
        with self._lock:
            standby = self._standby
        if standby is not None:
            if not self.is_gone(standby):
                return False
            self._standby_ended(standby)
        with self._lock:
            return self._retry.may_start(time.monotonic())

    def _standby_ended(self, job_id: str) -> None:
        """A standby ended holding no study: a failure to start, unless it left of its own
        accord (no study came within its idle time, or its cluster went away)."""
        from ray.job_submission import JobStatus

        try:
            failed = self.status(job_id) == JobStatus.FAILED
        except RuntimeError:  # the cluster no longer knows it: a restarted cluster, not this standby's fault
            failed = False
        why = self.last_words(job_id) if failed else ""
        with self._lock:
            if self._standby == job_id:
                self._standby = None
            if failed:
                self._retry.failed(time.monotonic(), job_id, why)
            else:
                self._retry.succeeded()

    def stop_standby(self) -> None:
        """Stops the standby, which holds no study (the server is shutting down); one still
        starting would otherwise outlive the cluster, stuck connecting to it."""
        with self._lock:
            standby, self._standby = self._standby, None
        if not standby:
            return
        try:
            self.stop(standby)
        except Exception:  # shutting down: report it and go on
            log.warning("could not stop standby study driver %s", standby, exc_info=True)

    def start_standby(self) -> str:
        job_id = f"{STANDBY_PREFIX}{uuid.uuid4().hex[:12]}"
        self._submit(f"--standby {job_id}", job_id, {STANDBY_METADATA: "1"})
        with self._lock:
            self._standby = job_id
        log.info("started standby study driver %s", job_id)
        return job_id

    def adopt_standby(self, holds_study: Callable[[str], bool]) -> str | None:
        """After a server restart: takes over a standby that is still up and holds no study."""
        for job in self.client.list_jobs():
            if (job.metadata or {}).get(STANDBY_METADATA) and not job.status.is_terminal():
                if job.submission_id and not holds_study(job.submission_id):
                    with self._lock:
                        self._standby = job.submission_id
                    return job.submission_id
        return None

    def _submit(self, arguments: str, job_id: str, metadata: dict[str, str]) -> str:
        runtime_env: dict[str, object] = {"env_vars": job_env(self.settings)}
        if self.settings.warm_trial_workers:
            runtime_env["worker_process_setup_hook"] = SETUP_HOOK
        deadline = time.monotonic() + AGENT_WAIT_S
        while True:
            try:
                return self.client.submit_job(
                    entrypoint=f"anneal run {arguments}",
                    submission_id=job_id,
                    runtime_env=runtime_env,
                    metadata=metadata,
                )
            except RuntimeError as error:
                if AGENT_NOT_READY not in str(error) or time.monotonic() > deadline:
                    raise
                log.info("Ray's job agent is not up yet; submitting %s again", job_id)
                time.sleep(0.5)

    def stop(self, job_id: str) -> None:
        if job_id and not self.status(job_id).is_terminal():
            self.client.stop_job(job_id)

    def is_gone(self, job_id: str) -> bool:
        """True when the job has ended or the cluster no longer knows it (a restarted cluster).
        Any other failure to ask (a busy dashboard) is raised: a live driver is never taken
        for a dead one."""
        try:
            return self.status(job_id).is_terminal()
        except RuntimeError as error:  # the Jobs API answers an unknown job with 404
            if "status code 404" in str(error):
                return True
            raise

    def status(self, job_id: str) -> JobStatus:
        return self.client.get_job_status(job_id)
