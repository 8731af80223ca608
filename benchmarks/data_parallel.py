"""Data-parallel scaling: the same training work raw and as anneal trials of one and two workers.

Workload: an MLP 256-2048-2048-10 (4.7 M parameters) on synthetic float32 rows (256 features,
10 classes, fixed seed, written once as a CSV under a data root), SGD at a global batch of
1024, the same number of steps in every variant (`benchmarks.dp_workload.train_epochs`, one
torch thread per process). Variants, alternated round by round on one cluster:

- a1: raw, one process (torch.multiprocessing), no Ray: the single-process reference;
- a: raw torch.distributed DDP over gloo, two processes started by torch.multiprocessing: the ceiling;
- b: an anneal trial with `workers: 1`;
- c: an anneal trial with `workers: 2` (Ray Train workers, DDP through `context.prepare_model`).

b and c go through anneal's own path below the server: `build_tuner` (the driver's Tuner: the
trial function, Optuna, the scheduler, the dataset loaded from its data root and put in the
object store) and `Tuner.fit()` of a one-trial study, with the trainer resolved from its
import path as `anneal run` resolves it.

Figures: training-phase samples/s, from the end of the first optimiser step to the end of the
last (every epoch report and checkpoint hand-over between them included, and shown apart as
"epoch gaps": the time between one epoch's last step and the next one's first; the first step,
which pays one-off set-up, is not); start-up, from just before `build_tuner` to the start of the
first optimiser step (the latest rank's). For b and c that is: Optuna's sampler and the search
set-up, the dataset put in the object store, Tune's start, the trial actor's start and imports,
the trial function; for c also the Ray Train controller and its helper actors, the placement
group, the two worker actors and their imports, the gloo process group and the data fetched by
each worker ("to trainer" stops there, where the trainer's code begins); then the trainer
builds the model and wraps it. "From trial" measures start-up from the trial function's start
(Ray's task events), the figure the 3 s target is for. The CSV is parsed once before the rounds
(the parse is cached per process, as in a driver). For the raw variants start-up runs from
before `torch.multiprocessing.spawn` and includes the fresh interpreters' imports (of this
module too: spawn imports the parent's main module).

The benchmark's Ray job is set up as the server sets up a study driver's (its environment and
the warm-worker set-up hook). Before each anneal variant it asks for what a driver has warm
when a trial starts: a trial worker, and for c one set of Ray Train processes
(`cluster.driver.warmtrain`); then it waits for the machine to be quiet, so their start is
not in the variant's figures.

After each anneal variant the benchmark waits for the trial's placement groups to be removed
(reported as "placement groups gone ... s after tuner.fit() returned"); one still there after
30 s is removed by the benchmark and counted as leaked, so one leak does not stall the rounds.
"""

from __future__ import annotations

import argparse
import math
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from anneal import StudySpec
from benchmarks.common import Stack, alternate, console, local_stack, show, summary, write
from cluster.environment import job_env
from cluster.trial.warm import SETUP_HOOK

FEATURES = 256
CLASSES = 10
VALIDATION_FRACTION = 0.05
TRAINER = "benchmarks.dp_workload:info"
# (params, training rows): 16 steps an epoch at the full size.
FULL: dict[str, Any] = {"params": {"hidden_size": 2048, "batch_size": 1024, "epochs": 3}, "train_rows": 16 * 1024}
SMOKE: dict[str, Any] = {"params": {"hidden_size": 64, "batch_size": 64, "epochs": 2}, "train_rows": 256}
LR = 0.01
A1, A, B, C = "a1 raw, 1 process", "a raw DDP, 2 processes", "b anneal, workers: 1", "c anneal, workers: 2"
STARTUP_TARGET_S = 3.0
RELEASE_TIMEOUT_S = 30.0
# Before each anneal variant, its warm processes' start is left to finish (`wait_quiet`).
WARM_KEEP_ALIVE_S = 600.0
QUIET_TIMEOUT_S = 60.0
QUIET_SAMPLE_S = 0.5
QUIET_CPU_PERCENT = 15.0
CEILING_TARGET = 0.9


