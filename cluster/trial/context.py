"""The trainer's context inside a Ray Tune trial: epochs handed to Tune, checkpoints persisted,
and the checkpoint a trial goes on from."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from ray import tune
from ray.tune.result import DONE

CHECKPOINT_FILE = "state.pt"
# How often a trial hands its epochs to Tune. Each hand-over stops the training thread
# until the driver fetches the result, which for epochs of milliseconds costs more than
# the epoch; early stopping decides at this granularity.
REPORT_INTERVAL_S = 0.5
# Result keys: the epoch count (schedulers' time attribute) and every epoch since the last result.
EPOCH = "epoch"
HISTORY = "anneal_epochs"
# Checkpoint file keys beside the trainer's state: the metrics reported with it, and whether
# it was the trial's final report.
METRICS = "metrics"
FINAL = "final"


class TuneTrainContext:
    """The trainer's context inside a Ray Tune trial.

    Epochs reach Tune every `report_interval_s` (and at the final epoch), each result
    carrying every epoch since the last one, so no metric is lost. Checkpoints are
    persisted at most every `checkpoint_interval_s` and always at the final epoch: each
    is a copy into the experiment storage and an experiment-state snapshot on the driver.
    The final result says the trial is done, so Tune ends it on that result rather than
    on a second round trip to the driver once the function returns.
    """

    def __init__(
        self,
        num_threads: int,
        device: str,
        checkpoint_interval_s: float,
        report_interval_s: float = REPORT_INTERVAL_S,
        carried_checkpoint: str = "",
    ) -> None:
        self._carried_checkpoint = carried_checkpoint
        self._newest: tuple[dict[str, Any], Any] | None = None
        self._looked = False
        self._num_threads = num_threads
        self._device = device
        self._checkpoint_interval = checkpoint_interval_s
        self._report_interval = report_interval_s
        self._last_persisted = self._last_reported = time.monotonic()
        self._epoch = 0
        self._pending: list[dict[str, float]] = []  # epochs not yet handed to Tune
        # Every epoch's metrics so far. Each checkpoint keeps them, and a trial resumed from one
        # hands them to Tune again: results the driver had not recorded when it died are not
        # lost (the trial writer keeps each epoch once).
        self._history: list[dict[str, float]] = []

    @property
    def device(self) -> str:
        return self._device

    @property
    def num_threads(self) -> int:
        return self._num_threads

    def report(
        self, metrics: Mapping[str, float], checkpoint: Mapping[str, Any] | None = None, *, final: bool = False
    ) -> None:
        self._epoch += 1
        self._pending.append({**metrics, EPOCH: self._epoch})
        self._history.append(self._pending[-1])
        moment = time.monotonic()
        if not final and moment - self._last_reported < self._report_interval:
            return
        result = {**metrics, EPOCH: self._epoch, HISTORY: self._pending}
        if final:
            result[DONE] = True
        self._pending = []
        self._last_reported = moment
        persist = checkpoint is not None and (final or moment - self._last_persisted >= self._checkpoint_interval)
        if not persist:
            tune.report(result)
            return
        self._last_persisted = moment
        # Tune copies the directory into the experiment storage before report returns.
        with tempfile.TemporaryDirectory(prefix="anneal-ckpt-") as directory:
            saved = {
                "state": dict(checkpoint or {}),
                EPOCH: self._epoch,
                METRICS: dict(metrics),
                FINAL: final,
                HISTORY: self._history,
            }
            torch.save(saved, Path(directory) / CHECKPOINT_FILE)
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(directory))

    def newest_checkpoint(self) -> tuple[dict[str, Any], Any] | None:
        """(what it holds, the checkpoint): the newest of Tune's checkpoint of this trial and
        the one it carried over a resume (newer when it checkpointed after Tune's last snapshot)."""
        if not self._looked:
            self._looked = True
            candidates: list[tuple[dict[str, Any], Any]] = []
            sources: list[Any] = [tune.get_checkpoint()]
            if self._carried_checkpoint:
                sources.append(tune.Checkpoint.from_directory(self._carried_checkpoint))
            for checkpoint in sources:
                try:
                    if checkpoint is not None:
                        candidates.append((load_checkpoint_file(checkpoint), checkpoint))
                except FileNotFoundError:
                    # Tune's snapshot may name a checkpoint it deleted (keeping num_to_keep)
                    # after the snapshot and before the driver died; the carried one is newer.
                    continue
            self._newest = max(candidates, key=lambda candidate: int(candidate[0][EPOCH]), default=None)
        return self._newest

    def load_checkpoint(self) -> dict[str, Any] | None:
        newest = self.newest_checkpoint()
        if newest is None:
            return None
        saved, _ = newest
        self._epoch = int(saved[EPOCH])
        self._history = list(saved.get(HISTORY, []))
        self._pending = list(self._history)
        state: dict[str, Any] = saved["state"]
        return state


def load_checkpoint_file(checkpoint: tune.Checkpoint) -> dict[str, Any]:
    with checkpoint.as_directory() as directory:
        return load_checkpoint_directory(directory)


def load_checkpoint_directory(directory: str) -> dict[str, Any]:
    saved: dict[str, Any] = torch.load(Path(directory) / CHECKPOINT_FILE, weights_only=True)
    return saved


def load_checkpoint_state(checkpoint: tune.Checkpoint) -> dict[str, Any]:
    """The trainer's state inside a checkpoint a trial persisted."""
    state: dict[str, Any] = load_checkpoint_file(checkpoint)["state"]
    return state
