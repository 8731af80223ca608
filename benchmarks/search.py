"""Search quality: epochs and seconds until some trial first reaches a target validation
accuracy, for random search, anneal's TPE + ASHA, and the same written by hand in Ray Tune.

Workload: `mlp_classifier` (3 hidden layers of 256, batch 128, 27 epochs) on a 4-class table
of 90,000 rows and 40 features that the benchmark makes with scikit-learn's
`make_classification` and writes as CSV into the stack's data root (54,000 training rows:
about 1 s an epoch on one CPU; the figure measured is printed). The space has a large bad part:
lr log-uniform over five decades, adam or sgd, weight_decay log-uniform over five decades,
dropout up to 0.7. Every arm runs 2 trials at a time, 1 CPU each, at most 40 trials:

    a  anneal, random sampling, no pruning
    b  anneal, TPE + ASHA (grace period 1, reduction factor 3: rungs at epochs 1, 3, 9 and 27),
       promotion type: a trial waits, paused at its rung, until it ranks in the top third there
    c  Ray Tune + Optuna + ASHA written by hand: `tune.Tuner`, `OptunaSearch` (TPE, the same
       seed), the same `ASHAScheduler`, a function trainable that runs the same trainer with a
       `tune.report` per epoch (a checkpoint at the last epoch only, actors reused, Tune's
       result loggers off: the fastest way a user writes it)

"Epochs to target" sums the epochs of every trial, in the order their reports happened, up to
and including the first report with val_accuracy >= the target; "seconds to target" runs from the
study's request (anneal: CreateStudy; Ray Tune: reading the data for the Tuner) to that report.
anneal's reports come from WatchStudy's TRIAL_RESULT events (the driver's time of each result,
the trial's epochs and latest metrics); Ray Tune's from a callback on its results. A run stops
once the target is reached (anneal: CancelStudy; Tune: a stopper that ends the experiment). A
run that spends its budget without reaching it is censored: its figures are lower bounds,
shown as `>N`, and ranked above every run that reached the target.

The target: 32 configurations drawn at random from the space and trained 27 epochs each in a
plain loop reached val_accuracy 0.95 in 5 cases (1 in 6.4), at epochs 10, 13, 17, 18 and 22;
none by epoch 9. So random search needs about 6 or 7 trials (some 170 epochs) on average,
seldom more than 40 (0.84^40 < 0.1%), and a trial reaching it runs past ASHA's first three
rungs: early stopping has to keep the right trials, not only drop the bad ones.

Why 27 epochs: if ASHA (grace period 1, reduction factor 3) let a third of the trials at each
rung go on, a trial drawn at random would run on average 1*2/3 + 3*2/9 + 9*1/9 = 2.3 of 9
epochs (rungs 1, 3, 9), a quarter of a full run, but 1*2/3 + 3*2/9 + 9*2/27 + 27*1/27 = 3 of 27
(rungs 1, 3, 9, 27), a ninth. With 9 epochs, early stopping could not bring random search's
epochs near a third once the trial that reaches the target (the same in both arms) and the
one beside it are counted; trials of tens of epochs are what ASHA is made for. Measured, it
saves less than that with Ray's `ASHAScheduler` (see the README): it stops a trial only when it
falls below the top third of the results already at its rung, so the first trial to reach a
rung goes on, and the first trials of a study tend to run to their end. anneal's arm uses the
promotion type (`cluster.driver.promotion`), where nothing goes on for being first.

TPE samples at random until 10 trials have ended, drawing what random search draws with the
same seed: (a) and (b) try the same first 10 or so configurations, and differ there only by
early stopping.

Warm start: one earlier study (random sampling, no pruning, seed 100, 10 trials run to the end
of its budget, not stopped at the target) is made first; then for each seed a (b)-style study
with ASHA's default, stopping type runs to the target cold (b'), and again with a
`search.warm_start` that names the earlier study; their trials to target are compared. Not the
promotion type of (b): there a trial reaches epoch 9 only once some 9 trials were recorded at
rung 1 and 3 at rung 3, however well the sampler knows the space, so trials to target measure
the rungs more than the sampler (measured, warm 15 against cold 13: see the README).
Random and unpruned, so every earlier trial completes and the sampler learns all 10, the bad
ones too (a warm start learns completed trials only); 10, so that TPE models the space from
its first suggestion. One earlier study serves every seed, to keep the full run short.

    python -m benchmarks.search [--seeds 0 1 2 3 4] [--smoke]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ray import tune

from anneal import Client, StudySpec, StudyState
from anneal.errors import FailedPrecondition
from anneal.types import EventKind, StudyEvent
from benchmarks.common import Stack, console, local_stack, settle, show, wait_for_standby_running, write
from benchmarks.study_overhead import UserContext

METRIC = "val_accuracy"
SLOTS = 2
TABLE = "search.csv"
FEATURES = 40
CLASSES = 4
PARAMS = {"hidden_size": 256, "num_layers": 3, "batch_size": 128}
SPACE: dict[str, Any] = {
    "lr": {"float": {"low": 1e-5, "high": 1.0, "log": True}},
    "optimizer": {"categorical": ["adam", "sgd"]},
    "weight_decay": {"float": {"low": 1e-6, "high": 1e-1, "log": True}},
    "dropout": {"float": {"low": 0.0, "high": 0.7}},
}
GRACE_PERIOD = 1
REDUCTION_FACTOR = 3
ASHA = {"grace_period": GRACE_PERIOD, "reduction_factor": REDUCTION_FACTOR}
# anneal's arm pauses trials at rungs (promotion); Ray's ASHAScheduler, by hand, stops them.
ANNEAL_ASHA = {**ASHA, "type": "promotion"}
# The seed of the earlier study every warm start learns from: another than any arm's.
EARLIER_SEED = 100
LOGGERS_OFF = "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"
# The longest wait for a quiet machine before each run: other work on a shared machine may
# keep it from ever being quiet.
QUIET_TIMEOUT_S = 15.0

RANDOM = "a anneal, random, no pruning"
TPE_ASHA = "b anneal, TPE + ASHA"
BY_HAND = "c Ray Tune + Optuna + ASHA, by hand"
# The warm start is set against a cold study of ASHA's default (stopping) type: under promotion,
# reaching a rung's epochs takes a count of trials at the rungs below whatever the sampler knows.
COLD = "b' anneal, TPE + ASHA stopping"
WARM = "b' warm-started"


@dataclass(frozen=True)
class Size:
    rows: int
    epochs: int
    max_trials: int
    target: float
    earlier_trials: int  # the trials of the study a warm start learns from


FULL = Size(rows=90_000, epochs=27, max_trials=40, target=0.95, earlier_trials=10)
# Every arm stops at its first report: the whole path runs in seconds.
SMOKE = Size(rows=2_000, epochs=1, max_trials=2, target=0.0, earlier_trials=2)


# ------------------------------------------------------------------ what a run saw, and its outcome


@dataclass(frozen=True)
class Seen:
    """A trial's start (epochs 0, no value) or one of its reports, seconds after the run began."""

    seconds: float
    trial: str
    epochs: int  # the trial's epochs so far
    value: float | None = None


