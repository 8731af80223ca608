"""The store's contract, run on every backend (SQLite and PostgreSQL): studies, state
transitions, trials, the event stream and deployments."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from anneal.errors import Conflict, FailedPrecondition, NotFound
from anneal.spec import Autoscaling, StudySpec
from anneal.types import (
    STUDY_TRANSITIONS,
    TERMINAL_STUDY_STATES,
    Deployment,
    DeploymentState,
    EventKind,
    ModelVersion,
    StudyState,
    Trial,
    TrialState,
)
from cluster.store.store import Store
from tests import postgres

ACTIVE = [StudyState.PENDING, StudyState.RUNNING]


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    store = Store(store_url)
    yield store
    store.close()


def trial(trial_id: str, state: TrialState = TrialState.RUNNING, epochs: int = 0, **metrics: float) -> Trial:
    return Trial(
        trial_id=trial_id,
        state=state,
        config={"lr": 0.01, "hidden_size": 64, "optimizer": "adam", "flag": True},
        metrics=metrics,
        epochs=epochs,
    )


def start(store: Store, study_id: str) -> None:
    assert store.transition(study_id, [StudyState.PENDING], StudyState.RUNNING)


# ------------------------------------------------------------------ studies


def test_create_get_list(store: Store, example_spec: StudySpec) -> None:
    created = store.create_study(example_spec)
    assert created.study_id.startswith("st-")
    assert created.state is StudyState.PENDING
    assert created.name == "digits-mlp"
    assert created.spec == example_spec
    assert created.trials == [] and created.best_trial is None
    assert created.created_at.tzinfo is not None
    assert abs(created.created_at - datetime.now(timezone.utc)) < timedelta(minutes=1)
    assert store.get_study(created.study_id) == created
    assert [s.study_id for s in store.list_studies()] == [created.study_id]


def test_list_in_creation_order(store: Store, example_spec: StudySpec) -> None:
    ids = [store.create_study(example_spec.model_copy(update={"name": f"s{i}"})).study_id for i in range(3)]
    assert [s.study_id for s in store.list_studies()] == ids


def test_create_with_given_id(store: Store, example_spec: StudySpec) -> None:
    assert store.create_study(example_spec, study_id="st-given").study_id == "st-given"
    assert store.get_study("st-given").name == example_spec.name


def test_spec_keeps_scalar_types(store: Store, example_spec: StudySpec) -> None:
    params = {"epochs": 3, "dropout": 0.5, "label": "sgd", "flag": True, "text": "1"}
    spec = example_spec.model_copy(update={"params": params})
    stored = store.get_study(store.create_study(spec).study_id).spec
    assert [(k, type(v), v) for k, v in stored.params.items()] == [(k, type(v), v) for k, v in params.items()]


def test_unknown_study_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.get_study("st-missing")
    with pytest.raises(NotFound):
        store.update_study("st-missing", ray_job_id="x")
    with pytest.raises(NotFound):
        store.record_trial("st-missing", trial("t1"), EventKind.TRIAL_STARTED)
    assert store.transition("st-missing", ACTIVE, StudyState.CANCELLED) is False


@pytest.mark.parametrize("running", [False, True], ids=["pending", "running"])
def test_second_active_study_with_same_name_conflicts(store: Store, example_spec: StudySpec, running: bool) -> None:
    first = store.create_study(example_spec)
    if running:
        start(store, first.study_id)
    with pytest.raises(Conflict, match=first.study_id):
        store.create_study(example_spec)
    assert len(store.list_studies()) == 1


@pytest.mark.parametrize("end", [StudyState.SUCCEEDED, StudyState.FAILED, StudyState.CANCELLED])
def test_name_is_free_after_the_study_ended(store: Store, example_spec: StudySpec, end: StudyState) -> None:
    first = store.create_study(example_spec)
    start(store, first.study_id)
    assert store.transition(first.study_id, [StudyState.RUNNING], end)
    second = store.create_study(example_spec)
    assert second.study_id != first.study_id
    assert [s.state for s in store.list_studies()] == [end, StudyState.PENDING]


def test_other_names_do_not_conflict(store: Store, example_spec: StudySpec) -> None:
    store.create_study(example_spec)
    store.create_study(example_spec.model_copy(update={"name": "other"}))
    assert len(store.list_studies()) == 2


def test_update_study_sets_results(store: Store, example_spec: StudySpec) -> None:
    study_id = store.create_study(example_spec).study_id
    start(store, study_id)
    store.record_trial(study_id, trial("t1", TrialState.COMPLETED, 3, val_accuracy=0.9), EventKind.TRIAL_ENDED)
    store.update_study(
        study_id,
        ray_job_id="raysubmit_1",
        best_trial_id="t1",
        best_test_metrics={"val_accuracy": 0.95},
        registered_model="anneal-digits-mlp",
        registered_model_version=2,
        model_uri="runs:/x/model",
    )
    study = store.get_study(study_id)
    assert study.ray_job_id == "raysubmit_1"
    assert study.best_trial == trial("t1", TrialState.COMPLETED, 3, val_accuracy=0.9)
    assert study.best_test_metrics == {"val_accuracy": 0.95}
    assert (study.registered_model, study.registered_model_version) == ("anneal-digits-mlp", 2)
    assert study.model_uri == "runs:/x/model"
    assert study.updated_at >= study.created_at


# ------------------------------------------------------------------ transitions


def test_transition_from_allowed_state_writes_started_event(store: Store, example_spec: StudySpec) -> None:
    study_id = store.create_study(example_spec).study_id
    assert store.transition(study_id, [StudyState.PENDING], StudyState.RUNNING, ray_job_id="job-1") is True
    study = store.get_study(study_id)
    assert (study.state, study.ray_job_id) == (StudyState.RUNNING, "job-1")
    [event] = store.events_after(study_id, 0)
    assert (event.kind, event.study_state, event.trial) == (EventKind.STUDY_STARTED, StudyState.RUNNING, None)


def test_transition_to_end_writes_ended_event(store: Store, example_spec: StudySpec) -> None:
    study_id = store.create_study(example_spec).study_id
    start(store, study_id)
    assert store.transition(
        study_id, [StudyState.RUNNING], StudyState.SUCCEEDED, message="done", best_test_metrics={"val_accuracy": 0.9}
    )
    assert store.get_study(study_id).best_test_metrics == {"val_accuracy": 0.9}
    events = store.events_after(study_id, 0)
    assert [e.kind for e in events] == [EventKind.STUDY_STARTED, EventKind.STUDY_ENDED]
    assert (events[1].study_state, events[1].message) == (StudyState.SUCCEEDED, "done")


def test_failure_error_becomes_the_event_message(store: Store, example_spec: StudySpec) -> None:
    study_id = store.create_study(example_spec).study_id
    assert store.transition(study_id, ACTIVE, StudyState.FAILED, error="Ray job lost")
    assert store.get_study(study_id).error == "Ray job lost"
    assert store.events_after(study_id, 0)[-1].message == "Ray job lost"


def test_cancelled_study_cannot_succeed(store: Store, example_spec: StudySpec) -> None:
    study_id = store.create_study(example_spec).study_id
    start(store, study_id)
    assert store.transition(study_id, ACTIVE, StudyState.CANCELLED)
    before = store.get_study(study_id)
    assert store.transition(study_id, [StudyState.RUNNING], StudyState.SUCCEEDED, error="late") is False
    after = store.get_study(study_id)
    assert after == before
    assert after.state is StudyState.CANCELLED
    assert [e.kind for e in store.events_after(study_id, 0)] == [EventKind.STUDY_STARTED, EventKind.STUDY_ENDED]


def test_pending_study_cannot_be_started_twice(store: Store, example_spec: StudySpec) -> None:
    study_id = store.create_study(example_spec).study_id
    start(store, study_id)
    assert store.transition(study_id, [StudyState.PENDING], StudyState.RUNNING) is False
    assert len(store.events_after(study_id, 0)) == 1


ILLEGAL_MOVES = [(a, b) for a in StudyState for b in StudyState if b not in STUDY_TRANSITIONS[a]]
LEGAL_MOVES = [(a, b) for a in StudyState for b in STUDY_TRANSITIONS[a]]


def study_in(store: Store, spec: StudySpec, state: StudyState) -> str:
    """A study brought to `state` by legal moves."""
    study_id = store.create_study(spec).study_id
    if state is not StudyState.PENDING:
        start(store, study_id)
    if state.is_terminal:
        assert store.transition(study_id, [StudyState.RUNNING], state)
    return study_id


@pytest.mark.parametrize(("current", "to"), ILLEGAL_MOVES, ids=lambda s: s.value)
def test_an_illegal_move_is_refused_and_changes_nothing(
    store: Store, example_spec: StudySpec, current: StudyState, to: StudyState
) -> None:
    study_id = study_in(store, example_spec, current)
    before, events_before = store.get_study(study_id), store.events_after(study_id, 0)
    with pytest.raises(FailedPrecondition, match=f"{current.value} -> {to.value}"):
        store.transition(study_id, [current], to)
    assert store.get_study(study_id) == before
    assert store.events_after(study_id, 0) == events_before


@pytest.mark.parametrize(("current", "to"), LEGAL_MOVES, ids=lambda s: s.value)
def test_a_legal_move_is_made(store: Store, example_spec: StudySpec, current: StudyState, to: StudyState) -> None:
    study_id = study_in(store, example_spec, current)
    assert store.transition(study_id, [current], to)
    assert store.get_study(study_id).state is to


def test_ended_states_allow_no_move() -> None:
    assert all(not STUDY_TRANSITIONS[state] for state in TERMINAL_STUDY_STATES)
    assert set(STUDY_TRANSITIONS) == set(StudyState)


# ------------------------------------------------------------------ trials and events


def test_record_trial_upserts_and_appends_events(store: Store, example_spec: StudySpec) -> None:
    study_id = store.create_study(example_spec).study_id
    start(store, study_id)
    store.record_trial(study_id, trial("t1"), EventKind.TRIAL_STARTED)
    store.record_trial(study_id, trial("t2"), EventKind.TRIAL_STARTED)
    store.record_trial(study_id, trial("t1", epochs=1, val_accuracy=0.5), EventKind.TRIAL_RESULT)
    store.record_trial(study_id, trial("t1", TrialState.COMPLETED, 2, val_accuracy=0.75), EventKind.TRIAL_ENDED)
    study = store.get_study(study_id)
    assert [t.trial_id for t in study.trials] == ["t1", "t2"]  # in order of first report
    assert study.trials[0] == trial("t1", TrialState.COMPLETED, 2, val_accuracy=0.75)
    assert study.trials[1] == trial("t2")
    events = store.events_after(study_id, 0)[1:]
    assert [(e.kind, e.trial.trial_id if e.trial else None) for e in events] == [
        (EventKind.TRIAL_STARTED, "t1"),
        (EventKind.TRIAL_STARTED, "t2"),
        (EventKind.TRIAL_RESULT, "t1"),
        (EventKind.TRIAL_ENDED, "t1"),
    ]
    assert events[0].trial == study.trials[0]  # each event carries its trial as it is now


def test_trial_config_keeps_scalar_types(store: Store, example_spec: StudySpec) -> None:
    study_id = store.create_study(example_spec).study_id
    store.record_trial(study_id, trial("t1"), EventKind.TRIAL_STARTED)
    config = store.get_study(study_id).trials[0].config
    assert [(k, type(v)) for k, v in config.items()] == [
        ("lr", float),
        ("hidden_size", int),
        ("optimizer", str),
        ("flag", bool),
    ]


def test_events_after_a_sequence(store: Store, example_spec: StudySpec) -> None:
    study_id = store.create_study(example_spec).study_id
    other_id = store.create_study(example_spec.model_copy(update={"name": "other"})).study_id
    start(store, study_id)
    start(store, other_id)
    for n in range(4):
        store.record_trial(study_id, trial(f"t{n}"), EventKind.TRIAL_STARTED)
        store.record_trial(other_id, trial(f"o{n}"), EventKind.TRIAL_STARTED)
    events = store.events_after(study_id, 0)
    sequences = [e.sequence for e in events]
    assert len(events) == 5 and sequences == sorted(sequences) and len(set(sequences)) == 5
    assert {e.study_id for e in events} == {study_id}
    later = store.events_after(study_id, sequences[2])
    assert [e.sequence for e in later] == sequences[3:]
    assert [e.trial.trial_id for e in later if e.trial] == ["t2", "t3"]
    assert store.events_after(study_id, sequences[-1]) == []
    assert [e.sequence for e in store.events_after(study_id, 0, limit=2)] == sequences[:2]


def test_event_times_are_utc(store: Store, example_spec: StudySpec) -> None:
    study_id = store.create_study(example_spec).study_id
    start(store, study_id)
    [event] = store.events_after(study_id, 0)
    assert event.time.utcoffset() == timedelta(0)
    assert abs(event.time - datetime.now(timezone.utc)) < timedelta(minutes=1)


def test_record_trial_is_ignored_after_the_study_ended(store: Store, example_spec: StudySpec) -> None:
    study_id = store.create_study(example_spec).study_id
    start(store, study_id)
    store.record_trial(study_id, trial("t1", epochs=1), EventKind.TRIAL_RESULT)
    assert store.transition(study_id, ACTIVE, StudyState.CANCELLED)
    before = store.events_after(study_id, 0)
    store.record_trial(study_id, trial("t1", TrialState.COMPLETED, 5), EventKind.TRIAL_ENDED)
    store.record_trial(study_id, trial("t9"), EventKind.TRIAL_STARTED)
    assert store.events_after(study_id, 0) == before
    assert [(t.trial_id, t.state, t.epochs) for t in store.get_study(study_id).trials] == [
        ("t1", TrialState.CANCELLED, 1)
    ]


def test_record_trials_keeps_the_writers_watermark_with_its_records(store: Store, example_spec: StudySpec) -> None:
    study_id = store.create_study(example_spec).study_id
    other_id = store.create_study(example_spec.model_copy(update={"name": "other"})).study_id
    start(store, study_id)
    assert store.recorded_through(study_id, "s1") == 0
    moment = datetime.now(timezone.utc)
    updates = [(trial("t1"), EventKind.TRIAL_STARTED, moment), (trial("t1", epochs=1), EventKind.TRIAL_RESULT, moment)]
    store.record_trials(study_id, updates, through=("s1", 7))
    assert (store.recorded_through(study_id, "s1"), store.recorded_through(study_id, "s2")) == (7, 0)
    assert store.recorded_through(other_id, "s1") == 0
    store.record_trial(study_id, trial("t1", epochs=2), EventKind.TRIAL_RESULT)  # without a watermark: kept
    assert store.recorded_through(study_id, "s1") == 7
    store.record_trials(study_id, updates[1:], through=("s2", 1))  # a new driver's stream takes over
    assert (store.recorded_through(study_id, "s1"), store.recorded_through(study_id, "s2")) == (0, 1)
    assert store.transition(study_id, ACTIVE, StudyState.CANCELLED)
    store.record_trials(study_id, updates, through=("s2", 9))  # an ended study takes neither
    assert store.recorded_through(study_id, "s2") == 1
    assert len(store.events_after(study_id, 0)) == 6  # STARTED, 4 trial events, ENDED


@pytest.mark.parametrize("end", [StudyState.SUCCEEDED, StudyState.FAILED, StudyState.CANCELLED])
def test_ending_a_study_cancels_its_running_and_paused_trials(
    store: Store, example_spec: StudySpec, end: StudyState
) -> None:
    study_id = store.create_study(example_spec).study_id
    other_id = store.create_study(example_spec.model_copy(update={"name": "other"})).study_id
    start(store, study_id)
    store.record_trial(study_id, trial("t1"), EventKind.TRIAL_STARTED)
    store.record_trial(study_id, trial("t2", TrialState.COMPLETED, 3), EventKind.TRIAL_ENDED)
    store.record_trial(study_id, trial("t3", TrialState.ERROR), EventKind.TRIAL_ENDED)
    store.record_trial(study_id, trial("t4", TrialState.PAUSED, 1), EventKind.TRIAL_PAUSED)
    store.record_trial(other_id, trial("o1"), EventKind.TRIAL_STARTED)
    assert store.transition(study_id, [StudyState.RUNNING], end)
    states = [t.state for t in store.get_study(study_id).trials]
    assert states == [TrialState.CANCELLED, TrialState.COMPLETED, TrialState.ERROR, TrialState.CANCELLED]
    assert store.get_study(other_id).trials[0].state is TrialState.RUNNING


def test_starting_a_study_leaves_trials_alone(store: Store, example_spec: StudySpec) -> None:
    study_id = store.create_study(example_spec).study_id
    store.record_trial(study_id, trial("t1"), EventKind.TRIAL_STARTED)
    start(store, study_id)
    assert store.get_study(study_id).trials[0].state is TrialState.RUNNING


# ------------------------------------------------------------------ deployments


def deployment(study_id: str, state: DeploymentState, replicas: int = 1, error: str = "") -> Deployment:
    return Deployment(
        name="digits-mlp",
        study_id=study_id,
        state=state,
        replicas=replicas,
        route="/models/digits-mlp",
        model_uri="runs:/abc/model",
        updated_at=datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=timezone.utc),
        error=error,
    )


def test_deployment_put_get_and_replace(store: Store, example_spec: StudySpec) -> None:
    study_id = store.create_study(example_spec).study_id
    first = deployment(study_id, DeploymentState.DEPLOYING)
    store.put_deployment(first)
    assert store.get_deployment("digits-mlp") == first
    failed = deployment(study_id, DeploymentState.FAILED, replicas=3, error="no GPU")
    store.put_deployment(failed)
    assert store.get_deployment("digits-mlp") == failed


def test_unknown_deployment_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.get_deployment("nothing")


def test_deployment_time_in_another_zone_keeps_its_instant(store: Store, example_spec: StudySpec) -> None:
    study_id = store.create_study(example_spec).study_id
    put = deployment(study_id, DeploymentState.RUNNING)
    local = put.model_copy(update={"updated_at": put.updated_at.astimezone(timezone(timedelta(hours=2)))})
    store.put_deployment(local)
    assert store.get_deployment("digits-mlp").updated_at == put.updated_at


# ------------------------------------------------------------------ owners


def test_studies_belong_to_their_owner(store: Store, example_spec: StudySpec) -> None:
    alices = store.create_study(example_spec, owner="alice")
    bobs = store.create_study(example_spec, owner="bob")  # names are unique per owner only
    with pytest.raises(Conflict):
        store.create_study(example_spec, owner="alice")
    assert store.get_study(alices.study_id).owner == "alice"
    assert [s.study_id for s in store.list_studies(owner="bob")] == [bobs.study_id]
    assert len(store.list_studies()) == 2
    assert store.active_specs("alice") == [example_spec]
    store.transition(alices.study_id, [StudyState.PENDING], StudyState.CANCELLED)
    assert store.active_specs("alice") == []


def test_deployments_of_one_name_are_kept_per_owner(store: Store, example_spec: StudySpec) -> None:
    study_id = store.create_study(example_spec).study_id
    alices = deployment(study_id, DeploymentState.RUNNING).model_copy(update={"owner": "alice"})
    bobs = deployment(study_id, DeploymentState.FAILED, error="x").model_copy(update={"owner": "bob"})
    store.put_deployment(alices)
    store.put_deployment(bobs)
    assert store.get_deployment("digits-mlp", "alice") == alices
    assert store.get_deployment("digits-mlp", "bob") == bobs
    with pytest.raises(NotFound):
        store.get_deployment("digits-mlp", "carol")


def test_a_deployment_keeps_its_version_previous_version_and_autoscaling(store: Store, example_spec: StudySpec) -> None:
    study_id = store.create_study(example_spec).study_id
    rolled = deployment(study_id, DeploymentState.RUNNING).model_copy(
        update={
            "registered_model": "alice.digits-mlp",
            "model_version": 2,
            "previous": ModelVersion(
                study_id=study_id, registered_model="alice.digits-mlp", version=1, model_uri="/m1"
            ),
            "autoscaling": Autoscaling(min_replicas=1, max_replicas=3, downscale_delay_s=5),
        }
    )
    store.put_deployment(rolled)
    assert store.get_deployment("digits-mlp") == rolled
    # What Serve reports is read live, never stored.
    store.put_deployment(rolled.model_copy(update={"replicas_running": 3, "serve_status": "RUNNING"}))
    assert store.get_deployment("digits-mlp") == rolled


def test_list_deployments_by_owner_leaves_deleted_ones_out(store: Store, example_spec: StudySpec) -> None:
    study_id = store.create_study(example_spec).study_id
    for owner, name, state in [
        ("alice", "b", DeploymentState.RUNNING),
        ("alice", "a", DeploymentState.FAILED),
        ("alice", "gone", DeploymentState.DELETED),
        ("bob", "c", DeploymentState.RUNNING),
    ]:
        store.put_deployment(deployment(study_id, state).model_copy(update={"owner": owner, "name": name}))
    assert [d.name for d in store.list_deployments("alice")] == ["a", "b"]
    assert [(d.owner, d.name) for d in store.list_deployments()] == [("alice", "a"), ("alice", "b"), ("bob", "c")]
    assert store.list_deployments("carol") == []


def test_a_store_an_older_anneal_made_gains_the_new_columns(tmp_path: Path, example_spec: StudySpec) -> None:
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # the studies table before owners and driver restarts
        conn.execute(
            sa.text(
                "CREATE TABLE studies (study_id VARCHAR(64) PRIMARY KEY, name VARCHAR(128) NOT NULL, "
                "spec TEXT NOT NULL, state VARCHAR(16) NOT NULL, ray_job_id VARCHAR(128) NOT NULL, "
                "created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL, best_trial_id VARCHAR(128) NOT NULL, "
                "best_test_metrics TEXT NOT NULL, mlflow_experiment_id VARCHAR(64) NOT NULL, "
                "mlflow_run_id VARCHAR(64) NOT NULL, model_uri TEXT NOT NULL, registered_model VARCHAR(256) NOT NULL,"
                " registered_model_version INTEGER NOT NULL, error TEXT NOT NULL)"
            )
        )
        conn.execute(sa.text("CREATE UNIQUE INDEX active_study_name ON studies (name)"))
        conn.execute(
            sa.text(
                "CREATE TABLE deployments (name VARCHAR(128) PRIMARY KEY, study_id VARCHAR(64) NOT NULL, "
                "state VARCHAR(16) NOT NULL, replicas INTEGER NOT NULL, route VARCHAR(256) NOT NULL, "
                "model_uri TEXT NOT NULL, updated_at DATETIME NOT NULL, error TEXT NOT NULL, max_batch_size INTEGER)"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO deployments VALUES ('digits-mlp', 'st-old', 'RUNNING', 1, '/models/digits-mlp', "
                "'runs:/abc/model', '2024-01-01 00:00:00', '', 1)"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO studies VALUES ('st-old', 'digits-mlp', :spec, 'SUCCEEDED', '', '2024-01-01 00:00:00', "
                "'2024-01-01 00:00:00', '', '{}', '', '', '', '', 0, '')"
            ),
            {"spec": example_spec.model_dump_json(by_alias=True)},
        )
    engine.dispose()
    store = Store(url)
    old = store.get_study("st-old")
    assert (old.owner, old.driver_restarts) == ("", 0)
    assert store.recorded_through("st-old", "") == 0  # the writer's watermark columns were added
    old_deployment = store.get_deployment("digits-mlp")
    assert old_deployment.route == "/models/digits-mlp"
    assert (old_deployment.model_version, old_deployment.previous, old_deployment.autoscaling) == (0, None, None)
    alices = store.create_study(example_spec, owner="alice")
    store.create_study(example_spec, owner="bob")  # the old store's global name index is gone
    with pytest.raises(Conflict):
        store.create_study(example_spec, owner="alice")
    for owner in ("alice", "bob"):  # deployments are keyed by owner and name now
        store.put_deployment(deployment(alices.study_id, DeploymentState.RUNNING).model_copy(update={"owner": owner}))
    assert store.get_deployment("digits-mlp", "bob").owner == "bob"
    store.close()
    Store(url).close()  # a second start finds nothing to change


# ------------------------------------------------------------------ pickling


def test_store_pickles_as_its_url(store: Store, example_spec: StudySpec) -> None:
    study_id = store.create_study(example_spec).study_id
    copy = pickle.loads(pickle.dumps(store))
    try:
        assert copy.url == store.url
        assert copy.get_study(study_id).name == example_spec.name
        start(copy, study_id)
        assert store.get_study(study_id).state is StudyState.RUNNING
    finally:
        copy.close()


def test_store_reopens_an_existing_database(tmp_path: Path, example_spec: StudySpec) -> None:
    url = "sqlite:///" + str(tmp_path / "b.db")
    first = Store(url)
    study_id = first.create_study(example_spec).study_id
    first.close()
    again = Store(url)
    try:
        assert again.get_study(study_id).spec == example_spec
    finally:
        again.close()


def test_study_for_job_finds_the_study_handed_to_a_job(store: Store, example_spec: StudySpec) -> None:
    study_id = store.create_study(example_spec).study_id
    assert store.study_for_job("anneal-standby-1") is None
    store.update_study(study_id, ray_job_id="anneal-standby-1")
    assert store.study_for_job("anneal-standby-1", StudyState.PENDING) == study_id
    start(store, study_id)
    assert store.study_for_job("anneal-standby-1", StudyState.PENDING) is None  # claimed: not handed out twice
    assert store.study_for_job("anneal-standby-1") == study_id


def test_driven_studies_are_the_active_ones_handed_to_a_job(store: Store, example_spec: StudySpec) -> None:
    waiting = store.create_study(example_spec).study_id
    store.update_study(waiting, ray_job_id="anneal-standby-1")
    running = store.create_study(example_spec.model_copy(update={"name": "other"})).study_id
    store.update_study(running, ray_job_id=f"anneal-{running}")
    start(store, running)
    store.create_study(example_spec.model_copy(update={"name": "unsubmitted"}))
    assert sorted(store.driven_studies()) == sorted(
        [(waiting, StudyState.PENDING, "anneal-standby-1", 0), (running, StudyState.RUNNING, f"anneal-{running}", 0)]
    )
    store.transition(running, [StudyState.RUNNING], StudyState.SUCCEEDED)
    assert [study_id for study_id, *_ in store.driven_studies()] == [waiting]


def test_claim_driver_hands_a_study_over_once(store: Store, example_spec: StudySpec) -> None:
    study_id = store.create_study(example_spec).study_id
    store.update_study(study_id, ray_job_id="anneal-dead")
    start(store, study_id)
    assert store.claim_driver(study_id, "anneal-dead", "anneal-r1")
    assert not store.claim_driver(study_id, "anneal-dead", "anneal-r1b")  # a second claimer loses
    study = store.get_study(study_id)
    assert (study.ray_job_id, study.driver_restarts, study.state) == ("anneal-r1", 1, StudyState.RUNNING)
    store.transition(study_id, [StudyState.RUNNING], StudyState.CANCELLED)
    assert not store.claim_driver(study_id, "anneal-r1", "anneal-r2")  # an ended study keeps its job


def test_count_studies_by_state(store: Store, example_spec: StudySpec) -> None:
    first = store.create_study(example_spec).study_id
    store.create_study(example_spec.model_copy(update={"name": "other"}))
    start(store, first)
    assert store.count_studies([StudyState.RUNNING]) == 1
    assert store.count_studies([StudyState.PENDING, StudyState.RUNNING]) == 2
    assert store.count_studies([StudyState.SUCCEEDED]) == 0


def test_studies_and_trials_by_state_list_every_state(store: Store, example_spec: StudySpec) -> None:
    assert store.studies_by_state() == {state: 0 for state in StudyState}
    assert store.trials_by_state() == {state: 0 for state in TrialState}
    first = store.create_study(example_spec).study_id
    store.create_study(example_spec.model_copy(update={"name": "other"}))
    start(store, first)
    store.record_trial(first, trial("t0"), EventKind.TRIAL_STARTED)
    store.record_trial(first, trial("t1", TrialState.COMPLETED), EventKind.TRIAL_ENDED)
    store.record_trial(first, trial("t2", TrialState.ERROR), EventKind.TRIAL_ENDED)
    studies = store.studies_by_state()
    assert (studies[StudyState.PENDING], studies[StudyState.RUNNING], studies[StudyState.SUCCEEDED]) == (1, 1, 0)
    trials = store.trials_by_state()
    assert (trials[TrialState.RUNNING], trials[TrialState.COMPLETED], trials[TrialState.ERROR]) == (1, 1, 1)
    assert trials[TrialState.CANCELLED] == 0
    assert store.transition(first, [StudyState.RUNNING], StudyState.CANCELLED)  # its running trial is cancelled
    assert store.trials_by_state()[TrialState.CANCELLED] == 1 and store.trials_by_state()[TrialState.RUNNING] == 0


def test_a_plain_postgresql_url_uses_the_shipped_driver(postgres_server: str, example_spec: StudySpec) -> None:
    with postgres.fresh_database(postgres_server) as url:
        plain = url.replace("postgresql+psycopg://", "postgresql://")
        store = Store(plain)
        assert store.get_study(store.create_study(example_spec).study_id).name == example_spec.name
        store.close()
