"""A study's plots on the real stack: its driver logs them under `plots/` of the study's MLflow
parent run before that run ends, and `anneal plot` draws the same ones on a client."""

from __future__ import annotations

import io
from pathlib import Path
from urllib.parse import urlparse

import pytest
from matplotlib.image import imread
from mlflow.tracking import MlflowClient
from rich.console import Console

from anneal import cli
from anneal.types import StudyState
from tests.integration.conftest import Stack, small_spec

pytestmark = pytest.mark.integration

OBJECTIVES = [{"metric": "val_accuracy", "mode": "max"}, {"metric": "num_parameters", "mode": "min"}]
PLOTS = {
    f"{kind}-{metric}.png"
    for kind in ("history", "importances", "parallel")
    for metric in ("val_accuracy", "num_parameters")
} | {"pareto-front.png", "plots.html"}


def check_pngs(directory: Path) -> None:
    for png in directory.glob("*.png"):
        height, width = imread(png).shape[:2]
        assert 200 <= width <= 4000 and 200 <= height <= 4000, (png.name, width, height)


def test_a_study_logs_its_plots_and_anneal_plot_draws_them(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = small_spec(
        "it-plots",
        params={"epochs": 2, "batch_size": 64},
        objective=None,
        objectives=OBJECTIVES,
        search={"sampler": "random", "seed": 2},
    )
    with stack.client() as client:
        study = client.wait_for_study(client.create_study(spec).study_id, timeout_s=120)
    assert study.state is StudyState.SUCCEEDED, study.error

    mlflow = MlflowClient(stack.settings.mlflow_tracking_uri)
    logged = {Path(a.path).name for a in mlflow.list_artifacts(study.mlflow_run_id, "plots")}
    assert logged == PLOTS
    downloaded = Path(mlflow.download_artifacts(study.mlflow_run_id, "plots", str(tmp_path / "logged")))
    check_pngs(downloaded)
    run = mlflow.get_run(study.mlflow_run_id).info
    stored = Path(urlparse(run.artifact_uri).path) / "plots"  # the session's artifact root is a local folder
    assert max(path.stat().st_mtime for path in stored.iterdir()) * 1000 <= run.end_time  # before the run ended

    tls = stack.certificates
    for name, value in {
        "ANNEAL_GRPC_ADDRESS": stack.address,
        "ANNEAL_TOKEN": stack.tokens["alice"],
        "ANNEAL_TLS_CA_FILE": tls.ca,
        "ANNEAL_TLS_CERT_FILE": tls.client.cert,
        "ANNEAL_TLS_KEY_FILE": tls.client.key,
    }.items():
        monkeypatch.setenv(name, value)
    printed = io.StringIO()
    monkeypatch.setattr(cli, "out", Console(file=printed))
    local = tmp_path / "local"
    assert cli.main(["plot", study.study_id, "--out", str(local)]) == 0
    assert {Path(line).name for line in printed.getvalue().splitlines()} == PLOTS
    assert {path.name for path in local.iterdir()} == PLOTS
    check_pngs(local)
