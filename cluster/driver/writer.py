"""The trial writer: a process of its own that records trials in the store and MLflow.

Tune calls its callbacks on the driver's single event loop, between scheduling
decisions. The callback only queues what happened; this process drains the queue in
order and writes each drained batch as one store transaction and, per MLflow run, one
`log_batch` (params and metrics together). In a process of its own, a write never holds
the driver's interpreter lock while Tune decides what runs next, and it runs on another
core. Nothing is dropped: a failed write is retried, and `flush` raises if it still fails.

A standby driver starts its writer while it waits for a study, so the writer's imports
and database connections are paid before the study starts. The writer runs at a lower
scheduling priority than the trials: where cores are short, bookkeeping waits for the
moments training leaves free instead of slowing it, and `flush` still waits for all of it.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from anneal.settings import Settings
from anneal.types import EventKind, Trial
from cluster.store.store import Store, now

log = logging.getLogger("anneal.writer")

MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100
WRITE_ATTEMPTS = 4
REPLY_POLL_S = 1.0
# Added to the writer's nice value: trials (nice 0) come first for the CPU.
WRITER_NICENESS = 10
# How often an idle writer checks that its driver is still alive.
PARENT_POLL_S = 1.0
T = TypeVar("T")


@dataclass
class Record:
    """One thing that happened to a trial, as the callback saw it."""

    kind: EventKind
    trial: Trial
    time: datetime = field(default_factory=now)
    params: dict[str, Any] = field(default_factory=dict)  # TRIAL_STARTED: what the child run logs
    # TRIAL_RESULT: every epoch the result carries, (epoch, metrics), for MLflow's histories.
    history: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    mlflow_status: str = ""  # TRIAL_ENDED: FINISHED, FAILED or KILLED


@dataclass
class Start:
    """Which study the writer records into."""

    study_id: str
    experiment_id: str
    parent_run_id: str
    recorded: list[Trial] = field(default_factory=list)  # a resumed study's trials, as the store holds them


@dataclass
class Flush:
    """Write everything before this, then answer; end the open runs with `end_open_runs`."""

    token: int
    end_open_runs: str = ""


class TrialWriter:
    """The driver's handle on the writer process: `put` never blocks, `flush` waits."""

    def __init__(self, store_url: str, tracking_uri: str, artifact_root: str) -> None:
        context = multiprocessing.get_context("spawn")  # never fork a process that runs Ray
        self._inbox: Any = context.Queue()
        self._replies: Any = context.Queue()
        self._process = context.Process(
            target=serve,
            args=(store_url, tracking_uri, artifact_root, self._inbox, self._replies),
            name="anneal-trial-writer",
            daemon=True,
        )
        self._process.start()
        self._tokens = 0

    def start(self, study_id: str, experiment_id: str, parent_run_id: str, recorded: list[Trial] | None = None) -> None:
        self._inbox.put(Start(study_id, experiment_id, parent_run_id, list(recorded or [])))

    def put(self, record: Record) -> None:
        self._inbox.put(record)

    def flush(self, end_open_runs: str = "") -> None:
        """Waits until everything queued so far is written; raises if a write failed for good.
        With `end_open_runs`, MLflow runs of trials that never ended get that status."""
        self._tokens += 1
        self._inbox.put(Flush(self._tokens, end_open_runs))
        while True:
            try:
                token, failure = self._replies.get(timeout=REPLY_POLL_S)
            except queue.Empty:
                if not self._process.is_alive():
                    raise RuntimeError(f"the trial writer exited with code {self._process.exitcode}") from None
                continue
            if token == self._tokens:
                break
        if failure:
            raise RuntimeError(f"recording trials failed: {failure}")

    def close(self, timeout_s: float = 30.0) -> None:
        """Ends the writer once it has written what was put; `flush` first to see failures."""
        self._inbox.put(None)
        self._process.join(timeout=timeout_s)
        if self._process.is_alive():
            self._process.kill()


def start_writer(settings: Settings) -> TrialWriter:
    """A trial writer process for the settings' store and MLflow."""
    return TrialWriter(settings.store_url, settings.mlflow_tracking_uri, settings.mlflow_artifact_root)


def serve(store_url: str, tracking_uri: str, artifact_root: str, inbox: Any, replies: Any) -> None:
    """The writer process: connects, then writes what arrives until it receives None."""
    from cluster.tracking.tracker import MlflowTracker

    os.nice(WRITER_NICENESS)

    tracker = MlflowTracker(tracking_uri, artifact_root)
    tracker.open_store()
    writing = Writing(Store(store_url), tracker)
    driver = os.getppid()
    while True:
        try:
            messages = [inbox.get(timeout=PARENT_POLL_S)]
        except queue.Empty:
            if os.getppid() != driver:  # the driver died; what it queued has been written
                log.warning("the study driver is gone; the trial writer exits")
                return
            continue
        while True:
            try:
                messages.append(inbox.get_nowait())
            except queue.Empty:
                break
        if not writing.handle(messages, replies):
            return


