"""`quadratic`: a known objective and no training, to measure and test the machinery around trials.

Its model is a constant classifier (zero weights), so a study of it can be packaged and
served like any other. For fault-injection tests it can crash: from `crash_at_epoch` on,
right after an epoch's report (whose checkpoint counts the crash), until it has crashed
`crashes` times. A trial restarted from that checkpoint goes on from the next epoch.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from trainers.builtins import QUADRATIC
from trainers.contract import DataShape, TrainContext


def loss_at(x: float, y: float) -> float:
    return (x - 0.3) ** 2 + (y + 0.2) ** 2


def where(context: TrainContext) -> dict[str, float]:
    """The GPU Ray assigned the trial (-1 for none) and its world size: what placement tests check."""
    gpu_ids = context.gpu_ids
    return {"gpu_id": float(gpu_ids[0]) if gpu_ids else -1.0, "world_size": float(context.world_size)}


class InjectedCrash(RuntimeError):
    """The crash `crash_at_epoch` asks for."""


class QuadraticTrainer:
    def build_model(self, config: Mapping[str, Any], shape: DataShape) -> nn.Module:
        return nn.Linear(shape.n_features, shape.n_outputs)

    def model_state(self, checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        state: dict[str, torch.Tensor] = checkpoint["model"]
        return state

    def predict(self, model: nn.Module, rows: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.softmax(model(rows), dim=1)

    def train(self, context: TrainContext) -> None:
        c = {name: context.config.get(name, info.default) for name, info in QUADRATIC.params.items()}
        model = self.build_model(c, context.data.shape)
        nn.init.zeros_(model.weight)  # type: ignore[arg-type]
        nn.init.zeros_(model.bias)  # type: ignore[arg-type]
        resumed = context.load_checkpoint()
        start = int(resumed["epoch"]) if resumed else 0
        crashed = int(resumed.get("crashed", 0)) if resumed else 0
        for epoch in range(start, int(c["epochs"])):
            if float(c["seconds_per_epoch"]) > 0:
                time.sleep(float(c["seconds_per_epoch"]))
            crash = 0 < int(c["crash_at_epoch"]) <= epoch + 1 and crashed < int(c["crashes"])
            crashed += crash
            context.report(
                {"loss": loss_at(float(c["x"]), float(c["y"])), **where(context)},
                checkpoint={"model": model.state_dict(), "epoch": epoch + 1, "crashed": crashed},
                final=epoch + 1 == int(c["epochs"]) and not crash,
            )
            if crash:
                raise InjectedCrash(f"injected crash {crashed} of {c['crashes']} after epoch {epoch + 1}")
