"""Data-parallel trials: a trial trains on 2 Ray Train workers inside its Tune trial, and the
study around it (MLflow, checkpoints, schedulers, serving) treats it as any other trial."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import ray
from mlflow.tracking import MlflowClient

from anneal import Study, StudySpec, StudyState, TrialState
from anneal.convert import spec_to_pb
from anneal.types import EventKind, StudyEvent
from anneal.v1 import anneal_pb2 as pb
from anneal.v1 import anneal_pb2_grpc as rpc
from tests.integration.conftest import Stack, pyfunc_answers, small_spec
from tests.integration.test_driver_restart import (
    assert_one_mlflow_run_per_trial_with_every_epoch_once,
    kill_driver,
    wait_for,
    wait_for_mid_study,
)
from trainers.datasets import load_splits

pytestmark = pytest.mark.integration

FREED_WITHIN_S = 10.0
# Half a CPU per worker: a 2-worker trial then fits on the test cluster's 2 CPUs beside what
# other tests' Serve replicas hold; each worker still trains with one thread.
WORKERS = {"workers": 2, "cpu": 0.5}
EPOCHS = 4  # of the quadratic studies
COLD_WARNING = "its processes start cold"


@dataclass
class Finished:
    study: Study
    events: list[StudyEvent]


def run(stack: Stack, spec: StudySpec) -> Finished:
    with stack.client() as client:
        created = client.create_study(spec)
        events = list(client.watch_study(created.study_id))
        return Finished(client.get_study(created.study_id), events)


def quadratic_spec(name: str, **changes: Any) -> StudySpec:
    data: dict[str, Any] = {
        "name": name,
        "trainer": "quadratic",
        "dataset": {"name": "iris"},
        "params": {"epochs": EPOCHS, "seconds_per_epoch": 0.6},
        "search_space": {"x": {"float": {"low": -1.0, "high": 1.0}}},
        "objective": {"metric": "loss", "mode": "min"},
        "search": {"sampler": "random", "seed": 0},
        "budget": {"max_trials": 1, "max_concurrent_trials": 1},
        "resources": WORKERS,
        "failure": {"max_retries": 1, "checkpoint_interval_s": 0},
    }
    data.update(changes)
    return StudySpec.parse(data)


def connect(stack: Stack) -> None:
    if not ray.is_initialized():
        ray.init(address=stack.settings.ray_address, log_to_driver=False)


def free_cpus(stack: Stack) -> float:
    connect(stack)
    return float(ray.available_resources().get("CPU", 0.0))


def train_workers() -> list[int]:
    """The pids of the Ray Train worker processes alive on this machine."""
    listed = subprocess.run(["pgrep", "-f", "ray::RayTrainWorker"], capture_output=True, text=True)
    return [int(pid) for pid in listed.stdout.split()]


# ------------------------------------------------------------------ a 2-worker study end to end


@pytest.fixture(scope="module")
def digits_on_two_workers(stack: Stack) -> Iterator[Finished]:
    spec = small_spec(
        "it-dp-digits",
        budget={"max_trials": 2, "max_concurrent_trials": 1},
        resources=WORKERS,
    )
    yield run(stack, spec)


def test_a_two_worker_study_succeeds(digits_on_two_workers: Finished) -> None:
    study = digits_on_two_workers.study
    assert study.state is StudyState.SUCCEEDED, study.error
    assert [(t.state, t.epochs) for t in study.trials] == [(TrialState.COMPLETED, 4)] * 2
    assert 0.8 < study.best_test_metrics["test_accuracy"] <= 1.0


def test_its_mlflow_runs_record_the_world_size_and_every_epoch_once(
    stack: Stack, digits_on_two_workers: Finished
) -> None:
    mlflow = MlflowClient(stack.settings.mlflow_tracking_uri)
    for trial in digits_on_two_workers.study.trials:
        run_ = mlflow.get_run(trial.mlflow_run_id)
        assert run_.data.params["world_size"] == "2"
        for metric in ("val_accuracy", "train_loss"):
            steps = [m.step for m in mlflow.get_metric_history(trial.mlflow_run_id, metric)]
            assert sorted(steps) == [1, 2, 3, 4], metric


def test_its_deployed_model_answers_with_the_accuracy_the_study_reported(
    stack: Stack, digits_on_two_workers: Finished, serve_apps: list[str]
) -> None:
    study = digits_on_two_workers.study
    data = load_splits("digits", 0.2, 0.2, 0)
    with stack.client() as client:
        deployment = client.deploy(study.study_id)
        serve_apps.append(deployment.name)
        predictions = client.predict(deployment.name, data.x_test.tolist())
    served = sum(p.label == int(y) for p, y in zip(predictions, data.y_test, strict=True)) / len(data.y_test)
    assert served == pytest.approx(study.best_test_metrics["test_accuracy"], abs=0.02)


def test_its_train_processes_ran_in_the_environment_the_driver_warms(
    stack: Stack, digits_on_two_workers: Finished
) -> None:
    """The driver starts Ray Train's processes ahead of each trial (`cluster.driver.warmtrain`);
    the raylet hands them over only for the exact environment Train's processes carry, which each
    trial compares with its controller's and warns about in its log when they differ."""
    logs = Path(stack.cluster.ray_temp_dir) / "session_latest" / "logs"
    assert list(logs.glob("worker-*.err"))
    warned = [p.name for p in logs.glob("worker-*.err") if COLD_WARNING in p.read_text(errors="replace")]
    assert warned == []


