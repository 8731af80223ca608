"""The function each Ray Train worker of a data-parallel trial runs, and the trainer's context there.

Every rank trains its shard; each epoch the ranks average their metrics (an all-reduce, so
every rank holds the trial's figures), and rank 0 hands them, with its checkpoint when one is
due, to the trial function through a Ray queue, from a thread of their own
(`cluster.worker.sender`) while the ranks train on. Train itself records nothing: the trial's
checkpoints are Tune's, so a retried trial and a resumed study recover as a single one does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import ray
import torch
import torch.distributed as dist
from ray import train
from ray.train import torch as train_torch
from ray.util.queue import Queue

from cluster.worker.handover import DecisionEpochs, Handover, Pacing
from cluster.worker.sender import HandoverSender, snapshot
from cluster.worker.stream import ray_data_groups
from trainers.contract import import_target
from trainers.workercontext import StudyData, WorkerContext

EPOCH = "epoch"


@dataclass(frozen=True)
class WorkerSetup:
    """What the trial function gives each of its workers."""

    target: str  # the trainer, as `package.module:name`
    config: dict[str, Any]
    data: Any  # ObjectRef of the StudyData: stored once, read by every worker
    resumed: Any  # ObjectRef of the state to go on from, or None
    start_epoch: int  # epochs trained before this attempt
    channel: Queue
    num_threads: int
    report_interval_s: float
    checkpoint_interval_s: float
    decisions: DecisionEpochs


class TrainWorkerContext(WorkerContext):
    """A trainer's context on one rank of a data-parallel trial."""

    def __init__(self, setup: WorkerSetup, data: StudyData, device: torch.device, resumed: dict[str, Any] | None):
        context = train.get_context()
        super().__init__(
            setup.config,
            data,
            device,
            rank=context.get_world_rank(),
            local_rank=context.get_local_rank(),
            world_size=context.get_world_size(),
            num_threads=setup.num_threads,
            gpu_ids=[int(i) for i in ray.get_gpu_ids()],
            group_reader=ray_data_groups,
        )
        self._setup = setup
        self._resumed = resumed
        self._epoch = setup.start_epoch
        self._pending: list[dict[str, float]] = []
        self._pacing = Pacing(setup.report_interval_s, setup.checkpoint_interval_s, setup.decisions)
        self._sender = HandoverSender(setup.channel.put)

    def report(
        self, metrics: Mapping[str, float], checkpoint: Mapping[str, Any] | None = None, *, final: bool = False
    ) -> None:
        averaged = mean_over_ranks(metrics, self.device)
        self._epoch += 1
        if self.rank != 0:
            return
        self._pending.append({**averaged, EPOCH: self._epoch})
        hand, persist = self._pacing.due(final, checkpoint is not None, self._epoch)
        if hand:
            epochs, self._pending = self._pending, []
            self._sender.wait()  # the one before has arrived: one snapshot at a time
            self._sender.send(Handover(epochs, snapshot(checkpoint) if persist else None, final))
        if final:
            self._sender.wait()

    def load_checkpoint(self) -> dict[str, Any] | None:
        return self._resumed

    def close(self) -> None:
        """Returns once the hand-overs sent have reached the trial's queue."""
        self._sender.wait()


def mean_over_ranks(metrics: Mapping[str, float], device: torch.device) -> dict[str, float]:
    """Each metric's mean over the trial's workers. Every rank must report the same names."""
    names = sorted(metrics)
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return {name: float(metrics[name]) for name in names}
    values = torch.tensor([float(metrics[name]) for name in names], dtype=torch.float64, device=device)
    dist.all_reduce(values)
    values /= dist.get_world_size()
    return dict(zip(names, values.tolist(), strict=True))


def train_worker(loop_config: dict[str, Any]) -> None:
    """The training function of each Ray Train worker: the trainer's `train` on this rank."""
    setup: WorkerSetup = loop_config["setup"]
    data: StudyData = ray.get(setup.data)
    resumed = ray.get(setup.resumed) if setup.resumed is not None else None
    context = TrainWorkerContext(setup, data, train_torch.get_device(), resumed)
    import_target(setup.target)().train(context)
    context.close()  # a trainer that never said `final` may still have a hand-over on its way
