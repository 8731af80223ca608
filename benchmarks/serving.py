"""Serving: latency and throughput of the deployed digits model, and time to deploy.

Latency of one-row requests through anneal's gRPC Predict, a Serve deployment
handle (as Ray tasks, Serve's default, and over Serve's direct gRPC channel, as anneal
sends small batches), Serve's HTTP route, and a raw in-process forward pass. Throughput of one-row
Predict calls at 1, 8 and 32 concurrent clients, with dynamic batching on and off.
Time to deploy: from the best trial's end to the first answered Predict, with
`deploy.auto`.
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
from collections.abc import Callable
from typing import Any

from anneal import AnnealError, Client, StudySpec, StudyState
from anneal.types import EventKind
from benchmarks.common import Stack, console, local_stack, percentile, show, summary, wait_for_next_standby, write

NAME = "bench-digits"


def study_spec() -> StudySpec:
    return StudySpec.parse(
        {
            "name": NAME,
            "trainer": "mlp_classifier",
            "dataset": {"name": "digits"},
            "params": {"epochs": 10, "batch_size": 64},
            "search_space": {"lr": {"float": {"low": 3e-3, "high": 3e-2, "log": True}}},
            "objective": {"metric": "val_accuracy", "mode": "max"},
            "budget": {"max_trials": 2, "max_concurrent_trials": 2},
            "deploy": {"auto": True, "replicas": 1},
        }
    )


def deploy_and_time(client: Client) -> tuple[str, float]:
    """Runs the study with deploy.auto; seconds from the best trial's end to the first answered Predict."""
    study = client.create_study(study_spec())
    row = [0.0] * 64
    while True:
        try:
            client.predict(NAME, [row])
            answered = time.time()
            break
        except AnnealError:
            time.sleep(0.02)
    study = client.get_study(study.study_id)
    assert study.state is StudyState.SUCCEEDED and study.best_trial is not None, study.error
    ends = [
        e.time.timestamp()
        for e in client.watch_study(study.study_id)
        if e.kind is EventKind.TRIAL_ENDED and e.trial and e.trial.trial_id == study.best_trial.trial_id
    ]
    return study.study_id, answered - ends[-1]


def timed(call: Callable[[], Any], count: int) -> list[float]:
    times = []
    for _ in range(count):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return times


def latency_paths(client: Client, stack: Stack, row: list[float], model_uri: str) -> dict[str, Callable[[], Any]]:
    import ray
    from ray import serve

    from cluster.serving.deploy import app_name
    from cluster.serving.package import load_from_mlflow

    if not ray.is_initialized():
        ray.init(address=stack.settings.ray_address, log_to_driver=False)
    deployment = client.get_deployment(NAME)
    handle = serve.get_app_handle(app_name(deployment.owner, NAME))
    direct = handle.options(_by_reference=False)
    model = load_from_mlflow(model_uri, stack.settings.mlflow_tracking_uri)
    connection = http.client.HTTPConnection("127.0.0.1", stack.settings.serve_http_port, timeout=30)
    body = json.dumps({"rows": [row]})

    def over_http() -> None:
        connection.request("POST", deployment.route, body, {"Content-Type": "application/json"})
        assert connection.getresponse().read()

    return {
        "raw forward (in process)": lambda: model.predict([row]),
        "Serve handle": lambda: handle.predict.remote([row]).result(),
        "Serve handle, direct gRPC": lambda: direct.predict.remote([row]).result(),
        "Serve HTTP": over_http,
        "anneal gRPC Predict": lambda: client.predict(NAME, [row]),
    }


