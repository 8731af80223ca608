"""The trial writer: a process of its own that records trials in the store and MLflow.

Tune calls its callbacks on the driver's single event loop, between scheduling
decisions. The callback only queues what happened; this process drains the queue in
order and writes each drained batch as one store transaction and, per MLflow run, one
`log_batch` (params and metrics together). In a process of its own, a write never holds
the driver's interpreter lock while Tune decides what runs next, and it runs on another
core. Nothing is dropped: a failed write is retried, and `flush` raises if it still fails.

Nothing is lost with the process either. The driver keeps each record until the writer
confirms it, which it does once the store's transaction holding it has committed (MLflow is
written first). A writer that dies (the OOM killer picks it first: large, and mostly idle) is
replaced at the driver's next call, and the new one is sent the study and every unconfirmed
record again. It starts from what the dead one left (`cluster.driver.recorded`): records up to
the store's watermark are skipped, each trial's MLflow run is found by its tag before one is
created, and only epochs past each run's last logged step are logged, so each lands once. A
writer that dies `MAX_REPLACEMENTS` times in a row without an answer is lost (`WriterLost`):
the driver then ends like a dead driver, leaving the study RUNNING for the server to resume.

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
import secrets
import signal
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from anneal.settings import Settings
from anneal.types import EventKind, Trial
from cluster.driver.outbox import Outbox
from cluster.driver.recorded import Recorded, find_recorded
from cluster.store.store import Store, now

log = logging.getLogger("anneal.writer")

MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100
WRITE_ATTEMPTS = 4
REPLY_POLL_S = 1.0
# Writer processes started in place of dead ones before the writer counts as lost; an answer
# from a writer starts the count again.
MAX_REPLACEMENTS = 3
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
    time: datetime = field(default_factory=now)  # also each metric's MLflow timestamp: a record sent again is the same
    params: dict[str, Any] = field(default_factory=dict)  # TRIAL_STARTED: what the child run logs
    # TRIAL_RESULT: every epoch the result carries, (epoch, metrics), for MLflow's histories.
    history: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    mlflow_status: str = ""  # TRIAL_ENDED: FINISHED, FAILED or KILLED
    sequence: int = 0  # its number in the driver's stream, from 1 (`Outbox`)


@dataclass
class Start:
    """Which study the writer records into, and the driver's record stream (the store's watermark names it)."""

    study_id: str
    experiment_id: str
    parent_run_id: str
    stream: str


@dataclass
class Flush:
    """Write everything before this, then answer; end the open runs with `end_open_runs`."""

    token: int
    end_open_runs: str = ""


@dataclass(frozen=True)
class Confirmed:
    """The writer's answer to a batch: the store holds every record up to `sequence`."""

    sequence: int


@dataclass(frozen=True)
class Flushed:
    """The writer's answer to a Flush: everything before it is written, or the first failure."""

    token: int
    failure: str


class WriterLost(RuntimeError):
    """The trial writer died more times in a row than it is replaced: the study's driver ends
    as a dead driver does, leaving the study RUNNING for the server's keeper to resume."""


