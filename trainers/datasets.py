"""Datasets a study trains on, split the same way wherever they are loaded.

The bundled ones ship with scikit-learn: nothing is downloaded, the rows are read
straight from its data files. Importing scikit-learn itself costs seconds in every fresh
worker process, so it is not imported; the split is a stratified shuffle in numpy. A
spec may instead name a CSV file under the server's data roots (`dataset.path`).
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np

from anneal.errors import InvalidSpec
from anneal.spec import DatasetSpec
from trainers.contract import DataShape, Splits, Task
from trainers.dataroots import FIELD, MAX_DATA_FILE_BYTES, open_regular_file, resolve_data_path

# name -> (file in sklearn/datasets/data, whether its first line is a header): features, then the label
_FILES: dict[str, tuple[str, bool]] = {
    "digits": ("digits.csv.gz", False),
    "wine": ("wine_data.csv", True),
    "breast_cancer": ("breast_cancer.csv", True),
    "iris": ("iris.csv", True),
}
# name -> (features file, target file), space-separated: regression targets
_REGRESSION_FILES: dict[str, tuple[str, str]] = {
    "diabetes": ("diabetes_data_raw.csv.gz", "diabetes_target.csv.gz"),
}

CLASSIFICATION_DATASETS: frozenset[str] = frozenset(_FILES)
REGRESSION_DATASETS: frozenset[str] = frozenset(_REGRESSION_FILES)
DATASETS: frozenset[str] = CLASSIFICATION_DATASETS | REGRESSION_DATASETS

MIN_CSV_ROWS = 10
# A label is a class index and sizes the model's output layer, so a stray huge one must not.
MAX_CSV_CLASSES = 1000


def _data_dir() -> Path:
    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("scikit-learn is not installed; it ships the bundled datasets")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"


def task_of(name: str) -> Task:
    """The task a bundled dataset's labels are for."""
    return Task.REGRESSION if name in _REGRESSION_FILES else Task.CLASSIFICATION


def load_arrays(name: str) -> tuple[np.ndarray, np.ndarray]:
    """All rows of a bundled dataset: float32 features, and int64 labels (classification) or
    float32 targets (regression)."""
    if name in _REGRESSION_FILES:
        features, target = (_read_table(f, delimiter=None, has_header=False) for f in _REGRESSION_FILES[name])
        return features.astype(np.float32), target.astype(np.float32).reshape(len(target))
    if name not in _FILES:
        raise KeyError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
    file_name, has_header = _FILES[name]
    table = _read_table(file_name, delimiter=",", has_header=has_header)
    return table[:, :-1].astype(np.float32), table[:, -1].astype(np.int64)


def _read_table(file_name: str, delimiter: str | None, has_header: bool) -> np.ndarray:
    path = _data_dir() / file_name
    opener = gzip.open if file_name.endswith(".gz") else open
    with opener(path, "rt") as handle:
        return np.loadtxt(handle, delimiter=delimiter, skiprows=1 if has_header else 0, dtype=np.float64, ndmin=2)


def stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, taken): `fraction` of each class taken, at least one row of each where possible."""
    rng = np.random.default_rng(seed)
    kept: list[np.ndarray] = []
    taken: list[np.ndarray] = []
    for label in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == label))
        count = min(len(rows) - 1, max(1, round(fraction * len(rows)))) if fraction > 0 else 0
        taken.append(rows[:count])
        kept.append(rows[count:])
    return rng.permutation(np.concatenate(kept)), rng.permutation(np.concatenate(taken))


def random_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, taken) of `n` rows: `fraction` of them taken at random, at least one where possible."""
    rows = np.random.default_rng(seed).permutation(n)
    count = min(n - 1, max(1, round(fraction * n))) if fraction > 0 else 0
    return rows[count:], rows[:count]


