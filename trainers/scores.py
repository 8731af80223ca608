"""Scores of a model's predictions, the same for a trial's validation rows and a study's held-out ones."""

from __future__ import annotations

import math

import numpy as np


def regression_scores(predicted: np.ndarray, truth: np.ndarray, prefix: str) -> dict[str, float]:
    """RMSE in the target's units and R² (1 is perfect; 0 is no better than predicting the
    mean), over every output of every row."""
    predicted = np.asarray(predicted, dtype=np.float64).reshape(len(truth), -1)
    truth = np.asarray(truth, dtype=np.float64).reshape(len(truth), -1)
    error = float(((predicted - truth) ** 2).mean())
    spread = float(((truth - truth.mean(axis=0)) ** 2).mean())
    return {f"{prefix}rmse": math.sqrt(error), f"{prefix}r2": 1 - error / spread if spread > 0 else 0.0}
