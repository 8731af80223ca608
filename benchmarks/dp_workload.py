"""The data-parallel benchmark's training work, the same in every variant, and its trainer.

One training loop (`train_epochs`) runs in all of them: in raw processes (one, or two under
torch.distributed DDP, started by torch.multiprocessing) and, through `ScalingTrainer`, inside
anneal trials of one or two workers. The loop times itself on each rank with wall-clock time
(every process is on one machine): the start of the first optimiser step, its end, and the end
of the last step. Over several ranks the timings are reduced to the latest rank's, so every
rank holds the same figures and the runtime's mean over ranks leaves them unchanged.

Like any trainer, this module knows nothing of Ray: it imports torch, numpy and the contract.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from trainers.contract import DataShape, ParamInfo, Task, TrainContext, TrainerInfo
from trainers.workercontext import shard_rows

PARAMS: dict[str, ParamInfo] = {
    "epochs": ParamInfo(3, "Passes over the training rows."),
    "batch_size": ParamInfo(1024, "Rows per optimiser step, over all workers together."),
    "hidden_size": ParamInfo(2048, "Units of each of the two hidden layers."),
    "lr": ParamInfo(0.01, "Learning rate of SGD with momentum 0.9."),
    "seed": ParamInfo(0, "Seed of initialisation and shuffling."),
}
METRICS = frozenset(
    {
        "train_loss",
        "samples_per_s",
        "entered_at",
        "first_step_at",
        "first_step_end_at",
        "last_step_end_at",
        "between_epochs_s",
        "steps",
    }
)


def info() -> TrainerInfo:
    """The registry entry, for `trainers.registry.resolve("benchmarks.dp_workload:info", allow_import_paths=True)`."""
    return TrainerInfo(
        name="bench_data_parallel",
        target="benchmarks.dp_workload:ScalingTrainer",
        description="An MLP of two wide hidden layers on synthetic rows, timing its own training phase.",
        metrics=METRICS,
        datasets=frozenset(),
        params=PARAMS,
        epochs_param="epochs",
        task=Task.CLASSIFICATION,
    )


def resolved(config: Mapping[str, Any]) -> dict[str, Any]:
    return {name: config.get(name, p.default) for name, p in PARAMS.items()}


def build_model(hidden: int, shape: DataShape) -> nn.Module:
    return nn.Sequential(
        nn.Linear(shape.n_features, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, shape.n_outputs),
    )


@dataclass
class Timing:
    """Wall-clock times (time.time()) of one run's training phase, the latest rank's over several."""

    entered_at: float = 0.0  # the trainer's code begins (before the model is built)
    first_step_at: float = 0.0  # the first optimiser step begins
    first_step_end_at: float = 0.0
    last_step_end_at: float = 0.0
    # Inside the window, between one epoch's last step and the next one's first: the epoch
    # reports (for anneal: the metrics averaged over ranks, the hand-over to the trial).
    between_epochs_s: float = 0.0
    steps: int = 0
    global_batch: int = 0

    def steady_samples_per_s(self) -> float:
        """Rows per second after the first step (which pays one-off costs: DDP's first bucket
        set-up, lazy allocations), to the end of the last step; everything between the steps
        (epoch reports, checkpoints handed over) is inside the window."""
        window = self.last_step_end_at - self.first_step_end_at
        return (self.steps - 1) * self.global_batch / window if window > 0 and self.steps > 1 else 0.0

    def latest_over_ranks(self) -> Timing:
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return self
        times = [self.entered_at, self.first_step_at, self.first_step_end_at, self.last_step_end_at]
        latest = torch.tensor([*times, self.between_epochs_s], dtype=torch.float64)
        dist.all_reduce(latest, op=dist.ReduceOp.MAX)
        entered, first, first_end, last_end, between = latest.tolist()
        return Timing(entered, first, first_end, last_end, between, self.steps, self.global_batch)


def train_epochs(
    network: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    global_batch: int,
    world_size: int,
    epochs: int,
    lr: float,
    seed: int,
    after_epoch: Callable[[int, float, Timing], None] = lambda *_: None,
    entered_at: float = 0.0,
) -> Timing:
    """SGD over this rank's rows: `global_batch // world_size` rows a step, the same number of
    steps on every rank (a partial last batch is dropped). `after_epoch(epoch, mean loss, timing
    so far)` runs after each epoch's last step, before the next epoch's first."""
    optimizer = torch.optim.SGD(network.parameters(), lr=lr, momentum=0.9)
    generator = torch.Generator().manual_seed(seed)
    batch = max(1, global_batch // world_size)
    steps_per_epoch = len(x) // batch
    if steps_per_epoch < 1:
        raise ValueError(f"{len(x)} rows per rank make no batch of {batch}")
    timing = Timing(entered_at=entered_at, global_batch=batch * world_size)
    network.train()
    for epoch in range(epochs):
        if epoch > 0:
            timing.between_epochs_s += time.time() - timing.last_step_end_at
        order = torch.randperm(len(x), generator=generator)
        total = torch.zeros(())
        for step in range(steps_per_epoch):
            if timing.steps == 0:
                timing.first_step_at = time.time()
            rows = order[step * batch : (step + 1) * batch]
            optimizer.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(network(x[rows]), y[rows])
            loss.backward()
            optimizer.step()
            total += loss.detach()
            timing.steps += 1
            if timing.steps == 1:
                timing.first_step_end_at = time.time()
        timing.last_step_end_at = time.time()
        after_epoch(epoch, float(total) / steps_per_epoch, timing)
    return timing


def timing_metrics(timing: Timing) -> dict[str, float]:
    return {
        "samples_per_s": timing.steady_samples_per_s(),
        "entered_at": timing.entered_at,
        "first_step_at": timing.first_step_at,
        "first_step_end_at": timing.first_step_end_at,
        "last_step_end_at": timing.last_step_end_at,
        "between_epochs_s": timing.between_epochs_s,
        "steps": float(timing.steps),
    }


class ScalingTrainer:
    """The benchmark's workload as an anneal trainer: on one worker or data-parallel."""

    def build_model(self, config: Mapping[str, Any], shape: DataShape) -> nn.Module:
        return build_model(int(resolved(config)["hidden_size"]), shape)

    def model_state(self, checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        state: dict[str, torch.Tensor] = checkpoint["model"]
        return state

    def predict(self, model: nn.Module, rows: torch.Tensor) -> torch.Tensor:
        model.eval()
        with torch.no_grad():
            return torch.softmax(model(rows), dim=1)

    def train(self, context: TrainContext) -> None:
        entered_at = time.time()
        c = resolved(context.config)
        torch.set_num_threads(max(1, context.num_threads))
        torch.manual_seed(int(c["seed"]))
        model = self.build_model(c, context.data.shape)
        network = context.prepare_model(model)
        x, y = (torch.from_numpy(np.ascontiguousarray(a)) for a in context.train_shard())
        epochs = int(c["epochs"])

        def report(epoch: int, loss: float, timing: Timing) -> None:
            final = epoch + 1 == epochs
            # Every rank reports every epoch; the timing figures are final at the last one.
            figures = timing_metrics(timing.latest_over_ranks() if final else timing)
            state = {"model": model.state_dict(), "epoch": epoch + 1} if context.rank == 0 else None
            context.report({"train_loss": loss, **figures}, checkpoint=state, final=final)

        train_epochs(
            network,
            x,
            y,
            int(c["batch_size"]),
            context.world_size,
            epochs,
            float(c["lr"]),
            int(c["seed"]),
            report,
            entered_at,
        )


# The raw variants: processes started by torch.multiprocessing, no Ray anywhere.


@dataclass(frozen=True)
class RawRun:
    config: dict[str, Any]
    shape: DataShape
    world_size: int
    master_port: int
    began_at: float  # when the parent started the processes


def raw_process(rank: int, run: RawRun, x: np.ndarray, y: np.ndarray, results: Any) -> None:
    """One process of the raw variant (`torch.multiprocessing.spawn`'s target): DDP over gloo
    with several, a plain model with one. Rank 0 puts its timing figures on `results`."""
    entered_at = time.time()
    c = resolved(run.config)
    torch.set_num_threads(1)
    if run.world_size > 1:
        os.environ["MASTER_ADDR"] = "127.0.0.1"
        os.environ["MASTER_PORT"] = str(run.master_port)
        dist.init_process_group("gloo", rank=rank, world_size=run.world_size)
    try:
        torch.manual_seed(int(c["seed"]))
        model = build_model(int(c["hidden_size"]), run.shape)
        network: nn.Module = model
        if run.world_size > 1:
            network = nn.parallel.DistributedDataParallel(model)
        # The same shards as anneal's `context.train_shard()`.
        shard_x, shard_y = (torch.from_numpy(np.ascontiguousarray(a)) for a in shard_rows(x, y, rank, run.world_size))
        timing = train_epochs(
            network,
            shard_x,
            shard_y,
            int(c["batch_size"]),
            run.world_size,
            int(c["epochs"]),
            float(c["lr"]),
            int(c["seed"]),
            entered_at=entered_at,
        ).latest_over_ranks()
        if rank == 0:
            results.put(asdict(timing))
        if run.world_size > 1:
            dist.barrier()  # gloo torn down on one rank while the other still uses it aborts that one
    finally:
        if run.world_size > 1:
            dist.destroy_process_group()
