"""Where MLflow's artifacts go by default: under home with the embedded SQLite tracking, through
the tracking server when one is named, and the same in every process the settings reach."""

from __future__ import annotations

from pathlib import Path

import pytest

from anneal.settings import Settings, is_tracking_server
from cluster.environment import job_env

ARTIFACT_ROOT_ENV = "ANNEAL_MLFLOW_ARTIFACT_ROOT"


@pytest.fixture(autouse=True)
def no_mlflow_settings_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own `ANNEAL_MLFLOW_*` variables would decide these tests' defaults."""
    monkeypatch.delenv("ANNEAL_MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv(ARTIFACT_ROOT_ENV, raising=False)


@pytest.mark.parametrize(
    "uri",
    ["http://127.0.0.1:5000", "https://mlflow.example.com", "HTTP://10.0.0.10:5000", "databricks", "databricks://prod"],
)
def test_rest_tracking_uris_are_servers(uri: str) -> None:
    assert is_tracking_server(uri)


@pytest.mark.parametrize(
    "uri", ["sqlite:////srv/mlflow.db", "postgresql://anneal@db/mlflow", "file:///srv/mlruns", "/srv/mlruns", ""]
)
def test_databases_and_folders_are_not_servers(uri: str) -> None:
    assert not is_tracking_server(uri)


def test_embedded_tracking_keeps_artifacts_under_home(tmp_path: Path) -> None:
    settings = Settings.load(home=tmp_path)
    assert settings.mlflow_tracking_uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert settings.mlflow_artifact_root == str(tmp_path / "mlartifacts")


@pytest.mark.parametrize("uri", ["http://127.0.0.1:5000", "https://mlflow.example.com", "databricks"])
def test_a_tracking_server_keeps_the_artifacts_in_its_own_store(tmp_path: Path, uri: str) -> None:
    settings = Settings.load(home=tmp_path, mlflow_tracking_uri=uri)
    assert settings.mlflow_artifact_root == ""


def test_a_database_without_a_server_keeps_artifacts_under_home(tmp_path: Path) -> None:
    settings = Settings.load(home=tmp_path, mlflow_tracking_uri="postgresql://anneal@db/mlflow")
    assert settings.mlflow_artifact_root == str(tmp_path / "mlartifacts")


def test_an_explicit_root_is_kept_with_a_tracking_server(tmp_path: Path) -> None:
    settings = Settings.load(
        home=tmp_path, mlflow_tracking_uri="http://127.0.0.1:5000", mlflow_artifact_root="mlflow-artifacts:/anneal"
    )
    assert settings.mlflow_artifact_root == "mlflow-artifacts:/anneal"


def test_a_driver_reads_the_servers_default_back_from_its_job_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Ray job inherits the environment its cluster was started with, perhaps another home's
    artifact root: the job's own variables name the root, empty included, and replace it."""
    server = Settings.load(home=tmp_path, mlflow_tracking_uri="http://127.0.0.1:5000")
    monkeypatch.setenv(ARTIFACT_ROOT_ENV, str(tmp_path / "cluster-home" / "mlartifacts"))
    env = job_env(server)
    assert env[ARTIFACT_ROOT_ENV] == ""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    driver = Settings.load()
    assert driver.mlflow_tracking_uri == "http://127.0.0.1:5000"
    assert driver.mlflow_artifact_root == ""
