"""The server's driver keeper: when it starts a standby driver, and what it does with a
study whose standby ended before taking it. The Jobs API is the edge here: a recording
stand-in answers for it (the real one is exercised in tests/integration)."""

from __future__ import annotations

from collections.abc import Iterator
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
        self.own_jobs: list[str] = []
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

    def submit_own_job(self, study_id: str) -> str:
        self.own_jobs.append(study_id)
        return f"anneal-{study_id}"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'anneal.db'}")
    yield store
    store.close()


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
    assert jobs.own_jobs == []  # its standby is still up: it will take the study
    jobs.gone.add(f"{STANDBY_PREFIX}lost")
    service.tend_drivers()
    assert jobs.own_jobs == [study_id]
    assert store.get_study(study_id).ray_job_id == f"anneal-{study_id}"
