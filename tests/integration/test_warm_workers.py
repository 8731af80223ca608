"""A standby driver starts its study's trial workers ahead: the trials run in worker
processes that were up, with torch imported, before the study was created."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import ray
from ray.job_submission import JobStatus, JobSubmissionClient
from ray.util.state import list_actors, list_workers
from ray.util.state.common import WorkerState

from anneal import StudyState
from cluster.server.jobs import STANDBY_METADATA
from tests.integration.conftest import Stack, small_spec

pytestmark = pytest.mark.integration

WAIT_S = 120.0


def free_standby_job(stack: Stack) -> tuple[str, str, int]:
    """The standby driver that has no study yet: its submission id (a study's `ray_job_id`), its
    Ray job id (its actors'), and when it started (ms). Standby jobs that took a study keep
    their metadata and may still be running it."""
    jobs = JobSubmissionClient(stack.settings.ray_dashboard_url)
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        for job in jobs.list_jobs():
            standby = (job.metadata or {}).get(STANDBY_METADATA) and job.status is JobStatus.RUNNING
            if (
                standby
                and job.submission_id
                and job.job_id
                and not stack.service.store.study_for_job(job.submission_id)
            ):
                return job.submission_id, job.job_id, int(job.start_time or 0)
        time.sleep(0.5)
    raise TimeoutError("no free standby study driver came up")


def all_workers() -> list[WorkerState]:
    """Every worker the cluster has had, oldest first (a process id seen twice maps to the newest)."""
    workers = list_workers(detail=True, limit=10_000, raise_on_missing_output=False)
    return sorted(workers, key=lambda w: w.worker_launch_time_ms or 0)


def job_of(pid: int) -> str:
    """The Ray job a worker process works for (Ray starts each with RAY_JOB_ID); '' when gone."""
    try:
        environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return ""
    return next((v.decode() for k, _, v in (e.partition(b"=") for e in environment) if k == b"RAY_JOB_ID"), "")


def idle_workers_of(job_id: str, start_ms: int) -> list[WorkerState]:
    """Live workers of the job launched after `start_ms` that run no actor yet."""
    busy = {a.pid for a in list_actors(filters=[("state", "=", "ALIVE")], detail=True, limit=10_000)}
    return [
        w
        for w in all_workers()
        if w.is_alive
        and w.worker_type == "WORKER"
        and w.pid not in busy
        and (w.worker_launch_time_ms or 0) >= start_ms
        and job_of(w.pid) == job_id
    ]


def test_trials_run_in_workers_started_before_the_study(stack: Stack) -> None:
    submission_id, job_id, started_ms = free_standby_job(stack)
    # The standby asks for one warm worker per CPU (at most warm_trial_workers): the study is
    # created once all of them are up and idle, the standby's own (an idle worker of another
    # job would not show that this standby has warmed up).
    asked = min(int(ray.cluster_resources().get("CPU", 0)), stack.settings.warm_trial_workers)
    deadline = time.monotonic() + WAIT_S
    while len(idle_workers_of(job_id, started_ms)) < asked and time.monotonic() < deadline:
        time.sleep(0.5)
    assert len(idle_workers_of(job_id, started_ms)) >= asked, "the standby driver did not start its trial workers"

    with stack.client() as client:
        study = client.create_study(small_spec("it-warm", params={"epochs": 2, "batch_size": 64}))
        list(client.watch_study(study.study_id))
        study = client.get_study(study.study_id)
    assert study.state is StudyState.SUCCEEDED, study.error
    assert study.ray_job_id == submission_id, "the study did not go to the standby driver that had warmed up"

    # Tune's trial actor class, named `ImplicitFunc` or by its qualified name `wrap_function.<locals>.ImplicitFunc`.
    every = list_actors(filters=[("job_id", "=", job_id)], detail=True, limit=10_000)
    trial_actors = [a for a in every if a.class_name.endswith("ImplicitFunc")]
    assert trial_actors, f"no trial actors recorded for the standby's job: {sorted({a.class_name for a in every})}"
    launched = {w.pid: w.worker_launch_time_ms or 0 for w in all_workers()}
    created_ms = study.created_at.timestamp() * 1000
    late = {
        a.pid: round((launched[a.pid] - created_ms) / 1000, 1) for a in trial_actors if launched[a.pid] >= created_ms
    }
    assert not late, f"trial workers started this many seconds after the study was created: {late}"