def split_arrays(
    x: np.ndarray, y: np.ndarray, validation_fraction: float, test_fraction: float, split_seed: int, task: Task
) -> Splits:
    """Rows split into train/validation/test, deterministic; stratified by class for classification."""

    def split(indices: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
        kept, taken = (
            stratified_split(y[indices], fraction, seed)
            if task is Task.CLASSIFICATION
            else random_split(len(indices), fraction, seed)
        )
        return indices[kept], indices[taken]

    rest, test = split(np.arange(len(y)), test_fraction, split_seed)
    train, val = split(rest, validation_fraction / (1 - test_fraction), split_seed + 1)
    outputs = int(y.max()) + 1 if task is Task.CLASSIFICATION else (1 if y.ndim == 1 else int(y.shape[1]))
    shape = DataShape(n_features=int(x.shape[1]), n_outputs=outputs)
    return Splits(x[train], y[train], x[val], y[val], x[test], y[test], shape)


@functools.lru_cache(maxsize=16)
def load_splits(name: str, validation_fraction: float, test_fraction: float, split_seed: int) -> Splits:
    """A bundled dataset split into train/validation/test.

    Cached per process: a worker that runs many trials loads each dataset once.
    """
    x, y = load_arrays(name)
    return split_arrays(x, y, validation_fraction, test_fraction, split_seed, task_of(name))


def load_dataset(dataset: DatasetSpec, data_roots: Sequence[str], task: Task) -> Splits:
    """The splits a spec's dataset names: its CSV file when it has a path (its last column read
    as the trainer's `task` needs), else the bundled dataset. The path is checked against the
    data roots here, where it is read, whatever checked it before."""
    d = dataset
    if not d.path:
        return load_splits(d.name, d.validation_fraction, d.test_fraction, d.split_seed)
    real = resolve_data_path(d.path, data_roots)
    try:
        info = os.stat(real)
    except OSError:
        raise _bad_csv("the file cannot be read") from None
    return _csv_splits(real, info.st_mtime_ns, info.st_size, d.validation_fraction, d.test_fraction, d.split_seed, task)


# Small: one entry holds a whole file's rows; the key changes when the file does.
@functools.lru_cache(maxsize=2)
def _csv_splits(
    real: Path,
    mtime_ns: int,
    size: int,
    validation_fraction: float,
    test_fraction: float,
    split_seed: int,
    task: Task,
) -> Splits:
    x, y = load_csv_arrays(real, task)
    splits = split_arrays(x, y, validation_fraction, test_fraction, split_seed, task)
    if not len(splits.y_train) or not len(splits.y_val) or (test_fraction > 0 and not len(splits.y_test)):
        rows = "rows per class" if task is Task.CLASSIFICATION else "rows"
        raise _bad_csv(f"the CSV file has too few {rows} to hold out validation and test rows")
    return splits


def load_csv_arrays(path: Path, task: Task = Task.CLASSIFICATION) -> tuple[np.ndarray, np.ndarray]:
    """All rows of a CSV file (a header line, numeric features, the target last: an integer
    class label, or a number for regression): float32 features, and int64 labels or float32
    targets; InvalidSpec naming `dataset.path` when malformed."""
    with open_regular_file(path, max_bytes=MAX_DATA_FILE_BYTES) as handle:
        table = _parse_csv(handle)
    return _features_and_labels(table) if task is Task.CLASSIFICATION else _features_and_targets(table)


def _parse_csv(handle: BinaryIO) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy warns of a file with no rows; the row count answers that
            return np.loadtxt(
                _text_lines(handle, MAX_DATA_FILE_BYTES), delimiter=",", skiprows=1, dtype=np.float64, ndmin=2
            )
    except ValueError as error:
        raise _bad_csv(_csv_reason(str(error))) from None


def _text_lines(handle: BinaryIO, limit: int) -> Iterator[str]:
    """The file's lines as text, refused past `limit` bytes: it may have grown since its size was checked."""
    read = 0
    while line := handle.readline(limit + 1 - read):
        read += len(line)
        if read > limit:
            raise _bad_csv(f"the CSV file is larger than {limit // (1024 * 1024)} MiB")
        yield line.decode("utf-8", errors="replace")


def _csv_reason(numpy_message: str) -> str:
    # numpy's message quotes the cell; the caller gets the kind of fault, not the file's contents.
    if "could not convert" in numpy_message:
        return "a cell of the CSV file is not a number; every line after the header must hold numbers only"
    if "number of columns changed" in numpy_message:
        return "the rows of the CSV file have different numbers of columns"
    return "the file is not a CSV file of numbers"


def _features(table: np.ndarray) -> np.ndarray:
    rows, columns = table.shape
    if rows < MIN_CSV_ROWS:
        raise _bad_csv(f"the CSV file has {rows} rows after the header; at least {MIN_CSV_ROWS} are needed")
    if columns < 2:
        raise _bad_csv("the CSV file needs at least 2 columns: the features, then the target")
    with np.errstate(over="ignore"):  # a value beyond float32 becomes inf, refused just below
        x = table[:, :-1].astype(np.float32)
    if not np.isfinite(x).all():
        raise _bad_csv("a feature in the CSV file is not finite (nan, inf, or too large for float32)")
    return x


def _features_and_targets(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = _features(table)
    with np.errstate(over="ignore"):
        y = table[:, -1].astype(np.float32)
    if not np.isfinite(y).all():
        raise _bad_csv("the last column of the CSV file, the regression target, must hold finite numbers")
    return x, y


def _features_and_labels(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = _features(table)
    labels = table[:, -1]
    if not np.isfinite(labels).all() or (labels < 0).any() or (labels != np.round(labels)).any():
        raise _bad_csv("the last column of the CSV file, the class label, must hold integers >= 0")
    if labels.max() >= MAX_CSV_CLASSES:
        raise _bad_csv(f"class labels must be below {MAX_CSV_CLASSES}")
    y = labels.astype(np.int64)
    counts = np.bincount(y)
    single = np.flatnonzero(counts == 1)
    if len(single):
        raise _bad_csv(f"class {int(single[0])} has a single row; every class needs at least 2 to be split")
    return x, y


def _bad_csv(reason: str) -> InvalidSpec:
    return InvalidSpec.field(FIELD, reason)
