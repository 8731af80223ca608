"""What a study trains on, made ready once by its driver: a dataset held in memory, or a
table prepared under the study's Tune storage (shared by a cluster's nodes), which a resumed
driver finds whole and reuses."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import numpy as np

from anneal.spec import StudySpec
from trainers.contract import DataShape, Splits, TrainerInfo
from trainers.datasets import load_dataset
from trainers.tables import PreparedTable, prepare_table, read_groups, split_batches
from trainers.tableschema import check_table
from trainers.workercontext import StudyData

PREPARED_DIR = "data"
SCORE_BATCH = 8192


def study_data(spec: StudySpec, info: TrainerInfo, data_roots: Sequence[str], experiment_dir: str) -> StudyData:
    """The study's rows in memory, or its table prepared (once) under `experiment_dir`. A
    table's columns are checked again here, where it is read."""
    dataset = spec.dataset
    if dataset.format is None:
        return load_dataset(dataset, data_roots, info.task)
    columns = check_table(dataset, info.task, info.input_shape, data_roots)
    return prepare_table(dataset, columns, info.task, os.path.join(experiment_dir, PREPARED_DIR))


def shape_of(data: StudyData) -> DataShape:
    return data.info.shape if isinstance(data, PreparedTable) else data.shape


def test_rows(data: StudyData) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The held-out test rows in batches, streamed for a table."""
    if isinstance(data, Splits):
        for start in range(0, len(data.y_test), SCORE_BATCH):
            yield data.x_test[start : start + SCORE_BATCH], data.y_test[start : start + SCORE_BATCH]
        return
    yield from split_batches(data, "test", read_groups, SCORE_BATCH)
