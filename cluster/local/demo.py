"""`anneal demo`: the whole path on embedded defaults, start to finish."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

from rich.console import Console

from anneal.cli import watch_with_progress
from anneal.client import Client
from anneal.settings import Settings
from anneal.spec import StudySpec
from anneal.types import StudyState
from cluster.local.cluster import down, up
from trainers.datasets import load_dataset
from trainers.registry import resolve

REQUIRED_ACCURACY = 0.95
PREDICT_BATCH = 64


def run_demo(settings: Settings, spec_path: Path, *, console: Console, out: Console) -> int:
    spec = StudySpec.load(spec_path)
    started = time.monotonic()
    cluster = up(settings, log=console.print)
    try:
        with Client.from_settings(settings.model_copy(update={"grpc_address": cluster.grpc_address})) as client:
            client.wait_until_ready()
            study = client.create_study(spec)
            console.print(f"submitted study {study.study_id} as Ray job {study.ray_job_id}")
            study = watch_with_progress(client, study.study_id)
            if study.state is not StudyState.SUCCEEDED or study.best_trial is None:
                console.print(f"[red]study ended {study.state.value}[/red]: {study.error}")
                return 1
            console.print("deploying the best trial to Ray Serve ...")
            deployment = client.deploy(study.study_id)
            data = load_dataset(spec.dataset, settings.data_roots, resolve(spec.trainer).task)
            rows = data.x_test.tolist()
            labels = []
            for start in range(0, len(rows), PREDICT_BATCH):
                labels += [p.label for p in client.predict(deployment.name, rows[start : start + PREDICT_BATCH])]
            served = sum(int(a == b) for a, b in zip(labels, data.y_test.tolist(), strict=True)) / len(rows)
            http_label = _predict_over_http(cluster.serve_http_port, deployment.route, rows[0])

        metric = spec.first_goal.metric
        out.print(f"best config:              {study.best_trial.config}")
        out.print(f"best {metric}:       {study.best_trial.metrics[metric]:.4f}  (trial {study.best_trial.trial_id})")
        out.print(f"served accuracy:          {served:.4f}  on {len(rows)} held-out rows through gRPC Predict")
        out.print(f"HTTP {deployment.route}: first held-out row -> {http_label} (true {int(data.y_test[0])})")
        out.print(
            f"MLflow: {settings.mlflow_tracking_uri}, model {study.registered_model} v{study.registered_model_version}"
        )
        out.print(f"demo took {time.monotonic() - started:.0f} s")
        if served < REQUIRED_ACCURACY:
            console.print(f"[red]served accuracy {served:.4f} is below {REQUIRED_ACCURACY}[/red]")
            return 1
        return 0
    finally:
        down(settings, log=console.print)


def _predict_over_http(port: int, route: str, row: list[float]) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{route}",
        data=json.dumps({"rows": [row]}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        label: int = json.loads(response.read())["predictions"][0]["label"]
        return label
