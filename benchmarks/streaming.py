"""Streaming a table into one trial's training loop: samples/s and peak memory, anneal against
the limit, a plain loop in one process reading the same Parquet file with pyarrow into torch.

The table (at least 1 GB: 64 float32 features and a label a row) is written once into a data
root. `a plain loop` reads it with pyarrow (pre-buffering off: on, pyarrow keeps every row
group it has read) in batches of the trainer's size and turns each into torch tensors, in a
process of its own. `anneal` runs a one-trial study through the driver's Tuner: the table is
prepared once (its time is reported apart, as a study pays it once), then the trial's
`DeliveryTrainer` takes one epoch of `context.train_batches` (shuffled, from Ray Data read
tasks) and does nothing with the batches. Both count rows from the first batch to the last.
Peak memory is each consumer process's own: the loop's process, and the trial's actor
(private bytes, the object store's shared pages left out, and its resident peak).

    python -m benchmarks.streaming [--rounds 3] [--smoke]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from anneal.spec import StudySpec
from benchmarks.common import Stack, alternate, console, local_stack, show, summary, write
from trainers.contract import DataShape, ParamInfo, Task, TrainContext, TrainerInfo

FEATURES = 64
BATCH = 1024
GROUP_ROWS = 65_536
ROWS = 4_200_000  # 64 float32 and an int64 a row: 1.1 GB


def delivery() -> TrainerInfo:
    return TrainerInfo(
        name="delivery",
        target="benchmarks.streaming:DeliveryTrainer",
        description="Takes one epoch of batches and nothing else: the rate data reaches a training loop.",
        metrics=frozenset({"samples_per_s", "rows", "private_peak_mb", "rss_peak_mb"}),
        datasets=frozenset(),
        params={"batch_size": ParamInfo(BATCH, "Rows per batch."), "epochs": ParamInfo(1, "Passes.")},
        epochs_param="epochs",
        task=Task.CLASSIFICATION,
    )


class DeliveryTrainer:
    def build_model(self, config: Mapping[str, Any], shape: DataShape) -> Any:
        import torch

        return torch.nn.Linear(shape.n_features, shape.n_outputs)

    def model_state(self, checkpoint: Mapping[str, Any]) -> dict[str, Any]:
        return dict(checkpoint["model"])

    def predict(self, model: Any, rows: Any) -> Any:
        return model(rows).softmax(dim=1)

    def train(self, context: TrainContext) -> None:
        model = self.build_model({}, context.data_info.shape)
        rows, first = 0, 0.0
        for _, y in context.train_batches(int(context.config.get("batch_size", BATCH)), epoch=0):
            if not rows:
                first = time.perf_counter()
            rows += len(y)
            last = time.perf_counter()
        private, rss = own_memory_mb()
        metrics = {"samples_per_s": rows / (last - first), "rows": rows, "private_peak_mb": private, "rss_peak_mb": rss}
        context.report(metrics, checkpoint={"model": model.state_dict()}, final=True)


def own_memory_mb() -> tuple[float, float]:
    """This process's private memory now and its resident peak, in MiB."""
    private = 0
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            private += int(line.split()[1])
    return private / 1024, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_table(path: Path, rows: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    schema = pa.schema([*(pa.field(f"f{i}", pa.float32()) for i in range(FEATURES)), pa.field("label", pa.int64())])
    with pq.ParquetWriter(path, schema, compression="none", use_dictionary=False) as writer:
        for start in range(0, rows, GROUP_ROWS):
            n = min(GROUP_ROWS, rows - start)
            x = rng.standard_normal((n, FEATURES), dtype=np.float32)
            y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
            writer.write_table(pa.table({**{f"f{i}": x[:, i] for i in range(FEATURES)}, "label": y}, schema=schema))


PLAIN_LOOP = """
import json, resource, sys, time, warnings
import numpy as np, pyarrow.parquet as pq, torch
warnings.simplefilter("ignore")  # arrays from Arrow are read-only; torch says so once
reader = pq.ParquetFile(sys.argv[1], pre_buffer=False)
features = [name for name in reader.schema_arrow.names if name != "label"]
rows, first = 0, 0.0
for batch in reader.iter_batches(batch_size=int(sys.argv[2]), columns=[*features, "label"]):
    x = torch.from_numpy(np.stack([batch.column(i).to_numpy() for i in range(len(features))], axis=1))
    y = torch.from_numpy(batch.column(len(features)).to_numpy())
    if not rows:
        first = time.perf_counter()
    rows += len(y)
    last = time.perf_counter()
mine = ("Private_Clean:", "Private_Dirty:")
private = sum(int(line.split()[1]) for line in open("/proc/self/smaps_rollup") if line.startswith(mine))
print(json.dumps({"samples_per_s": rows / (last - first), "rows": rows, "private_peak_mb": private / 1024,
                  "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def plain_loop(table: Path) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", PLAIN_LOOP, str(table), str(BATCH)], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    result: dict[str, float] = __import__("json").loads(done.stdout.strip().splitlines()[-1])
    return result


EXPERIMENT = "bench-streaming"  # one name: the table is prepared once, then every round reuses it


def study_spec(table: Path) -> StudySpec:
    """The one-trial study of `DeliveryTrainer` over the table."""
    return StudySpec.parse(
        {
            "name": EXPERIMENT,
            "trainer": "benchmarks.streaming:delivery",
            "dataset": {"name": "big", "path": table.name, "format": "parquet", "label": "label"},
            "params": {"batch_size": BATCH},
            "search_space": {"epochs": {"categorical": [1]}},
            "objective": {"metric": "samples_per_s", "mode": "max"},
            "budget": {"max_trials": 1, "max_concurrent_trials": 1},
        }
    )


def anneal_trial(stack: Stack, table: Path, storage: str) -> dict[str, float]:
    from cluster.driver.tuning import build_tuner

    tuner = build_tuner(
        study_spec(table),
        delivery(),
        experiment_name=EXPERIMENT,
        storage_path=storage,
        callbacks=[],
        data_roots=[str(table.parent)],
    )
    results = tuner.fit()
    if len(results) != 1 or results.errors:
        raise RuntimeError(f"the benchmark trial failed: {results.errors}")
    return {k: float(v) for k, v in (results[0].metrics or {}).items() if k in delivery().metrics}


def prepare_once(table: Path, storage: str) -> float:
    """Seconds the study's driver spends preparing the table (once per study)."""
    from cluster.driver.studydata import study_data

    began = time.monotonic()
    study_data(study_spec(table), delivery(), [str(table.parent)], os.path.join(storage, EXPERIMENT))
    return time.monotonic() - began


def run(stack: Stack, rows: int, rounds: int) -> dict[str, Any]:
    import ray

    from cluster.environment import job_env

    with tempfile.TemporaryDirectory(prefix="anneal-bench-stream-") as work:
        table = Path(work) / "big.parquet"
        write_table(table, rows)
        size = table.stat().st_size
        storage = os.path.join(work, "experiments")
        started_ray = not ray.is_initialized()  # a test's process is connected already
        if started_ray:
            environment = {"env_vars": job_env(stack.settings)}
            ray.init(address=stack.settings.ray_address, log_to_driver=False, runtime_env=environment)
        try:
            prepare_s = prepare_once(table, storage)
            measured: dict[str, list[dict[str, float]]] = {"a plain loop": [], "b anneal": []}
            variants = {
                "a plain loop": lambda: _keep(measured["a plain loop"], plain_loop(table)),
                "b anneal": lambda: _keep(measured["b anneal"], anneal_trial(stack, table, storage)),
            }
            rates = alternate(rounds, variants)
        finally:
            if started_ray:
                ray.shutdown()
    ratios = [b / a for a, b in zip(rates["a plain loop"], rates["b anneal"], strict=True)]
    result: dict[str, Any] = {
        "table_bytes": size,
        "rows": rows,
        "batch_size": BATCH,
        "prepare_s": prepare_s,
        "variants": {
            name: {
                "samples_per_s": summary(rates[name]),
                "private_peak_mb": summary([m["private_peak_mb"] for m in runs]),
                "rss_peak_mb": summary([m["rss_peak_mb"] for m in runs]),
            }
            for name, runs in measured.items()
        },
        "anneal_over_plain": summary(ratios),
        "anneal_over_plain_rounds": ratios,
    }
    rows_out = [
        [
            name,
            f"{v['samples_per_s']['median']:,.0f}",
            f"{v['private_peak_mb']['median']:.0f}",
            f"{v['rss_peak_mb']['median']:.0f}",
        ]
        for name, v in result["variants"].items()
    ]
    show(
        f"Streaming a {size / 1e9:.2f} GB Parquet table (medians of {rounds}; prepared once in {prepare_s:.1f} s)",
        ["variant", "samples/s", "private peak MiB", "resident peak MiB"],
        rows_out,
    )
    each = ", ".join(f"{r:.2f}" for r in ratios)
    console.print(f"anneal / plain loop: {summary(ratios)['median']:.2f} (rounds {each})")
    return result


def _keep(runs: list[dict[str, float]], measured: dict[str, float]) -> float:
    runs.append(measured)
    return measured["samples_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="a small table, to check the benchmark runs")
    args = parser.parse_args()
    with local_stack() as stack:
        result = run(stack, 50_000 if args.smoke else ROWS, 1 if args.smoke else args.rounds)
    if not args.smoke:
        write("streaming", result)


if __name__ == "__main__":
    main()
