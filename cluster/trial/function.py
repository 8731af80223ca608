"""The function Tune runs for each trial, inside the trial's Ray actor.

Kept apart from the Tune/Optuna wiring so a trial actor imports only torch, Ray Tune and
the trainer; Optuna, the schedulers and the spec models stay on the driver. Each actor
start pays every import here, on the cores the trials train on.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import ray
import torch
from ray import tune
from ray.tune.result import DONE

from cluster.trial.context import ENDED, EPOCH, FINAL, HISTORY, METRICS, TuneTrainContext
from cluster.trial.plan import WorkerPlan
from cluster.trial.scratch import remove_dead_scratch, scratch_directory
from cluster.worker.handover import NO_DECISIONS
from cluster.worker.handover import DecisionEpochs as DecisionEpochs  # the driver's too: it imports trial, not worker
from trainers.contract import TrainerInfo
from trainers.workercontext import StudyData, device_for

# The config key that gives a trial Tune created on a resumed study the identity of a
# trial the study's previous driver started (see `cluster.driver.resume`).
ADOPTED_AS = "anneal_adopted_as"


@dataclass(frozen=True)
class Carried:
    """What a trial of a resumed study brings from before its driver died."""

    checkpoint_dir: str = ""  # its newest checkpoint on disk; '' when none
    ended: bool = False  # it ended before: report its end again instead of training
    metrics: dict[str, float] = field(default_factory=dict)  # its last metrics, when ended
    epochs: int = 0
    error: str = ""  # when it ended in an error


class ReplayedError(RuntimeError):
    """A trial that had failed before its study's driver died fails again on resume."""


def result_of(metrics: Mapping[str, float], epochs: int) -> dict[str, float]:
    return {**metrics, EPOCH: epochs}


def report_end(
    metrics: Mapping[str, float], epochs: int, checkpoint: Any | None, history: list[dict[str, float]] | None = None
) -> None:
    """Reports, again, the end of a trial that ended before its study's driver died, with its
    final checkpoint (and its epochs, when the store may lack some), and trains nothing."""
    ended = history or [result_of(metrics, epochs)]
    result: dict[str, Any] = {**metrics, EPOCH: epochs, HISTORY: ended, DONE: True, ENDED: True}
    if checkpoint is None:
        tune.report(result)
        return
    # A copy: Tune may persist this report's checkpoint into the very directory it came from.
    with checkpoint.as_directory() as source, scratch_directory() as directory:
        copy = shutil.copytree(source, directory / "checkpoint")
        tune.report(result, checkpoint=tune.Checkpoint.from_directory(str(copy)))


def trial_function(
    fixed: Mapping[str, Any],
    info: TrainerInfo,
    plan: WorkerPlan,
    checkpoint_interval_s: float,
    carried: Mapping[str, Carried] | None = None,
    decisions: DecisionEpochs = NO_DECISIONS,
) -> Callable[[dict[str, Any], StudyData], None]:
    """The function Tune runs for each trial: fixed params merged with the sampled config,
    trained here or, with `plan.workers` > 1, on a Ray Train worker group, handing its epochs
    to Tune at once at the scheduler's `decisions`. On a resumed study, `carried` holds what
    each trial of the previous driver left."""
    fixed = dict(fixed)
    carried = dict(carried or {})

    def run_trial(config: dict[str, Any], data: StudyData) -> None:
        remove_dead_scratch()  # a worker killed mid-checkpoint left its scratch behind
        config = dict(config)
        trial_id = str(config.pop(ADOPTED_AS, "")) or tune.get_context().get_trial_id()
        brought = carried.get(trial_id, Carried())
        if brought.ended:  # the store holds its end
            if brought.error:
                raise ReplayedError(brought.error)
            checkpoint = tune.Checkpoint.from_directory(brought.checkpoint_dir) if brought.checkpoint_dir else None
            report_end(brought.metrics, brought.epochs, checkpoint)
            return
        gpu_ids = [int(i) for i in ray.get_gpu_ids()] if plan.workers == 1 else []
        context = TuneTrainContext(
            {**fixed, **config},
            data,
            device_for(gpu_ids, os.environ.get("CUDA_VISIBLE_DEVICES"), torch.cuda.is_available()),
            num_threads=plan.threads,
            checkpoint_interval_s=checkpoint_interval_s,
            decisions=decisions,
            gpu_ids=gpu_ids,
            carried_checkpoint=brought.checkpoint_dir,
        )
        newest = context.newest_checkpoint()
        if newest is not None and newest[0].get(FINAL):
            # It ended after Tune's last snapshot, and its end never reached the store.
            saved, checkpoint = newest
            report_end(saved.get(METRICS, {}), int(saved[EPOCH]), checkpoint, saved.get(HISTORY))
            return
        if plan.workers > 1:
            # Imported here: Ray Train is seconds of imports a single-worker trial does without.
            from cluster.trial.dataparallel import run_data_parallel

            run_data_parallel(info.target, trial_id, data, context, plan)
        else:
            info.load().train(context)

    return run_trial
