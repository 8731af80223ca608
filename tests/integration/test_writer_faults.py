"""The trial writer, the driver's bookkeeping process, is no reason for a study to fail:
SIGKILLed mid-study (as the OOM killer would pick it), it is replaced within the driver and
sent again what it had not confirmed, and the study succeeds with every trial recorded once
in the store and MLflow. And whatever way a study ends (a writer's death, a cancel, a
failure), none of its MLflow runs is left RUNNING."""

from __future__ import annotations

import os
import re
import signal
import time
from collections import Counter

import pytest
from mlflow.tracking import MlflowClient
from ray.job_submission import JobSubmissionClient

from anneal import StudySpec, StudyState, TrialState
from anneal.types import EventKind, Study
from tests.integration.conftest import Stack
from tests.integration.test_driver_restart import (
    assert_one_mlflow_run_per_trial_with_every_epoch_once,
    resumable_spec,
    wait_for,
    wait_for_mid_study,
)

pytestmark = pytest.mark.integration

TRIALS = 8  # resumable_spec's: quadratic, 6 epochs of 0.25 s, 2 at a time
END_S = 120.0
STALLED_S = 1.0  # four epochs of a trial: results queue up unconfirmed meanwhile
WRITER_STARTED = re.compile(r"trial writer started: pid (\d+)")


def writer_pid(stack: Stack, job_id: str) -> int:
    """The pid of the study driver's trial writer, from the driver's log, checked to be a child of that driver."""
    jobs = JobSubmissionClient(stack.settings.ray_dashboard_url)
    driver = jobs.get_job_info(job_id).driver_info
    assert driver is not None, f"job {job_id} has no driver yet"
    started = WRITER_STARTED.findall(jobs.get_job_logs(job_id))
    assert started, f"job {job_id} logged no trial writer"
    pid = int(started[-1])
    assert parent_of(pid) == int(driver.pid), f"pid {pid} is not a child of driver {driver.pid}"
    return pid


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        (line,) = [line for line in status if line.startswith("PPid:")]
    return int(line.split()[1])


def wait_for_job_end(stack: Stack, job_id: str, timeout_s: float = 60.0) -> None:
    """The study's driver has exited: whatever it ends at the study's end is ended."""
    jobs = JobSubmissionClient(stack.settings.ray_dashboard_url)
    wait_for(lambda: jobs.get_job_status(job_id).is_terminal(), timeout_s, f"job {job_id} to end")


def runs_left_running(stack: Stack, study: Study) -> list[str]:
    """The study's MLflow runs (its parent run and each trial's) that are still RUNNING."""
    runs = MlflowClient(stack.settings.mlflow_tracking_uri).search_runs([study.mlflow_experiment_id], max_results=1000)
    assert runs, f"study {study.study_id} has no MLflow runs"
    return [
        f"{run.data.tags.get('anneal.trial_id', 'parent')} ({run.info.run_id})"
        for run in runs
        if run.info.status == "RUNNING"
    ]


def test_a_killed_trial_writer_is_replaced_and_the_study_records_every_trial_once(stack: Stack) -> None:
    with stack.client() as client:
        study_id = client.create_study(resumable_spec("it-writer-killed")).study_id
        wait_for_mid_study(client, study_id, ended=2, timeout_s=120)
        job_id = client.get_study(study_id).ray_job_id
        killed = writer_pid(stack, job_id)
        # Stalled first, so that it dies holding records it has not confirmed (a process the
        # OOM killer picks is often stalled on memory), which its replacement is sent again.
        os.kill(killed, signal.SIGSTOP)
        time.sleep(STALLED_S)
        os.kill(killed, signal.SIGKILL)
        wait_for(lambda: client.get_study(study_id).state.is_terminal, END_S, "the study to end")
        study = client.get_study(study_id)
        events = list(client.watch_study(study_id))
    wait_for_job_end(stack, job_id)

    assert study.state is StudyState.SUCCEEDED, study.error
    assert study.driver_restarts == 0, "the writer is replaced within its driver"
    logs = JobSubmissionClient(stack.settings.ray_dashboard_url).get_job_logs(job_id)
    (replaced,) = [line for line in logs.splitlines() if f"the trial writer (pid {killed}) exited" in line]
    print(replaced)
    resent = re.search(r"exited with code -9; writer pid \d+ is sent the (\d+) records", replaced)
    assert resent and int(resent[1]) > 0, replaced

    # The store: each trial once, whole, with one start and one end.
    assert len(study.trials) == TRIALS
    assert all(t.state is TrialState.COMPLETED and t.epochs == 6 for t in study.trials), study.trials
    trial_events = Counter((e.trial.trial_id, e.kind) for e in events if e.trial)
    for trial in study.trials:
        assert trial_events[trial.trial_id, EventKind.TRIAL_STARTED] == 1, trial.trial_id
        assert trial_events[trial.trial_id, EventKind.TRIAL_ENDED] == 1, trial.trial_id
    # MLflow: one FINISHED child run per trial with every epoch once, and nothing left RUNNING.
    assert_one_mlflow_run_per_trial_with_every_epoch_once(stack.settings.mlflow_tracking_uri, study)
    assert runs_left_running(stack, study) == []


def slow_spec(name: str, **params: float) -> StudySpec:
    """quadratic trials of 12 epochs of 0.25 s: long enough to be caught running."""
    spec = resumable_spec(name, epochs=12)
    return spec.model_copy(update={"params": {**spec.params, **params}})


def test_a_cancelled_study_leaves_no_mlflow_run_running(stack: Stack) -> None:
    with stack.client() as client:
        study_id = client.create_study(slow_spec("it-writer-cancel")).study_id
        # A completed trial too: the driver plots it within the few seconds Ray gives a stopped job.
        wait_for_mid_study(client, study_id, ended=1, timeout_s=120)
        client.cancel_study(study_id)
        study = client.get_study(study_id)
    wait_for_job_end(stack, study.ray_job_id)
    assert study.state is StudyState.CANCELLED
    assert runs_left_running(stack, study) == []


def test_a_failed_study_leaves_no_mlflow_run_running(stack: Stack) -> None:
    spec = slow_spec("it-writer-failed", crash_at_epoch=2, crashes=5)  # every trial fails, no retries
    budget = spec.budget.model_copy(update={"max_trials": 2})
    failure = spec.failure.model_copy(update={"max_retries": 0})
    spec = spec.model_copy(update={"budget": budget, "failure": failure})
    with stack.client() as client:
        study_id = client.create_study(spec).study_id
        wait_for(lambda: client.get_study(study_id).state.is_terminal, END_S, "the study to end")
        study = client.get_study(study_id)
    wait_for_job_end(stack, study.ray_job_id)
    assert study.state is StudyState.FAILED, study.state
    assert runs_left_running(stack, study) == []
