"""A prepared table's row groups read by Ray Data, for a trial's workers (and a single-worker
trial's actor): read tasks on the cluster decode the groups while the trainer takes batches,
a couple of groups ahead, so a worker holds a few groups, never the table.

Read tasks ask for a fifth of a CPU, two at a time; a table's study leaves half a CPU free
of trials (`anneal.spec.TABLE_READ_CPUS`), or a cluster full of trials could never run them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from trainers.tables import Piece, group_arrays, read_piece

READ_TASK_CPUS = 0.2
# Read tasks at once per reader: more only contend for the cores the trainer uses.
READ_TASKS = 2
# Groups decoded ahead of the one the trainer is on.
PREFETCH_GROUPS = 4


def ray_data_groups(path: str, pieces: Sequence[Piece]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Pieces of row groups of the prepared split at `path`, in the order they are read."""
    if not pieces:
        return
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # they would go to the trial's log, once per epoch
    context.print_on_execution_start = False
    items = ray.data.from_items(
        [{"group": g, "start": start, "stop": stop} for g, start, stop in pieces], override_num_blocks=len(pieces)
    )
    read = items.map_batches(
        functools.partial(_read_groups, path),
        batch_size=1,
        batch_format="numpy",
        num_cpus=READ_TASK_CPUS,
        compute=ray.data.TaskPoolStrategy(size=READ_TASKS),
    )
    for table in read.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=PREFETCH_GROUPS):
        yield group_arrays(table)


def _read_groups(path: str, batch: dict[str, np.ndarray]) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    reader = pq.ParquetFile(path, pre_buffer=False)
    pieces = zip(batch["group"], batch["start"], batch["stop"], strict=True)
    return pa.concat_tables([read_piece(reader, piece) for piece in pieces])
