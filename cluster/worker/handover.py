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


@dataclass(frozen=True)
class DecisionEpochs:
    """The epochs at which a trial's scheduler decides whether the trial goes on: ASHA's rungs,
    or every epoch from the median rule's grace period. At each, the trial hands its epochs to
    Tune at once and waits for the decision, so it is stopped there and not a batch later.
    With `checkpoint_rungs` (promotion-type ASHA), the state is persisted at each rung too: the
    scheduler may pause the trial there and resume it from that checkpoint."""

    rungs: frozenset[int] = frozenset()
    every_from: int | None = None
    checkpoint_rungs: bool = False

    def __contains__(self, epoch: object) -> bool:
        if not isinstance(epoch, int):
            return False
        return epoch in self.rungs or (self.every_from is not None and epoch >= self.every_from)


NO_DECISIONS = DecisionEpochs()  # no early stopping: epochs go in batches, every report_interval_s


class Pacing:
    """When epochs are handed to Tune (every `report_interval_s`, at each of `decisions`, and at
    the final epoch) and when a checkpoint is persisted (at most every `checkpoint_interval_s`,
    and always at the final epoch and at rungs that checkpoint): each hand-over is a round trip
    to the driver (a single-worker trial's trainer waits for it; a data-parallel rank 0 sends it
    from a thread, `cluster.worker.sender`), and each checkpoint is a copy into the experiment
    storage and a snapshot on the driver."""

    def __init__(
        self, report_interval_s: float, checkpoint_interval_s: float, decisions: DecisionEpochs = NO_DECISIONS
    ) -> None:
        self.report_interval_s = report_interval_s
        self.checkpoint_interval_s = checkpoint_interval_s
        self.decisions = decisions
        self._last_reported = self._last_persisted = time.monotonic()

    def due(self, final: bool, has_checkpoint: bool, epoch: int = 0) -> tuple[bool, bool]:
        """(hand the pending epochs over now, persist this epoch's checkpoint with them)."""
        moment = time.monotonic()
        now = final or epoch in self.decisions
        if not now and moment - self._last_reported < self.report_interval_s:
            return False, False
        self._last_reported = moment
        at_rung = self.decisions.checkpoint_rungs and epoch in self.decisions.rungs
        persist = has_checkpoint and (final or at_rung or moment - self._last_persisted >= self.checkpoint_interval_s)
        if persist:
            self._last_persisted = moment
        return True, persist