@dataclass(frozen=True)
class Outcome:
    reached: bool  # False: the budget ran out first, and the figures below are lower bounds
    epochs: int  # summed over trials, up to and including the first report at the target
    seconds: float
    trials: int  # trials started by then
    first_trial_s: float  # from the request to the first trial's start


def outcome(seen: Iterable[Seen], target: float) -> Outcome:
    """Scans a run's starts and reports in order up to the first report at or above the target."""
    epochs: dict[str, int] = {}
    first_start = math.nan
    last = 0.0
    for item in seen:
        if item.value is None and math.isnan(first_start):
            first_start = item.seconds
        # Each report holds the trial's epochs so far: its latest counts them all.
        epochs[item.trial] = max(epochs.get(item.trial, 0), item.epochs)
        last = item.seconds
        if item.value is not None and item.value >= target:
            return Outcome(True, sum(epochs.values()), item.seconds, len(epochs), first_start)
    return Outcome(False, sum(epochs.values()), last, len(epochs), first_start)


def censored_median(outcomes: Sequence[Outcome], figure: Callable[[Outcome], float]) -> tuple[float, bool]:
    """The median of a figure over runs, censored runs ranked above every run that reached the
    target; True when a censored run is part of the median (it is then a lower bound)."""
    ranked = sorted(outcomes, key=lambda o: (not o.reached, figure(o)))
    middle = ranked[(len(ranked) - 1) // 2 : len(ranked) // 2 + 1]
    return statistics.mean(figure(o) for o in middle), not all(o.reached for o in middle)


def shown(value: float, censored: bool, digits: int = 0) -> str:
    return f"{'>' if censored else ''}{value:.{digits}f}"


# ------------------------------------------------------------------ the workload


def write_table(root: Path, rows: int) -> Path:
    """The classification table, as a CSV file the trainer reads whole (a header, the label last)."""
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=rows,
        n_features=FEATURES,
        n_informative=FEATURES // 2,
        n_redundant=FEATURES // 4,
        n_classes=CLASSES,
        n_clusters_per_class=3,
        flip_y=0.02,
        random_state=0,
    )
    root.mkdir(parents=True, exist_ok=True)
    path = root / TABLE
    header = ",".join([*(f"f{i}" for i in range(FEATURES)), "label"])
    formats = ["%.6g"] * FEATURES + ["%d"]
    np.savetxt(path, np.column_stack([x, y]), fmt=formats, delimiter=",", header=header, comments="")
    return path


