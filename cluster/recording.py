"""Recording trials in the store and MLflow, off Tune's event loop.

Tune calls its callbacks on the driver's single event loop, between scheduling
decisions: a database round trip there delays every trial. The callback only
queues what happened; one writer thread drains the queue in order and writes each
drained batch as one store transaction and one MLflow `log_batch` per run. Nothing
is dropped: a failed write is retried, and `flush` raises if it still fails.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from mlflow.entities import Metric
from ray import tune
from ray.tune.experiment import Trial as TuneTrial
from ray.tune.result import AUTO_RESULT_KEYS

from anneal.types import EventKind, Trial, TrialState
from cluster.store import Store, now
from cluster.tracking import MlflowTracker
from cluster.tuning import EPOCH, HISTORY

log = logging.getLogger("anneal.recording")

MAX_ERROR_CHARS = 2000
MAX_METRICS_PER_BATCH = 1000
WRITE_ATTEMPTS = 4
T = TypeVar("T")


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


@dataclass
class Record:
    """One thing that happened to a trial, as the callback saw it."""

    kind: EventKind
    trial: Trial
    time: datetime = field(default_factory=now)
    params: dict[str, Any] = field(default_factory=dict)  # TRIAL_STARTED: what the child run logs
    step: int = 0  # TRIAL_RESULT: the epoch of trial.metrics
    mlflow_status: str = ""  # TRIAL_ENDED: FINISHED, FAILED or KILLED


class TrialWriter:
    """The writer thread: store rows and events, MLflow child runs and metric histories."""

    def __init__(self, store: Store, tracker: MlflowTracker, study_id: str) -> None:
        self.store = store
        self.tracker = tracker
        self.study_id = study_id
        self.runs: dict[str, str] = {}  # trial id -> MLflow run id; touched by the writer thread only
        self.ended: set[str] = set()
        self._queue: queue.Queue[Record | None] = queue.Queue()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="anneal-trial-writer", daemon=True)
        self._thread.start()

    def put(self, record: Record) -> None:
        self._queue.put(record)

    def flush(self) -> None:
        """Waits until everything queued so far is written; raises if a write failed for good."""
        self._queue.join()
        if self._failure is not None:
            raise RuntimeError("recording trials failed") from self._failure

    def close(self) -> None:
        self.flush()
        self._queue.put(None)
        self._thread.join()

    def _loop(self) -> None:
        while True:
            batch = [self._queue.get()]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            records = [r for r in batch if r is not None]
            try:
                if records and self._failure is None:
                    self._write(records)
            except BaseException as error:  # kept for flush() to raise on the driver's thread
                log.exception("could not record %d trial events", len(records))
                self._failure = error
            finally:
                for _ in batch:
                    self._queue.task_done()
            if len(records) < len(batch):
                return

    def _write(self, records: list[Record]) -> None:
        pending: dict[str, list[Metric]] = defaultdict(list)
        rows = []
        for record in records:
            trial_id = record.trial.trial_id
            if record.kind is EventKind.TRIAL_STARTED and trial_id not in self.runs:
                self.runs[trial_id] = _retry(self.tracker.start_trial, trial_id, record.params)
            run_id = self.runs.get(trial_id, "")
            if record.kind is EventKind.TRIAL_RESULT:
                stamp = int(record.time.timestamp() * 1000)
                pending[run_id] += [Metric(k, v, stamp, record.step) for k, v in record.trial.metrics.items()]
            if record.kind is EventKind.TRIAL_ENDED and run_id:
                self._log_metrics(run_id, pending.pop(run_id, []))
                _retry(self.tracker.end_run, run_id, record.mlflow_status, record.trial.error)
                self.ended.add(trial_id)
            rows.append((record.trial.model_copy(update={"mlflow_run_id": run_id}), record.kind, record.time))
        for run_id, metrics in pending.items():
            self._log_metrics(run_id, metrics)
        _retry(self.store.record_trials, self.study_id, rows)

    def _log_metrics(self, run_id: str, metrics: list[Metric]) -> None:
        for start in range(0, len(metrics), MAX_METRICS_PER_BATCH):
            chunk = metrics[start : start + MAX_METRICS_PER_BATCH]
            _retry(self.tracker.client.log_batch, run_id, metrics=chunk)


def _retry(write: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    for attempt in range(WRITE_ATTEMPTS):
        try:
            return write(*args, **kwargs)
        except Exception:
            if attempt == WRITE_ATTEMPTS - 1:
                raise
            time.sleep(0.2 * 2**attempt)
    raise AssertionError("unreachable")


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
        # One result carries every epoch since the last: each becomes its own record.
        for epoch in result.get(HISTORY) or [result]:
            metrics = reported_metrics(epoch)
            step = int(epoch.get(EPOCH, 0))
            record = snapshot.model_copy(update={"metrics": metrics, "epochs": step})
            self.writer.put(Record(EventKind.TRIAL_RESULT, record, step=step))

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

    def end_open_runs(self, status: str) -> None:
        """Closes the MLflow runs of trials that never ended (the study was cancelled)."""
        self.writer.flush()
        for trial_id, run_id in self.writer.runs.items():
            if trial_id not in self.writer.ended:
                self.writer.tracker.end_run(run_id, status)
