"""Datasets that ship with scikit-learn, split the same way wherever they are loaded.

Nothing is downloaded: the rows are read straight from the data files bundled with
the scikit-learn package. Importing scikit-learn itself costs seconds in every fresh
worker process, so it is not imported; the split is a stratified shuffle in numpy.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
from pathlib import Path

import numpy as np

from trainers.contract import DataShape, Splits

# name -> (file in sklearn/datasets/data, whether its first line is a header)
_FILES: dict[str, tuple[str, bool]] = {
    "digits": ("digits.csv.gz", False),
    "wine": ("wine_data.csv", True),
    "breast_cancer": ("breast_cancer.csv", True),
    "iris": ("iris.csv", True),
}

DATASETS: frozenset[str] = frozenset(_FILES)


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


@functools.lru_cache(maxsize=16)
def load_splits(name: str, validation_fraction: float, test_fraction: float, split_seed: int) -> Splits:
    """The dataset split into train/validation/test, stratified and deterministic.

    Cached per process: a worker that runs many trials loads each dataset once.
    """
    x, y = load_arrays(name)
    rest, test = stratified_split(y, test_fraction, split_seed)
    train_rows, val_rows = stratified_split(y[rest], validation_fraction / (1 - test_fraction), split_seed + 1)
    train, val = rest[train_rows], rest[val_rows]
    shape = DataShape(n_features=int(x.shape[1]), n_classes=int(y.max()) + 1)
    return Splits(x[train], y[train], x[val], y[val], x[test], y[test], shape)
