"""Ray Serve: a model server rebuilt from trainer name, config and weights.

The model package is a directory with `model.json` (trainer, config, data shape)
and `weights.pt` (a state dict). Weights load with `weights_only=True`: no pickled
code crosses from a trial to a server.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from ray import serve
from starlette.requests import Request

from trainers.contract import DataShape, Trainer
from trainers.registry import resolve

MODEL_FILE = "model.json"
WEIGHTS_FILE = "weights.pt"
REPLICA_CPUS = 0.5


def write_model_package(
    directory: Path, trainer_name: str, config: Mapping[str, Any], shape: DataShape, weights: Mapping[str, torch.Tensor]
) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    manifest = {
        "trainer": trainer_name,
        "config": dict(config),
        "shape": {"n_features": shape.n_features, "n_classes": shape.n_classes},
    }
    (directory / MODEL_FILE).write_text(json.dumps(manifest, indent=2))
    torch.save(dict(weights), directory / WEIGHTS_FILE)


class LoadedModel:
    """A model rebuilt from a package directory, ready to predict."""

    def __init__(self, directory: Path) -> None:
        manifest = json.loads((directory / MODEL_FILE).read_text())
        self.trainer: Trainer = resolve(manifest["trainer"]).load()
        self.shape = DataShape(**manifest["shape"])
        self.model = self.trainer.build_model(manifest["config"], self.shape)
        state = torch.load(directory / WEIGHTS_FILE, weights_only=True, map_location="cpu")
        self.model.load_state_dict(state)
        self.model.eval()

    def predict(self, rows: Sequence[Sequence[float]]) -> list[tuple[int, list[float]]]:
        if not rows:
            return []
        batch = torch.tensor(rows, dtype=torch.float32)
        if batch.ndim != 2 or batch.shape[1] != self.shape.n_features:
            raise ValueError(f"each row needs {self.shape.n_features} values, got shape {tuple(batch.shape)}")
        probabilities = self.trainer.predict(self.model, batch)
        labels = probabilities.argmax(dim=1)
        return [(int(label), row.tolist()) for label, row in zip(labels, probabilities, strict=True)]


def load_from_mlflow(model_uri: str, tracking_uri: str) -> LoadedModel:
    """Fetches the model package from MLflow and rebuilds the model; the copy is removed after."""
    import mlflow.artifacts

    with tempfile.TemporaryDirectory(prefix="anneal-model-") as target:
        path = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=target, tracking_uri=tracking_uri)
        return LoadedModel(Path(path))


@serve.deployment(ray_actor_options={"num_cpus": REPLICA_CPUS})
class ModelServer:
    """One replica of a deployed model: `predict` for handles, JSON over HTTP."""

    def __init__(self, model_uri: str, tracking_uri: str) -> None:
        torch.set_num_threads(1)
        self.loaded = load_from_mlflow(model_uri, tracking_uri)

    async def predict(self, rows: list[list[float]]) -> list[tuple[int, list[float]]]:
        return self.loaded.predict(rows)

    async def __call__(self, request: Request) -> dict[str, Any]:
        body = await request.json()
        rows = body.get("rows", body.get("instances")) if isinstance(body, dict) else None
        if not isinstance(rows, list):
            return {"error": 'send {"rows": [[...], ...]}'}
        try:
            predictions = self.loaded.predict(rows)
        except (ValueError, TypeError) as error:
            return {"error": str(error)}
        return {"predictions": [{"label": label, "probabilities": probs} for label, probs in predictions]}


def app_name(owner: str, name: str) -> str:
    """The Serve application of `owner`'s deployment `name` (names are unique per owner; neither
    holds a dot)."""
    return f"{owner}.{name}" if owner else name


def route_for(owner: str, name: str) -> str:
    return f"/models/{owner}/{name}" if owner else f"/models/{name}"


def check_model_package(model_uri: str, tracking_uri: str) -> None:
    """Loads the package here, as a replica would, before any replica is touched: a package that
    does not load (a tampered weights file holding a pickle, a broken manifest) is refused while
    the running version keeps serving."""
    from anneal.errors import FailedPrecondition

    try:
        load_from_mlflow(model_uri, tracking_uri)
    except Exception as error:
        reason = f"{type(error).__name__}: {error}".splitlines()[0][:300]
        raise FailedPrecondition(
            f"the model package {model_uri} does not load safely ({reason}); nothing was deployed"
        ) from None


def deploy_model(owner: str, name: str, model_uri: str, tracking_uri: str, replicas: int, http_port: int) -> str:
    """Starts (or updates) the Serve application of `owner`'s `name`; returns once it is running."""
    serve.start(http_options={"host": "127.0.0.1", "port": http_port})
    app = ModelServer.options(num_replicas=replicas).bind(model_uri, tracking_uri)  # type: ignore[attr-defined]
    serve.run(app, name=app_name(owner, name), route_prefix=route_for(owner, name))
    return route_for(owner, name)
