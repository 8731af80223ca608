"""Scores of a model's predictions, the same for a trial's validation rows and a study's held-out ones."""

from __future__ import annotations

import math

import numpy as np


def regression_scores(predicted: np.ndarray, truth: np.ndarray, prefix: str) -> dict[str, float]:
    """RMSE in the target's units and R² (1 is perfect; 0 is no better than predicting the
    mean), over every output of every row."""
    tally = RegressionTally()
    tally.add(predicted, truth)
    return tally.scores(prefix)


class RegressionTally:
    """`regression_scores` over rows that arrive in batches: sums, not the rows, are kept."""

    def __init__(self) -> None:
        self.rows = 0
        self.squared_error = 0.0
        self.total: np.ndarray | float = 0.0  # per output
        self.total_squares: np.ndarray | float = 0.0

    def add(self, predicted: np.ndarray, truth: np.ndarray) -> None:
        truth = np.asarray(truth, dtype=np.float64).reshape(len(truth), -1)
        predicted = np.asarray(predicted, dtype=np.float64).reshape(truth.shape)
        self.rows += len(truth)
        self.squared_error += float(((predicted - truth) ** 2).sum())
        self.total = self.total + truth.sum(axis=0)
        self.total_squares = self.total_squares + (truth**2).sum(axis=0)

    def scores(self, prefix: str) -> dict[str, float]:
        outputs = np.size(self.total)
        cells = max(1, self.rows * outputs)
        error = self.squared_error / cells
        spread = float(np.sum(self.total_squares - np.square(self.total) / max(1, self.rows))) / cells
        return {f"{prefix}rmse": math.sqrt(error), f"{prefix}r2": 1 - error / spread if spread > 1e-12 else 0.0}
