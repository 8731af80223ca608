"""Dynamic batching of Predict calls.

Every Predict that reaches a replica pays a hop through Ray Serve, which costs far
more than the forward pass of a small model. Calls that arrive while a batch is in
flight are merged into the next one, up to `max_rows` rows: a lone caller goes
straight through on its own thread, and many concurrent callers share hops.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from anneal.types import Prediction

Rows = list[list[float]]
Answers = list[Prediction]


_STOP = None  # a dispatcher that takes it from the queue ends


@dataclass
class _Request:
    rows: Rows
    answer: Future[Answers] = field(default_factory=Future)


class PredictBatcher:
    """Sends the rows of concurrent calls to `predict` in merged batches, from `dispatchers` threads."""

    def __init__(self, predict: Callable[[Rows], Answers], max_rows: int, dispatchers: int = 2) -> None:
        self._predict = predict
        self.max_rows = max_rows
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._lock = threading.Lock()
        self._in_flight = 0  # calls to `predict` under way, inline or dispatched
        self._closed = False
        merging = dispatchers if max_rows > 1 else 0  # without batching every call goes straight through
        self._threads = [
            threading.Thread(target=self._dispatch, name=f"anneal-batcher-{n}", daemon=True) for n in range(merging)
        ]
        for thread in self._threads:
            thread.start()

    def predict(self, rows: Rows, timeout_s: float) -> Answers:
        if self.max_rows <= 1 or len(rows) >= self.max_rows:
            return self._predict(rows)
        with self._lock:
            idle = self._closed or (self._in_flight == 0 and self._queue.empty())
            if idle:
                self._in_flight += 1
            else:
                request = _Request(rows)
                self._queue.put(request)  # under the lock: never behind `close`'s stops
        if idle:  # nothing to merge with (or closed): skip the hand-over to a dispatcher thread
            try:
                return self._predict(rows)
            finally:
                with self._lock:
                    self._in_flight -= 1
        return request.answer.result(timeout=timeout_s)

    def close(self) -> None:
        """Ends the dispatcher threads once they have answered every call queued so far; calls
        made after go straight through."""
        with self._lock:
            self._closed = True
            for _ in self._threads:
                self._queue.put(_STOP)

    def _dispatch(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            size = len(first.rows)
            while size < self.max_rows:
                try:
                    request = self._queue.get_nowait()
                except queue.Empty:
                    break
                if request is _STOP:
                    self._queue.put(_STOP)  # for this thread's next turn
                    break
                batch.append(request)
                size += len(request.rows)
            with self._lock:
                self._in_flight += 1
            try:
                self._answer(batch)
            finally:
                with self._lock:
                    self._in_flight -= 1

    def _answer(self, batch: Sequence[_Request]) -> None:
        try:
            answers = self._predict([row for request in batch for row in request.rows])
        except Exception as error:
            if len(batch) == 1:
                batch[0].answer.set_exception(error)
                return
            # One caller's bad rows must not fail the others: answer each on its own.
            for request in batch:
                self._answer([request])
            return
        start = 0
        for request in batch:
            request.answer.set_result(answers[start : start + len(request.rows)])
            start += len(request.rows)