def study_spec(
    size: Size,
    seed: int,
    *,
    sampler: str,
    pruning: bool,
    max_trials: int,
    warm_start: Sequence[str] = (),
    asha: dict[str, Any] = ANNEAL_ASHA,
) -> StudySpec:
    return StudySpec.parse(
        {
            "name": f"bench-search-{sampler}-{seed}",
            "trainer": "mlp_classifier",
            "dataset": {"name": "search", "path": TABLE},
            "params": {**PARAMS, "epochs": size.epochs},
            "search_space": SPACE,
            "objective": {"metric": METRIC, "mode": "max"},
            "search": {"sampler": sampler, "seed": seed, "warm_start": list(warm_start)},
            "scheduler": {"asha": asha} if pruning else "none",
            "budget": {"max_trials": max_trials, "max_concurrent_trials": SLOTS},
            "resources": {"cpu": 1},
        }
    )


def epoch_seconds_alone(spec: StudySpec, roots: Sequence[str]) -> float:
    """One epoch of the workload's trainer in this process on one thread (after a first epoch
    that warms torch up), with a learning rate from the good part of the space."""
    from trainers.contract import Task
    from trainers.datasets import load_dataset
    from trainers.mlp import MLPClassifierTrainer

    data = load_dataset(spec.dataset, roots, Task.CLASSIFICATION)
    context = UserContext({**spec.params, "epochs": 2, "lr": 1e-3}, data, checkpoint_every_epoch=False)
    times: list[float] = []
    context.report = lambda *_, **__: times.append(time.perf_counter())  # type: ignore[method-assign]
    MLPClassifierTrainer().train(context)
    return times[1] - times[0]


# ------------------------------------------------------------------ anneal


def seen_in(event: StudyEvent, began: float) -> Seen | None:
    """A trial's start or report in a WatchStudy event, timed by the driver that saw it."""
    trial = event.trial
    if trial is None or event.kind not in (EventKind.TRIAL_STARTED, EventKind.TRIAL_RESULT):
        return None
    seconds = event.time.timestamp() - began
    if event.kind is EventKind.TRIAL_STARTED:
        return Seen(seconds, trial.trial_id, 0)
    return Seen(seconds, trial.trial_id, trial.epochs, trial.metrics.get(METRIC))


def anneal_run(bench: Bench, spec: StudySpec, target: float | None) -> tuple[list[Seen], str]:
    """Runs a study; with a target, cancels it at the first report that reaches it (without
    one it runs to its end). Returns its trials' starts and reports, and the study's id."""
    seen: list[Seen] = []
    with bench.stack.client() as client:
        began = time.time()
        study = client.create_study(spec)
        stopping = False
        for event in client.watch_study(study.study_id):
            item = seen_in(event, began)
            if item is not None:
                seen.append(item)
                reached = target is not None and item.value is not None and item.value >= target
                if reached and not stopping:
                    stopping = True
                    cancel_unless_ended(client, study.study_id)
            if event.kind is EventKind.STUDY_ENDED:
                break
        ended = client.get_study(study.study_id)
    if ended.state not in (StudyState.SUCCEEDED, StudyState.CANCELLED):
        raise RuntimeError(f"study {study.study_id} ended {ended.state.value}: {ended.error}")
    # The next study is not denied its standby; the wait for a quiet machine lets its start-up finish.
    wait_for_standby_running(bench.stack, study.ray_job_id)
    return seen, study.study_id


def cancel_unless_ended(client: Client, study_id: str) -> None:
    """Cancels the study, unless it ended on its own first (its last trial reached the target)."""
    try:
        client.cancel_study(study_id)
    except FailedPrecondition:
        pass


