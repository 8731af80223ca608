"""`ray job submit -- anneal run spec.yaml` runs a spec as a standalone job and records it like any study."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from anneal import StudyState
from cluster.store.store import Store
from tests.integration.conftest import REPO, Stack

pytestmark = pytest.mark.integration


def test_ray_job_submit_runs_a_spec(stack: Stack) -> None:
    ray_cli = str(Path(sys.executable).parent / "ray")
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_ADDRESS": stack.settings.ray_dashboard_url}
    command = [ray_cli, "job", "submit", "--working-dir", ".", "--", "anneal", "run", "examples/iris.yaml"]
    finished = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    assert "SUCCEEDED" in finished.stdout
    # Tune's loggers are off (the writer records every epoch); its summary must not say it missed their files.
    assert "Could not fetch metrics" not in finished.stdout + finished.stderr

    studies = [s for s in Store(stack.settings.store_url).list_studies() if s.name == "iris-quick"]
    assert len(studies) == 1
    study = studies[0]
    assert study.state is StudyState.SUCCEEDED
    assert len(study.trials) == 3
    runs = MlflowClient(stack.settings.mlflow_tracking_uri).search_runs([study.mlflow_experiment_id])
    assert sum(1 for r in runs if r.data.tags.get("mlflow.parentRunId") == study.mlflow_run_id) == 3
