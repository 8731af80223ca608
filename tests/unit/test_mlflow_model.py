"""anneal's MLflow Model: saved from a model package with its signature, loaded back by
anneal without running its code, and refused when its MLmodel file points outside it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from cluster.serving.package import MLMODEL_FILE, LoadedModel, package_of, write_model_package
from cluster.serving.pyfunc import AnnealPyfunc, model_requirements, save_mlflow_model
from trainers.contract import DataShape, Task
from trainers.registry import resolve


def _package(directory: Path, trainer: str, task: Task, shape: DataShape) -> Path:
    torch.manual_seed(0)
    config = {"hidden_size": 8}
    model = resolve(trainer).load().build_model(config, shape)
    write_model_package(directory, trainer, task, config, shape, model.state_dict())
    return directory


@pytest.mark.parametrize(
    ("trainer", "task", "outputs"),
    [
        ("mlp_classifier", Task.CLASSIFICATION, ["label", "probabilities"]),
        ("mlp_regressor", Task.REGRESSION, ["values"]),
    ],
)
def test_the_saved_model_has_a_signature_and_predicts_as_the_package(
    tmp_path: Path, trainer: str, task: Task, outputs: list[str]
) -> None:
    package = _package(tmp_path / "package", trainer, task, DataShape(n_features=5, n_outputs=3))
    loaded = LoadedModel(package)
    save_mlflow_model(tmp_path / "model", loaded, package, model_requirements())

    from mlflow.models import Model

    saved = Model.load(str(tmp_path / "model"))
    assert saved.signature is not None
    assert saved.signature.inputs.to_dict() == [
        {"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": (-1, 5)}}
    ]
    assert saved.signature.outputs.input_names() == outputs
    assert not (tmp_path / "model" / "__pycache__").exists()
    requirements = (tmp_path / "model" / "requirements.txt").read_text()
    assert "anneal==" in requirements and "torch==" in requirements

    rows = np.random.default_rng(1).normal(size=(4, 5)).astype(np.float32)
    from_package = LoadedModel(package_of(tmp_path / "model")).predict(rows.tolist())
    pyfunc = AnnealPyfunc()
    pyfunc.loaded = loaded
    frame = pyfunc.predict(None, rows)
    if task is Task.REGRESSION:
        assert frame["values"].tolist() == [p.values for p in from_package]
    else:
        assert frame["label"].tolist() == [p.label for p in from_package]
        assert frame["probabilities"].tolist() == [p.probabilities for p in from_package]


def test_a_bare_package_is_its_own_package(tmp_path: Path) -> None:
    package = _package(tmp_path, "mlp_classifier", Task.CLASSIFICATION, DataShape(n_features=4, n_outputs=2))
    assert package_of(package) == package


@pytest.mark.parametrize(
    ("artifacts", "error"),
    [
        ({"package": {"path": "../../etc"}}, "outside the model"),
        ({"package": {"path": "/etc"}}, "outside the model"),
        ({}, "not an anneal model"),
    ],
)
def test_an_mlmodel_naming_a_package_elsewhere_is_refused(tmp_path: Path, artifacts: dict, error: str) -> None:
    (tmp_path / MLMODEL_FILE).write_text(yaml.safe_dump({"flavors": {"python_function": {"artifacts": artifacts}}}))
    with pytest.raises(ValueError, match=error):
        package_of(tmp_path)
