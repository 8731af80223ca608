"""Ray Tune + Optuna wiring: the spec becomes a `Tuner`, a trainer becomes a trainable."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import optuna
import ray
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule, TrialScheduler
from ray.tune.search.optuna import OptunaSearch

from anneal.optunaspace import optuna_space
from anneal.spec import Domain, StudySpec
from cluster.driver.paretoasha import ParetoASHA, asha_rungs
from cluster.driver.promotion import PromotionASHA
from cluster.driver.studydata import study_data
from cluster.driver.warmstart import EarlierTrial
from cluster.trial.context import ENDED, EPOCH, HISTORY
from cluster.trial.function import ADOPTED_AS, Carried, DecisionEpochs, trial_function
from cluster.trial.plan import WorkerPlan
from trainers.contract import TrainerInfo


@dataclass(frozen=True)
class ConditionalSpace:
    """A search space with conditions, sampled define-by-run: each parameter in turn (parents
    first), suggested only when its conditions hold for those chosen before it, so a trial's
    config holds its active parameters alone. A class, not a closure: Tune pickles the searcher."""

    order: tuple[str, ...]
    distributions: dict[str, BaseDistribution]
    domains: dict[str, Domain]

    @classmethod
    def of(cls, spec: StudySpec) -> ConditionalSpace:
        return cls(tuple(spec.sampling_order()), optuna_space(spec), dict(spec.search_space))

    def __call__(self, trial: Any) -> None:
        chosen: dict[str, Any] = {}
        for name in self.order:
            if self.domains[name].active_given(chosen):
                chosen[name] = _suggest(trial, name, self.distributions[name])


def _suggest(trial: Any, name: str, distribution: BaseDistribution) -> Any:
    if isinstance(distribution, FloatDistribution):
        return trial.suggest_float(name, distribution.low, distribution.high, log=distribution.log)
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(name, distribution.low, distribution.high, log=distribution.log)
    assert isinstance(distribution, CategoricalDistribution)
    return trial.suggest_categorical(name, distribution.choices)


def searched_space(spec: StudySpec) -> dict[str, BaseDistribution] | ConditionalSpace:
    """What OptunaSearch samples: the distributions, or a ConditionalSpace when some parameter
    has conditions."""
    return ConditionalSpace.of(spec) if spec.is_conditional() else optuna_space(spec)


def optuna_sampler(spec: StudySpec) -> optuna.samplers.BaseSampler:
    seed = spec.search.seed
    samplers: dict[str, Any] = {
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        "gp": lambda: optuna.samplers.GPSampler(seed=seed),
        "cmaes": lambda: optuna.samplers.CmaEsSampler(seed=seed),
        "nsga2": lambda: optuna.samplers.NSGAIISampler(seed=seed),
    }
    sampler: optuna.samplers.BaseSampler = samplers[spec.search.sampler]()
    return sampler


# The user attribute of an Optuna trial learnt from an earlier study: that study's id.
WARM_START_ATTR = "anneal_warm_start"


class AdoptingOptunaSearch(OptunaSearch):
    """OptunaSearch that, on a resumed study, first hands out the configs of trials Tune's
    snapshot lost (see `cluster.driver.resume`), each marked with the identity it adopts. Optuna
    learns an adopted trial when it ends, as an evaluated point.

    With `admits` (a promotion-type ASHA's `admits_new_trial`), it suggests a trial only when
    that says a new one may start, and Tune's ConcurrencyLimiter is not used."""

    def __init__(
        self,
        *args: Any,
        distributions: dict[str, BaseDistribution] | None = None,
        admits: Callable[[], bool] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.admits = admits
        # Every parameter's distribution, for trials Optuna learns without suggesting them.
        self.distributions = distributions if distributions is not None else dict(kwargs.get("space") or {})
        self.adoptions: list[tuple[str, dict[str, Any]]] = []  # (trial id, config), handed out in order
        self.adopted: dict[str, dict[str, Any]] = {}  # Tune's trial id -> the config it adopted
        self.last_epochs: dict[str, int] = {}  # Tune's trial id -> the last epoch Optuna learnt

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self.admits is not None and not self.admits():
            return None  # not now: Tune asks again at its next step
        if not self.adoptions:
            return super().suggest(trial_id)
        adopted_id, config = self.adoptions.pop(0)
        self.adopted[trial_id] = config
        return {**config, ADOPTED_AS: adopted_id}

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        """Optuna learns each epoch's value at its epoch (Tune's result may carry several); with
        several objectives it takes final values only."""
        if isinstance(self.metric, list):
            return
        if trial_id in self.adopted or trial_id not in self._ot_trials or trial_id in self._completed_trials:
            return
        trial, last = self._ot_trials[trial_id], self.last_epochs.get(trial_id, 0)
        for epoch in result.get(HISTORY) or [result]:
            if self.metric in epoch and int(epoch.get(EPOCH, 0)) > last:
                last = int(epoch[EPOCH])
                trial.report(float(epoch[self.metric]), last)
        self.last_epochs[trial_id] = last

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        """A trial that ended on its own is COMPLETE with its value; one the scheduler stopped
        early is PRUNED (its value at the epoch it stopped is no final score for the sampler to
        learn from), as is one stopped while paused (Tune passes no result); one that failed is
        FAIL, whatever it reported before."""
        pruned = stopped_early(result, error) or (result is None and not error)
        config = self.adopted.pop(trial_id, None)
        if config is None and trial_id not in self._ot_trials:
            # Tune snapshots its trials and its searcher at different moments: a restored trial
            # may be newer than the restored searcher. Optuna learns it as an evaluated point.
            config = (result or {}).get("config") or {}
        if config is not None:
            values = None if pruned or error else self.values_of(result or {})
            params = {name: chosen for name, chosen in config.items() if name in self.distributions}
            # Without values, and not failed, Optuna can only hold it as pruned.
            state = TrialState.FAIL if error else TrialState.PRUNED if values is None else TrialState.COMPLETE
            self._learn(params, values, state)
        elif (pruned or error) and trial_id not in self._completed_trials:
            state = TrialState.FAIL if error else TrialState.PRUNED
            cast(optuna.Study, self._ot_study).tell(self._ot_trials[trial_id], state=state)
            self._completed_trials.add(trial_id)
        else:
            super().on_trial_complete(trial_id, result, error)
        self.last_epochs.pop(trial_id, None)

    def values_of(self, result: dict[str, Any]) -> list[float] | None:
        """The objectives' values in a result, in order; None when one is missing."""
        metrics = self.metric if isinstance(self.metric, list) else [self.metric]
        if any(result.get(metric) is None for metric in metrics):
            return None
        return [float(result[metric]) for metric in metrics]

    def learn_earlier(self, trials: Sequence[EarlierTrial]) -> None:
        """Adds completed trials of earlier studies to Optuna's study, before its first
        suggestion: each as a complete trial over the parameters it shares with this space,
        marked with the study it came from."""
        for earlier in trials:
            self._learn(earlier.params, earlier.values, TrialState.COMPLETE, {WARM_START_ATTR: earlier.study_id})

    def _learn(
        self,
        params: dict[str, Any],
        values: Sequence[float] | None,
        state: TrialState,
        attrs: dict[str, Any] | None = None,
    ) -> None:
        """Adds a trial Optuna did not suggest, over the parameters it holds (a conditional
        space's trial holds its active ones only)."""
        distributions = {name: self.distributions[name] for name in params}
        learnt = optuna.trial.create_trial(
            params=params,
            distributions=distributions,
            values=list(values) if values is not None else None,
            state=state,
            user_attrs=attrs or {},
        )
        cast(optuna.Study, self._ot_study).add_trial(learnt)

    def restore(self, checkpoint_path: str) -> None:
        # Tune restores the searcher inside fit(), after the driver handed it the adoptions; its
        # gate is the restored Tuner's scheduler, not the copy pickled with the searcher.
        pending, admits = self.adoptions, self.admits
        super().restore(checkpoint_path)
        self.adoptions, self.admits = pending, admits


# ASHA's max_t for a trainer without an epochs parameter.
DEFAULT_MAX_EPOCHS = 100


def stopped_early(result: dict[str, Any] | None, error: bool) -> bool:
    """Whether a trial that ended with `result` was stopped before its end (by its scheduler,
    or the study's time budget): it did not fail, and its trainer never reported its final
    epoch (the contract asks every trainer to)."""
    return not error and result is not None and not result.get(ENDED, False)


def scheduler(spec: StudySpec, info: TrainerInfo, slots: int) -> TrialScheduler:
    """The study's early stopping; `slots` is how many trials may run at once (a
    promotion-type ASHA keeps that count itself)."""
    config = spec.scheduler
    if config.asha is not None:
        asha, max_t = config.asha, asha_max_t(spec, info)
        if asha.type == "promotion":
            return PromotionASHA(
                spec.first_goal.metric,
                spec.first_goal.mode,
                time_attr=EPOCH,
                max_t=max_t,
                grace_period=asha.grace_period,
                reduction_factor=asha.reduction_factor,
                slots=slots,
            )
        if spec.is_multi_objective():
            return ParetoASHA(
                spec.goals,
                time_attr=EPOCH,
                max_t=max_t,
                grace_period=asha.grace_period,
                reduction_factor=asha.reduction_factor,
            )
        return ASHAScheduler(
            time_attr=EPOCH, max_t=max_t, grace_period=asha.grace_period, reduction_factor=asha.reduction_factor
        )
    if config.median is not None:
        return MedianStoppingRule(
            time_attr=EPOCH,
            grace_period=config.median.grace_period,
            min_samples_required=config.median.min_samples_required,
        )
    return FIFOScheduler()


def decision_epochs(spec: StudySpec, info: TrainerInfo) -> DecisionEpochs:
    """Where the study's scheduler decides whether a trial goes on: ASHA at each rung below its
    max_t (the same rungs Ray's ASHA makes: grace_period × reduction_factor^k), the median rule
    at every epoch from its grace period on; nowhere without early stopping. A promotion-type
    ASHA may pause a trial at a rung, so trials checkpoint there too."""
    config = spec.scheduler
    if config.asha is not None:
        asha = config.asha
        return DecisionEpochs(
            rungs=frozenset(asha_rungs(asha_max_t(spec, info), asha.grace_period, asha.reduction_factor)),
            checkpoint_rungs=asha.type == "promotion",
        )
    if config.median is not None:
        return DecisionEpochs(every_from=config.median.grace_period)
    return DecisionEpochs()


def asha_max_t(spec: StudySpec, info: TrainerInfo) -> int:
    """The epoch where ASHA's last rung lies: the trials' planned epochs, at least its grace period."""
    assert spec.scheduler.asha is not None
    return max(planned_epochs(spec, info) or DEFAULT_MAX_EPOCHS, spec.scheduler.asha.grace_period)


def planned_epochs(spec: StudySpec, info: TrainerInfo) -> int | None:
    """The epochs each trial runs to the end, where the trainer has an epochs parameter."""
    if info.epochs_param is None or info.epochs_param not in info.params:
        return None
    return int(spec.params.get(info.epochs_param, info.params[info.epochs_param].default))


# What the trial function of a data-parallel trial holds itself: it only waits on its workers,
# which Ray Train places with their own resources.
DATA_PARALLEL_TRIAL_CPU = 0.01


def make_trainable(
    spec: StudySpec,
    info: TrainerInfo,
    carried: dict[str, Carried] | None,
    data_roots: Sequence[str],
    experiment_dir: str,
) -> Any:
    """The trial function with its resources; the dataset is made ready once, here, and reaches
    the trials through the object store: its rows, or where its prepared table lies (so only
    the driver reads the data roots)."""
    data = study_data(spec, info, data_roots, experiment_dir)
    r = spec.resources
    plan = WorkerPlan(workers=r.workers, cpu=r.cpu, gpu=r.gpu, storage_path=train_storage(experiment_dir))
    decisions = decision_epochs(spec, info)
    run_trial = trial_function(spec.params, info, plan, spec.failure.checkpoint_interval_s, carried, decisions)
    resources = {"cpu": r.cpu, "gpu": r.gpu} if r.workers == 1 else {"cpu": DATA_PARALLEL_TRIAL_CPU}
    return tune.with_resources(tune.with_parameters(run_trial, data=data), resources)


def concurrent_trials(spec: StudySpec, cluster: dict[str, float]) -> int:
    """The spec's max_concurrent_trials, but no more data-parallel trials than the cluster can
    hold at once: Tune cannot reserve a trial's Train workers, so trials beyond that would
    start only to wait for a worker group. A table's study also leaves CPUs to the tasks that
    read it, which would otherwise wait behind trials that wait for them."""
    wanted = spec.budget.max_concurrent_trials
    reserved = spec.reserved_cpus()
    if spec.resources.workers == 1 and not reserved:
        return wanted
    free = {**cluster, "CPU": cluster.get("CPU", 0.0) - reserved}
    fits = [int(free.get(name, 0.0) // need) for name, need in spec.resources.trial_total().items() if need > 0]
    return max(1, min([wanted, *fits]))


def train_storage(experiment_dir: str) -> str:
    """Where a study's data-parallel trials keep their Ray Train runs, each named by its trial."""
    return os.path.join(experiment_dir, "train")


def build_tuner(
    spec: StudySpec,
    info: TrainerInfo,
    *,
    experiment_name: str,
    storage_path: str,
    callbacks: list[tune.Callback],
    carried: dict[str, Carried] | None = None,
    adoptions: list[tuple[str, dict[str, Any]]] | None = None,
    earlier: Sequence[EarlierTrial] = (),
    data_roots: Sequence[str],
) -> tune.Tuner:
    """A new Tuner for the study, its sampler taught the `earlier` trials of the studies it
    warm-starts from; `carried` and `adoptions` start it with the trials of a driver that died
    before Tune's first snapshot."""
    several = spec.is_multi_objective()
    slots = concurrent_trials(spec, ray.cluster_resources())
    chosen = scheduler(spec, info, slots)
    search = AdoptingOptunaSearch(
        space=searched_space(spec),
        distributions=optuna_space(spec),
        # Optuna takes several objectives as lists; one as itself, so it may prune on it.
        metric=[goal.metric for goal in spec.goals] if several else spec.first_goal.metric,
        mode=[goal.mode for goal in spec.goals] if several else spec.first_goal.mode,
        sampler=optuna_sampler(spec),
        admits=chosen.admits_new_trial if isinstance(chosen, PromotionASHA) else None,
    )
    search.adoptions = list(adoptions or [])
    search.learn_earlier(earlier)
    os.makedirs(storage_path, exist_ok=True)
    return tune.Tuner(
        make_trainable(spec, info, carried, data_roots, os.path.join(storage_path, experiment_name)),
        tune_config=tune.TuneConfig(
            metric=spec.first_goal.metric,
            mode=spec.first_goal.mode,
            search_alg=search,
            scheduler=chosen,
            num_samples=spec.budget.max_trials,
            # A promotion-type ASHA keeps the slots itself (ConcurrencyLimiter counts paused trials).
            max_concurrent_trials=None if isinstance(chosen, PromotionASHA) else slots,
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


def restore_tuner(
    spec: StudySpec,
    info: TrainerInfo,
    experiment_dir: str,
    carried: dict[str, Carried],
    adoptions: list[tuple[str, dict[str, Any]]],
    *,
    data_roots: Sequence[str],
) -> tuple[tune.Tuner, list[tune.Callback]]:
    """The study's Tuner from Tune's last snapshot (`Tuner.restore`): unfinished trials go on,
    ended ones stay ended. Returns it with its callbacks, restored without their live parts."""
    tuner = tune.Tuner.restore(
        experiment_dir,
        trainable=make_trainable(spec, info, carried, data_roots, experiment_dir),
        resume_unfinished=True,
        resume_errored=False,
    )
    # Tune keeps the Tuner's config in its snapshot and offers no public way to reach it.
    internal = getattr(tuner, "_local_tuner", None)
    search = getattr(getattr(internal, "_tune_config", None), "search_alg", None)
    if internal is None or not isinstance(search, AdoptingOptunaSearch):
        raise RuntimeError(f"cannot resume {experiment_dir}: this Ray Tune keeps its restored config elsewhere")
    search.adoptions = list(adoptions)
    return tuner, list(internal.get_run_config().callbacks or [])