@dataclass(frozen=True)
class Measured:
    samples_per_s: float
    startup_s: float  # start to the first optimiser step
    from_trial_s: float  # the trial function's start to the first optimiser step (raw: as startup_s)
    to_trainer_s: float  # start to the trainer's code (the rest of start-up is the model built and wrapped)
    between_epochs_s: float  # of the training window: between epochs (the epoch reports)
    wall_s: float  # start to the end of the variant (processes joined, or tuner.fit() returned)
    steps: int


def write_csv(directory: Path, train_rows: int, seed: int = 0) -> Path:
    """Synthetic rows as a CSV data file: standard normal features, the label the argmax of a
    fixed random linear map (so the classes are balanced and learnable)."""
    rows = math.ceil(train_rows / (1 - VALIDATION_FRACTION)) + 2 * CLASSES  # stratified rounding
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, FEATURES), dtype=np.float32)
    y = (x @ rng.standard_normal((FEATURES, CLASSES), dtype=np.float32)).argmax(axis=1)
    path = directory / "synthetic.csv"
    header = ",".join([*(f"f{i}" for i in range(FEATURES)), "label"])
    table = np.column_stack([x, y.astype(np.float32)])
    np.savetxt(path, table, fmt=["%.4f"] * FEATURES + ["%d"], delimiter=",", header=header, comments="")
    return path


def workload(csv: Path, params: dict[str, Any], workers: int, cpu: float) -> StudySpec:
    return StudySpec.parse(
        {
            "name": f"bench-data-parallel-{workers}",
            "trainer": TRAINER,
            "dataset": {
                "name": "synthetic",
                "path": str(csv),
                "validation_fraction": VALIDATION_FRACTION,
                "test_fraction": 0.0,
            },
            "params": params,
            # One value: every trial does the same work; Optuna needs a space.
            "search_space": {"lr": {"categorical": [LR]}},
            "objective": {"metric": "train_loss", "mode": "min"},
            "scheduler": "none",
            "budget": {"max_trials": 1, "max_concurrent_trials": 1},
            "resources": {"workers": workers, "cpu": cpu},
            "failure": {"max_retries": 0},
        }
    )


def quiet() -> None:
    """Optuna's line per study, and Tune's warning that a trial has no result files (its
    result loggers are off in anneal's processes, and here): one of each per anneal variant."""
    import logging

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def raw(splits: Any, params: dict[str, Any], world_size: int) -> Measured:
    """Variants a1 and a: `world_size` fresh processes, no Ray."""
    import torch.multiprocessing as mp

    from benchmarks.dp_workload import RawRun, raw_process

    results = mp.get_context("spawn").SimpleQueue()
    began = time.time()
    run = RawRun({**params, "lr": LR}, splits.shape, world_size, free_port(), began)
    mp.spawn(raw_process, args=(run, splits.x_train, splits.y_train, results), nprocs=world_size, join=True)
    ended = time.time()
    timing = results.get()
    samples = (timing["steps"] - 1) * timing["global_batch"]
    window = timing["last_step_end_at"] - timing["first_step_end_at"]
    return Measured(
        samples / window,
        timing["first_step_at"] - began,
        timing["first_step_at"] - began,
        timing["entered_at"] - began,
        timing["between_epochs_s"],
        ended - began,
        int(timing["steps"]),
    )


