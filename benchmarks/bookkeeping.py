"""Bookkeeping: trials per second when the trials do nothing.

N trials of a trivial objective (one report, no training) with TPE, 2 at a time:
bare Ray Tune + OptunaSearch (no callbacks, actors reused) against anneal, which
records every trial in MLflow and the store (the counts are checked). Throughput is
taken over the trials' own window, first trial start to last trial end, so both
variants are compared on the same thing; anneal's start-up is reported beside it.
Also: the time one TPE suggestion takes after 100, 300 and 500 trials.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from typing import Any

from anneal import StudySpec, StudyState
from benchmarks.common import Stack, alternate, console, local_stack, show, summary, wait_for_next_standby, write

SPACE = {"x": (-1.0, 1.0), "y": (-1.0, 1.0)}


def spec(trials: int) -> StudySpec:
    return StudySpec.parse(
        {
            "name": "bench-bookkeeping",
            "trainer": "quadratic",
            "dataset": {"name": "iris"},
            "search_space": {k: {"float": {"low": lo, "high": hi}} for k, (lo, hi) in SPACE.items()},
            "objective": {"metric": "loss", "mode": "min"},
            "search": {"sampler": "tpe", "seed": 0},
            "budget": {"max_trials": trials, "max_concurrent_trials": 2},
            "resources": {"cpu": 1},
        }
    )


def trivial(config: dict[str, float]) -> None:
    from ray import tune

    tune.report({"loss": (config["x"] - 0.3) ** 2 + (config["y"] + 0.2) ** 2})


def bare_tune(trials: int, stack: Stack) -> float:
    """Trials per second of bare Ray Tune + OptunaSearch."""
    import optuna
    import ray
    from optuna.distributions import FloatDistribution
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    if not ray.is_initialized():
        ray.init(address=stack.settings.ray_address, log_to_driver=False)
    # With Tune's result loggers off (as anneal runs it, the faster baseline), the result grid
    # warns once per trial that it finds no result files; the counts are checked below.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    window = trial_window()
    search = OptunaSearch(
        space={k: FloatDistribution(lo, hi) for k, (lo, hi) in SPACE.items()},
        metric="loss",
        mode="min",
        sampler=optuna.samplers.TPESampler(seed=0),
    )
    tuner = tune.Tuner(
        tune.with_resources(trivial, {"cpu": 1}),
        tune_config=tune.TuneConfig(search_alg=search, num_samples=trials, max_concurrent_trials=2, reuse_actors=True),
        run_config=tune.RunConfig(
            name=f"bare-{time.time_ns()}", storage_path=stack.settings.tune_storage, callbacks=[window], verbose=0
        ),
    )
    results = tuner.fit()
    assert len(results) == trials and not results.errors
    return trials / window.seconds()


def trial_window() -> Any:
    """A callback that sees the first trial start and the last trial end, as the driver does."""
    from ray import tune

    class TrialWindow(tune.Callback):
        def __init__(self) -> None:
            self.first = 0.0
            self.last = 0.0

        def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            self.first = self.first or time.perf_counter()

        def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            self.last = time.perf_counter()

        def seconds(self) -> float:
            return self.last - self.first

    return TrialWindow()


def anneal_study(trials: int, stack: Stack, startup: list[float]) -> float:
    """Trials per second through anneal, every trial checked in the store and MLflow."""
    from mlflow.tracking import MlflowClient

    from anneal.types import EventKind

    with stack.client() as client:
        began = time.time()
        created = client.create_study(spec(trials))
        # Watched as `anneal submit --watch` does: events arrive as they happen, without polling.
        events = list(client.watch_study(created.study_id))
        study = client.get_study(created.study_id)
    assert study.state is StudyState.SUCCEEDED, study.error
    assert len(study.trials) == trials, f"{len(study.trials)} trials in the store"
    runs = MlflowClient(stack.settings.mlflow_tracking_uri).search_runs(
        [study.mlflow_experiment_id], max_results=10_000
    )
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == study.mlflow_run_id]
    assert len(children) == trials, f"{len(children)} child runs in MLflow"
    starts = [e.time.timestamp() for e in events if e.kind is EventKind.TRIAL_STARTED]
    ends = [e.time.timestamp() for e in events if e.kind is EventKind.TRIAL_ENDED]
    assert len(ends) == trials
    startup.append(min(starts) - began)
    wait_for_next_standby(stack, study.ray_job_id)
    return trials / (max(ends) - min(starts))


def suggestion_seconds(after: int, asks: int = 20) -> float:
    """Median time of one TPE suggestion once `after` trials are told."""
    import optuna
    from optuna.distributions import FloatDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = {k: FloatDistribution(lo, hi) for k, (lo, hi) in SPACE.items()}
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    for _ in range(after):
        trial = study.ask(space)
        study.tell(trial, (trial.params["x"] - 0.3) ** 2)
    times = []
    for _ in range(asks):
        began = time.perf_counter()
        trial = study.ask(space)
        times.append(time.perf_counter() - began)
        study.tell(trial, 0.0)
    return statistics.median(times)


def run(stack: Stack, trials: int, rounds: int, suggestion_points: list[int]) -> dict[str, Any]:
    startup: list[float] = []
    samples = alternate(
        rounds,
        {
            "bare Ray Tune + OptunaSearch": lambda: bare_tune(trials, stack),
            "anneal (MLflow + store)": lambda: anneal_study(trials, stack, startup),
        },
    )
    figures = {name: summary(values) for name, values in samples.items()}
    names = list(samples)
    ratios = summary([a / b for a, b in zip(samples[names[1]], samples[names[0]], strict=True)])
    show(
        f"Bookkeeping: {trials} trivial trials, TPE, 2 at a time (trials/s over the trials' window)",
        ["variant", "trials/s (median)", "spread"],
        [(name, f["median"], f"{f['spread']:.0%}") for name, f in figures.items()],
    )
    console.print(
        f"anneal / bare: {ratios['median']:.2f} (per round); anneal start-up to first trial: "
        f"{summary(startup)['median']:.1f} s"
    )
    suggestions = {n: suggestion_seconds(n) for n in suggestion_points}
    show("One TPE suggestion", ["trials so far", "ms"], [(n, s * 1000) for n, s in suggestions.items()])
    return {
        "trials": trials,
        "rounds": rounds,
        "variants": figures,
        "anneal_over_bare": ratios,
        "anneal_startup_s": summary(startup),
        "suggestion_s": suggestions,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the benchmark runs")
    args = parser.parse_args()
    points = [100, 300, 500]
    if args.smoke:
        args.trials, args.rounds, points = 4, 1, [5]
    with local_stack() as stack:
        result = run(stack, args.trials, args.rounds, points)
    if not args.smoke:
        write("bookkeeping", result)
    console.print("done")


if __name__ == "__main__":
    main()
