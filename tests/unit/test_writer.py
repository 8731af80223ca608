"""The trial writer process: everything put before a flush is in the store and MLflow after it,
params and metric histories land on each trial's child run, and a failed write is raised."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from anneal.spec import StudySpec
from anneal.types import EventKind, StudyState, Trial, TrialState
from cluster.driver.writer import Record, TrialWriter
from cluster.store.store import Store
from cluster.tracking.tracker import MlflowTracker


@pytest.fixture
def homes(tmp_path: Path) -> dict[str, str]:
    return {
        "store_url": f"sqlite:///{tmp_path / 'anneal.db'}",
        "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "artifact_root": str(tmp_path / "artifacts"),
    }


@pytest.fixture
def writer(homes: dict[str, str]) -> Iterator[TrialWriter]:
    writer = TrialWriter(homes["store_url"], homes["tracking_uri"], homes["artifact_root"])
    yield writer
    writer.close()


def started_study(homes: dict[str, str], spec: StudySpec) -> tuple[Store, MlflowTracker, str]:
    store = Store(homes["store_url"])
    study_id = store.create_study(spec).study_id
    store.transition(study_id, [StudyState.PENDING], StudyState.RUNNING)
    tracker = MlflowTracker(homes["tracking_uri"], homes["artifact_root"])
    tracker.start_study(study_id, spec.name, spec.to_yaml(), spec.params)
    return store, tracker, study_id


def trial(trial_id: str, state: TrialState = TrialState.RUNNING, epochs: int = 0, **metrics: float) -> Trial:
    return Trial(trial_id=trial_id, state=state, config={"lr": 0.1}, metrics=metrics, epochs=epochs)


def test_a_trial_lands_in_the_store_and_its_child_run(
    writer: TrialWriter, homes: dict[str, str], example_spec: StudySpec
) -> None:
    store, tracker, study_id = started_study(homes, example_spec)
    writer.start(study_id, tracker.experiment_id, tracker.parent_run_id)
    writer.put(Record(EventKind.TRIAL_STARTED, trial("t1"), params={"lr": 0.1, "epochs": 2}))
    history = [(1, {"val_accuracy": 0.5}), (2, {"val_accuracy": 0.75})]
    writer.put(Record(EventKind.TRIAL_RESULT, trial("t1", epochs=2, val_accuracy=0.75), history=history))
    writer.put(
        Record(EventKind.TRIAL_ENDED, trial("t1", TrialState.COMPLETED, 2, val_accuracy=0.75), mlflow_status="FINISHED")
    )
    writer.flush()

    (recorded,) = store.get_study(study_id).trials
    assert (recorded.state, recorded.epochs, recorded.metrics) == (TrialState.COMPLETED, 2, {"val_accuracy": 0.75})
    kinds = [e.kind for e in store.events_after(study_id, 0)]
    assert kinds[-3:] == [EventKind.TRIAL_STARTED, EventKind.TRIAL_RESULT, EventKind.TRIAL_ENDED]
    client = MlflowClient(homes["tracking_uri"])
    run = client.get_run(recorded.mlflow_run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"lr": "0.1", "epochs": "2"}
    assert run.data.tags["mlflow.parentRunId"] == tracker.parent_run_id
    steps = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "val_accuracy")]
    assert sorted(steps) == [(1, 0.5), (2, 0.75)]


def test_flush_can_end_the_runs_of_unfinished_trials(
    writer: TrialWriter, homes: dict[str, str], example_spec: StudySpec
) -> None:
    store, tracker, study_id = started_study(homes, example_spec)
    writer.start(study_id, tracker.experiment_id, tracker.parent_run_id)
    writer.put(Record(EventKind.TRIAL_STARTED, trial("t1"), params={"lr": 0.1}))
    writer.flush(end_open_runs="KILLED")
    (recorded,) = store.get_study(study_id).trials
    assert MlflowClient(homes["tracking_uri"]).get_run(recorded.mlflow_run_id).info.status == "KILLED"


def test_a_write_that_keeps_failing_is_raised(writer: TrialWriter, homes: dict[str, str]) -> None:
    tracker = MlflowTracker(homes["tracking_uri"], homes["artifact_root"])
    tracker.start_study("st-missing", "missing", "", {})
    writer.start("st-missing", tracker.experiment_id, tracker.parent_run_id)  # no such study in the store
    writer.put(Record(EventKind.TRIAL_STARTED, trial("t1")))
    with pytest.raises(RuntimeError, match="recording trials failed"):
        writer.flush()


def test_epochs_a_restarted_trial_reports_again_are_logged_once(
    writer: TrialWriter, homes: dict[str, str], example_spec: StudySpec
) -> None:
    store, tracker, study_id = started_study(homes, example_spec)
    writer.start(study_id, tracker.experiment_id, tracker.parent_run_id)
    writer.put(Record(EventKind.TRIAL_STARTED, trial("t1"), params={"lr": 0.1}))
    before_crash = [(step, {"val_accuracy": step / 10}) for step in (1, 2, 3)]
    writer.put(Record(EventKind.TRIAL_RESULT, trial("t1", epochs=3), history=before_crash))
    # Restarted from its checkpoint of epoch 1: epochs 2 and 3 come again, then 4.
    writer.put(Record(EventKind.TRIAL_STARTED, trial("t1"), params={"lr": 0.1}))
    after_restart = [(step, {"val_accuracy": step / 10 + 0.01}) for step in (2, 3, 4)]
    writer.put(Record(EventKind.TRIAL_RESULT, trial("t1", epochs=4), history=after_restart))
    writer.put(Record(EventKind.TRIAL_ENDED, trial("t1", TrialState.COMPLETED, 4), mlflow_status="FINISHED"))
    writer.flush()
    (recorded,) = store.get_study(study_id).trials
    history = MlflowClient(homes["tracking_uri"]).get_metric_history(recorded.mlflow_run_id, "val_accuracy")
    assert sorted((m.step, m.value) for m in history) == [(1, 0.1), (2, 0.2), (3, 0.3), (4, pytest.approx(0.41))]
    assert recorded.epochs == 4


def test_a_new_writer_goes_on_with_the_runs_of_a_resumed_study(
    writer: TrialWriter, homes: dict[str, str], example_spec: StudySpec
) -> None:
    store, tracker, study_id = started_study(homes, example_spec)
    # The previous driver's writer: t1 ended, t2 logged epochs 1-3 to MLflow, and died
    # before the store got epoch 3.
    first = TrialWriter(homes["store_url"], homes["tracking_uri"], homes["artifact_root"])
    first.start(study_id, tracker.experiment_id, tracker.parent_run_id)
    for trial_id in ("t1", "t2"):
        first.put(Record(EventKind.TRIAL_STARTED, trial(trial_id), params={"lr": 0.1}))
    first.put(Record(EventKind.TRIAL_RESULT, trial("t1", epochs=2), history=[(1, {"loss": 1.0}), (2, {"loss": 0.5})]))
    first.put(Record(EventKind.TRIAL_ENDED, trial("t1", TrialState.COMPLETED, 2, loss=0.5), mlflow_status="FINISHED"))
    first.put(Record(EventKind.TRIAL_RESULT, trial("t2", epochs=2), history=[(1, {"loss": 2.0}), (2, {"loss": 1.5})]))
    first.flush()
    first.close()
    t2_run = {t.trial_id: t for t in store.get_study(study_id).trials}["t2"].mlflow_run_id
    tracker.log_metrics(t2_run, {"loss": 1.25}, step=3)

    writer.start(study_id, tracker.experiment_id, tracker.parent_run_id, store.get_study(study_id).trials)
    writer.put(Record(EventKind.TRIAL_STARTED, trial("t2"), params={"lr": 0.1}))  # resumed from epoch 1
    again = [(step, {"loss": 2.5 - step / 2}) for step in (2, 3, 4)]
    writer.put(Record(EventKind.TRIAL_RESULT, trial("t2", epochs=4), history=again))
    writer.put(Record(EventKind.TRIAL_ENDED, trial("t2", TrialState.COMPLETED, 4, loss=0.5), mlflow_status="FINISHED"))
    writer.flush()

    client = MlflowClient(homes["tracking_uri"])
    runs = client.search_runs([tracker.experiment_id], filter_string="tags.`anneal.kind` = 'trial'")
    assert sorted(run.data.tags["anneal.trial_id"] for run in runs) == ["t1", "t2"]  # no second run for t2
    history = client.get_metric_history(t2_run, "loss")
    assert sorted((m.step, m.value) for m in history) == [(1, 2.0), (2, 1.5), (3, 1.25), (4, 0.5)]
    assert client.get_run(t2_run).info.status == "FINISHED"
