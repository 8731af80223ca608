"""The trainer contract, version 2: what a workload implements, and the context it is given.

A trainer knows nothing of Ray, MLflow or gRPC. Its `train` runs on every worker of a trial
(one, or N training data-parallel) and gets a `TrainContext`: the config, the device the
runtime assigned, rank and world size, its shard of the training rows, a way to prepare
its model for N workers, and `report`/`load_checkpoint`. It reports metrics once per epoch
and checkpoints its state (plain tensors and numbers) so a restarted trial can resume. The
serving side rebuilds its model from the same config and follows the trainer's task.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from anneal.types import Task

if TYPE_CHECKING:
    import numpy as np
    import torch


@dataclass(frozen=True)
class DataShape:
    """What a model needs to know about its data to be rebuilt."""

    n_features: int
    n_outputs: int  # classes for classification, target values for regression


@dataclass(frozen=True)
class DataInfo:
    """What a trainer knows of its data without reading rows: shapes, sizes, and statistics of
    every training row (the same on every worker, whatever its shard)."""

    shape: DataShape
    train_rows: int
    val_rows: int
    feature_mean: np.ndarray  # (n_features,) float32
    feature_std: np.ndarray  # (n_features,) float32, sample deviation
    target_mean: np.ndarray | None = None  # (n_outputs,) for regression
    target_std: np.ndarray | None = None


@dataclass(frozen=True)
class Splits:
    """A dataset split three ways; test rows are never shown to a trial. Labels are int64
    class indices for classification, float32 targets (n,) or (n, k) for regression."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    shape: DataShape

    def info(self) -> DataInfo:
        import numpy as np

        targets = None if self.y_train.dtype == np.int64 else self.y_train.reshape(len(self.y_train), -1)
        return DataInfo(
            shape=self.shape,
            train_rows=len(self.y_train),
            val_rows=len(self.y_val),
            feature_mean=self.x_train.mean(axis=0, dtype=np.float64).astype(np.float32),
            feature_std=self.x_train.std(axis=0, ddof=1, dtype=np.float64).astype(np.float32),
            target_mean=None if targets is None else targets.mean(axis=0, dtype=np.float64).astype(np.float32),
            target_std=None if targets is None else targets.std(axis=0, ddof=1, dtype=np.float64).astype(np.float32),
        )


class TrainContext(Protocol):
    """What the runtime gives a trainer on each worker."""

    @property
    def config(self) -> Mapping[str, Any]:
        """The trial's parameters: the spec's fixed params with the sampled values."""

    @property
    def data(self) -> Splits:
        """Every split, on every worker, for a dataset held in memory (the bundled ones, a
        small CSV file); a table dataset, streamed, has none: use `data_info` and the batches."""

    @property
    def data_info(self) -> DataInfo:
        """The model's shape and the training rows' statistics, for any dataset."""

    @property
    def device(self) -> torch.device:
        """The torch device to train on: a GPU Ray assigned to this worker, or the CPU."""

    @property
    def gpu_ids(self) -> tuple[int, ...]:
        """The GPUs Ray assigned this worker, numbered as the cluster numbers them; empty on the CPU."""

    @property
    def rank(self) -> int:
        """This worker's rank among the trial's workers, 0 to world_size - 1."""

    @property
    def local_rank(self) -> int:
        """This worker's rank among the trial's workers on its node."""

    @property
    def world_size(self) -> int:
        """How many workers train this trial."""

    @property
    def num_threads(self) -> int:
        """How many CPU threads this worker may use."""

    def train_shard(self) -> tuple[np.ndarray, np.ndarray]:
        """This worker's rows of the training split, for a dataset held in memory: all of them
        on one worker; on N, a disjoint 1/N each, equal in size (up to N - 1 rows are left out)
        so every worker takes the same number of steps."""

    def train_batches(
        self, batch_size: int, *, epoch: int, seed: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch over this worker's shard of the training rows, shuffled by (seed, epoch),
        as (features (rows, n_features) float32, labels) on `device`; every worker gets the
        same number of batches. Works for every dataset: a table is streamed (its row groups,
        in a seeded order, are cut into equal runs of rows, one per worker: up to N - 1 rows
        sit out an epoch; rows are shuffled within each group)."""

    def val_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This worker's validation rows in order, in batches on `device`: all of them on one
        worker; on N, of a table, a share each, every row in one share (the trial's metrics
        are the mean over workers)."""

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model on this worker's device; wrapped for data-parallel training (gradients
        averaged across workers) when there are several. Checkpoint the unwrapped model."""

    def report(
        self, metrics: Mapping[str, float], checkpoint: Mapping[str, Any] | None = None, *, final: bool = False
    ) -> None:
        """Reports one epoch's metrics, with the state to resume from after it. Every worker
        reports every epoch; the trial's metrics are the mean over workers. Only rank 0's
        checkpoint is kept (the others may pass None).

        The runtime may persist only some checkpoints (a time interval bounds the work
        a crash can lose), but always the one reported with `final=True`, the last epoch.
        The trial may end at that report: nothing after it is guaranteed to run.
        """

    def load_checkpoint(self) -> dict[str, Any] | None:
        """The state last persisted, on every worker, when this trial is a restart; else None."""


@dataclass(frozen=True)
class ParamInfo:
    """A parameter a trainer accepts, fixed or tuned."""

    default: Any
    description: str


class Trainer(Protocol):
    """A named workload."""

    def train(self, context: TrainContext) -> None:
        """Trains with `context.config`, reporting every epoch; runs on each of the trial's workers."""

    def build_model(self, config: Mapping[str, Any], shape: DataShape) -> torch.nn.Module:
        """An untrained model of the architecture `config` describes."""

    def model_state(self, checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """The model's weights inside a checkpoint this trainer reported."""

    def predict(self, model: torch.nn.Module, rows: torch.Tensor) -> torch.Tensor:
        """For each row: class probabilities (classification) or predicted values (regression)."""


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
    task: Task = Task.CLASSIFICATION
    # What one example given to the model is: () for a row of the dataset's numeric features,
    # else a tensor of this shape (e.g. (1, 8, 8)), read from a fixed-size array column or
    # from a row's numbers reshaped.
    input_shape: tuple[int, ...] = ()

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
