"""Datasets that ship with scikit-learn, split the same way wherever they are loaded.

Nothing is downloaded: these loaders read files bundled with scikit-learn.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from trainers.contract import DataShape, Splits

_LOADERS: dict[str, str] = {
    "digits": "load_digits",
    "wine": "load_wine",
    "breast_cancer": "load_breast_cancer",
    "iris": "load_iris",
}

DATASETS: frozenset[str] = frozenset(_LOADERS)


@functools.lru_cache(maxsize=16)
def load_splits(name: str, validation_fraction: float, test_fraction: float, split_seed: int) -> Splits:
    """The dataset split into train/validation/test, stratified and deterministic.

    Cached per process: a worker that runs many trials loads each dataset once.
    """
    import numpy as np
    from sklearn import datasets
    from sklearn.model_selection import train_test_split

    if name not in _LOADERS:
        raise KeyError(f"unknown dataset {name!r}; known: {sorted(_LOADERS)}")
    loader: Callable[..., Any] = getattr(datasets, _LOADERS[name])
    x, y = loader(return_X_y=True)
    x = x.astype(np.float32)
    y = y.astype(np.int64)
    held_out = validation_fraction + test_fraction
    x_train, x_rest, y_train, y_rest = train_test_split(x, y, test_size=held_out, random_state=split_seed, stratify=y)
    if test_fraction > 0:
        x_val, x_test, y_val, y_test = train_test_split(
            x_rest, y_rest, test_size=test_fraction / held_out, random_state=split_seed, stratify=y_rest
        )
    else:
        x_val, y_val = x_rest, y_rest
        x_test, y_test = x_rest[:0], y_rest[:0]
    shape = DataShape(n_features=int(x.shape[1]), n_classes=int(y.max()) + 1)
    return Splits(x_train, y_train, x_val, y_val, x_test, y_test, shape)