# ------------------------------------------------------------------ Ray Tune by hand


def ray_tune_run(stack: Stack, spec: StudySpec, target: float) -> list[Seen]:
    """The (b) study as a Ray Tune user writes it, stopped at the target. Returns its trials'
    starts and reports."""
    import optuna
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    from cluster.driver.tuning import optuna_space
    from trainers.contract import Task
    from trainers.datasets import load_dataset
    from trainers.mlp import MLPClassifierTrainer

    fixed = dict(spec.params)

    def train(config: dict[str, Any], data: Any) -> None:
        MLPClassifierTrainer().train(UserContext({**fixed, **config}, data, checkpoint_every_epoch=False))

    watch = TargetWatch(target)
    data = load_dataset(spec.dataset, stack.settings.data_roots, Task.CLASSIFICATION)
    search = OptunaSearch(
        space=optuna_space(spec), metric=METRIC, mode="max", sampler=optuna.samplers.TPESampler(seed=spec.search.seed)
    )
    asha = ASHAScheduler(
        metric=METRIC,
        mode="max",
        max_t=int(spec.params["epochs"]),
        grace_period=GRACE_PERIOD,
        reduction_factor=REDUCTION_FACTOR,
    )
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(train, data=data), {"cpu": 1}),
        tune_config=tune.TuneConfig(
            search_alg=search,
            scheduler=asha,
            num_samples=spec.budget.max_trials,
            max_concurrent_trials=SLOTS,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=f"bench-search-{time.time_ns()}",
            storage_path=stack.settings.tune_storage,
            stop=StopAtTarget(watch),
            callbacks=[watch],
            verbose=0,
        ),
    )
    with tune_loggers_off():
        tuner.fit()
    return watch.seen


class TargetWatch(tune.Callback):
    """Every trial's start and results as Tune reports them, timed from the run's start."""

    def __init__(self, target: float) -> None:
        self.target = target
        self.began = time.time()
        self.seen: list[Seen] = []
        self.reached = False

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.seen.append(Seen(time.time() - self.began, trial.trial_id, 0))

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        value = result.get(METRIC)
        self.seen.append(Seen(time.time() - self.began, trial.trial_id, int(result["training_iteration"]), value))
        self.reached = self.reached or (value is not None and value >= self.target)


class StopAtTarget(tune.Stopper):
    """Ends the whole experiment once the watch has seen the target."""

    def __init__(self, watch: TargetWatch) -> None:
        self.watch = watch

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.watch.reached


@contextmanager
def tune_loggers_off() -> Iterator[None]:
    """Tune's automatic result loggers off in this process, as anneal runs Tune (the faster way)."""
    before = os.environ.get(LOGGERS_OFF)
    os.environ[LOGGERS_OFF] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(LOGGERS_OFF, None)
        else:
            os.environ[LOGGERS_OFF] = before


# ------------------------------------------------------------------ the rounds


def epoch_durations(seen: Sequence[Seen]) -> list[float]:
    """Seconds between a trial's consecutive one-epoch reports (from its first report on, so
    its start-up is left out)."""
    last: dict[str, Seen] = {}
    durations = []
    for item in seen:
        before = last.get(item.trial)
        if (
            item.value is not None
            and before is not None
            and before.value is not None
            and item.epochs == before.epochs + 1
        ):
            durations.append(item.seconds - before.seconds)
        last[item.trial] = item
    return durations


@dataclass
class Bench:
    """What every run of the benchmark shares."""

    stack: Stack
    size: Size
    quiet_timeout_s: float
    earlier_study: str = ""  # the study every warm start learns from
    epoch_durations: list[float] = field(default_factory=list)  # the random arm's, in its studies

    def quiet(self) -> None:
        settle(max_wait_s=self.quiet_timeout_s)


