"""`mlp_classifier`: a PyTorch multi-layer perceptron for tabular classification."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from trainers.builtins import MLP_CLASSIFIER
from trainers.contract import DataShape, Splits, TrainContext


class Standardize(nn.Module):
    """Feature scaling stored as buffers, so the saved weights carry it to serving."""

    mean: torch.Tensor
    scale: torch.Tensor

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("scale", torch.ones(n_features))

    def fit(self, x: torch.Tensor) -> None:
        self.mean.copy_(x.mean(dim=0))
        self.scale.copy_(x.std(dim=0).clamp_min(1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.scale


def _resolved(config: Mapping[str, Any]) -> dict[str, Any]:
    return {name: config.get(name, info.default) for name, info in MLP_CLASSIFIER.params.items()}


class MLPClassifierTrainer:
    def build_model(self, config: Mapping[str, Any], shape: DataShape) -> nn.Sequential:
        c = _resolved(config)
        hidden = int(c["hidden_size"])
        layers: list[nn.Module] = [Standardize(shape.n_features)]
        width = shape.n_features
        for _ in range(int(c["num_layers"])):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            if float(c["dropout"]) > 0:
                layers.append(nn.Dropout(float(c["dropout"])))
            width = hidden
        layers.append(nn.Linear(width, shape.n_classes))
        return nn.Sequential(*layers)

    def model_state(self, checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        state: dict[str, torch.Tensor] = checkpoint["model"]
        return state

    def predict(self, model: nn.Module, rows: torch.Tensor) -> torch.Tensor:
        model.eval()
        with torch.no_grad():
            return torch.softmax(model(rows), dim=1)

    def train(self, config: Mapping[str, Any], data: Splits, context: TrainContext) -> None:
        c = _resolved(config)
        torch.set_num_threads(max(1, context.num_threads))
        device = torch.device(context.device)
        generator = torch.Generator().manual_seed(int(c["seed"]))
        torch.manual_seed(int(c["seed"]))

        x_train, y_train = _tensors(data.x_train, data.y_train, device)
        x_val, y_val = _tensors(data.x_val, data.y_val, device)
        model = self.build_model(c, data.shape).to(device)
        scaler = model[0]
        assert isinstance(scaler, Standardize)
        scaler.fit(x_train)
        optimizer = _optimizer(model, c)
        loss_fn = nn.CrossEntropyLoss()

        start_epoch = 0
        resumed = context.load_checkpoint()
        if resumed is not None:
            model.load_state_dict(resumed["model"])
            optimizer.load_state_dict(resumed["optimizer"])
            generator.set_state(resumed["generator"])
            start_epoch = int(resumed["epoch"])

        batch_size = int(c["batch_size"])
        for epoch in range(start_epoch, int(c["epochs"])):
            model.train()
            order = torch.randperm(len(x_train), generator=generator).to(device)
            total = 0.0
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                optimizer.zero_grad()
                loss = loss_fn(model(x_train[batch]), y_train[batch])
                loss.backward()
                optimizer.step()
                total += loss.item() * len(batch)
            metrics = {"train_loss": total / len(order), **_evaluate(model, loss_fn, x_val, y_val)}
            state = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "generator": generator.get_state(),
                "epoch": epoch + 1,
            }
            context.report(metrics, checkpoint=state, final=epoch + 1 == int(c["epochs"]))


def _tensors(x: np.ndarray, y: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)


def _optimizer(model: nn.Module, c: Mapping[str, Any]) -> torch.optim.Optimizer:
    name = str(c["optimizer"])
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=float(c["lr"]), weight_decay=float(c["weight_decay"]))
    if name == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=float(c["lr"]), momentum=float(c["momentum"]), weight_decay=float(c["weight_decay"])
        )
    raise ValueError(f"optimizer must be adam or sgd, not {name!r}")


def _evaluate(model: nn.Module, loss_fn: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    model.eval()
    with torch.no_grad():
        logits = model(x)
        return {
            "val_loss": float(loss_fn(logits, y)),
            "val_accuracy": float((logits.argmax(dim=1) == y).float().mean()),
        }