def anneal_trial(
    spec: StudySpec, storage: str, data_root: str, leftovers: list[dict[str, Any]], quiet_timeout_s: float
) -> Measured:
    """Variants b and c: a one-trial study through the driver's Tuner, its processes warmed first
    as a study driver's are (`warm_like_a_driver`). Afterwards waits for the trial's placement
    groups to go (`released`), so the next variant finds the CPUs free."""
    from cluster.driver.tuning import build_tuner
    from trainers.registry import resolve

    callbacks = warm_like_a_driver(spec.resources.workers, quiet_timeout_s)
    before = placement_groups()
    began = time.time()
    tuner = build_tuner(
        spec,
        resolve(spec.trainer, allow_import_paths=True),
        experiment_name=f"bench-dp-{time.time_ns()}",
        storage_path=storage,
        callbacks=callbacks,
        data_roots=[data_root],
    )
    results = tuner.fit()
    ended = time.time()
    if len(results) != 1 or results.errors:
        raise RuntimeError(f"the benchmark trial failed: {results.errors}")
    metrics = results[0].metrics or {}
    leftovers.append(released(before, ended))
    trial_start = trial_function_started(began)
    return Measured(
        float(metrics["samples_per_s"]),
        float(metrics["first_step_at"]) - began,
        float(metrics["first_step_at"]) - trial_start,
        float(metrics["entered_at"]) - began,
        float(metrics["between_epochs_s"]),
        ended - began,
        int(metrics["steps"]),
    )


def warm_like_a_driver(workers: int, quiet_timeout_s: float) -> list[Any]:
    """What a study driver has before its trials start: a warm trial worker (a standby's), and
    for a data-parallel study its Ray Train processes (`cluster.driver.warmtrain`). Asks for
    them, then waits until the machine is quiet, so the variant's figures exclude their start.
    Returns the Tuner callbacks that keep them (none for one worker)."""
    from cluster.driver.warm import prestart_trial_workers
    from cluster.driver.warmtrain import TrainWarmer

    callbacks: list[Any] = []
    if workers > 1:
        warmer = TrainWarmer(workers, concurrent=1)
        warmer.prepare(trials=1, immediately=0)  # the trial starts once they are up
        warmer.settle(quiet_timeout_s)
        callbacks.append(warmer)
    # Only once the raylet has registered the Train processes: it drops what is asked for beyond
    # its start-up concurrency, as a standby's trial workers are up long before a study's.
    prestart_trial_workers(1, keep_alive_s=WARM_KEEP_ALIVE_S)
    wait_quiet(quiet_timeout_s)
    return callbacks


def wait_quiet(timeout_s: float) -> None:
    """Until the machine's CPUs are nearly idle (the warm processes' imports done), or the timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and cpu_busy_percent(QUIET_SAMPLE_S) > QUIET_CPU_PERCENT:
        pass


def cpu_busy_percent(interval_s: float) -> float:
    """The machine's CPU use over `interval_s`, from /proc/stat (all CPUs together)."""

    def times() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle and iowait
        return sum(fields) - idle, sum(fields)

    busy0, total0 = times()
    time.sleep(interval_s)
    busy1, total1 = times()
    return 100.0 * (busy1 - busy0) / max(1, total1 - total0)


def trial_function_started(since: float, timeout_s: float = 10.0) -> float:
    """When the study's one trial function began: Ray's task events for the trial actor's
    `train` call (they reach the dashboard within seconds)."""
    from ray.util.state import list_tasks

    deadline = time.monotonic() + timeout_s
    while True:
        starts = [
            event["created_ms"] / 1000
            for task in list_tasks(
                filters=[("type", "=", "ACTOR_TASK")], detail=True, limit=10_000, raise_on_missing_output=False
            )
            if task.name.endswith(".train")
            for event in task.events or []
            if event["state"] == "RUNNING" and event["created_ms"] / 1000 >= since
        ]
        if starts:
            return min(starts)
        if time.monotonic() > deadline:
            raise RuntimeError("Ray recorded no start of the trial function")
        time.sleep(0.5)


def placement_groups() -> dict[str, str]:
    """Every placement group of the cluster: id -> state."""
    from ray.util import placement_group_table

    return {pg_id: entry["state"] for pg_id, entry in placement_group_table().items()}


