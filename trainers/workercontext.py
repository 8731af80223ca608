"""The parts of a trainer's context that are the same wherever it runs: its shard of the rows,
its device, and its model prepared for one or N workers. Free of Ray, so the GPU check and the
unit tests run trainers through the same code a trial does (`LocalContext`)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from trainers.contract import DataInfo, Splits
from trainers.tables import GroupReader, PreparedTable, read_groups, split_batches

# What a study trains on: rows held in memory, or a table prepared once and streamed.
StudyData = Splits | PreparedTable


class StreamedDataError(TypeError):
    """A trainer asked for the rows of a dataset that is streamed."""


def shard_rows(x: np.ndarray, y: np.ndarray, rank: int, world_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Rank `rank`'s 1/world_size of the rows, every shard the same size: data-parallel workers
    must take the same number of steps, or the one with more waits forever for the others."""
    if world_size <= 1:
        return x, y
    usable = len(x) - len(x) % world_size
    return x[rank:usable:world_size], y[rank:usable:world_size]


def device_for(gpu_ids: Sequence[int], visible_devices: str | None, cuda_available: bool) -> torch.device:
    """The device a worker trains on: the first GPU Ray assigned it, as torch numbers it inside
    CUDA_VISIBLE_DEVICES (Ray's id 5 among visible "3,5" is cuda:1); the CPU with no GPU
    assigned, or when this torch has no CUDA (a cluster with logical GPUs only)."""
    if not gpu_ids or not cuda_available:
        return torch.device("cpu")
    first = str(gpu_ids[0])
    visible = [d.strip() for d in visible_devices.split(",")] if visible_devices else []
    return torch.device("cuda", visible.index(first) if first in visible else 0)


def _tensor(values: np.ndarray) -> torch.Tensor:
    # Arrays read from Arrow are read-only, which torch warns of; a copy is writable.
    return torch.from_numpy(values if values.flags.writeable else values.copy())


def distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


class WorkerContext:
    """A trainer's context without `report` and `load_checkpoint`, which the runtime adds."""

    def __init__(
        self,
        config: Mapping[str, Any],
        data: StudyData,
        device: torch.device,
        *,
        rank: int = 0,
        local_rank: int = 0,
        world_size: int = 1,
        num_threads: int = 1,
        gpu_ids: Sequence[int] = (),
        group_reader: GroupReader = read_groups,
    ) -> None:
        self._config = dict(config)
        self._data = data
        self._device = device
        self._rank, self._local_rank, self._world_size = rank, local_rank, world_size
        self._num_threads = num_threads
        self._gpu_ids = tuple(gpu_ids)
        self._group_reader = group_reader
        self._info: DataInfo | None = None
        self._on_device: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def config(self) -> Mapping[str, Any]:
        return self._config

    @property
    def data(self) -> Splits:
        if isinstance(self._data, PreparedTable):
            raise StreamedDataError(
                "this study's dataset is a table streamed to the workers: read it with "
                "context.train_batches and context.val_batches, and its statistics from context.data_info"
            )
        return self._data

    @property
    def data_info(self) -> DataInfo:
        if self._info is None:
            self._info = self._data.info if isinstance(self._data, PreparedTable) else self._data.info()
        return self._info

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def gpu_ids(self) -> tuple[int, ...]:
        return self._gpu_ids

    @property
    def rank(self) -> int:
        return self._rank

    @property
    def local_rank(self) -> int:
        return self._local_rank

    @property
    def world_size(self) -> int:
        return self._world_size

    @property
    def num_threads(self) -> int:
        return self._num_threads

    def train_shard(self) -> tuple[np.ndarray, np.ndarray]:
        return shard_rows(self.data.x_train, self.data.y_train, self._rank, self._world_size)

    def train_batches(
        self, batch_size: int, *, epoch: int, seed: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if isinstance(self._data, PreparedTable):
            yield from self._streamed("train", batch_size, (seed, epoch))
            return
        x, y = self._held("train", self.train_shard)
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(len(x), generator=generator).to(self._device)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            yield x[rows], y[rows]

    def val_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if isinstance(self._data, PreparedTable):
            yield from self._streamed("val", batch_size, None)
            return
        x, y = self._held("val", lambda: (self.data.x_val, self.data.y_val))
        for start in range(0, len(x), batch_size):
            yield x[start : start + batch_size], y[start : start + batch_size]

    def _held(self, name: str, rows: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows held in memory, moved to the device once."""
        if name not in self._on_device:
            x, y = rows()
            self._on_device[name] = (torch.from_numpy(x).to(self._device), torch.from_numpy(y).to(self._device))
        return self._on_device[name]

    def _streamed(
        self, split: str, batch_size: int, shuffle_seed: tuple[int, int] | None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        assert isinstance(self._data, PreparedTable)
        batches = split_batches(
            self._data,
            split,
            self._group_reader,
            batch_size,
            rank=self._rank,
            world_size=self._world_size,
            shuffle_seed=shuffle_seed,
        )
        for x, y in batches:
            yield _tensor(x).to(self._device), _tensor(y).to(self._device)

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        model = model.to(self._device)
        if not distributed():
            return model
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self._device.index] if self._device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids)


class LocalContext(WorkerContext):
    """A context in this process, with no runtime around it: reports and checkpoints are kept
    in memory. For the GPU check and tests."""

    def __init__(self, config: Mapping[str, Any], data: StudyData, device: torch.device | str = "cpu", **kwargs: Any):
        super().__init__(config, data, torch.device(device), **kwargs)
        self.reports: list[dict[str, float]] = []
        self.checkpoint: dict[str, Any] | None = None
        self.resume_from: dict[str, Any] | None = None

    def report(
        self, metrics: Mapping[str, float], checkpoint: Mapping[str, Any] | None = None, *, final: bool = False
    ) -> None:
        self.reports.append(dict(metrics))
        if checkpoint is not None:
            self.checkpoint = dict(checkpoint)

    def load_checkpoint(self) -> dict[str, Any] | None:
        return self.resume_from
