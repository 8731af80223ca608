"""A conditional search space on the real stack: a parameter tuned only under its parent's
value reaches a trial, GetStudy and MLflow only when it is active, and the built-in trainer
trains with or without it."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from anneal.types import StudyState
from tests.integration.conftest import Stack, small_spec

pytestmark = pytest.mark.integration


def test_a_conditional_parameter_is_tuned_only_under_its_parent(stack: Stack) -> None:
    spec = small_spec(
        "it-conditional",
        search_space={
            "lr": {"float": {"low": 1e-3, "high": 3e-2, "log": True}},
            "optimizer": {"categorical": ["adam", "sgd"]},
            "momentum": {"float": {"low": 0.5, "high": 0.99}, "when": {"optimizer": ["sgd"]}},
        },
        search={"sampler": "random", "seed": 3},
        budget={"max_trials": 6, "max_concurrent_trials": 2},
    )
    with stack.client() as client:
        study = client.wait_for_study(client.create_study(spec).study_id, timeout_s=300)
    assert study.state is StudyState.SUCCEEDED, study.error
    assert study.spec.search_space["momentum"].when == {"optimizer": ["sgd"]}
    assert {t.config["optimizer"] for t in study.trials} == {"adam", "sgd"}
    mlflow = MlflowClient(stack.settings.mlflow_tracking_uri)
    for trial in study.trials:
        sgd = trial.config["optimizer"] == "sgd"
        assert ("momentum" in trial.config) == sgd, trial.config
        assert ("momentum" in mlflow.get_run(trial.mlflow_run_id).data.params) == sgd
