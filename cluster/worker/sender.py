"""Rank 0's hand-overs cross to the trial function on a thread of their own.

Handing epochs over is a round trip to the trial's queue, and a checkpoint goes by value: on
the training thread it stopped rank 0, and every other rank waited for it at the next
gradient all-reduce. The sender takes a snapshot of the state (training goes on changing the
tensors) and puts it on the queue while the ranks train on. Hand-overs arrive in order, one
at a time: a new one waits until the one before it has arrived, so snapshots never pile up.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Mapping
from typing import Any

import torch

from cluster.worker.handover import Handover


class HandoverSender:
    """Puts hand-overs on the trial's queue from a thread, in order, one in flight at a time.
    A hand-over that failed to arrive raises in the next `send` or `wait`."""

    def __init__(self, put: Callable[[Handover], None]) -> None:
        self._put = put
        self._in_flight: threading.Thread | None = None
        self._error: BaseException | None = None

    def send(self, handover: Handover) -> None:
        """Starts `handover` on its way once the one before it has arrived."""
        self.wait()
        # A daemon thread: a put stuck on a trial that is ending never keeps the worker alive.
        self._in_flight = threading.Thread(target=self._deliver, args=(handover,), name="anneal-handover", daemon=True)
        self._in_flight.start()

    def wait(self) -> None:
        """Returns once every hand-over sent has arrived."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            in_flight.join()
        error, self._error = self._error, None
        if error is not None:
            raise error

    def _deliver(self, handover: Handover) -> None:
        try:
            self._put(handover)
        except BaseException as error:  # raised on the training thread, at its next send or wait
            self._error = error


def snapshot(state: Any) -> Any:
    """A copy of the state, its tensors on the CPU, that later training steps leave as it is.
    Containers keep their types (a module's state dict is an OrderedDict with `_metadata`)."""
    if isinstance(state, torch.Tensor):
        return state.detach().to("cpu", copy=True)
    if isinstance(state, dict):
        copied = copy.copy(state)
        for key, value in state.items():
            copied[key] = snapshot(value)
        return copied
    if isinstance(state, Mapping):
        return {key: snapshot(value) for key, value in state.items()}
    if isinstance(state, tuple) and hasattr(state, "_fields"):  # a named tuple
        return type(state)(*(snapshot(value) for value in state))
    if isinstance(state, list | tuple):
        return type(state)(snapshot(value) for value in state)
    return copy.deepcopy(state)