class Writing:
    """The writer process's state: the study, its trials' MLflow runs, the first failure."""

    def __init__(self, store: Store, tracker: Any) -> None:
        self.store = store
        self.tracker = tracker
        self.study_id = ""
        self.runs: dict[str, str] = {}  # trial id -> MLflow run id
        # Trial id -> the last epoch in its MLflow history. A trial restarted from an older
        # checkpoint reports some epochs again; MLflow keeps each epoch once.
        self.logged_epochs: dict[str, int] = {}
        self.ended: set[str] = set()
        self.failure = ""

    def handle(self, messages: list[Any], replies: Any) -> bool:
        """Writes the records among `messages`, answering flushes in order; False on None."""
        records: list[Record] = []
        for message in messages:
            if isinstance(message, Record):
                records.append(message)
                continue
            self._write_guarded(records)
            records = []
            if message is None:
                return False
            if isinstance(message, Start):
                self._start(message)
            elif isinstance(message, Flush):
                if message.end_open_runs:
                    self._end_open_runs(message.end_open_runs)
                replies.put((message.token, self.failure))
        self._write_guarded(records)
        return True

    def _start(self, start: Start) -> None:
        self.study_id = start.study_id
        self.tracker.experiment_id = start.experiment_id
        self.tracker.parent_run_id = start.parent_run_id
        for trial in start.recorded:
            self._adopt_run(trial)

    def _adopt_run(self, trial: Trial) -> None:
        """Carries on the MLflow run of a trial the study's previous driver started."""
        if not trial.mlflow_run_id:
            return
        self.runs[trial.trial_id] = trial.mlflow_run_id
        if trial.state.is_terminal:
            self.ended.add(trial.trial_id)
            return
        # MLflow's own history: the previous writer may have logged epochs the store lacks.
        self.logged_epochs[trial.trial_id] = retry(self.tracker.last_step, trial.mlflow_run_id)

    def _write_guarded(self, records: list[Record]) -> None:
        if not records or self.failure:
            return
        try:
            self.write(records)
        except Exception as error:  # answered to the driver's next flush
            log.exception("could not record %d trial events", len(records))
            self.failure = repr(error)

    def write(self, records: list[Record]) -> None:
        params: dict[str, dict[str, Any]] = defaultdict(dict)
        metrics: dict[str, list[Any]] = defaultdict(list)
        rows = []
        for record in records:
            trial_id = record.trial.trial_id
            if record.kind is EventKind.TRIAL_STARTED and trial_id not in self.runs:
                self.runs[trial_id] = retry(self.tracker.start_trial, trial_id)
                params[self.runs[trial_id]].update(record.params)
            run_id = self.runs.get(trial_id, "")
            if record.kind is EventKind.TRIAL_RESULT:
                stamp = int(record.time.timestamp() * 1000)
                logged = self.logged_epochs.get(trial_id, 0)
                fresh = [(step, values) for step, values in record.history if step > logged]
                metrics[run_id] += [(k, v, stamp, step) for step, values in fresh for k, v in values.items()]
                self.logged_epochs[trial_id] = max([logged, *(step for step, _ in fresh)])
            if record.kind is EventKind.TRIAL_ENDED and run_id:
                self._log(run_id, params.pop(run_id, {}), metrics.pop(run_id, []))
                retry(self.tracker.end_run, run_id, record.mlflow_status, record.trial.error)
                self.ended.add(trial_id)
            rows.append((record.trial.model_copy(update={"mlflow_run_id": run_id}), record.kind, record.time))
        for run_id in set(params) | set(metrics):
            self._log(run_id, params.get(run_id, {}), metrics.get(run_id, []))
        retry(self.store.record_trials, self.study_id, rows)

    def _log(self, run_id: str, params: Mapping[str, Any], metrics: list[Any]) -> None:
        """Params and metrics in as few `log_batch` calls as MLflow's limits allow."""
        param_items = list(params.items())
        calls = max(
            -(-len(param_items) // MAX_PARAMS_PER_BATCH),
            -(-len(metrics) // MAX_METRICS_PER_BATCH),
        )
        for call in range(calls):
            retry(
                self.tracker.log_batch,
                run_id,
                dict(param_items[call * MAX_PARAMS_PER_BATCH : (call + 1) * MAX_PARAMS_PER_BATCH]),
                metrics[call * MAX_METRICS_PER_BATCH : (call + 1) * MAX_METRICS_PER_BATCH],
            )

    def _end_open_runs(self, status: str) -> None:
        for trial_id, run_id in self.runs.items():
            if trial_id not in self.ended:
                retry(self.tracker.end_run, run_id, status)
                self.ended.add(trial_id)


def retry(write: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    for attempt in range(WRITE_ATTEMPTS):
        try:
            return write(*args, **kwargs)
        except Exception:
            if attempt == WRITE_ATTEMPTS - 1:
                raise
            time.sleep(0.2 * 2**attempt)
    raise AssertionError("unreachable")
