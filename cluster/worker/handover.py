"""What passes from a data-parallel trial's rank 0 to its Tune trial function, and when.

Tune hears of a trial only through its trial function, so rank 0 hands it the trial's epochs
(already averaged over the workers) and, now and then, the state to persist; the trial
function reports them to Tune and persists the checkpoint (`cluster.trial.context`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Handover:
    """Epochs for Tune (each with its epoch number), the state to persist after the last of
    them (None: do not persist now), and whether the last is the trial's final epoch."""

    epochs: list[dict[str, float]]
    checkpoint: Mapping[str, Any] | None
    final: bool


class Pacing:
    """When epochs are handed to Tune (every `report_interval_s`, and at the final epoch) and
    when a checkpoint is persisted (at most every `checkpoint_interval_s`, and always at the
    final epoch): each hand-over is a round trip to the driver (a single-worker trial's trainer
    waits for it; a data-parallel rank 0 sends it from a thread, `cluster.worker.sender`), and
    each checkpoint is a copy into the experiment storage and a snapshot on the driver."""

    def __init__(self, report_interval_s: float, checkpoint_interval_s: float) -> None:
        self.report_interval_s = report_interval_s
        self.checkpoint_interval_s = checkpoint_interval_s
        self._last_reported = self._last_persisted = time.monotonic()

    def due(self, final: bool, has_checkpoint: bool) -> tuple[bool, bool]:
        """(hand the pending epochs over now, persist this epoch's checkpoint with them)."""
        moment = time.monotonic()
        if not final and moment - self._last_reported < self.report_interval_s:
            return False, False
        self._last_reported = moment
        persist = has_checkpoint and (final or moment - self._last_persisted >= self.checkpoint_interval_s)
        if persist:
            self._last_persisted = moment
        return True, persist
