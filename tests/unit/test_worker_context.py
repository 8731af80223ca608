"""What every trainer context shares: shards, the device, and a model trained on two workers."""

from __future__ import annotations

import os
import socket
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from trainers.datasets import load_splits
from trainers.mlp import MLPClassifierTrainer
from trainers.workercontext import LocalContext, device_for, shard_rows

CONFIG: dict[str, Any] = {"epochs": 3, "hidden_size": 16, "batch_size": 64, "lr": 0.01, "seed": 1}


@pytest.mark.parametrize("rows,world", [(10, 1), (10, 2), (11, 2), (100, 3), (2, 3)])
def test_shards_are_disjoint_and_equal_in_size(rows: int, world: int) -> None:
    x, y = np.arange(rows * 2).reshape(rows, 2), np.arange(rows)
    shards = [shard_rows(x, y, rank, world) for rank in range(world)]
    assert len({len(sy) for _, sy in shards}) == 1  # every worker takes the same number of steps
    taken = np.concatenate([sy for _, sy in shards])
    assert len(set(taken.tolist())) == len(taken) and rows - len(taken) < world
    assert all(np.array_equal(sx[:, 1] // 2, sy) for sx, sy in shards)  # rows stay whole


def test_the_device_follows_the_gpus_ray_assigned() -> None:
    assert device_for([], "0,1", cuda_available=True) == torch.device("cpu")
    assert device_for([1], "1", cuda_available=True) == torch.device("cuda", 0)
    assert device_for([5], "3,5", cuda_available=True) == torch.device("cuda", 1)  # torch counts within visible
    # Logical GPUs on a CPU build of torch: the ids are Ray's, the work stays on the CPU.
    assert device_for([0], "0", cuda_available=False) == torch.device("cpu")


def _train_rank(rank: int, port: int, results: Any) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        context = LocalContext(CONFIG, load_splits("iris", 0.2, 0.2, 0), rank=rank, world_size=2)
        MLPClassifierTrainer().train(context)
        results.put((rank, context.reports, context.checkpoint is not None))
    finally:
        dist.destroy_process_group()


def test_two_workers_train_one_model() -> None:
    """DDP keeps both ranks' weights identical (so each scores the validation rows alike), and
    only rank 0 checkpoints."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    spawn = mp.get_context("spawn")
    results = spawn.Queue()
    workers = [spawn.Process(target=_train_rank, args=(rank, port, results)) for rank in range(2)]
    for worker in workers:
        worker.start()
    answers = {rank: (reports, kept) for rank, reports, kept in (results.get(timeout=120) for _ in workers)}
    for worker in workers:
        worker.join(30)
        assert worker.exitcode == 0
    (reports_0, kept_0), (reports_1, kept_1) = answers[0], answers[1]
    assert len(reports_0) == len(reports_1) == CONFIG["epochs"]
    assert [r["val_loss"] for r in reports_0] == [r["val_loss"] for r in reports_1]
    assert [r["train_loss"] for r in reports_0] != [r["train_loss"] for r in reports_1]  # each its own shard
    assert (kept_0, kept_1) == (True, False)
