"""The trial writer process: records trials in the store and MLflow for its study driver.

It drains its queue in order and writes each drained batch as one store transaction and,
per MLflow run, one `log_batch` (params and metrics together). In a process of its own, a
write never holds the driver's interpreter lock while Tune decides what runs next, and it
runs on another core. A failed write is retried; one that still fails is kept and answered
at the next flush.

It confirms each batch once the store's transaction holding it has committed (MLflow is
written first). A writer started in place of a dead one starts from what that one left
(`cluster.driver.recorded`): records up to the store's watermark are skipped, each trial's
MLflow run is found by its tag before one is created, and only epochs past each run's last
logged step are logged, so each lands once.

It runs at a lower scheduling priority than the trials: where cores are short, bookkeeping
waits for the moments training leaves free instead of slowing it.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from anneal.types import EventKind
from cluster.driver.recorded import Recorded, find_recorded
from cluster.driver.writermessages import Confirmed, Flush, Flushed, Record, Start
from cluster.store.store import Store

log = logging.getLogger("anneal.writer")

MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100
WRITE_ATTEMPTS = 4
# Added to the writer's nice value: trials (nice 0) come first for the CPU.
WRITER_NICENESS = 10
# How often an idle writer checks that its driver is still alive.
PARENT_POLL_S = 1.0
T = TypeVar("T")


def serve(store_url: str, tracking_uri: str, artifact_root: str, inbox: Any, replies: Any) -> None:
    """The writer process: connects, then writes what arrives until it receives None."""
    from cluster.tracking.tracker import MlflowTracker

    os.nice(WRITER_NICENESS)
    # Ray stops a job by signalling its whole process group, and a terminal's Ctrl-C reaches the
    # group too: the driver decides when its writer ends (None, or the driver's own exit), so the
    # writer is there for the driver's last flush, which ends the runs a cancel cut short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

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
    """The writer process's state: the study, what is recorded of it, the first failure."""

    def __init__(self, store: Store, tracker: Any) -> None:
        self.store = store
        self.tracker = tracker
        self.study_id = ""
        self.stream = ""
        # What the store and MLflow hold: the watermark, each trial's run, each run's last
        # logged step per metric (a trial restarted from an older checkpoint reports some
        # epochs again; MLflow keeps each epoch once).
        self.recorded = Recorded()
        self.failure = ""

    def handle(self, messages: list[Any], replies: Any) -> bool:
        """Writes the records among `messages`, confirming each batch and answering flushes
        in order; False on None."""
        records: list[Record] = []
        for message in messages:
            if isinstance(message, Record):
                records.append(message)
                continue
            self._write_batch(records, replies)
            records = []
            if message is None:
                return False
            if isinstance(message, Start):
                self._guarded(self._start, message)
            elif isinstance(message, Flush):
                if message.end_open_runs:
                    self._guarded(self._end_open_runs, message.end_open_runs)
                replies.put(Flushed(message.token, self.failure))
        self._write_batch(records, replies)
        return True

    def _start(self, start: Start) -> None:
        self.study_id = start.study_id
        self.stream = start.stream
        self.tracker.experiment_id = start.experiment_id
        self.tracker.parent_run_id = start.parent_run_id
        self.recorded = retry(find_recorded, self.store, self.tracker, start.study_id, start.stream)

    def _write_batch(self, records: list[Record], replies: Any) -> None:
        if records and self._guarded(self.write, records):
            replies.put(Confirmed(records[-1].sequence))

    def _guarded(self, action: Callable[..., Any], *args: Any) -> bool:
        """Runs `action` unless a failure came first; a failure is kept for the next flush's answer."""
        if self.failure:
            return False
        try:
            action(*args)
        except Exception as error:
            log.exception("the trial writer failed")
            self.failure = repr(error)
            return False
        return True

    def write(self, records: list[Record]) -> None:
        """MLflow first, then one store transaction that also moves the watermark: a record the
        store holds is whole in MLflow too. Records up to the watermark are already written."""
        fresh = [record for record in records if record.sequence > self.recorded.through]
        if not fresh:
            return
        params: dict[str, dict[str, Any]] = defaultdict(dict)
        metrics: dict[str, list[Any]] = defaultdict(list)
        rows = []
        for record in fresh:
            trial_id = record.trial.trial_id
            run_id = self._run_of(record, params)
            if record.kind is EventKind.TRIAL_RESULT:
                metrics[run_id] += self._unlogged(record)
            if record.kind is EventKind.TRIAL_ENDED and run_id:
                self._log(run_id, params.pop(run_id, {}), metrics.pop(run_id, []))
                retry(self.tracker.end_run, run_id, record.mlflow_status, record.trial.error)
                self.recorded.ended.add(trial_id)
            rows.append((record.trial.model_copy(update={"mlflow_run_id": run_id}), record.kind, record.time))
        for run_id in set(params) | set(metrics):
            self._log(run_id, params.get(run_id, {}), metrics.get(run_id, []))
        retry(self.store.record_trials, self.study_id, rows, through=(self.stream, fresh[-1].sequence))
        self.recorded.through = fresh[-1].sequence

    def _run_of(self, record: Record, params: dict[str, dict[str, Any]]) -> str:
        """The trial's MLflow run: the one recorded, or at its start a new one with its params."""
        trial_id = record.trial.trial_id
        runs = self.recorded.runs
        if record.kind is EventKind.TRIAL_STARTED:
            if trial_id not in runs:
                runs[trial_id] = retry(self.tracker.start_trial, trial_id)
            if runs[trial_id] not in self.recorded.with_params:
                params[runs[trial_id]].update(record.params)
                self.recorded.with_params.add(runs[trial_id])
        return runs.get(trial_id, "")

    def _unlogged(self, record: Record) -> list[tuple[str, float, int, int]]:
        """The result's metrics at steps its run does not hold yet, as (key, value, ms, step)."""
        trial_id = record.trial.trial_id
        if trial_id in self.recorded.ended:  # an ended run holds every epoch
            return []
        stamp = int(record.time.timestamp() * 1000)
        logged = self.recorded.logged_steps.setdefault(trial_id, {})
        fresh = []
        for step, values in record.history:
            for key, value in values.items():
                if step > logged.get(key, 0):
                    fresh.append((key, value, stamp, step))
                    logged[key] = step
        return fresh

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
        for trial_id, run_id in self.recorded.runs.items():
            if trial_id not in self.recorded.ended:
                retry(self.tracker.end_run, run_id, status)
                self.recorded.ended.add(trial_id)


def retry(write: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    for attempt in range(WRITE_ATTEMPTS):
        try:
            return write(*args, **kwargs)
        except Exception:
            if attempt == WRITE_ATTEMPTS - 1:
                raise
            time.sleep(0.2 * 2**attempt)
    raise AssertionError("unreachable")
