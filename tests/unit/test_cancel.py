"""CancelStudy in the domain: a pending or running study ends CANCELLED and its Ray job is
stopped; cancelling twice is harmless; a study that ended otherwise cannot be cancelled."""

from __future__ import annotations

from pathlib import Path

import pytest

from anneal.errors import FailedPrecondition
from anneal.settings import Settings
from anneal.spec import StudySpec
from anneal.types import StudyState
from cluster.service import AnnealService
from cluster.store import Store
from tests.unit.helpers import principal

OWNER = principal("alice")


class StoppingJobs:
    """The launcher's stop, recorded (the Jobs API is the edge here)."""

    def __init__(self) -> None:
        self.stopped: list[str] = []

    def stop(self, job_id: str) -> None:
        self.stopped.append(job_id)


@pytest.fixture
def jobs() -> StoppingJobs:
    return StoppingJobs()


@pytest.fixture
def service(tmp_path: Path, store: Store, jobs: StoppingJobs) -> AnnealService:
    return AnnealService(Settings.load(home=tmp_path), store, jobs)  # type: ignore[arg-type]


def study_on_job(store: Store, spec: StudySpec, state: StudyState) -> str:
    study_id = store.create_study(spec, owner=OWNER.name).study_id
    store.update_study(study_id, ray_job_id=f"job-{study_id}")
    if state is not StudyState.PENDING:
        store.transition(study_id, [StudyState.PENDING], StudyState.RUNNING)
    if state.is_terminal:
        store.transition(study_id, [StudyState.RUNNING], state)
    return study_id


@pytest.mark.parametrize("state", [StudyState.PENDING, StudyState.RUNNING])
def test_cancel_ends_the_study_and_stops_its_job(
    service: AnnealService, store: Store, jobs: StoppingJobs, example_spec: StudySpec, state: StudyState
) -> None:
    study_id = study_on_job(store, example_spec, state)
    assert service.cancel_study(study_id, OWNER).state is StudyState.CANCELLED
    assert jobs.stopped == [f"job-{study_id}"]


def test_cancelling_twice_is_harmless(
    service: AnnealService, jobs: StoppingJobs, store: Store, example_spec: StudySpec
) -> None:
    study_id = study_on_job(store, example_spec, StudyState.RUNNING)
    service.cancel_study(study_id, OWNER)
    events = store.events_after(study_id, 0)
    assert service.cancel_study(study_id, OWNER).state is StudyState.CANCELLED
    assert store.events_after(study_id, 0) == events
    assert len(jobs.stopped) == 1


@pytest.mark.parametrize("state", [StudyState.SUCCEEDED, StudyState.FAILED])
def test_a_study_that_ended_otherwise_cannot_be_cancelled(
    service: AnnealService, store: Store, jobs: StoppingJobs, example_spec: StudySpec, state: StudyState
) -> None:
    study_id = study_on_job(store, example_spec, state)
    with pytest.raises(FailedPrecondition, match=f"already ended {state.value}"):
        service.cancel_study(study_id, OWNER)
    assert store.get_study(study_id).state is state
    assert jobs.stopped == []
