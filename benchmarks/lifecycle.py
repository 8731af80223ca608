"""A deployment's lifecycle under load: rollouts and autoscaling of the deployed digits model.

Rollout: callers send one-row Predict calls without pause; latencies of the calls that
started while Deploy rolled the deployment over to another version, against those of a
steady window just before, and every failed call counted. Each round rolls out the other
version (v1 → v2, v2 → v1, ...).

Autoscaling: a deployment of 1 to `max_replicas` replicas (Predict keeps as many batches
in flight as those replicas take at the target) is idle, then 32 clients start at once:
seconds from that step to Serve reporting an added replica running, and requests/s at 32
clients once scaled, against the same deployment held at its minimum of 1 replica.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from anneal import Client, StudySpec, StudyState
from benchmarks.common import Stack, console, local_stack, percentile, show, summary, write

NAME = "bench-lifecycle"
SCALED = "bench-autoscale"
ROW = [0.0] * 64


def study_spec(seed: int) -> StudySpec:
    return StudySpec.parse(
        {
            "name": NAME,
            "trainer": "mlp_classifier",
            "dataset": {"name": "digits"},
            "params": {"epochs": 3, "batch_size": 64},
            "search_space": {"lr": {"float": {"low": 3e-3, "high": 3e-2, "log": True}}},
            "objective": {"metric": "val_accuracy", "mode": "max"},
            "search": {"sampler": "random", "seed": seed},
            "budget": {"max_trials": 1, "max_concurrent_trials": 1},
        }
    )


@dataclass
class Load:
    """Client threads calling Predict on `name` until stopped: (start, seconds, ok) per call."""

    stack: Stack
    name: str
    clients: int
    calls: list[tuple[float, float, bool]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _work(self) -> None:
        with self.stack.client() as client:
            while not self.stop.is_set():
                began = time.perf_counter()
                try:
                    client.predict(self.name, [ROW])
                    ok = True
                except Exception:
                    ok = False
                with self.lock:
                    self.calls.append((began, time.perf_counter() - began, ok))

    def between(self, start: float, end: float) -> list[tuple[float, float, bool]]:
        with self.lock:
            return [call for call in self.calls if start <= call[0] < end]


@contextmanager
def load(stack: Stack, name: str, clients: int) -> Iterator[Load]:
    running = Load(stack, name, clients)
    threads = [threading.Thread(target=running._work, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    try:
        yield running
    finally:
        running.stop.set()
        for thread in threads:
            thread.join(60)


def rollouts(
    stack: Stack, client: Client, study_ids: list[str], rounds: int, steady_s: float, clients: int
) -> dict[str, Any]:
    client.deploy(study_ids[0], name=NAME)
    results: list[dict[str, float]] = []
    with load(stack, NAME, clients) as running:
        for index in range(rounds):
            steady_start = time.perf_counter()
            time.sleep(steady_s)
            began = time.perf_counter()
            client.deploy(study_ids[(index + 1) % 2], name=NAME)
            ended = time.perf_counter()
            time.sleep(0.5)
            steady = running.between(steady_start, began)
            during = running.between(began, ended)
            results.append(
                {
                    "rollout_s": ended - began,
                    "steady_p99_ms": percentile([s for _, s, _ in steady], 99) * 1000,
                    "rollout_p99_ms": percentile([s for _, s, _ in during], 99) * 1000,
                    "failed_calls": sum(1 for *_, ok in steady + during if not ok),
                    "calls_during_rollout": len(during),
                }
            )
    return {
        "rounds": results,
        "failed_calls": sum(r["failed_calls"] for r in results),
        "steady_p99_ms": summary([r["steady_p99_ms"] for r in results]),
        "rollout_p99_ms": summary([r["rollout_p99_ms"] for r in results]),
        "rollout_s": summary([r["rollout_s"] for r in results]),
    }


def replicas_running(client: Client, name: str) -> int:
    return client.get_deployment(name).replicas_running


def autoscaling(stack: Stack, client: Client, study_id: str, max_replicas: int, seconds: float) -> dict[str, Any]:
    scaling = {"min_replicas": 1, "max_replicas": max_replicas, "target_ongoing_requests": 2}
    client.deploy(study_id, name=SCALED, upscale_delay_s=0, downscale_delay_s=600, **scaling)
    assert replicas_running(client, SCALED) == 1
    with load(stack, SCALED, 32) as running:
        step = time.perf_counter()
        while replicas_running(client, SCALED) < 2:
            assert time.perf_counter() - step < 120, "no replica was added under load"
            time.sleep(0.1)
        to_added = time.perf_counter() - step
        while replicas_running(client, SCALED) < max_replicas and time.perf_counter() - step < 120:
            time.sleep(0.1)
        to_max = time.perf_counter() - step
        measured = time.perf_counter()
        time.sleep(seconds)
        scaled_rate = len(running.between(measured, measured + seconds)) / seconds
    scaled_replicas = replicas_running(client, SCALED)
    client.deploy(study_id, name=SCALED, replicas=1)  # held at the minimum
    with load(stack, SCALED, 32) as running:
        time.sleep(1.0)
        measured = time.perf_counter()
        time.sleep(seconds)
        minimum_rate = len(running.between(measured, measured + seconds)) / seconds
    client.delete_deployment(SCALED)
    return {
        "to_added_replica_s": to_added,
        "to_max_replicas_s": to_max,
        "replicas_scaled": scaled_replicas,
        "rps_32_autoscaled": scaled_rate,
        "rps_32_minimum": minimum_rate,
        "autoscaled_over_minimum": scaled_rate / minimum_rate,
    }


def run(stack: Stack, rounds: int, steady_s: float, seconds: float, max_replicas: int = 3) -> dict[str, Any]:
    with stack.client() as client:
        studies = [client.wait_for_study(client.create_study(study_spec(seed)).study_id) for seed in (0, 1)]
        assert all(s.state is StudyState.SUCCEEDED for s in studies), [s.error for s in studies]
        ids = [s.study_id for s in studies]
        rolled = rollouts(stack, client, ids, rounds, steady_s, clients=8)
        client.delete_deployment(NAME)
        scaled = autoscaling(stack, client, ids[0], max_replicas, seconds)
    show(
        "Rollout under load (8 callers)",
        ["round", "rollout s", "steady p99 ms", "rollout p99 ms", "calls during", "failed"],
        [
            (
                n + 1,
                r["rollout_s"],
                r["steady_p99_ms"],
                r["rollout_p99_ms"],
                r["calls_during_rollout"],
                r["failed_calls"],
            )
            for n, r in enumerate(rolled["rounds"])
        ],
    )
    show(
        f"Autoscaling 1 to {max_replicas} replicas, a step to 32 clients",
        ["load step to an added replica s", f"to {max_replicas} replicas s", "req/s autoscaled", "req/s at 1 replica"],
        [
            (
                scaled["to_added_replica_s"],
                scaled["to_max_replicas_s"],
                scaled["rps_32_autoscaled"],
                scaled["rps_32_minimum"],
            )
        ],
    )
    console.print(
        f"failed calls during rollouts: {rolled['failed_calls']}; "
        f"autoscaled over minimum at 32 clients: {scaled['autoscaled_over_minimum']:.2f}x"
    )
    return {"rollout": rolled, "autoscaling": scaled}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the benchmark runs")
    args = parser.parse_args()
    steady_s, seconds = (0.5, 0.5) if args.smoke else (5.0, 5.0)
    with local_stack() as stack:
        result = run(stack, 1 if args.smoke else args.rounds, steady_s, seconds)
    if not args.smoke:
        write("lifecycle", result)
    console.print("done")


if __name__ == "__main__":
    main()
