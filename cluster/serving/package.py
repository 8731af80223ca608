"""The model package: what a study's best trial leaves for serving, and the model rebuilt from it.

The package is a directory with `model.json` (trainer, task, config, data shape) and
`weights.pt` (a state dict). Weights load with `weights_only=True`: no pickled code crosses from a
trial to a server. The driver writes and scores it and logs it inside an MLflow Model
(`pyfunc`); the server checks it before a deploy, and each Serve replica loads it.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from anneal.errors import FailedPrecondition
from anneal.types import Prediction
from trainers.contract import DataShape, Task, Trainer, TrainerInfo
from trainers.registry import resolve

MODEL_FILE = "model.json"
WEIGHTS_FILE = "weights.pt"
MLMODEL_FILE = "MLmodel"
PACKAGE_ARTIFACT = "package"  # the artifact key of the package inside anneal's MLflow Model


def write_model_package(
    directory: Path,
    trainer_name: str,
    task: Task,
    config: Mapping[str, Any],
    shape: DataShape,
    weights: Mapping[str, torch.Tensor],
) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    manifest = {
        "trainer": trainer_name,
        "task": task.value,
        "config": dict(config),
        "shape": {"n_features": shape.n_features, "n_outputs": shape.n_outputs},
    }
    (directory / MODEL_FILE).write_text(json.dumps(manifest, indent=2))
    torch.save(dict(weights), directory / WEIGHTS_FILE)


class LoadedModel:
    """A model rebuilt from a package directory, ready to predict."""

    def __init__(self, directory: Path, info: TrainerInfo | None = None) -> None:
        """`info` is the trainer a study driver ran (which may be one `anneal run` imported by
        path); without it the trainer must be registered: a package read from MLflow never
        makes this process import a module it names."""
        manifest = json.loads((directory / MODEL_FILE).read_text())
        info = info or resolve(manifest["trainer"])
        self.trainer: Trainer = info.load()
        self.input_shape = info.input_shape  # () for rows of numbers
        self.task = Task(manifest.get("task", info.task.value))
        shape = manifest["shape"]
        # Packages written before regression existed name the outputs n_classes.
        self.shape = DataShape(n_features=shape["n_features"], n_outputs=shape.get("n_outputs", shape.get("n_classes")))
        self.model = self.trainer.build_model(manifest["config"], self.shape)
        state = torch.load(directory / WEIGHTS_FILE, weights_only=True, map_location="cpu")
        self.model.load_state_dict(state)
        self.model.eval()

    def predict(self, rows: Sequence[Sequence[float]]) -> list[Prediction]:
        """One prediction per row, as the task answers it: a label with every class's
        probability, or the predicted values."""
        if not rows:
            return []
        out = self.outputs(torch.tensor(rows, dtype=torch.float32))
        if self.task is Task.REGRESSION:
            return [Prediction(values=row.tolist()) for row in out]
        labels = out.argmax(dim=1).tolist()
        return [Prediction(label=label, probabilities=row.tolist()) for label, row in zip(labels, out, strict=True)]

    def outputs(self, batch: torch.Tensor) -> torch.Tensor:
        """Every class's probability, or the predicted values, of each row of `batch` (rows, n_features)."""
        if batch.ndim != 2 or batch.shape[1] != self.shape.n_features:
            raise ValueError(f"each row needs {self.shape.n_features} values, got shape {tuple(batch.shape)}")
        return self.trainer.predict(self.model, batch).reshape(len(batch), -1)


def package_of(model_dir: Path) -> Path:
    """The model package of a downloaded model: inside an MLflow Model, where its MLmodel file
    says, kept inside the model's directory (the file could name any path); or the directory
    itself, for a bare package as older versions logged it."""
    if not (model_dir / MLMODEL_FILE).exists():
        return model_dir
    mlmodel = yaml.safe_load((model_dir / MLMODEL_FILE).read_text())
    try:
        relative = mlmodel["flavors"]["python_function"]["artifacts"][PACKAGE_ARTIFACT]["path"]
    except (KeyError, TypeError):
        raise ValueError(f"{MLMODEL_FILE} names no {PACKAGE_ARTIFACT!r} artifact: not an anneal model") from None
    root = model_dir.resolve()
    package = (root / str(relative)).resolve()
    if not package.is_relative_to(root):
        raise ValueError(f"{MLMODEL_FILE} puts the package outside the model: {relative!r}")
    return package


def load_from_mlflow(model_uri: str, tracking_uri: str) -> LoadedModel:
    """Fetches the model from MLflow and rebuilds it from its package, never running the model's
    code file; the copy is removed after."""
    import mlflow.artifacts

    with tempfile.TemporaryDirectory(prefix="anneal-model-") as target:
        path = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=target, tracking_uri=tracking_uri)
        return LoadedModel(package_of(Path(path)))


def check_model_package(model_uri: str, tracking_uri: str) -> None:
    """Loads the package here, as a replica would, before any replica is touched: a package that
    does not load (a tampered weights file holding a pickle, a broken manifest) is refused while
    the running version keeps serving."""
    try:
        load_from_mlflow(model_uri, tracking_uri)
    except Exception as error:
        reason = f"{type(error).__name__}: {error}".splitlines()[0][:300]
        raise FailedPrecondition(
            f"the model package {model_uri} does not load safely ({reason}); nothing was deployed"
        ) from None
