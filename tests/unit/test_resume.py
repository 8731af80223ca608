"""Resuming a study whose driver died: the plan that completes Tune's last snapshot with the
store's records, the searcher that hands lost trials' configs out again, and the recorder
that neither records a replayed trial twice nor misses an end the previous writer lost."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import FloatDistribution

from anneal.spec import StudySpec
from anneal.types import EventKind, Study, Trial, TrialState
from cluster.driver.recording import TrialRecorder
from cluster.driver.resume import newest_checkpoint, plan_resume, snapshot_trial_ids
from cluster.driver.tuning import AdoptingOptunaSearch
from cluster.driver.writermessages import Record
from cluster.store.store import now
from cluster.trial.context import ENDED, EPOCH
from cluster.trial.function import ADOPTED_AS


def study_with(spec: StudySpec, trials: list[Trial]) -> Study:
    return Study(
        study_id="st-1", name=spec.name, spec=spec, state="RUNNING", created_at=now(), updated_at=now(), trials=trials
    )


def write_snapshot(experiment: Path, trials: dict[str, dict[str, Any]]) -> None:
    """An experiment state file as Tune writes it: each trial's state as JSON text."""
    data = [
        [json.dumps({"trial_id": trial_id, "config": config, "status": "RUNNING"}), "{}"]
        for trial_id, config in trials.items()
    ]
    (experiment / "experiment_state-2026-11-27_10-00-00.json").write_text(json.dumps({"trial_data": data}))


def make_checkpoints(experiment: Path, trial_id: str, count: int) -> None:
    trial_dir = experiment / f"run_trial_{trial_id}_1_x=0.1_2026-11-27_10-00-00"
    for index in range(count):
        (trial_dir / f"checkpoint_{index:06d}").mkdir(parents=True)


def test_no_snapshot_means_none(tmp_path: Path) -> None:
    assert snapshot_trial_ids(str(tmp_path)) is None


def test_the_snapshot_names_adopted_trials_by_the_identity_they_adopted(tmp_path: Path) -> None:
    write_snapshot(tmp_path, {"aaaa0001": {"x": 0.1}, "bbbb0002": {"x": 0.2, ADOPTED_AS: "cccc0003"}})
    assert snapshot_trial_ids(str(tmp_path)) == {"aaaa0001", "cccc0003"}


def test_newest_checkpoint_is_the_highest_numbered(tmp_path: Path) -> None:
    make_checkpoints(tmp_path, "aaaa0001", 3)
    assert newest_checkpoint(str(tmp_path), "aaaa0001").endswith(
        "aaaa0001_1_x=0.1_2026-11-27_10-00-00/checkpoint_000002"
    )
    assert newest_checkpoint(str(tmp_path), "bbbb0002") == ""


def test_the_plan_replays_ended_trials_and_adopts_those_the_snapshot_lost(
    tmp_path: Path, example_spec: StudySpec
) -> None:
    ended = Trial(trial_id="t-ended", state=TrialState.COMPLETED, config={"x": 0.1}, metrics={"loss": 0.5}, epochs=4)
    failed = Trial(trial_id="t-failed", state=TrialState.ERROR, config={"x": 0.2}, error="boom")
    running = Trial(trial_id="t-running", state=TrialState.RUNNING, config={"x": 0.3}, epochs=2)
    lost = Trial(trial_id="t-lost", state=TrialState.RUNNING, config={"x": 0.4}, epochs=1)
    lost_ended = Trial(trial_id="t-lost-ended", state=TrialState.STOPPED_EARLY, config={"x": 0.5}, epochs=2)
    write_snapshot(tmp_path, {"t-ended": {}, "t-failed": {}, "t-running": {}})
    make_checkpoints(tmp_path, "t-running", 2)
    make_checkpoints(tmp_path, "t-lost", 1)
    study = study_with(example_spec, [ended, failed, running, lost, lost_ended])

    plan = plan_resume(study, str(tmp_path), snapshot_trial_ids(str(tmp_path)))

    assert plan.adoptions == [("t-lost", {"x": 0.4}), ("t-lost-ended", {"x": 0.5})]  # in the order they started
    assert plan.replayed == {"t-ended", "t-failed", "t-lost-ended"}
    assert (plan.carried["t-ended"].metrics, plan.carried["t-ended"].epochs) == ({"loss": 0.5}, 4)
    assert plan.carried["t-failed"].error == "boom"
    assert plan.carried["t-running"].checkpoint_dir.endswith("checkpoint_000001")
    assert plan.carried["t-lost"].checkpoint_dir.endswith("checkpoint_000000")
    assert not plan.carried["t-running"].ended


