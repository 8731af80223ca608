"""CancelStudy in the domain: a pending or running study ends CANCELLED and its Ray job is
stopped; cancelling twice is harmless; a study that ended otherwise cannot be cancelled."""

from __future__ import annotations

from pathlib import Path

import pytest

from anneal.errors import FailedPrecondition
from anneal.settings import Settings
from anneal.spec import StudySpec
from anneal.types import StudyState
from cluster.server.studies import Studies
from cluster.store.store import Store
from tests.unit.fakes import FakeJobs
from tests.unit.helpers import principal

OWNER = principal("alice")


@pytest.fixture
def studies(tmp_path: Path, store: Store, jobs: FakeJobs) -> Studies:
    return Studies(Settings.load(home=tmp_path), store, jobs)


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
    studies: Studies, store: Store, jobs: FakeJobs, example_spec: StudySpec, state: StudyState
) -> None:
    study_id = study_on_job(store, example_spec, state)
    assert studies.cancel_study(study_id, OWNER).state is StudyState.CANCELLED
    assert jobs.stopped == [f"job-{study_id}"]


def test_cancelling_twice_is_harmless(studies: Studies, jobs: FakeJobs, store: Store, example_spec: StudySpec) -> None:
    study_id = study_on_job(store, example_spec, StudyState.RUNNING)
    studies.cancel_study(study_id, OWNER)
    events = store.events_after(study_id, 0)
    assert studies.cancel_study(study_id, OWNER).state is StudyState.CANCELLED
    assert store.events_after(study_id, 0) == events
    assert len(jobs.stopped) == 1


@pytest.mark.parametrize("state", [StudyState.SUCCEEDED, StudyState.FAILED])
def test_a_study_that_ended_otherwise_cannot_be_cancelled(
    studies: Studies, store: Store, jobs: FakeJobs, example_spec: StudySpec, state: StudyState
) -> None:
    study_id = study_on_job(store, example_spec, state)
    with pytest.raises(FailedPrecondition, match=f"already ended {state.value}"):
        studies.cancel_study(study_id, OWNER)
    assert store.get_study(study_id).state is state
    assert jobs.stopped == []
