"""A study whose driver dies goes on by itself: the server's keeper sees the driver's Ray
job end with the study still RUNNING, submits a new driver, and that driver resumes the
study from Tune's last snapshot (`Tuner.restore`), completed by the store's records. Trials
that had ended are not run again, every trial has one MLflow run with each epoch once,
and the study has exactly `max_trials` trials."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

import pytest
from mlflow.tracking import MlflowClient
from ray.job_submission import JobSubmissionClient

from anneal import Client, StudySpec, StudyState, TrialState
from anneal.types import EventKind, Study
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration

TRIALS = 8
EPOCHS = 6
SECONDS_PER_EPOCH = 0.25
END_S = 240.0


def resumable_spec(name: str, epochs: int = EPOCHS, **changes: object) -> StudySpec:
    return StudySpec.parse(
        {
            "name": name,
            "trainer": "quadratic",
            "dataset": {"name": "iris"},
            "params": {"epochs": epochs, "seconds_per_epoch": SECONDS_PER_EPOCH},
            "search_space": {"x": {"float": {"low": -1.0, "high": 1.0}}},
            "objective": {"metric": "loss", "mode": "min"},
            "search": {"sampler": "tpe", "seed": 3},
            "budget": {"max_trials": TRIALS, "max_concurrent_trials": 2},
            # Every report persists a checkpoint, so a resumed trial has one to go on from.
            "failure": {"checkpoint_interval_s": 0},
            **changes,
        }
    )


def wait_for(check: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def wait_for_mid_study(client: Client, study_id: str, *, ended: int, timeout_s: float) -> None:
    """Waits until `ended` trials have ended while another has reported an epoch."""

    def mid_study() -> bool:
        trials = client.get_study(study_id).trials
        done = [t for t in trials if t.state.is_terminal]
        return len(done) >= ended and any(t.state is TrialState.RUNNING and t.epochs >= 1 for t in trials)

    wait_for(mid_study, timeout_s, f"{ended} trials to end while others run")


def kill_driver(stack: Stack, job_id: str) -> int:
    """SIGKILLs the Ray job's driver process (`anneal run`), as a crash or an OOM kill would."""
    info = JobSubmissionClient(stack.settings.ray_dashboard_url).get_job_info(job_id)
    assert info.driver_info is not None, f"job {job_id} has no driver yet"
    pid = int(info.driver_info.pid)
    os.kill(pid, signal.SIGKILL)
    return pid


def test_a_killed_driver_is_replaced_and_the_study_resumes_without_rerunning_trials(stack: Stack) -> None:
    with stack.client() as client:
        study_id = client.create_study(resumable_spec("it-driver-killed")).study_id

        wait_for_mid_study(client, study_id, ended=3, timeout_s=120)
        before = client.get_study(study_id)
        kill_driver(stack, before.ray_job_id)
        killed_at = time.monotonic()
        wait_for(lambda: client.get_study(study_id).state.is_terminal, END_S, "the resumed study to end")
        study = client.get_study(study_id)
        events = list(client.watch_study(study_id))

    assert study.state is StudyState.SUCCEEDED, study.error
    assert (study.driver_restarts, study.ray_job_id) == (1, f"anneal-{study_id}-r1")
    assert len(study.trials) == TRIALS
    # Each with its whole error: a resumed trial's failure names the checkpoint it was given.
    unfinished = [
        (t.trial_id, t.state.value, t.epochs, t.error)
        for t in study.trials
        if t.state is not TrialState.COMPLETED or t.epochs != EPOCHS
    ]
    assert not unfinished, unfinished
    print(f"resumed study ended {time.monotonic() - killed_at:.1f} s after its driver was killed")
    logs = JobSubmissionClient(stack.settings.ray_dashboard_url).get_job_logs(study.ray_job_id)
    print(*[line for line in logs.splitlines() if "resuming study" in line], sep="\n")
    assert "warm trial workers" in logs  # the resumed driver started its trial workers ahead, as a standby does

    # Trials that had ended before the kill were not run again: one start each, results unchanged.
    ended_before = {t.trial_id: t for t in before.trials if t.state.is_terminal}
    starts = Counter(e.trial.trial_id for e in events if e.kind is EventKind.TRIAL_STARTED and e.trial)
    after = {t.trial_id: t for t in study.trials}
    for trial_id, trial in ended_before.items():
        assert starts[trial_id] == 1, f"trial {trial_id} ran again"
        assert after[trial_id].metrics == trial.metrics
    assert_one_mlflow_run_per_trial_with_every_epoch_once(stack.settings.mlflow_tracking_uri, study)


def assert_one_mlflow_run_per_trial_with_every_epoch_once(
    tracking_uri: str, study: Study, epochs: int | None = EPOCHS
) -> None:
    """Each trial has one run, FINISHED, with each of its epochs once: `epochs` of them, or with
    None the epochs the store holds for it."""
    mlflow = MlflowClient(tracking_uri)
    runs = mlflow.search_runs(
        [study.mlflow_experiment_id], filter_string="tags.`anneal.kind` = 'trial'", max_results=1000
    )
    assert sorted(run.data.tags["anneal.trial_id"] for run in runs) == sorted(t.trial_id for t in study.trials)
    assert sorted(run.info.run_id for run in runs) == sorted(t.mlflow_run_id for t in study.trials)
    held = {t.trial_id: t.epochs for t in study.trials}
    for run in runs:
        trial_id = run.data.tags["anneal.trial_id"]
        assert run.info.status == "FINISHED", trial_id
        steps = [m.step for m in mlflow.get_metric_history(run.info.run_id, "loss")]
        assert sorted(steps) == list(range(1, (epochs or held[trial_id]) + 1)), (trial_id, steps)


def test_a_killed_driver_with_paused_trials_resumes_them_from_their_rung_checkpoints(stack: Stack) -> None:
    """Promotion-type ASHA: trials paused at a rung when the driver dies go on, or end stopped
    early, under the new driver; none is left PAUSED, and none logs an epoch twice."""
    epochs = 9  # rungs at 1 and 3
    promotion = {"asha": {"grace_period": 1, "reduction_factor": 3, "type": "promotion"}}
    spec = resumable_spec("it-driver-killed-paused", epochs, scheduler=promotion)
    with stack.client() as client:
        study_id = client.create_study(spec).study_id
        wait_for(
            lambda: any(t.state is TrialState.PAUSED for t in client.get_study(study_id).trials),
            120,
            "a trial to wait at a rung",
        )
        kill_driver(stack, client.get_study(study_id).ray_job_id)
        wait_for(lambda: client.get_study(study_id).state.is_terminal, END_S, "the resumed study to end")
        study = client.get_study(study_id)

    assert study.state is StudyState.SUCCEEDED, study.error
    assert study.driver_restarts == 1 and len(study.trials) == TRIALS
    ended = Counter((t.state, t.epochs) for t in study.trials)
    assert set(ended) <= {(TrialState.STOPPED_EARLY, 1), (TrialState.STOPPED_EARLY, 3), (TrialState.COMPLETED, epochs)}
    assert ended[(TrialState.COMPLETED, epochs)] >= 1, ended
    assert_one_mlflow_run_per_trial_with_every_epoch_once(stack.settings.mlflow_tracking_uri, study, epochs=None)