def searcher() -> AdoptingOptunaSearch:
    space = {"x": FloatDistribution(-1.0, 1.0)}
    return AdoptingOptunaSearch(space=space, metric="loss", mode="min", sampler=optuna.samplers.RandomSampler(seed=0))


def test_the_searcher_hands_out_adoptions_first_and_learns_them_when_they_end(tmp_path: Path) -> None:
    search = searcher()
    search.adoptions = [("t-lost", {"x": 0.4})]
    assert search.suggest("new-1") == {"x": 0.4, ADOPTED_AS: "t-lost"}
    sampled = search.suggest("new-2")
    assert sampled is not None and ADOPTED_AS not in sampled
    search.on_trial_result("new-1", {"loss": 0.3, "training_iteration": 1})  # not Optuna's trial: ignored
    search.on_trial_complete("new-1", {"loss": 0.25, ENDED: True})
    search.on_trial_complete("new-2", {"loss": 0.5, ENDED: True})
    values = sorted(t.value for t in search._ot_study.trials if t.value is not None)
    assert values == [0.25, 0.5]


def test_the_searcher_learns_a_restored_trial_newer_than_its_own_snapshot() -> None:
    search = searcher()  # its snapshot predates the trial Tune restored and goes on running
    search.on_trial_result("newer", {"loss": 0.3, "training_iteration": 2})
    search.on_trial_complete("newer", {"loss": 0.2, "config": {"x": 0.1}, ENDED: True})
    assert [(t.params, t.value) for t in search._ot_study.trials] == [({"x": 0.1}, 0.2)]


def test_restoring_the_searcher_keeps_the_adoptions_handed_to_it(tmp_path: Path) -> None:
    saved = searcher()
    saved.suggest("old-1")
    saved.save(str(tmp_path / "searcher.pkl"))
    restored = searcher()
    restored.adoptions = [("t-lost", {"x": 0.4})]
    restored.restore(str(tmp_path / "searcher.pkl"))  # what Tune does inside fit()
    assert restored.adoptions == [("t-lost", {"x": 0.4})]
    assert "old-1" in restored._ot_trials


class Collecting:
    def __init__(self) -> None:
        self.records: list[Record] = []

    def put(self, record: Record) -> None:
        self.records.append(record)


class FakeTuneTrial:
    def __init__(self, trial_id: str, status: str, config: dict[str, Any], last_result: dict[str, Any]) -> None:
        self.trial_id = trial_id
        self.status = status
        self.config = config
        self.last_result = last_result
        self.error_file = ""


def test_the_recorder_skips_replayed_trials_and_records_ends_the_previous_writer_lost() -> None:
    writer = Collecting()
    recorder = TrialRecorder(None, {"epochs": 4}, 4)  # type: ignore[arg-type]
    restored = TrialRecorder.__new__(TrialRecorder)
    restored.__setstate__(recorder.__getstate__())  # as Tune unpickles it
    recorded = [
        Trial(trial_id="t-ended", state=TrialState.COMPLETED, epochs=4),
        Trial(trial_id="t-unrecorded-end", state=TrialState.RUNNING, epochs=2),
    ]
    restored.resume(writer, recorded)  # type: ignore[arg-type]
    result = {"loss": 0.5, EPOCH: 4}
    trials = [
        FakeTuneTrial("t-ended", "RUNNING", {"x": 0.1}, {"loss": 0.6, EPOCH: 3}),
        FakeTuneTrial("t-unrecorded-end", "TERMINATED", {"x": 0.2}, result),
        FakeTuneTrial("tune-9", "TERMINATED", {"x": 0.3, ADOPTED_AS: "t-lost"}, result),
    ]
    restored.on_step_begin(1, trials)  # type: ignore[arg-type]
    restored.on_step_begin(2, trials)  # type: ignore[arg-type]  # once only
    restored.on_trial_start(2, trials, trials[0])  # type: ignore[arg-type]  # replayed
    restored.on_trial_complete(3, trials, trials[0])  # type: ignore[arg-type]

    kinds = [(r.kind, r.trial.trial_id) for r in writer.records]
    assert kinds == [
        (EventKind.TRIAL_RESULT, "t-unrecorded-end"),
        (EventKind.TRIAL_ENDED, "t-unrecorded-end"),
        (EventKind.TRIAL_STARTED, "t-lost"),
        (EventKind.TRIAL_RESULT, "t-lost"),
        (EventKind.TRIAL_ENDED, "t-lost"),
    ]
    lost = writer.records[-1].trial
    assert (lost.state, lost.config, lost.epochs) == (TrialState.COMPLETED, {"x": 0.3}, 4)
