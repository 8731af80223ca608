"""Study overhead: the same trials as a plain loop, through Ray Tune two ways, and through anneal.

Workload: N trials of `mlp_classifier` on digits, fixed epochs, no early stopping, 2
concurrent trials of 1 CPU. Only lr and the optimizer are tuned, so every trial does
the same compute. The plain loop's summed training time over 2 slots is the physical
limit; each variant's figure is its wall time over that limit.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from anneal import StudySpec, StudyState
from anneal.types import EventKind
from benchmarks.common import Stack, alternate, console, local_stack, show, summary, wait_for_next_standby, write
from trainers.workercontext import LocalContext

SLOTS = 2
LOGGERS_OFF = "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"


def workload(trials: int, epochs: int, name: str = "bench-overhead") -> StudySpec:
    return StudySpec.parse(
        {
            "name": name,
            "trainer": "mlp_classifier",
            "dataset": {"name": "digits"},
            "params": {"epochs": epochs, "batch_size": 64, "hidden_size": 64},
            "search_space": {
                "lr": {"float": {"low": 1e-3, "high": 1e-1, "log": True}},
                "optimizer": {"categorical": ["adam", "sgd"]},
            },
            "objective": {"metric": "val_accuracy", "mode": "max"},
            "search": {"sampler": "tpe", "seed": 0},
            "scheduler": "none",
            "budget": {"max_trials": trials, "max_concurrent_trials": SLOTS},
            "resources": {"cpu": 1},
        }
    )


def plain_loop(spec: StudySpec) -> tuple[float, float]:
    """(wall time, summed training time) of the trials run one after another in this process."""
    import optuna

    from trainers.datasets import load_splits
    from trainers.mlp import MLPClassifierTrainer

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    d = spec.dataset
    data = load_splits(d.name, d.validation_fraction, d.test_fraction, d.split_seed)
    trainer = MLPClassifierTrainer()
    sampler = optuna.samplers.RandomSampler(seed=0)
    start = time.perf_counter()
    training = 0.0
    for _ in range(spec.budget.max_trials):
        trial = optuna.create_study(sampler=sampler).ask()
        config = {
            "lr": trial.suggest_float("lr", 1e-3, 1e-1, log=True),
            "optimizer": trial.suggest_categorical("optimizer", ["adam", "sgd"]),
        }
        began = time.perf_counter()
        trainer.train(LocalContext({**spec.params, **config}, data))
        training += time.perf_counter() - began
    return time.perf_counter() - start, training


class UserContext(LocalContext):
    """What a Ray Tune user writes by hand: a `tune.report` per epoch, with a checkpoint
    every epoch (as the docs show) or only at the last epoch (hand-tuned)."""

    def __init__(self, config: Any, data: Any, checkpoint_every_epoch: bool) -> None:
        super().__init__(config, data)
        self.every = checkpoint_every_epoch

    def report(self, metrics: Any, checkpoint: Any = None, *, final: bool = False) -> None:
        import tempfile
        from pathlib import Path

        import torch
        from ray import tune

        if checkpoint is None or not (self.every or final):
            tune.report(dict(metrics))
            return
        with tempfile.TemporaryDirectory() as directory:
            torch.save(dict(checkpoint), Path(directory) / "state.pt")
            tune.report(dict(metrics), checkpoint=tune.Checkpoint.from_directory(directory))


def ray_tune(spec: StudySpec, stack: Stack, *, tuned: bool) -> float:
    """Ray Tune driven from this process, with a function trainable a user would write:
    as the docs show it (tuned=False: defaults, MLflowLoggerCallback) or hand-tuned
    (reused actors, no callbacks)."""
    import optuna
    import ray
    from ray import tune
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    from cluster.driver.tuning import optuna_space
    from trainers.datasets import load_splits
    from trainers.mlp import MLPClassifierTrainer

    if not ray.is_initialized():
        ray.init(address=stack.settings.ray_address, log_to_driver=False)
    fixed = dict(spec.params)

    def train(config: dict[str, Any], data: Any) -> None:
        MLPClassifierTrainer().train(UserContext({**fixed, **config}, data, checkpoint_every_epoch=not tuned))

    d = spec.dataset
    data = load_splits(d.name, d.validation_fraction, d.test_fraction, d.split_seed)
    search = tune.search.optuna.OptunaSearch(
        space=optuna_space(spec), metric="val_accuracy", mode="max", sampler=optuna.samplers.TPESampler(seed=0)
    )
    callbacks = (
        []
        if tuned
        else [MLflowLoggerCallback(tracking_uri=stack.settings.mlflow_tracking_uri, experiment_name="bench-docs-way")]
    )
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(train, data=data), {"cpu": 1}),
        tune_config=tune.TuneConfig(
            search_alg=search, num_samples=spec.budget.max_trials, max_concurrent_trials=SLOTS, reuse_actors=tuned
        ),
        run_config=tune.RunConfig(
            name=f"bench-{time.time_ns()}", storage_path=stack.settings.tune_storage, callbacks=callbacks, verbose=0
        ),
    )
    # anneal turns Tune's automatic result loggers off in its own processes (this one too);
    # the docs way has them, as Tune's defaults do.
    loggers = os.environ.get(LOGGERS_OFF)
    os.environ[LOGGERS_OFF] = "1" if tuned else "0"
    try:
        start = time.perf_counter()
        results = tuner.fit()
        elapsed = time.perf_counter() - start
    finally:
        os.environ[LOGGERS_OFF] = loggers or "0"
    assert len(results) == spec.budget.max_trials and not results.errors
    return elapsed


def anneal_end_to_end(spec: StudySpec, stack: Stack) -> float:
    """Client.create_study -> SUCCEEDED, with every trial checked in the store and MLflow."""
    from mlflow.tracking import MlflowClient

    with stack.client() as client:
        start = time.perf_counter()
        study = client.create_study(spec)
        # Watched as `anneal submit --watch` does: the end arrives as an event, without polling.
        for event in client.watch_study(study.study_id):
            if event.kind is EventKind.STUDY_ENDED:
                break
        elapsed = time.perf_counter() - start
        study = client.get_study(study.study_id)
    assert study.state is StudyState.SUCCEEDED, study.error
    assert len(study.trials) == spec.budget.max_trials
    runs = MlflowClient(stack.settings.mlflow_tracking_uri).search_runs(
        [study.mlflow_experiment_id], max_results=10_000
    )
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == study.mlflow_run_id]
    assert len(children) == spec.budget.max_trials, f"{len(children)} child runs in MLflow"
    wait_for_next_standby(stack, study.ray_job_id)
    return elapsed


def run(stack: Stack, trials: int, epochs: int, rounds: int, docs_way_rounds: int = 1) -> dict[str, Any]:
    """The four variants, alternated. The docs-way variant starts a process per trial and takes
    minutes at full size, so it runs `docs_way_rounds` times (once by default) to keep `make
    bench` short; the others run every round."""
    spec = workload(trials, epochs)
    training_times: list[float] = []

    def loop() -> float:
        wall, training = plain_loop(spec)
        training_times.append(training)
        return wall

    plain_loop(workload(2, 1))  # warm the process: torch's first optimiser and data load
    docs_way: list[float] = []

    def docs_way_once() -> float:
        if len(docs_way) < docs_way_rounds:
            docs_way.append(ray_tune(spec, stack, tuned=False))
        return docs_way[-1]

    samples = alternate(
        rounds,
        {
            "a plain loop": loop,
            "b Ray Tune, docs way": docs_way_once,
            "c Ray Tune, hand-tuned": lambda: ray_tune(spec, stack, tuned=True),
            "d anneal end to end": lambda: anneal_end_to_end(spec, stack),
        },
    )
    samples["b Ray Tune, docs way"] = docs_way
    limits = [t / SLOTS for t in training_times]
    limit = summary(limits)["median"]
    figures = {
        name: {**summary(values), "over_limit": summary(values)["median"] / limit} for name, values in samples.items()
    }
    # Ratios within each round, so drift between rounds cancels.
    per_round = {
        name: summary([v / lim for v, lim in zip(values, limits, strict=False)]) for name, values in samples.items()
    }
    rows = [(name, f["median"], f"{f['spread']:.0%}", per_round[name]["median"]) for name, f in figures.items()]
    show(
        f"Study overhead: {trials} trials x {epochs} epochs, {SLOTS} slots; physical limit {limit:.2f} s",
        ["variant", "wall s (median)", "spread", "x limit"],
        rows,
    )
    return {
        "trials": trials,
        "epochs": epochs,
        "rounds": rounds,
        "limit_s": summary(limits),
        "variants": figures,
        "over_limit_per_round": per_round,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the benchmark runs")
    args = parser.parse_args()
    if args.smoke:
        args.trials, args.epochs, args.rounds = 2, 1, 1
    with local_stack() as stack:
        result = run(stack, args.trials, args.epochs, args.rounds)
    if not args.smoke:
        write("study_overhead", result)
    console.print("done")


if __name__ == "__main__":
    main()
