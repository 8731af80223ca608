"""`small_cnn`: two convolutions and a linear layer over 8x8 grey images.

The runtime hands every trainer flat rows (here 64 numbers an image); the model reshapes
them to its input shape, so the same model serves rows and tensors alike.
"""

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from anneal_cnn.info import SMALL_CNN
from trainers import DataShape, TrainContext


class SmallCNN(nn.Module):
    mean: torch.Tensor
    scale: torch.Tensor

    def __init__(self, channels: int, classes: int, mean: float = 0.0, scale: float = 1.0) -> None:
        super().__init__()
        # The pixels' scaling travels with the weights, so serving needs nothing else.
        self.register_buffer("mean", torch.tensor(mean))
        self.register_buffer("scale", torch.tensor(scale))
        self.body = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(2 * channels * 4 * 4, classes),
        )

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        images = rows.reshape(len(rows), *SMALL_CNN.input_shape)
        return self.body((images - self.mean) / self.scale)


class SmallCNNTrainer:
    def config(self, given: Mapping[str, Any]) -> dict[str, Any]:
        return {name: given.get(name, param.default) for name, param in SMALL_CNN.params.items()}

    def build_model(self, config: Mapping[str, Any], shape: DataShape) -> nn.Module:
        return SmallCNN(int(self.config(config)["channels"]), shape.n_outputs)

    def model_state(self, checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        return checkpoint["model"]

    def predict(self, model: nn.Module, rows: torch.Tensor) -> torch.Tensor:
        model.eval()
        with torch.no_grad():
            return torch.softmax(model(rows), dim=1)

    def train(self, context: TrainContext) -> None:
        c = self.config(context.config)
        torch.manual_seed(int(c["seed"]))
        info = context.data_info  # every training row's statistics, on every worker
        model = SmallCNN(int(c["channels"]), info.shape.n_outputs)
        model.mean.fill_(float(info.feature_mean.mean()))
        model.scale.fill_(max(float(info.feature_std.mean()), 1e-6))
        resumed = context.load_checkpoint()
        if resumed is not None:
            model.load_state_dict(resumed["model"])
        network = context.prepare_model(model)  # on the device; wrapped for N workers
        optimizer = torch.optim.Adam(network.parameters(), lr=float(c["lr"]))
        if resumed is not None:
            optimizer.load_state_dict(resumed["optimizer"])
        first = int(resumed["epoch"]) if resumed is not None else 0
        epochs = int(c["epochs"])
        batch_size = max(1, int(c["batch_size"]) // context.world_size)
        for epoch in range(first, epochs):
            network.train()
            total, rows = 0.0, 0
            for x, y in context.train_batches(batch_size, epoch=epoch, seed=int(c["seed"])):
                optimizer.zero_grad()
                loss = nn.functional.cross_entropy(network(x), y)
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(y)
                rows += len(y)
            metrics = {"train_loss": total / max(1, rows), **self.evaluate(model, context)}
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch + 1}
            context.report(metrics, checkpoint=state if context.rank == 0 else None, final=epoch + 1 == epochs)

    def evaluate(self, model: nn.Module, context: TrainContext) -> dict[str, float]:
        model.eval()
        loss, correct, rows = 0.0, 0, 0
        with torch.no_grad():
            for x, y in context.val_batches(1024):
                out = model(x)
                loss += float(nn.functional.cross_entropy(out, y, reduction="sum"))
                correct += int((out.argmax(dim=1) == y).sum())
                rows += len(y)
        return {"val_loss": loss / max(1, rows), "val_accuracy": correct / max(1, rows)}