def one_seed(bench: Bench, seed: int, turn: int) -> dict[str, Outcome]:
    """The three arms (their order turned with `turn`, so drift in the machine hits them
    alike), then the cold and the warm-started study of ASHA's stopping type."""
    size = bench.size
    random = study_spec(size, seed, sampler="random", pruning=False, max_trials=size.max_trials)
    tpe = study_spec(size, seed, sampler="tpe", pruning=True, max_trials=size.max_trials)
    arms: dict[str, Callable[[], list[Seen]]] = {
        RANDOM: lambda: anneal_run(bench, random, size.target)[0],
        TPE_ASHA: lambda: anneal_run(bench, tpe, size.target)[0],
        BY_HAND: lambda: ray_tune_run(bench.stack, tpe, size.target),
    }
    order = list(arms)[turn % len(arms) :] + list(arms)[: turn % len(arms)]
    outcomes: dict[str, Outcome] = {}
    for name in order:
        bench.quiet()
        seen = arms[name]()
        if name == RANDOM:
            bench.epoch_durations.extend(epoch_durations(seen))
        outcomes[name] = _logged(seed, name, outcome(seen, size.target))
    for name, warm_start in ((COLD, []), (WARM, [bench.earlier_study])):
        bench.quiet()
        spec = study_spec(
            size, seed, sampler="tpe", pruning=True, max_trials=size.max_trials, warm_start=warm_start, asha=ASHA
        )
        outcomes[name] = _logged(seed, name, outcome(anneal_run(bench, spec, size.target)[0], size.target))
    return {name: outcomes[name] for name in (*arms, COLD, WARM)}


def earlier_study(bench: Bench) -> str:
    """The study warm starts learn from: random sampling, no pruning, another seed, run to the
    end of its budget (every trial completes, so the sampler learns each one). Returns its id."""
    size = bench.size
    bench.quiet()
    spec = study_spec(size, EARLIER_SEED, sampler="random", pruning=False, max_trials=size.earlier_trials)
    seen, study_id = anneal_run(bench, spec, None)
    best = max((item.value for item in seen if item.value is not None), default=math.nan)
    console.log(f"earlier study {study_id}: {size.earlier_trials} trials to the end, best {METRIC} {best:.4f}")
    return study_id


def _logged(seed: int, name: str, result: Outcome) -> Outcome:
    state = "reached" if result.reached else "not reached (budget spent)"
    console.log(
        f"seed {seed} {name}: {state} after {result.epochs} epochs, {result.seconds:.1f} s, {result.trials} trials"
    )
    return result


FIGURES: dict[str, Callable[[Outcome], float]] = {
    "epochs": lambda o: o.epochs,
    "seconds": lambda o: o.seconds,
    "trials": lambda o: o.trials,
}


