"""What every benchmark shares: a local cluster, rounds, statistics, tables, JSON results."""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from anneal.client import Client
from anneal.settings import Settings

RESULTS = Path(__file__).resolve().parent / "results"
console = Console()


def machine() -> dict[str, Any]:
    packages = ("ray", "optuna", "mlflow", "torch", "grpcio", "anneal")
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {name: version(name) for name in packages},
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def summary(samples: Sequence[float]) -> dict[str, float]:
    """Median and spread ((max - min) / median) of repeated measurements."""
    median = statistics.median(samples)
    return {
        "median": median,
        "min": min(samples),
        "max": max(samples),
        "spread": (max(samples) - min(samples)) / median if median else 0.0,
        "n": len(samples),
    }


def percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def _busy_fraction(window_s: float) -> float:
    def read() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:8]]
        return fields[3] + fields[4], sum(fields)  # idle + iowait, total

    idle_before, total_before = read()
    time.sleep(window_s)
    idle_after, total_after = read()
    total = total_after - total_before
    return 1.0 - (idle_after - idle_before) / total if total else 0.0


def settle(busy_below: float = 0.15, window_s: float = 0.5, max_wait_s: float = 60.0) -> None:
    """Waits until the machine is quiet, so work left over from one variant (actors
    shutting down, a standby driver starting) does not slow the next one."""
    if not os.path.exists("/proc/stat"):
        return
    deadline = time.monotonic() + max_wait_s
    while time.monotonic() < deadline and _busy_fraction(window_s) >= busy_below:
        pass


def wait_for_next_standby(stack: Stack, used_job: str, timeout_s: float = 90.0) -> None:
    """After an anneal study: the server starts its next standby driver once the study's
    driver has ended. Waits for it and for its start-up to finish, so that neither slows
    the next variant (nor is the next study denied its standby)."""
    wait_for_standby_running(stack, used_job, timeout_s)
    settle()


def wait_for_standby_running(stack: Stack, used_job: str, timeout_s: float = 90.0) -> None:
    """Waits until a standby driver other than `used_job` runs (at most `timeout_s`)."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    from cluster.server.jobs import STANDBY_METADATA

    jobs = JobSubmissionClient(stack.settings.ray_dashboard_url)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(
            (job.metadata or {}).get(STANDBY_METADATA) and job.status is JobStatus.RUNNING
            for job in jobs.list_jobs()
            if job.submission_id != used_job
        ):
            return
        time.sleep(0.5)


def alternate(rounds: int, variants: dict[str, Callable[[], float]]) -> dict[str, list[float]]:
    """Runs each variant once per round, in turn, so drift in the machine hits them alike."""
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for number in range(rounds):
        for name, run in variants.items():
            settle()
            value = run()
            samples[name].append(value)
            console.log(f"round {number + 1}/{rounds} {name}: {value:.3f}")
    return samples


def show(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(*headers, title=title)
    for row in rows:
        table.add_row(*(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row))
    console.print(table)


def write(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"benchmark": name, "machine": machine(), **payload}, indent=2))
    console.print(f"results written to {path}")
    return path


@dataclass
class Stack:
    settings: Settings
    address: str

    def client(self) -> Client:
        """A client with the development token the local server made under home."""
        return Client.from_settings(self.settings.model_copy(update={"grpc_address": self.address}))


@contextmanager
def local_stack() -> Iterator[Stack]:
    """A local Ray cluster and anneal server as `anneal up` starts them, in a temporary home."""
    from cluster.local.cluster import down, up

    home = Path(tempfile.mkdtemp(prefix="anneal-bench-"))
    settings = Settings.load(home=home, grpc_address="127.0.0.1:0", serve_http_port=0)
    cluster = up(settings, log=lambda _: None)
    try:
        yield Stack(Settings.load(home=home), cluster.grpc_address)
    finally:
        import ray

        ray.shutdown()
        down(settings, log=lambda _: None)
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(cluster.ray_temp_dir, ignore_errors=True)
