"""The server's driver keeper: when it starts a standby driver, and what it does with an
active study whose driver's job is gone (a standby that ended before taking it, a driver
killed mid-study). The Jobs API is the edge here: a recording
stand-in answers for it (the real one is exercised in tests/integration)."""

from __future__ import annotations

from pathlib import Path

import pytest

from anneal.settings import Settings
from anneal.spec import StudySpec
from anneal.types import StudyState
from cluster.jobs import STANDBY_PREFIX
from cluster.service import AnnealService
from cluster.store import Store


class RecordingJobs:
    """Answers the launcher calls the keeper makes; `gone` lists the jobs that have ended."""

    def __init__(self) -> None:
        self.standby: str | None = None
        self.gone: set[str] = set()
        self.restarts: list[tuple[str, str, bool]] = []  # (study id, job id, resume)
        self.standbys_started = 0
        self.driving: set[str] = set()

    def drivers_running(self) -> bool:
        return bool(self.driving - self.gone)

    def adopt_standby(self, holds_study: object) -> None:
        return None

    def wants_standby(self) -> bool:
        return self.standby is None or self.standby in self.gone

    def start_standby(self) -> str:
        self.standbys_started += 1
        self.standby = f"{STANDBY_PREFIX}{self.standbys_started}"
        return self.standby

    def is_gone(self, job_id: str) -> bool:
        return job_id in self.gone

    def submit_restart(self, study_id: str, job_id: str, *, resume: bool) -> str:
        self.restarts.append((study_id, job_id, resume))
        return job_id

    def last_words(self, job_id: str) -> str:
        return "FAILED: killed"


@pytest.fixture
def jobs() -> RecordingJobs:
    return RecordingJobs()


@pytest.fixture
def service(tmp_path: Path, store: Store, jobs: RecordingJobs) -> AnnealService:
    return AnnealService(Settings.load(home=tmp_path), store, jobs)  # type: ignore[arg-type]


def test_starts_a_standby_when_idle(service: AnnealService, jobs: RecordingJobs) -> None:
    service.tend_drivers()
    service.tend_drivers()
    assert jobs.standbys_started == 1  # one is up: no second


def test_replaces_a_standby_that_ended(service: AnnealService, jobs: RecordingJobs) -> None:
    service.tend_drivers()
    jobs.gone.add(f"{STANDBY_PREFIX}1")
    service.tend_drivers()
    assert jobs.standbys_started == 2


def test_no_standby_starts_while_a_study_runs(
    service: AnnealService, store: Store, jobs: RecordingJobs, example_spec: StudySpec
) -> None:
    study_id = store.create_study(example_spec).study_id
    store.transition(study_id, [StudyState.PENDING], StudyState.RUNNING)
    service.tend_drivers()
    assert jobs.standbys_started == 0  # its start-up would take the running study's CPUs


def test_no_standby_starts_while_a_driver_finishes_its_study(service: AnnealService, jobs: RecordingJobs) -> None:
    jobs.driving.add("anneal-standby-0")  # its study ended; it is still deploying the best model
    service.tend_drivers()
    assert jobs.standbys_started == 0
    jobs.gone.add("anneal-standby-0")
    service.tend_drivers()
    assert jobs.standbys_started == 1


def test_study_of_an_ended_standby_gets_its_own_job(
    service: AnnealService, store: Store, jobs: RecordingJobs, example_spec: StudySpec
) -> None:
    study_id = store.create_study(example_spec).study_id
    store.update_study(study_id, ray_job_id=f"{STANDBY_PREFIX}lost")
    service.tend_drivers()
    assert jobs.restarts == []  # its standby is still up: it will take the study
    jobs.gone.add(f"{STANDBY_PREFIX}lost")
    service.tend_drivers()
    assert jobs.restarts == [(study_id, f"anneal-{study_id}-r1", False)]  # PENDING: it starts, nothing to resume
    assert store.get_study(study_id).ray_job_id == f"anneal-{study_id}-r1"


def running_study(store: Store, spec: StudySpec, job_id: str = "anneal-driver") -> str:
    study_id = store.create_study(spec).study_id
    store.update_study(study_id, ray_job_id=job_id)
    store.transition(study_id, [StudyState.PENDING], StudyState.RUNNING)
    return study_id


def test_a_running_study_whose_driver_died_resumes_in_a_new_job(
    service: AnnealService, store: Store, jobs: RecordingJobs, example_spec: StudySpec
) -> None:
    study_id = running_study(store, example_spec)
    service.tend_drivers()
    assert jobs.restarts == []  # its driver is alive
    jobs.gone.add("anneal-driver")
    service.tend_drivers()
    service.tend_drivers()  # the new job is up: nothing more
    assert jobs.restarts == [(study_id, f"anneal-{study_id}-r1", True)]
    study = store.get_study(study_id)
    assert (study.state, study.ray_job_id, study.driver_restarts) == (StudyState.RUNNING, f"anneal-{study_id}-r1", 1)


def test_a_study_whose_driver_keeps_dying_fails_saying_so(
    service: AnnealService, store: Store, jobs: RecordingJobs, example_spec: StudySpec
) -> None:
    study_id = running_study(store, example_spec)
    jobs.gone.add("anneal-driver")
    for restart in range(1, service.settings.driver_restarts + 1):
        service.tend_drivers()
        jobs.gone.add(f"anneal-{study_id}-r{restart}")
    service.tend_drivers()
    assert len(jobs.restarts) == service.settings.driver_restarts
    study = store.get_study(study_id)
    assert study.state is StudyState.FAILED
    assert f"ended {service.settings.driver_restarts + 1} times" in study.error
    assert "FAILED: killed" in study.error


def test_ended_studies_are_left_alone(
    service: AnnealService, store: Store, jobs: RecordingJobs, example_spec: StudySpec
) -> None:
    study_id = running_study(store, example_spec)
    store.transition(study_id, [StudyState.RUNNING], StudyState.CANCELLED)
    jobs.gone.add("anneal-driver")
    service.tend_drivers()
    assert jobs.restarts == []
