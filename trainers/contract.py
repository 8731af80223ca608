"""The trainer contract: what a workload implements, and the context it is given.

A trainer knows nothing of Ray, MLflow or gRPC. It trains from parameters and
data, reports metrics once per epoch through the context, and checkpoints its
state (plain tensors and numbers) through the context so a restarted trial can
resume. The serving side rebuilds its model from the same config.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np
    import torch


@dataclass(frozen=True)
class DataShape:
    """What a model needs to know about its data to be rebuilt."""

    n_features: int
    n_classes: int


@dataclass(frozen=True)
class Splits:
    """A dataset split three ways; test rows are never shown to a trial."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    shape: DataShape


class TrainContext(Protocol):
    """What the runtime gives a trainer."""

    @property
    def device(self) -> str:
        """The torch device to train on, e.g. "cpu" or "cuda"."""

    @property
    def num_threads(self) -> int:
        """How many CPU threads the trial may use."""

    def report(
        self, metrics: Mapping[str, float], checkpoint: Mapping[str, Any] | None = None, *, final: bool = False
    ) -> None:
        """Reports one epoch's metrics, with the state to resume from after it.

        The runtime may persist only some checkpoints (a time interval bounds the work
        a crash can lose), but always the one reported with `final=True`, the last epoch.
        The trial may end at that report: nothing after it is guaranteed to run.
        """

    def load_checkpoint(self) -> dict[str, Any] | None:
        """The state last reported, when this trial is a restart; else None."""


@dataclass(frozen=True)
class ParamInfo:
    """A parameter a trainer accepts, fixed or tuned."""

    default: Any
    description: str


class Trainer(Protocol):
    """A named workload."""

    def train(self, config: Mapping[str, Any], data: Splits, context: TrainContext) -> None:
        """Trains with `config` (fixed params and sampled values), reporting every epoch."""

    def build_model(self, config: Mapping[str, Any], shape: DataShape) -> torch.nn.Module:
        """An untrained model of the architecture `config` describes."""

    def model_state(self, checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """The model's weights inside a checkpoint this trainer reported."""

    def predict(self, model: torch.nn.Module, rows: torch.Tensor) -> torch.Tensor:
        """Class probabilities for each row."""


@dataclass(frozen=True)
class TrainerInfo:
    """A registry entry. It names its implementation lazily so that reading the
    registry (to validate a spec) imports no torch."""

    name: str
    target: str
    description: str
    metrics: frozenset[str]
    datasets: frozenset[str]
    params: Mapping[str, ParamInfo] = field(default_factory=dict)
    # The parameter that counts epochs; schedulers stop trials along it.
    epochs_param: str | None = None

    def load(self) -> Trainer:
        factory = import_target(self.target)
        trainer: Trainer = factory()
        return trainer


def import_target(target: str) -> Any:
    """The object `package.module:name` names, imported now."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"{target!r} is not of the form package.module:name")
    return getattr(importlib.import_module(module_name), attribute)
