"""What runs inside a trial's Ray actor: the trainer's context and the trial function.

Kept apart from the Tune/Optuna wiring so a trial actor imports only torch, Ray Tune and
the trainer; Optuna, the schedulers and the spec models stay on the driver. Each actor
start pays every import here, on the cores the trials train on.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from ray import tune
from ray.tune.result import DONE

from trainers.contract import Splits, TrainerInfo

CHECKPOINT_FILE = "state.pt"
# How often a trial hands its epochs to Tune. Each hand-over stops the training thread
# until the driver fetches the result, which for epochs of milliseconds costs more than
# the epoch; early stopping decides at this granularity.
REPORT_INTERVAL_S = 0.5
# Result keys: the epoch count (schedulers' time attribute) and every epoch since the last result.
EPOCH = "epoch"
HISTORY = "anneal_epochs"


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
    ) -> None:
        self._num_threads = num_threads
        self._device = device
        self._checkpoint_interval = checkpoint_interval_s
        self._report_interval = report_interval_s
        self._last_persisted = self._last_reported = time.monotonic()
        self._epoch = 0
        self._pending: list[dict[str, float]] = []

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
            torch.save({"state": dict(checkpoint or {}), EPOCH: self._epoch}, Path(directory) / CHECKPOINT_FILE)
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(directory))

    def load_checkpoint(self) -> dict[str, Any] | None:
        checkpoint = tune.get_checkpoint()
        if checkpoint is None:
            return None
        saved = load_checkpoint_file(checkpoint)
        self._epoch = int(saved[EPOCH])
        state: dict[str, Any] = saved["state"]
        return state


def load_checkpoint_file(checkpoint: tune.Checkpoint) -> dict[str, Any]:
    with checkpoint.as_directory() as directory:
        saved: dict[str, Any] = torch.load(Path(directory) / CHECKPOINT_FILE, weights_only=True)
    return saved


def load_checkpoint_state(checkpoint: tune.Checkpoint) -> dict[str, Any]:
    """The trainer's state inside a checkpoint a trial persisted."""
    state: dict[str, Any] = load_checkpoint_file(checkpoint)["state"]
    return state


def trial_function(
    fixed: Mapping[str, Any], info: TrainerInfo, cpus: int, wants_gpu: bool, checkpoint_interval_s: float
) -> Callable[[dict[str, Any], Splits], None]:
    """The function Tune runs for each trial: fixed params merged with the sampled config."""
    fixed = dict(fixed)

    def run_trial(config: dict[str, Any], data: Splits) -> None:
        trainer = info.load()
        device = "cuda" if wants_gpu and torch.cuda.is_available() else "cpu"
        trainer.train({**fixed, **config}, data, TuneTrainContext(cpus, device, checkpoint_interval_s))

    return run_trial
