"""One replica of a deployed model, a Ray Serve actor: `predict` for handles, JSON over HTTP.

Over HTTP each row answers `{"label", "probabilities"}` (classification) or `{"values"}`
(regression): `Prediction.answer`."""

from __future__ import annotations

from typing import Any

import torch
from ray import serve
from starlette.requests import Request

from anneal.types import Prediction
from cluster.serving.package import load_from_mlflow

REPLICA_CPUS = 0.5


class RowsRefused(ValueError):
    """The model refused the rows it was sent (their width, their shape): the caller's error,
    told apart from any other error on the way to and from a replica."""


@serve.deployment(ray_actor_options={"num_cpus": REPLICA_CPUS})
class ModelServer:
    """One replica of a deployed model: `predict` for handles, JSON over HTTP."""

    def __init__(self, model_uri: str, tracking_uri: str) -> None:
        torch.set_num_threads(1)
        self.loaded = load_from_mlflow(model_uri, tracking_uri)

    async def predict(self, rows: list[list[float]]) -> list[Prediction]:
        try:
            return self.loaded.predict(rows)
        except (ValueError, TypeError) as error:
            raise RowsRefused(str(error)) from None

    async def __call__(self, request: Request) -> dict[str, Any]:
        body = await request.json()
        rows = body.get("rows", body.get("instances")) if isinstance(body, dict) else None
        if not isinstance(rows, list):
            return {"error": 'send {"rows": [[...], ...]}'}
        try:
            predictions = self.loaded.predict(rows)
        except (ValueError, TypeError) as error:
            return {"error": str(error)}
        return {"predictions": [prediction.answer() for prediction in predictions]}