# ------------------------------------------------------------------ faults and early stopping


def test_a_trial_whose_worker_is_killed_resumes_from_its_checkpoint(stack: Stack) -> None:
    spec = quadratic_spec("it-dp-kill")
    with stack.client() as client:
        created = client.create_study(spec)
        killed = 0
        events: list[StudyEvent] = []
        for event in client.watch_study(created.study_id):
            events.append(event)
            if not killed and event.kind is EventKind.TRIAL_RESULT and event.trial and event.trial.epochs >= 2:
                workers = train_workers()
                assert len(workers) == 2, workers
                os.kill(workers[-1], signal.SIGKILL)
                killed = workers[-1]
        study = client.get_study(created.study_id)
    assert killed, "no worker was killed"
    assert study.state is StudyState.SUCCEEDED, study.error
    [trial] = study.trials
    assert (trial.state, trial.epochs, trial.metrics["world_size"]) == (TrialState.COMPLETED, EPOCHS, 2.0)
    starts = [e for e in events if e.kind is EventKind.TRIAL_STARTED]
    assert len(starts) == 2, "the trial ran once more, on a new worker group"
    mlflow = MlflowClient(stack.settings.mlflow_tracking_uri)
    assert sorted(m.step for m in mlflow.get_metric_history(trial.mlflow_run_id, "loss")) == [1, 2, 3, 4]


def test_a_killed_driver_resumes_its_data_parallel_trials(stack: Stack) -> None:
    """The driver dies with a 2-worker trial running (its trial actor, Train controller and workers
    go with it); the new driver resumes the study and the trial goes on from its checkpoint."""
    spec = quadratic_spec("it-dp-driver-killed")
    with stack.client() as client:
        study_id = client.create_study(spec).study_id
        wait_for_mid_study(client, study_id, ended=0, timeout_s=180)
        kill_driver(stack, client.get_study(study_id).ray_job_id)
        wait_for(lambda: client.get_study(study_id).state.is_terminal, 240, "the resumed study to end")
        study = client.get_study(study_id)
    assert study.state is StudyState.SUCCEEDED, study.error
    assert study.driver_restarts == 1
    assert [(t.state, t.epochs) for t in study.trials] == [(TrialState.COMPLETED, EPOCHS)]
    assert_one_mlflow_run_per_trial_with_every_epoch_once(stack.settings.mlflow_tracking_uri, study, epochs=EPOCHS)


