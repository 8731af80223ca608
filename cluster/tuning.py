"""Ray Tune + Optuna wiring: the spec becomes a `Tuner`, a trainer becomes a trainable."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule, TrialScheduler
from ray.tune.search.optuna import OptunaSearch

from anneal.spec import StudySpec
from trainers.contract import Splits, TrainerInfo
from trainers.datasets import load_splits

CHECKPOINT_FILE = "state.pt"
# The most trial time a crash can lose between persisted checkpoints.
CHECKPOINT_INTERVAL_S = 10.0
# How often a trial hands its epochs to Tune. Each hand-over stops the training thread
# until the driver fetches the result, which for epochs of milliseconds costs more than
# the epoch; early stopping decides at this granularity.
REPORT_INTERVAL_S = 0.5
# Result keys: the epoch count (schedulers' time attribute) and every epoch since the last result.
EPOCH = "epoch"
HISTORY = "anneal_epochs"


def optuna_space(spec: StudySpec) -> dict[str, BaseDistribution]:
    space: dict[str, BaseDistribution] = {}
    for name, domain in spec.search_space.items():
        if domain.float_range is not None:
            r = domain.float_range
            space[name] = FloatDistribution(r.low, r.high, log=r.log)
        elif domain.int_range is not None:
            i = domain.int_range
            space[name] = IntDistribution(i.low, i.high, log=i.log)
        else:
            space[name] = CategoricalDistribution(list(domain.categorical or []))
    return space


def optuna_sampler(spec: StudySpec) -> optuna.samplers.BaseSampler:
    seed = spec.search.seed
    samplers: dict[str, Any] = {
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        "gp": lambda: optuna.samplers.GPSampler(seed=seed),
        "cmaes": lambda: optuna.samplers.CmaEsSampler(seed=seed),
    }
    sampler: optuna.samplers.BaseSampler = samplers[spec.search.sampler]()
    return sampler


def scheduler(spec: StudySpec, info: TrainerInfo) -> TrialScheduler:
    config = spec.scheduler
    if config.asha is not None:
        epochs = planned_epochs(spec, info) or 100
        return ASHAScheduler(
            time_attr=EPOCH,
            max_t=max(epochs, config.asha.grace_period),
            grace_period=config.asha.grace_period,
            reduction_factor=config.asha.reduction_factor,
        )
    if config.median is not None:
        return MedianStoppingRule(
            time_attr=EPOCH,
            grace_period=config.median.grace_period,
            min_samples_required=config.median.min_samples_required,
        )
    return FIFOScheduler()


def planned_epochs(spec: StudySpec, info: TrainerInfo) -> int | None:
    """The epochs each trial runs to the end, where the trainer has an epochs parameter."""
    if info.epochs_param is None or info.epochs_param not in info.params:
        return None
    return int(spec.params.get(info.epochs_param, info.params[info.epochs_param].default))


class TuneTrainContext:
    """The trainer's context inside a Ray Tune trial.

    Epochs reach Tune every `report_interval_s` (and at the final epoch), each result
    carrying every epoch since the last one, so no metric is lost. Checkpoints are
    persisted at most every `checkpoint_interval_s` and always at the final epoch: each
    is a copy into the experiment storage and an experiment-state snapshot on the driver.
    """

    def __init__(
        self,
        num_threads: int,
        device: str,
        checkpoint_interval_s: float = CHECKPOINT_INTERVAL_S,
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


def make_trainable(spec: StudySpec, info: TrainerInfo, checkpoint_interval_s: float = CHECKPOINT_INTERVAL_S) -> Any:
    """The function Tune runs for each trial: fixed params merged with the sampled config.

    The dataset is loaded once, here, and reaches the trials through the object store.
    """
    fixed = dict(spec.params)
    d = spec.dataset
    cpus = max(1, int(spec.resources.cpu))
    wants_gpu = spec.resources.gpu > 0

    def run_trial(config: dict[str, Any], data: Splits) -> None:
        trainer = info.load()
        device = "cuda" if wants_gpu and torch.cuda.is_available() else "cpu"
        trainer.train({**fixed, **config}, data, TuneTrainContext(cpus, device, checkpoint_interval_s))

    data = load_splits(d.name, d.validation_fraction, d.test_fraction, d.split_seed)
    resources = {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}
    return tune.with_resources(tune.with_parameters(run_trial, data=data), resources)


def build_tuner(
    spec: StudySpec,
    info: TrainerInfo,
    *,
    experiment_name: str,
    storage_path: str,
    callbacks: list[tune.Callback],
) -> tune.Tuner:
    search = OptunaSearch(
        space=optuna_space(spec),
        metric=spec.objective.metric,
        mode=spec.objective.mode,
        sampler=optuna_sampler(spec),
    )
    os.makedirs(storage_path, exist_ok=True)
    return tune.Tuner(
        make_trainable(spec, info),
        tune_config=tune.TuneConfig(
            metric=spec.objective.metric,
            mode=spec.objective.mode,
            search_alg=search,
            scheduler=scheduler(spec, info),
            num_samples=spec.budget.max_trials,
            max_concurrent_trials=spec.budget.max_concurrent_trials,
            time_budget_s=spec.budget.time_budget_s,
            # A fresh worker per trial costs a process start and a torch import each time.
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=experiment_name,
            storage_path=storage_path,
            failure_config=tune.FailureConfig(max_failures=spec.failure.max_retries),
            # Two, not one: Tune snapshots the whole experiment state (searcher included)
            # whenever a trial has made num_to_keep checkpoints since the last snapshot;
            # with one, that is after every short trial.
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            callbacks=callbacks,
            verbose=0,
        ),
    )