def released(before: dict[str, str], ended: float, timeout_s: float = RELEASE_TIMEOUT_S) -> dict[str, Any]:
    """Waits for the placement groups a variant made to be removed. Ray Train removes a worker
    group's own when its run ends cleanly, or, when its controller died with the trial, its
    PlacementGroupCleaner does; one still there after `timeout_s` is removed here, and reported."""
    from ray._raylet import PlacementGroupID
    from ray.util.placement_group import PlacementGroup, remove_placement_group

    def left() -> list[str]:
        return [i for i, state in placement_groups().items() if i not in before and state != "REMOVED"]

    deadline = time.monotonic() + timeout_s
    while (remaining := left()) and time.monotonic() < deadline:
        time.sleep(0.2)
    waited = time.time() - ended
    for pg_id in remaining:
        console.log(f"[yellow]placement group {pg_id} left behind {waited:.0f} s after the trial ended; removing it")
        remove_placement_group(PlacementGroup(PlacementGroupID(bytes.fromhex(pg_id))))
    return {"release_s": waited, "leaked": len(remaining)}


def cpu_per_worker(workers: int) -> float:
    """1 CPU per worker where the cluster has it, else the share that lets `workers` workers and
    the data-parallel trial's own sliver (0.01 CPU) fit: on a 2-CPU cluster, 0.99 each. A worker
    trains with max(1, int(cpu)) torch threads either way, as each raw process does."""
    import ray

    from cluster.driver.tuning import DATA_PARALLEL_TRIAL_CPU

    available = float(ray.available_resources().get("CPU", 0.0))
    share = math.floor((available - DATA_PARALLEL_TRIAL_CPU) / workers * 100) / 100
    if share <= 0:
        raise RuntimeError(f"the cluster has {available} CPUs free: too few for {workers} workers")
    return min(1.0, share)