class TrialWriter:
    """The driver's handle on the writer process: `put` never blocks, `flush` waits. Every
    record is kept until the writer confirms it; a writer found dead at the next call is
    replaced, and the new one is sent the study and every unconfirmed record again."""

    def __init__(
        self, store_url: str, tracking_uri: str, artifact_root: str, *, replacements: int = MAX_REPLACEMENTS
    ) -> None:
        self._arguments = (store_url, tracking_uri, artifact_root)
        self._replacements = replacements
        self._stream = secrets.token_hex(8)  # names this handle's records in the store's watermark
        self._outbox: Outbox[Record] = Outbox()
        self._start: Start | None = None
        self._tokens = 0
        self._deaths_in_a_row = 0
        self._closed = False
        self.lost = False  # it kept dying: see WriterLost
        self._spawn()

    @property
    def pid(self) -> int:
        """The writer process's id; a replacement has another."""
        return self._process.pid or 0

    def start(self, study_id: str, experiment_id: str, parent_run_id: str) -> None:
        self._keep_alive()
        self._start = Start(study_id, experiment_id, parent_run_id, self._stream)
        self._inbox.put(self._start)

    def put(self, record: Record) -> None:
        self._keep_alive()
        self._inbox.put(self._outbox.add(record))

    def flush(self, end_open_runs: str = "") -> None:
        """Waits until everything queued so far is written; raises if a write failed for good.
        With `end_open_runs`, MLflow runs of trials that never ended get that status."""
        self._tokens += 1
        flush = Flush(self._tokens, end_open_runs)
        self._keep_alive()
        self._inbox.put(flush)
        while (flushed := self._flushed(flush.token)) is None:
            self._replace()
            self._inbox.put(flush)
        if flushed.failure:
            raise RuntimeError(f"recording trials failed: {flushed.failure}")

    def close(self, timeout_s: float = 30.0) -> None:
        """Ends the writer once it has written what was put; `flush` first to see failures."""
        if self._closed:
            return
        self._closed = True
        if self._process.is_alive():
            self._inbox.put(None)
            self._process.join(timeout=timeout_s)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
        self._abandon_queues()

    def _flushed(self, token: int) -> Flushed | None:
        """The writer's answer to flush `token`, taking confirmations on the way; None when
        the writer died first."""
        while True:
            try:
                reply = self._replies.get(timeout=REPLY_POLL_S)
            except queue.Empty:
                if not self._process.is_alive():
                    return None
                continue
            self._take(reply)
            if isinstance(reply, Flushed) and reply.token == token:
                return reply

    def _keep_alive(self) -> None:
        """Takes the confirmations that came; replaces the writer if it died."""
        if self.lost:
            raise WriterLost("the trial writer was lost earlier")
        while True:
            try:
                self._take(self._replies.get_nowait())
            except queue.Empty:
                break
        if not self._process.is_alive():
            self._replace()

    def _take(self, reply: Confirmed | Flushed) -> None:
        self._deaths_in_a_row = 0  # this writer answers: it works
        if isinstance(reply, Confirmed):
            self._outbox.confirm(reply.sequence)

    def _replace(self) -> None:
        """A new writer process in place of the dead one, sent the study and what it had not confirmed."""
        dead, exitcode = self.pid, self._process.exitcode
        self._deaths_in_a_row += 1
        if self._deaths_in_a_row > self._replacements:
            self.lost = True
            raise WriterLost(f"the trial writer exited with code {exitcode}, {self._deaths_in_a_row} times in a row")
        resent = self._outbox.unconfirmed()
        self._abandon_queues()
        self._spawn()
        log.warning(
            "the trial writer (pid %d) exited with code %s; writer pid %d is sent the %d records it had not confirmed",
            dead,
            exitcode,
            self.pid,
            len(resent),
        )
        if self._start is not None:
            self._inbox.put(self._start)
        for record in resent:
            self._inbox.put(record)

    def _spawn(self) -> None:
        context = multiprocessing.get_context("spawn")  # never fork a process that runs Ray
        self._inbox: Any = context.Queue()
        self._replies: Any = context.Queue()
        self._process = context.Process(
            target=serve,
            args=(*self._arguments, self._inbox, self._replies),
            name="anneal-trial-writer",
            daemon=True,
        )
        self._process.start()
        log.info("trial writer started: pid %d", self.pid)

    def _abandon_queues(self) -> None:
        # A dead writer reads nothing more: without this, this process's exit would wait for
        # its queue's feeder thread to deliver what nobody reads.
        for channel in (self._inbox, self._replies):
            channel.cancel_join_thread()
            channel.close()


def start_writer(settings: Settings) -> TrialWriter:
    """A trial writer process for the settings' store and MLflow."""
    return TrialWriter(settings.store_url, settings.mlflow_tracking_uri, settings.mlflow_artifact_root)


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