def arm_figures(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """Each figure's median over seeds (and whether it is a lower bound), and every run."""
    figures: dict[str, Any] = {"reached": sum(o.reached for o in outcomes), "runs": [asdict(o) for o in outcomes]}
    for name, figure in FIGURES.items():
        median, censored = censored_median(outcomes, figure)
        figures[name] = {"median": median, "censored": censored}
    return figures


def ratio(arms: dict[str, Any], top: str, bottom: str, figure: str) -> dict[str, Any]:
    """The ratio of two arms' medians of a figure; `censored` when either median is a bound."""
    over, under = arms[top][figure], arms[bottom][figure]
    value = over["median"] / under["median"] if under["median"] else math.inf
    return {"value": value, "censored": over["censored"] or under["censored"]}


def judged(arms: dict[str, Any]) -> tuple[dict[str, Any], dict[str, bool]]:
    ratios = {
        "b/a epochs": ratio(arms, TPE_ASHA, RANDOM, "epochs"),
        "b/c epochs": ratio(arms, TPE_ASHA, BY_HAND, "epochs"),
        "b/c seconds": ratio(arms, TPE_ASHA, BY_HAND, "seconds"),
        "warm/cold trials": ratio(arms, WARM, COLD, "trials"),
    }
    targets = {
        "b uses at most 1/3 of a's epochs": ratios["b/a epochs"]["value"] <= 1 / 3,
        "b at most c in epochs": ratios["b/c epochs"]["value"] <= 1,
        "b at most c in seconds": ratios["b/c seconds"]["value"] <= 1,
        "warm start: fewer trials than cold": ratios["warm/cold trials"]["value"] < 1,
    }
    return ratios, targets


def per_seed(outcomes: Sequence[Outcome], figure: Callable[[Outcome], float], digits: int = 0) -> str:
    return ", ".join(shown(figure(o), not o.reached, digits) for o in outcomes)


def median_text(figures: dict[str, Any], figure: str, digits: int = 0) -> str:
    return shown(figures[figure]["median"], figures[figure]["censored"], digits)


def show_results(size: Size, seeds: Sequence[int], runs: dict[str, list[Outcome]], arms: dict[str, Any]) -> None:
    def row(name: str) -> list[str]:
        f, outcomes = arms[name], runs[name]
        return [
            name,
            f"{f['reached']}/{len(outcomes)}",
            median_text(f, "epochs"),
            per_seed(outcomes, FIGURES["epochs"]),
            median_text(f, "seconds", 1),
            per_seed(outcomes, FIGURES["seconds"], 1),
            median_text(f, "trials"),
        ]

    headers = ["arm", "reached", "epochs", "epochs per seed", "seconds", "seconds per seed", "trials"]
    show(
        f"Until val_accuracy >= {size.target}: medians over seeds {', '.join(map(str, seeds))} "
        f"(at most {size.max_trials} trials of {size.epochs} epochs, {SLOTS} at a time; >N: not reached)",
        headers,
        [row(name) for name in (RANDOM, TPE_ASHA, BY_HAND)],
    )
    show(
        f"Warm start: a (b) study with ASHA's stopping type cold, and taught an earlier study's "
        f"{size.earlier_trials} trials first",
        ["study", "reached", "trials", "trials per seed", "epochs", "seconds"],
        [
            [name, f"{arms[key]['reached']}/{len(runs[key])}", median_text(arms[key], "trials"),
             per_seed(runs[key], FIGURES["trials"]), median_text(arms[key], "epochs"),
             median_text(arms[key], "seconds", 1)]
            for name, key in (("b' cold", COLD), ("b' warm-started", WARM))
        ],
    )  # fmt: skip


def show_judgement(ratios: dict[str, Any], targets: dict[str, bool]) -> None:
    for name, r in ratios.items():
        bound = " (a censored run is in a median: a bound)" if r["censored"] else ""
        console.print(f"{name}: {r['value']:.2f}{bound}")
    for name, held in targets.items():
        console.print(f"{name}: {'held' if held else 'missed'}")


def run(stack: Stack, size: Size, seeds: Sequence[int], quiet_timeout_s: float = QUIET_TIMEOUT_S) -> dict[str, Any]:
    """Every seed in turn; the tables printed, the figures returned."""
    import logging

    import optuna
    import ray

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # With Tune's result loggers off, its result grid warns once per trial that it finds no
    # result files; the arm needs only what its callback saw.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    write_table(Path(stack.settings.data_roots[0]), size.rows)
    workload = study_spec(size, seeds[0], sampler="tpe", pruning=True, max_trials=size.max_trials)
    alone = epoch_seconds_alone(workload, stack.settings.data_roots)
    started_ray = not ray.is_initialized()  # a test's process is connected already
    if started_ray:
        ray.init(address=stack.settings.ray_address, log_to_driver=False)
    bench = Bench(stack, size, quiet_timeout_s)
    try:
        bench.earlier_study = earlier_study(bench)
        by_seed = [one_seed(bench, seed, turn) for turn, seed in enumerate(seeds)]
    finally:
        if started_ray:
            ray.shutdown()
    runs = {name: [outcomes[name] for outcomes in by_seed] for name in by_seed[0]}
    arms = {name: arm_figures(outcomes) for name, outcomes in runs.items()}
    ratios, targets = judged(arms)
    show_results(size, seeds, runs, arms)
    in_study = statistics.median(bench.epoch_durations) if bench.epoch_durations else math.nan
    console.print(f"one epoch: {alone:.2f} s alone on one thread, {in_study:.2f} s in a study (2 trials at once)")
    show_judgement(ratios, targets)
    return {
        "workload": {
            **asdict(size),
            "features": FEATURES,
            "classes": CLASSES,
            "params": PARAMS,
            "search_space": SPACE,
            "asha": ANNEAL_ASHA,
            "concurrent_trials": SLOTS,
            "earlier_study": f"random sampling, no pruning, seed {EARLIER_SEED}, run to its end",
            "epoch_s_alone": alone,
            "epoch_s_in_study": in_study,
        },
        "seeds": list(seeds),
        "arms": arms,
        "ratios": ratios,
        "targets": targets,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and one seed, to check the benchmark runs")
    args = parser.parse_args()
    size, seeds = (SMOKE, args.seeds[:1]) if args.smoke else (FULL, args.seeds)
    began = time.monotonic()
    with local_stack() as stack:
        # No timing is asserted at the smoke size: a short wait for quiet.
        result = run(stack, size, seeds, quiet_timeout_s=2.0 if args.smoke else QUIET_TIMEOUT_S)
    if not args.smoke:
        write("search", result)
    console.print(f"the benchmark took {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
