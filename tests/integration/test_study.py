"""A study submitted through the client runs on Ray Tune, lands in the store and MLflow, and streams its events."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow.models import Model
from mlflow.tracking import MlflowClient

from anneal import Study, StudyEvent, StudySpec, StudyState, TrialState
from anneal.types import EventKind
from tests.integration.conftest import Stack, small_spec
from trainers.datasets import load_arrays

pytestmark = pytest.mark.integration


@dataclass
class Finished:
    study: Study
    events: list[StudyEvent]


@pytest.fixture(scope="module")
def finished(stack: Stack) -> Iterator[Finished]:
    with stack.client() as client:
        created = client.create_study(small_spec("it-digits"))
        assert created.state is StudyState.PENDING
        assert created.ray_job_id
        events = list(client.watch_study(created.study_id))  # live, until the study ends
        yield Finished(client.get_study(created.study_id), events)


def test_study_completes_with_every_trial(finished: Finished) -> None:
    study = finished.study
    assert study.state is StudyState.SUCCEEDED, study.error
    assert len(study.trials) == 4
    assert all(t.state is TrialState.COMPLETED and t.epochs == 4 for t in study.trials)
    assert study.best_trial is not None
    best = max(t.metrics["val_accuracy"] for t in study.trials)
    assert study.best_trial.metrics["val_accuracy"] == best
    assert set(study.best_trial.config) == {"lr", "hidden_size", "optimizer"}
    assert 0.8 < study.best_test_metrics["test_accuracy"] <= 1.0
    assert study.registered_model == "alice.it-digits" and study.registered_model_version >= 1  # per owner


def test_watch_streams_every_trial_end(finished: Finished) -> None:
    kinds = [e.kind for e in finished.events]
    assert kinds[0] is EventKind.STUDY_STARTED
    assert kinds[-1] is EventKind.STUDY_ENDED
    assert finished.events[-1].study_state is StudyState.SUCCEEDED
    ended = {e.trial.trial_id for e in finished.events if e.kind is EventKind.TRIAL_ENDED and e.trial}
    assert ended == {t.trial_id for t in finished.study.trials}
    sequences = [e.sequence for e in finished.events]
    assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)


def test_watch_resumes_after_a_sequence(stack: Stack, finished: Finished) -> None:
    middle = finished.events[len(finished.events) // 2].sequence
    with stack.client() as client:
        rest = list(client.watch_study(finished.study.study_id, after_sequence=middle))
    assert [e.sequence for e in rest] == [e.sequence for e in finished.events if e.sequence > middle]


def test_mlflow_has_one_child_run_per_trial_with_its_metrics(stack: Stack, finished: Finished) -> None:
    mlflow = MlflowClient(tracking_uri=stack.settings.mlflow_tracking_uri)
    study = finished.study
    runs = mlflow.search_runs([study.mlflow_experiment_id], max_results=1000)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == study.mlflow_run_id]
    assert len(children) == len(study.trials) == 4
    by_trial = {r.data.tags["anneal.trial_id"]: r for r in children}
    assert set(by_trial) == {t.trial_id for t in study.trials}
    for trial in study.trials:
        run = by_trial[trial.trial_id]
        assert run.info.run_id == trial.mlflow_run_id
        assert run.info.status == "FINISHED"
        history = mlflow.get_metric_history(run.info.run_id, "val_accuracy")
        assert [m.step for m in sorted(history, key=lambda m: m.step)] == [1, 2, 3, 4]
        assert run.data.metrics["val_accuracy"] == pytest.approx(trial.metrics["val_accuracy"])
        assert float(run.data.params["lr"]) == pytest.approx(float(trial.config["lr"]))
        assert run.data.params["epochs"] == "4"
    parent = mlflow.get_run(study.mlflow_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["anneal.best_trial_id"] == study.best_trial.trial_id  # type: ignore[union-attr]
    (model,) = mlflow.search_logged_models(experiment_ids=[study.mlflow_experiment_id])
    assert model.source_run_id == study.mlflow_run_id and model.status == "READY"
    version = mlflow.get_model_version(study.registered_model, str(study.registered_model_version))
    assert version.run_id == study.mlflow_run_id and version.source == f"models:/{model.model_id}"
    assert json.loads(model.tags["mlflow.modelVersions"]) == [{"name": version.name, "version": version.version}]
    assert study.model_uri == model.artifact_location
    files = {a.path for a in mlflow.list_logged_model_artifacts(model.model_id)}
    assert {"MLmodel", "mlflow_model.py", "input_example.json", "requirements.txt"} <= files
    assert not any(path.endswith((".pkl", ".pyc")) for path in files)
    signature = Model.load(model.artifact_location).signature
    assert signature.inputs.to_dict() == [{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": (-1, 64)}}]
    assert signature.outputs.input_names() == ["label", "probabilities"]


def test_list_studies_includes_it(stack: Stack, finished: Finished) -> None:
    with stack.client() as client:
        assert finished.study.study_id in {s.study_id for s in client.list_studies()}


def test_a_study_reads_its_csv_under_a_data_root(stack: Stack) -> None:
    root = Path(stack.settings.data_roots[0])
    root.mkdir(parents=True, exist_ok=True)
    x, y = load_arrays("iris")
    with (root / "iris-copy.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([f"f{i}" for i in range(x.shape[1])] + ["label"])
        writer.writerows([*map(float, row), int(label)] for row, label in zip(x, y, strict=True))
    spec = StudySpec.parse(
        {
            "name": "it-csv",
            "trainer": "mlp_classifier",
            "dataset": {"name": "iris-copy", "path": "iris-copy.csv"},
            "params": {"epochs": 3, "batch_size": 32},
            "search_space": {"lr": {"float": {"low": 0.01, "high": 0.1, "log": True}}},
            "objective": {"metric": "val_accuracy", "mode": "max"},
            "budget": {"max_trials": 1, "max_concurrent_trials": 1},
        }
    )
    with stack.client("alice") as client:
        study = client.wait_for_study(client.create_study(spec).study_id, timeout_s=300)
    assert study.state is StudyState.SUCCEEDED, study.error
    assert study.best_test_metrics["test_accuracy"] > 0
