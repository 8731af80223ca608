"""The trainer's context inside a Ray Tune trial: epochs handed to Tune, checkpoints persisted,
and the checkpoint a trial goes on from."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from ray import tune
from ray.tune.result import DONE

from cluster.trial.scratch import scratch_directory
from cluster.worker.handover import NO_DECISIONS, DecisionEpochs, Pacing
from cluster.worker.stream import ray_data_groups
from trainers.workercontext import StudyData, WorkerContext

CHECKPOINT_FILE = "state.pt"
# How often a trial hands its epochs to Tune. Each hand-over stops the training thread
# until the driver fetches the result, which for epochs of milliseconds costs more than
# the epoch; an epoch where the scheduler decides is handed over at once.
REPORT_INTERVAL_S = 0.5
# Result keys: the epoch count (schedulers' time attribute), every epoch since the last result,
# and whether the trainer marked it final (Tune's `done` is set on a result its scheduler
# stopped the trial at, too).
EPOCH = "epoch"
HISTORY = "anneal_epochs"
ENDED = "anneal_ended"
# Whether a result persisted a checkpoint at its epoch: a trial may be paused there and resumed.
CHECKPOINTED = "anneal_checkpointed"
# Checkpoint file keys beside the trainer's state: the metrics reported with it, and whether
# it was the trial's final report.
METRICS = "metrics"
FINAL = "final"


class TuneTrainContext(WorkerContext):
    """The trainer's context inside a Ray Tune trial, and the trial's side of a data-parallel one.

    Epochs reach Tune as `Pacing` says, each result carrying every epoch since the last one,
    so no metric is lost; at an epoch where the scheduler decides, at once. The final result
    says the trial is done, so Tune ends it on that result rather than on a second round trip
    to the driver once the function returns. A data-parallel trial's workers pace themselves
    and hand their epochs over here (`hand_over`).
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        data: StudyData,
        device: torch.device,
        *,
        num_threads: int,
        checkpoint_interval_s: float,
        gpu_ids: Sequence[int] = (),
        report_interval_s: float = REPORT_INTERVAL_S,
        decisions: DecisionEpochs = NO_DECISIONS,
        carried_checkpoint: str = "",
    ) -> None:
        super().__init__(config, data, device, num_threads=num_threads, gpu_ids=gpu_ids, group_reader=ray_data_groups)
        self._carried_checkpoint = carried_checkpoint
        self._newest: tuple[dict[str, Any], Any] | None = None
        self._looked = False
        self.pacing = Pacing(report_interval_s, checkpoint_interval_s, decisions)
        self.epoch = 0  # epochs trained so far, those of earlier attempts included
        self._pending: list[dict[str, float]] = []  # epochs not yet handed to Tune
        # Every epoch's metrics so far. Each checkpoint keeps them, and a trial resumed from one
        # hands them to Tune again: results the driver had not recorded when it died are not
        # lost (the trial writer keeps each epoch once).
        self._history: list[dict[str, float]] = []

    def report(
        self, metrics: Mapping[str, float], checkpoint: Mapping[str, Any] | None = None, *, final: bool = False
    ) -> None:
        self.epoch += 1
        self._pending.append({**metrics, EPOCH: self.epoch})
        hand, persist = self.pacing.due(final, checkpoint is not None, self.epoch)
        if hand:
            self.hand_over([], checkpoint if persist else None, final=final)

    def hand_over(self, epochs: list[dict[str, float]], checkpoint: Mapping[str, Any] | None, *, final: bool) -> None:
        """Hands Tune the pending epochs and `epochs` (each with its EPOCH) in one result, with
        the state to persist after the last of them, if any."""
        epochs, self._pending = [*self._pending, *epochs], []
        self._history.extend(epochs)
        self.epoch = int(epochs[-1][EPOCH])
        result: dict[str, Any] = {**epochs[-1], HISTORY: epochs}
        if final:
            result[DONE] = result[ENDED] = True
        if checkpoint is None:
            tune.report(result)
            return
        result[CHECKPOINTED] = True
        # Tune copies the directory into the experiment storage before report returns.
        with scratch_directory() as directory:
            saved = {
                "state": dict(checkpoint),
                EPOCH: self.epoch,
                METRICS: {name: value for name, value in epochs[-1].items() if name != EPOCH},
                FINAL: final,
                HISTORY: self._history,
            }
            torch.save(saved, directory / CHECKPOINT_FILE)
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(str(directory)))

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
        self.epoch = int(saved[EPOCH])
        # Handed to Tune again with the next result, which puts them back in the history.
        self._history = []
        self._pending = list(saved.get(HISTORY, []))
        state: dict[str, Any] = saved["state"]
        return state


def load_checkpoint_file(checkpoint: tune.Checkpoint) -> dict[str, Any]:
    with checkpoint.as_directory() as directory:
        return load_checkpoint_directory(directory)


def load_checkpoint_directory(directory: str) -> dict[str, Any]:
    # On the CPU: the driver that packages a GPU-trained trial may have no GPU; a trainer moves
    # what it resumes onto its own device.
    saved: dict[str, Any] = torch.load(Path(directory) / CHECKPOINT_FILE, weights_only=True, map_location="cpu")
    return saved


def load_checkpoint_state(checkpoint: tune.Checkpoint) -> dict[str, Any]:
    """The trainer's state inside a checkpoint a trial persisted."""
    state: dict[str, Any] = load_checkpoint_file(checkpoint)["state"]
    return state
