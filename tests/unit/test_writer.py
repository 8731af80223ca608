"""The trial writer process: everything put before a flush is in the store and MLflow after it,
params and metric histories land on each trial's child run, and a failed write is raised. A
writer that dies is replaced and sent again what it had not confirmed; its replacement finishes
what the dead one half did, so every record lands once; one that keeps dying is lost."""

from __future__ import annotations

import os
import queue
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from anneal.spec import StudySpec
from anneal.types import EventKind, StudyState, Trial, TrialState
from cluster.driver.outbox import Outbox
from cluster.driver.writer import TrialWriter, WriterLost
from cluster.driver.writermessages import Confirmed, Record, Start
from cluster.driver.writerprocess import Writing
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

    writer.start(study_id, tracker.experiment_id, tracker.parent_run_id)
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


# ------------------------------------------------------------------ a writer that dies


class Crash(BaseException):
    """The writer process dying at this point: nothing after it runs, nothing catches it."""


def kill(pid: int) -> None:
    """SIGKILLs a writer process, as the OOM killer would, and waits until it is gone."""
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.02)
    raise AssertionError(f"writer {pid} outlived SIGKILL")


def numbered(*records: Record) -> list[Record]:
    """Records as a driver's outbox numbers them."""
    outbox: Outbox[Record] = Outbox()
    return [outbox.add(record) for record in records]


def one_trial(trial_id: str, epochs: int) -> list[Record]:
    """A trial's start, its results one epoch each, and its end, numbered from 1."""
    history = [(step, {"loss": 1.0 / step}) for step in range(1, epochs + 1)]
    results = [
        Record(EventKind.TRIAL_RESULT, trial(trial_id, epochs=step, loss=values["loss"]), history=[(step, values)])
        for step, values in history
    ]
    end = trial(trial_id, TrialState.COMPLETED, epochs, loss=1.0 / epochs)
    return numbered(
        Record(EventKind.TRIAL_STARTED, trial(trial_id), params={"lr": 0.1}),
        *results,
        Record(EventKind.TRIAL_ENDED, end, mlflow_status="FINISHED"),
    )


def assert_recorded_once(homes: dict[str, str], store: Store, study_id: str, epochs: dict[str, int]) -> None:
    """Each trial once in the store, one event per record, one MLflow run per trial with each epoch once."""
    study = store.get_study(study_id)
    assert sorted((t.trial_id, t.state, t.epochs) for t in study.trials) == [
        (trial_id, TrialState.COMPLETED, count) for trial_id, count in sorted(epochs.items())
    ]
    kinds = Counter((e.trial.trial_id, e.kind) for e in store.events_after(study_id, 0) if e.trial)
    for trial_id, count in epochs.items():
        assert kinds[trial_id, EventKind.TRIAL_STARTED] == kinds[trial_id, EventKind.TRIAL_ENDED] == 1
        assert kinds[trial_id, EventKind.TRIAL_RESULT] == count
    client = MlflowClient(homes["tracking_uri"])
    experiment_id = client.get_run(study.trials[0].mlflow_run_id).info.experiment_id
    runs = client.search_runs([experiment_id], filter_string="tags.`anneal.kind` = 'trial'")
    assert sorted(run.data.tags["anneal.trial_id"] for run in runs) == sorted(epochs)
    assert sorted(run.info.run_id for run in runs) == sorted(t.mlflow_run_id for t in study.trials)
    for run in runs:
        assert (run.info.status, run.data.params) == ("FINISHED", {"lr": "0.1"})
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss")]
        assert sorted(steps) == list(range(1, epochs[run.data.tags["anneal.trial_id"]] + 1))


def test_the_outbox_keeps_records_until_they_are_confirmed() -> None:
    outbox: Outbox[Record] = Outbox()
    records = [outbox.add(Record(EventKind.TRIAL_RESULT, trial(f"t{i}"))) for i in range(4)]
    assert [r.sequence for r in records] == [1, 2, 3, 4]
    outbox.confirm(2)
    assert outbox.unconfirmed() == records[2:]
    outbox.confirm(2)  # a confirmation that comes again changes nothing
    outbox.confirm(4)
    assert outbox.unconfirmed() == []


def writing(homes: dict[str, str], study_id: str, tracker: MlflowTracker, stream: str = "stream-1") -> Writing:
    """The writer process's state, in this process, started on the study."""
    replacement = Writing(Store(homes["store_url"]), MlflowTracker(homes["tracking_uri"], homes["artifact_root"]))
    replacement.handle([Start(study_id, tracker.experiment_id, tracker.parent_run_id, stream)], queue.SimpleQueue())
    return replacement


