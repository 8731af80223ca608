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
        epochs = _epochs(spec, info)
        return ASHAScheduler(
            time_attr="training_iteration",
            max_t=max(epochs, config.asha.grace_period),
            grace_period=config.asha.grace_period,
            reduction_factor=config.asha.reduction_factor,
        )
    if config.median is not None:
        return MedianStoppingRule(
            time_attr="training_iteration",
            grace_period=config.median.grace_period,
            min_samples_required=config.median.min_samples_required,
        )
    return FIFOScheduler()


def _epochs(spec: StudySpec, info: TrainerInfo) -> int:
    if info.epochs_param is None:
        return 100
    value = spec.params.get(info.epochs_param, info.params[info.epochs_param].default if info.params else 100)
    return int(value)


class TuneTrainContext:
    """The trainer's context inside a Ray Tune trial.

    Checkpoints are persisted at most every `checkpoint_interval_s` and always at the
    final epoch: each persisted checkpoint is a copy into the experiment storage and,
    with `num_to_keep`, an experiment-state snapshot on the driver, which per epoch of
    a short trial costs more than the epoch itself.
    """

    def __init__(self, num_threads: int, device: str, checkpoint_interval_s: float) -> None:
        self._num_threads = num_threads
        self._device = device
        self._interval = checkpoint_interval_s
        self._last_persisted = time.monotonic()

    @property
    def device(self) -> str:
        return self._device

    @property
    def num_threads(self) -> int:
        return self._num_threads

    def report(
        self, metrics: Mapping[str, float], checkpoint: Mapping[str, Any] | None = None, *, final: bool = False
    ) -> None:
        due = final or time.monotonic() - self._last_persisted >= self._interval
        if checkpoint is None or not due:
            tune.report(dict(metrics))
            return
        self._last_persisted = time.monotonic()
        # Tune copies the directory into the experiment storage before report returns.
        with tempfile.TemporaryDirectory(prefix="anneal-ckpt-") as directory:
            torch.save(dict(checkpoint), Path(directory) / CHECKPOINT_FILE)
            tune.report(dict(metrics), checkpoint=tune.Checkpoint.from_directory(directory))

    def load_checkpoint(self) -> dict[str, Any] | None:
        checkpoint = tune.get_checkpoint()
        if checkpoint is None:
            return None
        return load_checkpoint_state(checkpoint)


def load_checkpoint_state(checkpoint: tune.Checkpoint) -> dict[str, Any]:
    with checkpoint.as_directory() as directory:
        state: dict[str, Any] = torch.load(Path(directory) / CHECKPOINT_FILE, weights_only=True)
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
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=callbacks,
            verbose=0,
        ),
    )
