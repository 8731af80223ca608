"""Tune's view of each trial, handed to the trial writer (`cluster.driver.writer`).

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
from cluster.driver.writer import TrialWriter
from cluster.driver.writermessages import Record
from cluster.trial.context import EPOCH, HISTORY
from cluster.trial.function import ADOPTED_AS

log = logging.getLogger("anneal.recording")

MAX_ERROR_CHARS = 2000
# The MLflow param of each trial's run that says how many workers trained it.
WORLD_SIZE_PARAM = "world_size"


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


def anneal_trial_id(trial: TuneTrial) -> str:
    """The trial's id in the store and MLflow: Tune's, or the one it adopted on a resume."""
    return str(trial.config.get(ADOPTED_AS) or trial.trial_id)


def trial_config(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: plain(v) for k, v in config.items() if k != ADOPTED_AS}


class TrialRecorder(tune.Callback):
    """Tune's view of each trial's start, results and end, queued for the writer.

    On a resumed study (`resume`), trials whose end the store already holds are replayed
    and not recorded again; trials Tune's snapshot holds ended but the store does not
    (the previous writer died with them queued) are recorded at the first step.
    """

    def __init__(self, writer: TrialWriter, fixed: Mapping[str, Any], epochs: int, world_size: int = 1) -> None:
        self.writer = writer
        self.fixed = dict(fixed)
        self.epochs = epochs
        self.world_size = world_size  # the workers that train each trial, logged with its params
        self.finished = 0
        self.recorded_ends: set[str] = set()
        self.recorded_starts: set[str] = set()
        self.paused: set[str] = set()  # trials recorded PAUSED, until they start again or end
        self.catch_up = False

    # Tune pickles its callbacks with the experiment state; the writer process stays here.
    def __getstate__(self) -> dict[str, Any]:
        return {"fixed": self.fixed, "epochs": self.epochs, "finished": self.finished, "world_size": self.world_size}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(None, state["fixed"], state["epochs"], state.get("world_size", 1))  # type: ignore[misc, arg-type]
        self.finished = state["finished"]

    def resume(self, writer: TrialWriter, recorded: list[Trial]) -> None:
        """Attaches the writer after Tune restored this callback, with the trials the store holds."""
        self.writer = writer
        self.recorded_starts = {trial.trial_id for trial in recorded}
        self.recorded_ends = {trial.trial_id for trial in recorded if trial.state.is_terminal}
        self.catch_up = True

    def on_step_begin(self, iteration: int, trials: list[TuneTrial], **info: Any) -> None:
        if not self.catch_up:
            return
        self.catch_up = False
        for trial in trials:
            if trial.status in (TuneTrial.TERMINATED, TuneTrial.ERROR):
                self._record_missed_end(trial)

    def on_step_end(self, iteration: int, trials: list[TuneTrial], **info: Any) -> None:
        """Records each trial a promotion-type ASHA paused since the last step (Tune tells its
        callbacks of no pause)."""
        for trial in trials:
            if trial.status == TuneTrial.PAUSED and (trial_id := anneal_trial_id(trial)) not in self.paused:
                self.paused.add(trial_id)
                self.writer.put(Record(EventKind.TRIAL_PAUSED, self._trial(trial, TrialState.PAUSED)))

    def _record_missed_end(self, trial: TuneTrial) -> None:
        trial_id = anneal_trial_id(trial)
        if trial_id in self.recorded_ends:
            return
        if trial_id not in self.recorded_starts:
            self.on_trial_start(0, [], trial)
        if trial.last_result:
            self.on_trial_result(0, [], trial, trial.last_result)
        if trial.status == TuneTrial.ERROR:
            self.on_trial_error(0, [], trial)
        else:
            self.on_trial_complete(0, [], trial)

    def _trial(
        self, trial: TuneTrial, state: TrialState, error: str = "", result: Mapping[str, Any] | None = None
    ) -> Trial:
        # Inside on_trial_result, trial.last_result is still the previous result.
        result = trial.last_result or {} if result is None else result
        return Trial(
            trial_id=anneal_trial_id(trial),
            state=state,
            config=trial_config(trial.config),
            metrics=reported_metrics(result),
            epochs=int(result.get(EPOCH, 0)),
            error=error,
        )

    def on_trial_start(self, iteration: int, trials: list[TuneTrial], trial: TuneTrial, **info: Any) -> None:
        trial_id = anneal_trial_id(trial)
        if trial_id in self.recorded_ends:
            return  # replayed: the store and MLflow hold it whole
        self.paused.discard(trial_id)  # a paused trial that resumes starts again, in the same run
        snapshot = self._trial(trial, TrialState.RUNNING)
        params = {**self.fixed, **snapshot.config, WORLD_SIZE_PARAM: self.world_size}
        self.writer.put(Record(EventKind.TRIAL_STARTED, snapshot, params=params))

    def on_trial_result(
        self, iteration: int, trials: list[TuneTrial], trial: TuneTrial, result: dict[str, Any], **info: Any
    ) -> None:
        if anneal_trial_id(trial) in self.recorded_ends:
            return
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
        if anneal_trial_id(trial) in self.recorded_ends:
            return
        self.paused.discard(anneal_trial_id(trial))
        self.finished += 1
        snapshot = self._trial(trial, state, error)
        self.writer.put(Record(EventKind.TRIAL_ENDED, snapshot, mlflow_status=mlflow_status))
        metric_text = ", ".join(f"{k}={v:.4f}" for k, v in sorted(snapshot.metrics.items()))
        log.info("trial %s %s (%d done) %s", snapshot.trial_id, state.value.lower(), self.finished, metric_text)