def test_a_replacement_skips_what_the_store_committed_before_its_confirmation_was_lost(
    homes: dict[str, str], example_spec: StudySpec
) -> None:
    store, tracker, study_id = started_study(homes, example_spec)
    records = one_trial("t1", epochs=3)
    writing(homes, study_id, tracker).handle(records[:3], queue.SimpleQueue())  # died before its answer arrived

    replies: queue.SimpleQueue[Any] = queue.SimpleQueue()
    writing(homes, study_id, tracker).handle(records, replies)  # every unconfirmed record, sent again
    assert replies.get_nowait() == Confirmed(len(records))
    assert_recorded_once(homes, store, study_id, {"t1": 3})


@pytest.mark.parametrize(
    "dies_in",
    [
        "log_batch",  # the child run created, its id never in the store, no params or epochs logged
        "record_trials",  # MLflow written, the store's transaction never committed
    ],
)
def test_a_replacement_finishes_the_batch_a_dead_writer_half_did(
    homes: dict[str, str], example_spec: StudySpec, dies_in: str
) -> None:
    store, tracker, study_id = started_study(homes, example_spec)
    first, second = one_trial("t1", epochs=4), one_trial("t2", epochs=2)
    records = numbered(*first, *second)  # one stream: t1's records, then t2's
    dead = writing(homes, study_id, tracker)
    dead.handle(records[:5], queue.SimpleQueue())  # t1 started, epochs 1 to 4: committed
    target = dead.store if dies_in == "record_trials" else dead.tracker
    setattr(target, dies_in, lambda *args, **kwargs: (_ for _ in ()).throw(Crash()))
    with pytest.raises(Crash):
        dead.handle(records[5:8], queue.SimpleQueue())  # t1's end, t2's start and epoch 1
    assert store.recorded_through(study_id, "stream-1") == 5
    (t2_run,) = [t for t in dead.tracker.trial_runs() if t.data.tags["anneal.trial_id"] == "t2"]
    assert bool(t2_run.data.params) == (dies_in == "record_trials")

    replies: queue.SimpleQueue[Any] = queue.SimpleQueue()
    writing(homes, study_id, tracker).handle(records[5:], replies)
    assert replies.get_nowait() == Confirmed(len(records))
    assert_recorded_once(homes, store, study_id, {"t1": 4, "t2": 2})


def test_a_killed_writer_is_replaced_and_sent_again_what_it_had_not_confirmed(
    writer: TrialWriter, homes: dict[str, str], example_spec: StudySpec
) -> None:
    store, tracker, study_id = started_study(homes, example_spec)
    writer.start(study_id, tracker.experiment_id, tracker.parent_run_id)
    records = {trial_id: one_trial(trial_id, epochs=5) for trial_id in ("t1", "t2")}
    for record in records["t1"][:3]:
        writer.put(record)
    writer.flush()
    for record in [*records["t1"][3:5], *records["t2"][:4]]:
        writer.put(record)
    killed = writer.pid
    kill(killed)  # whatever of those it had written, or half-written, when it died
    for record in [*records["t1"][5:], *records["t2"][4:]]:
        writer.put(record)  # the first put finds it dead: a new writer is sent every unconfirmed record
    writer.flush()
    assert writer.pid != killed
    assert_recorded_once(homes, store, study_id, {"t1": 5, "t2": 5})


def test_a_writer_that_dies_again_and_again_is_lost(homes: dict[str, str]) -> None:
    writer = TrialWriter(homes["store_url"], homes["tracking_uri"], homes["artifact_root"], replacements=1)
    try:
        kill(writer.pid)
        writer.put(Record(EventKind.TRIAL_STARTED, trial("t1")))  # replaced once
        kill(writer.pid)
        with pytest.raises(WriterLost):
            writer.put(Record(EventKind.TRIAL_STARTED, trial("t2")))
        assert writer.lost
        with pytest.raises(WriterLost):
            writer.flush()
    finally:
        writer.close()


def test_ending_a_failed_study_leaves_none_of_its_trial_runs_running(
    writer: TrialWriter, homes: dict[str, str], example_spec: StudySpec
) -> None:
    from cluster.driver.finish import end_trial_runs

    store, tracker, study_id = started_study(homes, example_spec)
    writer.start(study_id, tracker.experiment_id, tracker.parent_run_id)
    for record in [*one_trial("t1", epochs=2), *one_trial("t2", epochs=2)[:2]]:
        writer.put(record)  # t2 still running when the driver fails
    writer.flush()
    writer.put(Record(EventKind.TRIAL_STARTED, trial("t3"), params={"lr": 0.1}))  # queued, never flushed
    store.transition(study_id, [StudyState.RUNNING], StudyState.FAILED, error="the driver failed")

    end_trial_runs(writer, tracker, "KILLED")
    runs = MlflowClient(homes["tracking_uri"]).search_runs(
        [tracker.experiment_id], filter_string="tags.`anneal.kind` = 'trial'"
    )
    statuses = {run.data.tags["anneal.trial_id"]: run.info.status for run in runs}
    assert statuses == {"t1": "FINISHED", "t2": "KILLED", "t3": "KILLED"}
