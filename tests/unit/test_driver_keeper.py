"""The server's driver keeper: when it starts a standby driver, and what it does with an
active study whose driver's job is gone (a standby that ended before taking it, a driver
killed mid-study). The Jobs API is the edge here: `tests.unit.fakes.FakeJobs` answers for it
(the real one is exercised in tests/integration)."""

from __future__ import annotations

from pathlib import Path

import pytest

from anneal.settings import Settings
from anneal.spec import StudySpec
from anneal.types import StudyState
from cluster.server.jobs import STANDBY_PREFIX
from cluster.server.keeper import DriverKeeper
from cluster.store.store import Store
from cluster.tracking.tracker import MlflowTracker
from tests.unit.fakes import FakeJobs


@pytest.fixture
def keeper(tmp_path: Path, store: Store, jobs: FakeJobs) -> DriverKeeper:
    return DriverKeeper(Settings.load(home=tmp_path), store, jobs)


def test_starts_a_standby_when_idle(keeper: DriverKeeper, jobs: FakeJobs) -> None:
    keeper.tend_drivers()
    keeper.tend_drivers()
    assert jobs.standbys_started == 1  # one is up: no second


def test_replaces_a_standby_that_ended(keeper: DriverKeeper, jobs: FakeJobs) -> None:
    keeper.tend_drivers()
    jobs.gone.add(f"{STANDBY_PREFIX}1")
    keeper.tend_drivers()
    assert jobs.standbys_started == 2


def test_no_standby_starts_while_a_study_runs(
    keeper: DriverKeeper, store: Store, jobs: FakeJobs, example_spec: StudySpec
) -> None:
    study_id = store.create_study(example_spec).study_id
    store.transition(study_id, [StudyState.PENDING], StudyState.RUNNING)
    keeper.tend_drivers()
    assert jobs.standbys_started == 0  # its start-up would take the running study's CPUs


def test_no_standby_starts_while_a_driver_finishes_its_study(keeper: DriverKeeper, jobs: FakeJobs) -> None:
    jobs.driving.add("anneal-standby-0")  # its study ended; it is still deploying the best model
    keeper.tend_drivers()
    assert jobs.standbys_started == 0
    jobs.gone.add("anneal-standby-0")
    keeper.tend_drivers()
    assert jobs.standbys_started == 1


def test_study_of_an_ended_standby_gets_its_own_job(
    keeper: DriverKeeper, store: Store, jobs: FakeJobs, example_spec: StudySpec
) -> None:
    study_id = store.create_study(example_spec).study_id
    store.update_study(study_id, ray_job_id=f"{STANDBY_PREFIX}lost")
    keeper.tend_drivers()
    assert jobs.restarts == []  # its standby is still up: it will take the study
    jobs.gone.add(f"{STANDBY_PREFIX}lost")
    keeper.tend_drivers()
    assert jobs.restarts == [(study_id, f"anneal-{study_id}-r1", False)]  # PENDING: it starts, nothing to resume
    assert store.get_study(study_id).ray_job_id == f"anneal-{study_id}-r1"


def running_study(store: Store, spec: StudySpec, job_id: str = "anneal-driver") -> str:
    study_id = store.create_study(spec).study_id
    store.update_study(study_id, ray_job_id=job_id)
    store.transition(study_id, [StudyState.PENDING], StudyState.RUNNING)
    return study_id


def test_a_running_study_whose_driver_died_resumes_in_a_new_job(
    keeper: DriverKeeper, store: Store, jobs: FakeJobs, example_spec: StudySpec
) -> None:
    study_id = running_study(store, example_spec)
    keeper.tend_drivers()
    assert jobs.restarts == []  # its driver is alive
    jobs.gone.add("anneal-driver")
    keeper.tend_drivers()
    keeper.tend_drivers()  # the new job is up: nothing more
    assert jobs.restarts == [(study_id, f"anneal-{study_id}-r1", True)]
    study = store.get_study(study_id)
    assert (study.state, study.ray_job_id, study.driver_restarts) == (StudyState.RUNNING, f"anneal-{study_id}-r1", 1)


def test_a_study_whose_driver_keeps_dying_fails_saying_so_and_leaves_no_run_open(
    keeper: DriverKeeper, store: Store, jobs: FakeJobs, example_spec: StudySpec
) -> None:
    study_id = running_study(store, example_spec)
    tracker = MlflowTracker(keeper.settings.mlflow_tracking_uri, keeper.settings.mlflow_artifact_root)
    tracker.start_study(study_id, example_spec.name, example_spec.to_yaml(), {})
    trial_run = tracker.start_trial("t-1")  # a trial the last driver left running
    store.update_study(study_id, mlflow_experiment_id=tracker.experiment_id, mlflow_run_id=tracker.parent_run_id)
    jobs.gone.add("anneal-driver")
    for restart in range(1, keeper.settings.driver_restarts + 1):
        keeper.tend_drivers()
        jobs.gone.add(f"anneal-{study_id}-r{restart}")
    keeper.tend_drivers()
    assert len(jobs.restarts) == keeper.settings.driver_restarts
    study = store.get_study(study_id)
    assert study.state is StudyState.FAILED
    assert f"ended {keeper.settings.driver_restarts + 1} times" in study.error
    assert "FAILED: killed" in study.error
    statuses = [tracker.client.get_run(run).info.status for run in (trial_run, tracker.parent_run_id)]
    assert statuses == ["KILLED", "FAILED"]


def test_ended_studies_are_left_alone(
    keeper: DriverKeeper, store: Store, jobs: FakeJobs, example_spec: StudySpec
) -> None:
    study_id = running_study(store, example_spec)
    store.transition(study_id, [StudyState.RUNNING], StudyState.CANCELLED)
    jobs.gone.add("anneal-driver")
    keeper.tend_drivers()
    assert jobs.restarts == []
