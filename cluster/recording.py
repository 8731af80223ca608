"""Tune's view of each trial, handed to the trial writer (`cluster.writer`).

The callback runs on the driver's event loop, between Tune's scheduling decisions, so
it only turns what happened into records and queues them; the writer process writes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from ray import tune
from ray.tune.experiment import Trial as TuneTrial
from ray.tune.result import AUTO_RESULT_KEYS

from anneal.types import EventKind, Trial, TrialState
from cluster.trial import EPOCH, HISTORY
from cluster.writer import Record, TrialWriter

log = logging.getLogger("anneal.recording")

MAX_ERROR_CHARS = 2000


def plain(value: Any) -> Any:
    """numpy scalars (as samplers return them) to plain Python values."""
    return value.item() if hasattr(value, "item") else value


def reported_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """The metrics the trainer reported in one Tune result, without Tune's own keys."""
    return {
        key: float(value)
        for key, value in result.items()
        if key not in AUTO_RESULT_KEYS
        and key not in (EPOCH, HISTORY)
        and not key.startswith(("time_", "done", "trial_id", "experiment_", "should_checkpoint"))
        and isinstance(value, int | float)
        and not isinstance(value, bool)
    }


def trial_error(trial: TuneTrial) -> str:
    path = trial.error_file
    if path and os.path.exists(path):
        with open(path) as handle:
            return handle.read()[-MAX_ERROR_CHARS:]
    return "the trial failed"


class TrialRecorder(tune.Callback):
    """Tune's view of each trial's start, results and end, queued for the writer."""

    def __init__(self, writer: TrialWriter, fixed: Mapping[str, Any], epochs: int) -> None:
        self.writer = writer
        self.fixed = dict(fixed)
        self.epochs = epochs
        self.finished = 0

    # Tune pickles its callbacks with the experiment state; the writer thread stays here.
    def __getstate__(self) -> dict[str, Any]:
        return {"fixed": self.fixed, "epochs": self.epochs, "finished": self.finished}

    def _trial(
        self, trial: TuneTrial, state: TrialState, error: str = "", result: Mapping[str, Any] | None = None
    ) -> Trial:
        # Inside on_trial_result, trial.last_result is still the previous result.
        result = trial.last_result or {} if result is None else result
        return Trial(
            trial_id=trial.trial_id,
            state=state,
            config={k: plain(v) for k, v in trial.config.items()},
            metrics=reported_metrics(result),
            epochs=int(result.get(EPOCH, 0)),
            error=error,
        )

    def on_trial_start(self, iteration: int, trials: list[TuneTrial], trial: TuneTrial, **info: Any) -> None:
        snapshot = self._trial(trial, TrialState.RUNNING)
        params = {**self.fixed, **snapshot.config}
        self.writer.put(Record(EventKind.TRIAL_STARTED, snapshot, params=params))

    def on_trial_result(
        self, iteration: int, trials: list[TuneTrial], trial: TuneTrial, result: dict[str, Any], **info: Any
    ) -> None:
        snapshot = self._trial(trial, TrialState.RUNNING, result=result)
        # One result carries every epoch since the last: MLflow gets each epoch, the store
        # (and WatchStudy) one event with the latest.
        history = [(int(epoch.get(EPOCH, 0)), reported_metrics(epoch)) for epoch in result.get(HISTORY) or [result]]
        self.writer.put(Record(EventKind.TRIAL_RESULT, snapshot, history=history))

    def on_trial_complete(self, iteration: int, trials: list[TuneTrial], trial: TuneTrial, **info: Any) -> None:
        epochs = int((trial.last_result or {}).get(EPOCH, 0))
        state = TrialState.COMPLETED if epochs >= self.epochs else TrialState.STOPPED_EARLY
        self._end(trial, state, "FINISHED")

    def on_trial_error(self, iteration: int, trials: list[TuneTrial], trial: TuneTrial, **info: Any) -> None:
        self._end(trial, TrialState.ERROR, "FAILED", trial_error(trial))

    def _end(self, trial: TuneTrial, state: TrialState, mlflow_status: str, error: str = "") -> None:
        self.finished += 1
        snapshot = self._trial(trial, state, error)
        self.writer.put(Record(EventKind.TRIAL_ENDED, snapshot, mlflow_status=mlflow_status))
        metric_text = ", ".join(f"{k}={v:.4f}" for k, v in sorted(snapshot.metrics.items()))
        log.info("trial %s %s (%d done) %s", trial.trial_id, state.value.lower(), self.finished, metric_text)
