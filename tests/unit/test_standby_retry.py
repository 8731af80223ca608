"""A standby driver that fails to start is tried again after a wait that doubles, then, past a
limit, not for a long pause, with the reason logged; studies meanwhile get jobs of their own,
and a standby that starts well clears the count. Ray's Jobs API is the edge: a fake client
answers for it, the launcher's own logic runs."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from ray.job_submission import JobStatus

from anneal.settings import Settings
from cluster.server import jobs as jobs_module
from cluster.server.jobs import STANDBY_PREFIX, JobLauncher
from cluster.server.standbyretry import FAILURES_BEFORE_PAUSE, PAUSE_S


@dataclass
class JobInfo:
    status: JobStatus
    message: str


@dataclass
class FakeJobClient:
    """Ray's JobSubmissionClient as the launcher uses it: every standby fails at start-up
    until `healthy`, and then waits."""

    healthy: bool = False
    submitted: list[str] = field(default_factory=list)

    def submit_job(self, *, submission_id: str, **_: Any) -> str:
        self.submitted.append(submission_id)
        return submission_id

    def get_job_status(self, job_id: str) -> JobStatus:
        return JobStatus.RUNNING if self.healthy or not job_id.startswith(STANDBY_PREFIX) else JobStatus.FAILED

    def get_job_info(self, job_id: str) -> JobInfo:
        return JobInfo(self.get_job_status(job_id), "ModuleNotFoundError: No module named 'torch'")


class Clock:
    now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(jobs_module.time, "monotonic", clock.monotonic)
    return clock


@pytest.fixture
def launcher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[JobLauncher, FakeJobClient]:
    client = FakeJobClient()
    monkeypatch.setattr("ray.job_submission.JobSubmissionClient", lambda url: client)
    settings = Settings.load(home=tmp_path, ray_dashboard_url="http://127.0.0.1:1", standby_drivers=1)
    return JobLauncher(settings), client


def standbys(client: FakeJobClient) -> int:
    return sum(job.startswith(STANDBY_PREFIX) for job in client.submitted)


def test_a_failing_standby_is_retried_with_a_doubling_wait_then_paused_with_its_reason(
    launcher: tuple[JobLauncher, FakeJobClient], clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    jobs, client = launcher
    waits = []
    for _ in range(FAILURES_BEFORE_PAUSE):
        assert jobs.wants_standby()
        jobs.start_standby()
        started = clock.now
        while not jobs.wants_standby():
            clock.now += 0.5
        waits.append(clock.now - started)
    assert waits[:-1] == [2.0, 4.0, 8.0, 16.0]
    assert waits[-1] == PAUSE_S
    assert standbys(client) == FAILURES_BEFORE_PAUSE
    [paused] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "studies run on Ray jobs of their own" in paused.getMessage()
    assert "No module named 'torch'" in paused.getMessage()


def test_a_study_gets_a_job_of_its_own_while_standbys_fail(
    launcher: tuple[JobLauncher, FakeJobClient], clock: Clock
) -> None:
    jobs, client = launcher
    jobs.start_standby()
    assert not jobs.wants_standby()  # the failed one is seen, and the wait begins
    assert jobs.submit("st-1") == "anneal-st-1"


def test_a_standby_that_starts_well_clears_the_count(launcher: tuple[JobLauncher, FakeJobClient], clock: Clock) -> None:
    jobs, client = launcher
    for _ in range(3):
        jobs.start_standby()
        while not jobs.wants_standby():
            clock.now += 0.5
    client.healthy = True
    standby = jobs.start_standby()
    assert not jobs.wants_standby()  # up
    assert jobs.submit("st-2") == standby  # handed a study: it started well
    client.healthy = False
    jobs.start_standby()
    started = clock.now
    while not jobs.wants_standby():
        clock.now += 0.5
    assert clock.now - started == 2.0  # the first wait again