def run(
    stack: Stack, params: dict[str, Any], train_rows: int, rounds: int, quiet_timeout_s: float = QUIET_TIMEOUT_S
) -> dict[str, Any]:
    """The rounds; before each anneal variant the benchmark waits up to `quiet_timeout_s` for the
    machine to be quiet once its warm processes are asked for."""
    import ray

    from trainers.contract import Task
    from trainers.datasets import load_dataset

    if not ray.is_initialized():
        # As the server submits a study driver's job: its environment and warm-worker set-up hook.
        ray.init(
            address=stack.settings.ray_address,
            log_to_driver=False,
            runtime_env={"env_vars": job_env(stack.settings), "worker_process_setup_hook": SETUP_HOOK},
        )
    quiet()
    cpu = cpu_per_worker(2)
    with tempfile.TemporaryDirectory(prefix="anneal-bench-dp-") as data_root:
        began = time.monotonic()
        csv = write_csv(Path(data_root), train_rows)
        one, two = workload(csv, params, 1, cpu), workload(csv, params, 2, cpu)
        # Parsed here once; the Tuner's load of the same file is then a cache hit, as it is for
        # a driver's later trials. The raw variants train on the very same rows.
        splits = load_dataset(one.dataset, [data_root], Task.CLASSIFICATION)
        data_s = time.monotonic() - began
        console.log(f"{len(splits.x_train)} training rows ready in {data_s:.1f} s; {cpu} CPU per worker")
        measured: dict[str, list[Measured]] = {A1: [], A: [], B: [], C: []}

        def variant(name: str, measure: Any) -> Any:
            def once() -> float:
                m: Measured = measure()
                measured[name].append(m)
                return m.samples_per_s

            return once

        storage = stack.settings.tune_storage
        leftovers: dict[str, list[dict[str, Any]]] = {B: [], C: []}
        alternate(
            rounds,
            {
                A1: variant(A1, lambda: raw(splits, params, 1)),
                A: variant(A, lambda: raw(splits, params, 2)),
                B: variant(B, lambda: anneal_trial(one, storage, data_root, leftovers[B], quiet_timeout_s)),
                C: variant(C, lambda: anneal_trial(two, storage, data_root, leftovers[C], quiet_timeout_s)),
            },
        )
    steps = {m.steps for runs in measured.values() for m in runs}
    if len(steps) != 1:
        raise RuntimeError(f"the variants took different numbers of steps: {sorted(steps)}")

    def ratio(top: str, bottom: str) -> dict[str, float]:
        """Within each round, so drift between rounds cancels."""
        return summary(
            [t.samples_per_s / b.samples_per_s for t, b in zip(measured[top], measured[bottom], strict=True)]
        )

    figures: dict[str, dict[str, Any]] = {
        name: {
            "samples_per_s": summary([m.samples_per_s for m in runs]),
            "startup_s": summary([m.startup_s for m in runs]),
            "from_trial_s": summary([m.from_trial_s for m in runs]),
            "to_trainer_s": summary([m.to_trainer_s for m in runs]),
            "between_epochs_s": summary([m.between_epochs_s for m in runs]),
            "wall_s": summary([m.wall_s for m in runs]),
            "rounds": [vars(m) for m in runs],
        }
        for name, runs in measured.items()
    }
    for name, found in leftovers.items():
        figures[name]["placement_groups"] = {
            "release_s": summary([f["release_s"] for f in found]),
            "leaked": sum(f["leaked"] for f in found),
        }
    ratios = {"c/a": ratio(C, A), "c/b": ratio(C, B), "a/a1": ratio(A, A1), "b/a1": ratio(B, A1)}
    p = params
    show(
        f"Data-parallel scaling: MLP {FEATURES}-{p['hidden_size']}-{p['hidden_size']}-{CLASSES}, global batch "
        f"{p['batch_size']}, {steps.pop()} steps, {rounds} rounds, {cpu} CPU per anneal worker (medians)",
        ["variant", "samples/s", "spread", "epoch gaps s", "start-up s", "from trial s", "to trainer s", "wall s"],
        [
            (
                name,
                f["samples_per_s"]["median"],
                f"{f['samples_per_s']['spread']:.0%}",
                f["between_epochs_s"]["median"],
                f["startup_s"]["median"],
                f["from_trial_s"]["median"],
                f["to_trainer_s"]["median"],
                f["wall_s"]["median"],
            )
            for name, f in figures.items()
        ],
    )
    targets = {"c/a": f">= {CEILING_TARGET}"}
    show(
        "Throughput ratios (median of per-round ratios)",
        ["ratio", "median", "min", "max", "target"],
        [(name, r["median"], r["min"], r["max"], targets.get(name, "")) for name, r in ratios.items()],
    )
    startup = {name: figures[name]["from_trial_s"]["median"] for name in (B, C)}
    console.print(
        f"c/a {ratios['c/a']['median']:.3f} (target >= {CEILING_TARGET}): "
        f"{'met' if ratios['c/a']['median'] >= CEILING_TARGET else 'MISSED'}; "
        + "; ".join(
            f"start-up {name.split(',')[1].strip()} {s:.2f} s (target <= {STARTUP_TARGET_S}): "
            f"{'met' if s <= STARTUP_TARGET_S else 'MISSED'}"
            for name, s in startup.items()
        )
    )
    for name in (B, C):
        pgs = figures[name]["placement_groups"]
        console.print(
            f"{name}: placement groups gone {pgs['release_s']['median']:.1f} s after tuner.fit() returned (median)"
            + (f"; [red]{pgs['leaked']} left behind and removed by the benchmark" if pgs["leaked"] else "")
        )
    return {
        "params": {**params, "lr": LR},
        "features": FEATURES,
        "classes": CLASSES,
        "train_rows": len(splits.x_train),
        "rounds": rounds,
        "cpu_per_worker": cpu,
        "data_prep_s": data_s,
        "variants": figures,
        "ratios": ratios,
        "targets": {"c/a": CEILING_TARGET, "startup_s": STARTUP_TARGET_S},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--smoke", "--quick", action="store_true", help="tiny sizes, to check the benchmark runs")
    args = parser.parse_args()
    began = time.monotonic()
    size = SMOKE if args.smoke else FULL
    with local_stack() as stack:
        result = run(stack, size["params"], size["train_rows"], 1 if args.smoke else args.rounds)
    if not args.smoke:
        write("data_parallel", result)
    console.print(f"done in {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
