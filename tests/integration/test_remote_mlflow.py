"""MLflow as a tracking server, as a scaled-out cluster runs it: a study's model goes through the
server into its artifact store, where a Serve replica on any node can fetch it, and nothing lands
in the anneal home of the node that ran the study's driver."""

from __future__ import annotations

import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from anneal import Client, StudyState
from cluster.environment import NO_TELEMETRY_ENV
from cluster.local.cluster import free_port
from cluster.local.sessions import group_alive, spawn, stop_group
from cluster.serving.package import MODEL_FILE, WEIGHTS_FILE
from tests.integration.conftest import Stack, remove_serve_app, server_beside, settings_beside, small_spec
from trainers.datasets import load_splits

pytestmark = pytest.mark.integration

NAME = "it-remote-mlflow"
START_S = 60.0
STOP_S = 10.0
# The server's background job runner (a handful of huey consumers) serves features anneal does not use.
SERVER_ENV = {**NO_TELEMETRY_ENV, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
PACKAGE_FILES = (MODEL_FILE, WEIGHTS_FILE)


@dataclass(frozen=True)
class TrackingServer:
    uri: str
    artifacts: Path  # --artifacts-destination: where the server keeps what clients upload


@pytest.fixture
def tracking_server(tmp_path: Path) -> Iterator[TrackingServer]:
    """`mlflow server` on a free loopback port, serving artifacts, stopped with its whole session."""
    root = tmp_path / "mlflow"
    root.mkdir()
    port = free_port()
    command = [
        str(Path(sys.executable).with_name("mlflow")),
        "server",
        *("--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}"),
        *("--serve-artifacts", "--artifacts-destination", str(root / "artifacts")),
        *("--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
    ]
    log = root / "server.log"
    pid = spawn(command, {**os.environ, **SERVER_ENV}, log)
    try:
        uri = f"http://127.0.0.1:{port}"
        wait_until_healthy(uri, pid, log)
        yield TrackingServer(uri, root / "artifacts")
    finally:
        stop_group(pid, STOP_S)


def wait_until_healthy(uri: str, pid: int, log: Path) -> None:
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        assert group_alive(pid), f"mlflow server exited:\n{log.read_text()[-2000:]}"
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=1) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"mlflow server not healthy within {START_S} s:\n{log.read_text()[-2000:]}")


def files_named(root: Path, names: tuple[str, ...]) -> list[Path]:
    return [path for path in root.rglob("*") if path.name in names]


def test_a_tracking_server_keeps_the_model_its_replicas_load(
    stack: Stack, tracking_server: TrackingServer, tmp_path: Path
) -> None:
    home = tmp_path / "anneal"
    settings = settings_beside(stack, home, mlflow_tracking_uri=tracking_server.uri)
    assert settings.mlflow_artifact_root == ""  # the server's artifact store, not home/mlartifacts
    spec = small_spec(NAME, budget={"max_trials": 2, "max_concurrent_trials": 2})
    try:
        with server_beside(settings) as address, Client(address, token=stack.tokens["alice"]) as client:
            study = client.wait_for_study(client.create_study(spec).study_id, timeout_s=300)
            assert study.state is StudyState.SUCCEEDED, study.error
            client.deploy(study.study_id)
            d = spec.dataset
            data = load_splits(d.name, d.validation_fraction, d.test_fraction, d.split_seed)
            predictions = client.predict(NAME, data.x_test[:8].tolist())
            # Under another name the version is copied into that deployment's registered model.
            copied = client.deploy(study.study_id, name=f"{NAME}-copy", max_batch_size=1)
            assert (copied.registered_model, copied.model_version) == (f"alice.{NAME}-copy", 1)
            client.delete_deployment(f"{NAME}-copy")
    finally:
        remove_serve_app(stack, NAME)

    assert len(predictions) == 8 and all(abs(sum(p.probabilities) - 1) < 1e-4 for p in predictions)
    # The driver, a Ray job, recorded into the server: it got the tracking URI from its job's environment.
    mlflow = MlflowClient(tracking_server.uri)
    experiment = mlflow.get_experiment(study.mlflow_experiment_id)
    assert experiment.artifact_location.startswith("mlflow-artifacts:/")
    assert study.model_uri.startswith("mlflow-artifacts:/")
    assert len(mlflow.search_runs([experiment.experiment_id])) == 1 + 2  # the study's run and its trials'
    assert {p.name for p in files_named(tracking_server.artifacts, PACKAGE_FILES)} == set(PACKAGE_FILES)
    assert not (home / "mlartifacts").exists()
    assert files_named(home, PACKAGE_FILES) == []
    # Nor did the driver take the artifact root of the cluster's own environment (the session's home).
    assert files_named(stack.settings.home / "mlartifacts" / study.study_id, PACKAGE_FILES) == []