def test_asha_stops_a_two_worker_trial_and_its_cpus_are_freed(stack: Stack) -> None:
    # The random sampler (seed 0) gives x = 0.3 (the optimum) first, then x = -1.0: far worse
    # at its first rung, so ASHA stops it after epoch 1 of 4.
    spec = quadratic_spec(
        "it-dp-asha",
        search_space={"x": {"categorical": [-1.0, 0.3]}},
        budget={"max_trials": 2, "max_concurrent_trials": 1},
        scheduler={"asha": {"grace_period": 1, "reduction_factor": 2}},
    )
    before = free_cpus(stack)
    with stack.client() as client:
        created = client.create_study(spec)
        stopped_at = 0.0
        for event in client.watch_study(created.study_id):
            if event.kind is EventKind.TRIAL_ENDED and event.trial and event.trial.state is TrialState.STOPPED_EARLY:
                stopped_at = time.monotonic()
                break
        assert stopped_at, "no trial was stopped early"
        while free_cpus(stack) < before and time.monotonic() - stopped_at < FREED_WITHIN_S + 5:
            time.sleep(0.2)
        freed_after = time.monotonic() - stopped_at
        study = client.wait_for_study(created.study_id, timeout_s=120)
    assert freed_after <= FREED_WITHIN_S, f"its CPUs were free only {freed_after:.1f} s after it stopped"
    assert study.state is StudyState.SUCCEEDED, study.error
    by_x = {t.config["x"]: t for t in study.trials}
    assert by_x[-1.0].state is TrialState.STOPPED_EARLY and by_x[-1.0].epochs < EPOCHS
    assert by_x[0.3].state is TrialState.COMPLETED and by_x[0.3].epochs == EPOCHS
    assert train_workers() == []


def test_a_trial_larger_than_the_cluster_is_invalid_naming_resources(stack: Stack) -> None:
    spec = quadratic_spec("it-dp-too-big", resources={"workers": 8, "cpu": 1})
    stub = rpc.AnnealServiceStub(stack.channel())
    with pytest.raises(grpc.RpcError) as refused:
        stub.CreateStudy(pb.CreateStudyRequest(spec=spec_to_pb(spec)), metadata=stack.metadata())
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "resources: a trial needs 8 worker(s) × 1 CPU" in str(refused.value.details())
    assert "the cluster holds 2 CPU and 2 GPU" in str(refused.value.details())


# ------------------------------------------------------------------ GPUs, logical ones here


def test_fractional_gpu_trials_pack_two_to_a_gpu(stack: Stack) -> None:
    """The test cluster has 2 logical GPUs: 4 trials of half a GPU run at once, two on each, and
    each reports the GPU id Ray gave it."""
    spec = quadratic_spec(
        "it-gpu-packing",
        params={"epochs": 3, "seconds_per_epoch": 1.0},  # long enough for the 4 trials to overlap
        budget={"max_trials": 4, "max_concurrent_trials": 4},
        resources={"workers": 1, "cpu": 0.25, "gpu": 0.5},
    )
    finished = run(stack, spec)
    assert finished.study.state is StudyState.SUCCEEDED, finished.study.error
    ids = sorted(t.metrics["gpu_id"] for t in finished.study.trials)
    assert ids == [0.0, 0.0, 1.0, 1.0]


# ------------------------------------------------------------------ regression end to end


def test_a_regressor_study_is_served_with_values_and_scored_by_rmse_and_r2(stack: Stack, serve_apps: list[str]) -> None:
    spec = StudySpec.parse(
        {
            "name": "it-diabetes",
            "trainer": "mlp_regressor",
            "dataset": {"name": "diabetes"},
            "params": {"epochs": 30, "batch_size": 32},
            "search_space": {"lr": {"float": {"low": 0.003, "high": 0.03, "log": True}}},
            "objective": {"metric": "val_rmse", "mode": "min"},
            "budget": {"max_trials": 2, "max_concurrent_trials": 2},
        }
    )
    study = run(stack, spec).study
    assert study.state is StudyState.SUCCEEDED, study.error
    scores = study.best_test_metrics
    assert set(scores) == {"test_rmse", "test_r2"} and 30 < scores["test_rmse"] < 80 and scores["test_r2"] > 0.2
    parent = MlflowClient(stack.settings.mlflow_tracking_uri).get_run(study.mlflow_run_id)
    assert parent.data.metrics["test_rmse"] == pytest.approx(scores["test_rmse"])
    assert parent.data.metrics["test_r2"] == pytest.approx(scores["test_r2"])
    data = load_splits("diabetes", 0.2, 0.2, 0)
    with stack.client() as client:
        deployment = client.deploy(study.study_id)
        serve_apps.append(deployment.name)
        predictions = client.predict(deployment.name, data.x_test[:5].tolist())
    assert all(len(p.values) == 1 and 0 < p.values[0] < 400 and not p.probabilities for p in predictions)
    answers = pyfunc_answers(stack, study.registered_model, study.registered_model_version, data.x_test[:5].tolist())
    # float32 sums in another process, with other threads, may round their last bit otherwise.
    assert [a["values"] for a in answers] == [pytest.approx(p.values, rel=1e-5) for p in predictions]