def throughput(stack: Stack, row: list[float], clients: int, seconds: float) -> tuple[float, float]:
    """(requests/s, p99 latency in s) of one-row Predict calls from `clients` threads."""
    stop = time.perf_counter() + seconds
    latencies: list[list[float]] = [[] for _ in range(clients)]

    def work(mine: list[float]) -> None:
        with stack.client() as client:
            while time.perf_counter() < stop:
                began = time.perf_counter()
                client.predict(NAME, [row])
                mine.append(time.perf_counter() - began)

    threads = [threading.Thread(target=work, args=(latencies[n],)) for n in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    everything = [t for mine in latencies for t in mine]
    return len(everything) / elapsed, percentile(everything, 99)


def run(stack: Stack, requests: int, rounds: int, seconds: float, concurrency: list[int]) -> dict[str, Any]:
    from trainers.datasets import load_splits

    data = load_splits("digits", 0.2, 0.2, 0)
    row = data.x_test[0].tolist()
    with stack.client() as client:
        study_id, to_deploy = deploy_and_time(client)
        study = client.get_study(study_id)
        wait_for_next_standby(stack, study.ray_job_id)
        paths = latency_paths(client, stack, row, study.model_uri)
        for call in paths.values():
            timed(call, 20)  # warm every path
        samples: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(rounds):
            for name, call in paths.items():
                samples[name] += timed(call, requests)
        latency = {
            name: {"p50_ms": percentile(v, 50) * 1000, "p99_ms": percentile(v, 99) * 1000, "n": len(v)}
            for name, v in samples.items()
        }
        owner = client.get_deployment(NAME).owner
        rates: dict[str, dict[int, dict[str, float]]] = {}
        for label, batch in (("batching off", 1), ("batching on", 32)):
            client.deploy(study_id, max_batch_size=batch)
            rates[label] = {}
            for clients in concurrency:
                runs = [throughput(stack, row, clients, seconds) for _ in range(rounds)]
                rates[label][clients] = {
                    "requests_per_s": summary([r for r, _ in runs])["median"],
                    "spread": summary([r for r, _ in runs])["spread"],
                    "p99_ms": summary([p for _, p in runs])["median"] * 1000,
                }
    from ray import serve

    from cluster.serving.deploy import app_name

    serve.delete(app_name(owner, NAME))  # its replica's CPU goes back to the studies that follow
    show(
        "Serving latency, one-row requests",
        ["path", "p50 ms", "p99 ms"],
        [(name, f["p50_ms"], f["p99_ms"]) for name, f in latency.items()],
    )
    show(
        "Predict throughput (requests/s, median of rounds)",
        ["clients", *(f"{label} req/s" for label in rates), *(f"{label} p99 ms" for label in rates)],
        [
            (
                n,
                *(rates[label][n]["requests_per_s"] for label in rates),
                *(rates[label][n]["p99_ms"] for label in rates),
            )
            for n in concurrency
        ],
    )
    gain = (
        rates["batching on"][concurrency[-1]]["requests_per_s"]
        / rates["batching off"][concurrency[-1]]["requests_per_s"]
    )
    predict = latency["anneal gRPC Predict"]["p50_ms"]
    overhead = predict - latency["Serve handle"]["p50_ms"]
    over_direct = predict - latency["Serve handle, direct gRPC"]["p50_ms"]
    console.print(
        f"time to deploy: {to_deploy:.2f} s; Predict p50 - handle p50: {overhead:.2f} ms "
        f"(- direct-gRPC handle p50: {over_direct:.2f} ms); batching gain at {concurrency[-1]} clients: {gain:.2f}x"
    )
    return {
        "time_to_deploy_s": to_deploy,
        "latency": latency,
        "predict_minus_handle_p50_ms": overhead,
        "predict_minus_direct_handle_p50_ms": over_direct,
        "throughput": rates,
        "batching_gain": gain,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300, help="per path per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0, help="per throughput measurement")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the benchmark runs")
    args = parser.parse_args()
    concurrency = [1, 8, 32]
    if args.smoke:
        args.requests, args.rounds, args.seconds, concurrency = 5, 1, 0.3, [1, 2]
    with local_stack() as stack:
        result = run(stack, args.requests, args.rounds, args.seconds, concurrency)
    if not args.smoke:
        write("serving", result)
    console.print("done")


if __name__ == "__main__":
    main()
