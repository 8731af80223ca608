"""`mlp_classifier` and `mlp_regressor`: PyTorch multi-layer perceptrons for tabular data, on
one worker or data-parallel on several. They share the network and the training loop; the
task decides the output layer, the loss and the metrics."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from trainers.builtins import MLP_CLASSIFIER, MLP_REGRESSOR
from trainers.contract import DataShape, TrainContext, TrainerInfo
from trainers.scores import RegressionTally

# Validation rows scored at once; the bundled datasets' fit in one batch.
VALIDATION_BATCH = 4096


class Standardize(nn.Module):
    """Scaling stored as buffers, so the saved weights carry it to serving: `forward` maps raw
    values to standard ones, `invert` maps them back (a regressor's output)."""

    mean: torch.Tensor
    scale: torch.Tensor

    def __init__(self, width: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("scale", torch.ones(width))

    def set(self, mean: np.ndarray | None, deviation: np.ndarray | None) -> None:
        """Scaling by the training rows' statistics (`DataInfo`), the same on every worker."""
        if mean is None or deviation is None:
            raise ValueError("the data has no statistics for this scaling")
        self.mean.copy_(torch.from_numpy(np.asarray(mean, dtype=np.float32)).reshape(self.mean.shape))
        self.scale.copy_(
            torch.from_numpy(np.asarray(deviation, dtype=np.float32)).reshape(self.scale.shape).clamp_min(1e-6)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.scale

    def invert(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.scale + self.mean


class MLP(nn.Module):
    """Standardised features, hidden layers, and an output layer: class logits, or standardised
    targets turned back into raw values (`targets` holds their scaling)."""

    def __init__(self, config: Mapping[str, Any], shape: DataShape, regression: bool) -> None:
        super().__init__()
        hidden = int(config["hidden_size"])
        self.features = Standardize(shape.n_features)
        layers: list[nn.Module] = []
        width = shape.n_features
        for _ in range(int(config["num_layers"])):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            if float(config["dropout"]) > 0:
                layers.append(nn.Dropout(float(config["dropout"])))
            width = hidden
        layers.append(nn.Linear(width, shape.n_outputs))
        self.body = nn.Sequential(*layers)
        self.targets = Standardize(shape.n_outputs) if regression else None

    def standard(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, or the standardised targets the loss compares."""
        out: torch.Tensor = self.body(self.features(x))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.standard(x)
        return self.targets.invert(out) if self.targets is not None else out

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        return super().load_state_dict(_current_keys(state_dict), strict=strict, assign=assign)


def _current_keys(state: Mapping[str, Any]) -> dict[str, Any]:
    """Weights saved by the first mlp_classifier, one flat Sequential (scaling first), under
    this model's names, so its packages still load and serve."""
    if "0.mean" not in state:
        return dict(state)
    renamed: dict[str, Any] = {}
    for key, value in state.items():
        index, _, rest = key.partition(".")
        renamed[f"features.{rest}" if index == "0" else f"body.{int(index) - 1}.{rest}"] = value
    return renamed


class _Standard(nn.Module):
    """Trains on `MLP.standard`: the (DDP-wrapped) module's forward is what the loss sees."""

    def __init__(self, mlp: MLP) -> None:
        super().__init__()
        self.mlp = mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp.standard(x)


class MLPTrainer:
    info: TrainerInfo = MLP_CLASSIFIER

    @property
    def regression(self) -> bool:
        return self.info is MLP_REGRESSOR

    def resolved(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return {name: config.get(name, info.default) for name, info in self.info.params.items()}

    def build_model(self, config: Mapping[str, Any], shape: DataShape) -> MLP:
        return MLP(self.resolved(config), shape, self.regression)

    def model_state(self, checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        state: dict[str, torch.Tensor] = checkpoint["model"]
        return state

    def predict(self, model: nn.Module, rows: torch.Tensor) -> torch.Tensor:
        model.eval()
        with torch.no_grad():
            out: torch.Tensor = model(rows)
            return out if self.regression else torch.softmax(out, dim=1)

    def train(self, context: TrainContext) -> None:
        c = self.resolved(context.config)
        torch.set_num_threads(max(1, context.num_threads))
        device = context.device
        seed = int(c["seed"])
        torch.manual_seed(seed)

        info = context.data_info
        model = self.build_model(c, info.shape)
        # Scaling from every training row, not the shard: the same on every worker.
        model.features.set(info.feature_mean, info.feature_std)
        if model.targets is not None:
            model.targets.set(info.target_mean, info.target_std)
        resumed = context.load_checkpoint()
        if resumed is not None:
            model.load_state_dict(resumed["model"])
        model.to(device)
        network = context.prepare_model(_Standard(model))
        optimizer = _optimizer(network, c)
        start_epoch = 0
        if resumed is not None:
            optimizer.load_state_dict(resumed["optimizer"])
            start_epoch = int(resumed["epoch"])

        # batch_size is the global batch: each of N workers takes 1/N of it per step.
        batch_size = max(1, int(c["batch_size"]) // context.world_size)
        epochs = int(c["epochs"])
        # The model's size: a second objective to trade against its score (smaller serves faster).
        size = {"num_parameters": float(sum(p.numel() for p in model.parameters()))}
        for epoch in range(start_epoch, epochs):
            network.train()
            total = torch.zeros((), device=device)
            rows = 0
            for x, y in context.train_batches(batch_size, epoch=epoch, seed=seed):
                optimizer.zero_grad()
                loss = self._loss(model, network(x), y)
                loss.backward()
                optimizer.step()
                total += loss.detach() * len(y)
                rows += len(y)
            metrics = {"train_loss": float(total) / max(1, rows), **self._evaluate(model, context), **size}
            state = None
            if context.rank == 0:
                state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch + 1}
            context.report(metrics, checkpoint=state, final=epoch + 1 == epochs)

    def _loss(self, model: MLP, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if model.targets is None:
            return nn.functional.cross_entropy(out, y)
        return nn.functional.mse_loss(out, model.targets(_as_columns(y)))

    def _evaluate(self, model: MLP, context: TrainContext) -> dict[str, float]:
        """Loss and scores over this worker's validation rows, batch by batch."""
        model.eval()
        loss, rows, correct = 0.0, 0, 0
        tally = RegressionTally()
        with torch.no_grad():
            for x, y in context.val_batches(VALIDATION_BATCH):
                out = model.standard(x)
                loss += float(self._loss(model, out, y)) * len(y)
                rows += len(y)
                if model.targets is None:
                    correct += int((out.argmax(dim=1) == y).sum())
                else:
                    tally.add(model.targets.invert(out).cpu().numpy(), y.cpu().numpy())
        scores = {"val_accuracy": correct / max(1, rows)} if model.targets is None else tally.scores("val_")
        return {"val_loss": loss / max(1, rows), **scores}


class MLPClassifierTrainer(MLPTrainer):
    info = MLP_CLASSIFIER


class MLPRegressorTrainer(MLPTrainer):
    info = MLP_REGRESSOR


def _as_columns(y: torch.Tensor) -> torch.Tensor:
    return y.reshape(len(y), -1)


def _optimizer(model: nn.Module, c: Mapping[str, Any]) -> torch.optim.Optimizer:
    name = str(c["optimizer"])
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=float(c["lr"]), weight_decay=float(c["weight_decay"]))
    if name == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=float(c["lr"]), momentum=float(c["momentum"]), weight_decay=float(c["weight_decay"])
        )
    raise ValueError(f"optimizer must be adam or sgd, not {name!r}")
