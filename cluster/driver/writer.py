"""The driver's handle on its trial writer, a process of its own
(`cluster.driver.writerprocess`) that records trials in the store and MLflow.

Tune calls its callbacks on the driver's single event loop, between scheduling decisions.
The callback only queues what happened; the writer drains the queue, off the driver's
interpreter lock and on another core. Nothing is dropped: `flush` waits for everything
queued and raises if a write failed for good.

Nothing is lost with the process either. The driver keeps each record until the writer
confirms it (`cluster.driver.outbox`). A writer that dies (the OOM killer picks it first:
large, and mostly idle) is replaced at the driver's next call, and the new one is sent the
study and every unconfirmed record again; it skips what the dead one wrote. A writer that
dies `MAX_REPLACEMENTS` times in a row without an answer is lost (`WriterLost`): the driver
then ends like a dead driver, leaving the study RUNNING for the server to resume.

A standby driver starts its writer while it waits for a study, so the writer's imports
and database connections are paid before the study starts.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import secrets
from typing import Any

from anneal.settings import Settings
from cluster.driver.outbox import Outbox
from cluster.driver.writermessages import Confirmed, Flush, Flushed, Record, Start
from cluster.driver.writerprocess import serve

log = logging.getLogger("anneal.writer")

REPLY_POLL_S = 1.0
# Writer processes started in place of dead ones before the writer counts as lost; an answer
# from a writer starts the count again.
MAX_REPLACEMENTS = 3


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
