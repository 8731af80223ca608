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
from trainers.contract import DataShape, Splits
from trainers.dataroots import FIELD, MAX_DATA_FILE_BYTES, open_regular_file, resolve_data_path

# name -> (file in sklearn/datasets/data, whether its first line is a header)
_FILES: dict[str, tuple[str, bool]] = {
    "digits": ("digits.csv.gz", False),
    "wine": ("wine_data.csv", True),
    "breast_cancer": ("breast_cancer.csv", True),
    "iris": ("iris.csv", True),
}

DATASETS: frozenset[str] = frozenset(_FILES)

MIN_CSV_ROWS = 10
# A label is a class index and sizes the model's output layer, so a stray huge one must not.
MAX_CSV_CLASSES = 1000


def _data_dir() -> Path:
    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("scikit-learn is not installed; it ships the bundled datasets")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"


def load_arrays(name: str) -> tuple[np.ndarray, np.ndarray]:
    """All rows of a bundled dataset: float32 features and int64 labels."""
    if name not in _FILES:
        raise KeyError(f"unknown dataset {name!r}; known: {sorted(_FILES)}")
    file_name, has_header = _FILES[name]
    path = _data_dir() / file_name
    opener = gzip.open if file_name.endswith(".gz") else open
    with opener(path, "rt") as handle:
        table = np.loadtxt(handle, delimiter=",", skiprows=1 if has_header else 0, dtype=np.float64)
    return table[:, :-1].astype(np.float32), table[:, -1].astype(np.int64)


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


def split_arrays(
    x: np.ndarray, y: np.ndarray, validation_fraction: float, test_fraction: float, split_seed: int
) -> Splits:
    """Rows split into train/validation/test, stratified and deterministic."""
    rest, test = stratified_split(y, test_fraction, split_seed)
    train_rows, val_rows = stratified_split(y[rest], validation_fraction / (1 - test_fraction), split_seed + 1)
    train, val = rest[train_rows], rest[val_rows]
    shape = DataShape(n_features=int(x.shape[1]), n_classes=int(y.max()) + 1)
    return Splits(x[train], y[train], x[val], y[val], x[test], y[test], shape)


@functools.lru_cache(maxsize=16)
def load_splits(name: str, validation_fraction: float, test_fraction: float, split_seed: int) -> Splits:
    """A bundled dataset split into train/validation/test.

    Cached per process: a worker that runs many trials loads each dataset once.
    """
    x, y = load_arrays(name)
    return split_arrays(x, y, validation_fraction, test_fraction, split_seed)


def load_dataset(dataset: DatasetSpec, data_roots: Sequence[str]) -> Splits:
    """The splits a spec's dataset names: its CSV file when it has a path, else the bundled
    dataset. The path is checked against the data roots here, where it is read, whatever
    checked it before."""
    d = dataset
    if not d.path:
        return load_splits(d.name, d.validation_fraction, d.test_fraction, d.split_seed)
    real = resolve_data_path(d.path, data_roots)
    try:
        info = os.stat(real)
    except OSError:
        raise _bad_csv("the file cannot be read") from None
    return _csv_splits(real, info.st_mtime_ns, info.st_size, d.validation_fraction, d.test_fraction, d.split_seed)


# Small: one entry holds a whole file's rows; the key changes when the file does.
@functools.lru_cache(maxsize=2)
def _csv_splits(
    real: Path, mtime_ns: int, size: int, validation_fraction: float, test_fraction: float, split_seed: int
) -> Splits:
    x, y = load_csv_arrays(real)
    splits = split_arrays(x, y, validation_fraction, test_fraction, split_seed)
    if not len(splits.y_train) or not len(splits.y_val) or (test_fraction > 0 and not len(splits.y_test)):
        raise _bad_csv("the CSV file has too few rows per class to hold out validation and test rows")
    return splits


def load_csv_arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """All rows of a CSV file (a header line, numeric features, the integer label last):
    float32 features and int64 labels; InvalidSpec naming `dataset.path` when malformed."""
    with open_regular_file(path) as handle:
        table = _parse_csv(handle)
    return _features_and_labels(table)


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


def _features_and_labels(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows, columns = table.shape
    if rows < MIN_CSV_ROWS:
        raise _bad_csv(f"the CSV file has {rows} rows after the header; at least {MIN_CSV_ROWS} are needed")
    if columns < 2:
        raise _bad_csv("the CSV file needs at least 2 columns: the features, then the label")
    with np.errstate(over="ignore"):  # a value beyond float32 becomes inf, refused just below
        x = table[:, :-1].astype(np.float32)
    labels = table[:, -1]
    if not np.isfinite(x).all():
        raise _bad_csv("a feature in the CSV file is not finite (nan, inf, or too large for float32)")
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
