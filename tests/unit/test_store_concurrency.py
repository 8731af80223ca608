"""Several processes write one store at once, as the server and the study drivers do:
no write fails and no event is lost, on every backend."""

from __future__ import annotations

import multiprocessing
from datetime import datetime, timezone
from typing import Any

from anneal.errors import Conflict
from anneal.spec import StudySpec
from anneal.types import EventKind, StudyState, Trial, TrialState
from cluster.store.store import Store
from tests.unit.helpers import EXAMPLE

DRIVERS = 4
TRIALS = 40
RACERS = 4
ROUNDS = 25


def drive(url: str, study_id: str) -> None:
    """A study driver's writes: each trial's start, result and end, one transaction each."""
    store = Store(url)
    for number in range(TRIALS):
        trial_id = f"t{number}"
        for kind, state in (
            (EventKind.TRIAL_STARTED, TrialState.RUNNING),
            (EventKind.TRIAL_RESULT, TrialState.RUNNING),
            (EventKind.TRIAL_ENDED, TrialState.COMPLETED),
        ):
            trial = Trial(trial_id=trial_id, state=state, config={"lr": 0.1}, metrics={"loss": 1.0 / (number + 1)})
            store.record_trials(study_id, [(trial, kind, datetime.now(timezone.utc))])
    store.close()


def serve(url: str, rounds: int) -> None:
    """The server's writes meanwhile: studies created and cancelled, and events read."""
    store = Store(url)
    spec = StudySpec.load(EXAMPLE)
    for number in range(rounds):
        study_id = store.create_study(spec.model_copy(update={"name": f"other-{number}"})).study_id
        store.transition(study_id, [StudyState.PENDING], StudyState.CANCELLED)
        store.events_after(study_id, 0)
    store.close()


def test_concurrent_writers_lose_no_event(store_url: str) -> None:
    store = Store(store_url)
    spec = StudySpec.load(EXAMPLE)
    study_ids = []
    for number in range(DRIVERS):
        study_id = store.create_study(spec.model_copy(update={"name": f"driven-{number}"})).study_id
        assert store.transition(study_id, [StudyState.PENDING], StudyState.RUNNING)
        study_ids.append(study_id)
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=drive, args=(store_url, study_id)) for study_id in study_ids]
    writers.append(context.Process(target=serve, args=(store_url, 30)))
    for process in writers:
        process.start()
    for process in writers:
        process.join(timeout=240)
    assert [p.exitcode for p in writers] == [0] * len(writers)

    for study_id in study_ids:
        events = store.events_after(study_id, 0, limit=10_000)
        trial_events = [e for e in events if e.trial is not None]
        assert len(trial_events) == 3 * TRIALS
        assert [e.sequence for e in events] == sorted({e.sequence for e in events})
        study = store.get_study(study_id)
        assert len(study.trials) == TRIALS
        assert sorted(t.trial_id for t in study.trials) == sorted(f"t{n}" for n in range(TRIALS))
        assert all(t.state is TrialState.COMPLETED for t in study.trials)
    store.close()


def create_same_names(url: str, barrier: Any) -> None:
    """One racer: each round, at the same moment as the others, creates a study of that round's name."""
    store = Store(url)
    spec = StudySpec.load(EXAMPLE)
    for number in range(ROUNDS):
        barrier.wait()
        try:
            store.create_study(spec.model_copy(update={"name": f"race-{number}"}))
        except Conflict:
            pass
    store.close()


def test_racing_creates_of_one_name_make_one_study(store_url: str) -> None:
    Store(store_url).close()  # the schema exists before the race
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(RACERS, timeout=120)
    racers = [context.Process(target=create_same_names, args=(store_url, barrier)) for _ in range(RACERS)]
    for process in racers:
        process.start()
    for process in racers:
        process.join(timeout=240)
    assert [p.exitcode for p in racers] == [0] * RACERS
    names = sorted(s.name for s in Store(store_url).list_studies())
    assert names == sorted(f"race-{number}" for number in range(ROUNDS))
