"""MLflow's store opened by several processes at once: the server, a driver and its
writer all open one SQLite tracking database, and the first open migrates its schema."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from mlflow.tracking import MlflowClient

from cluster.tracking.tracker import open_client

OPENERS = 3


def open_and_create(tracking_uri: str, name: str) -> None:
    open_client(tracking_uri).create_experiment(name)


def test_processes_opening_a_fresh_database_together_all_get_a_working_store(tmp_path: Path) -> None:
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    context = multiprocessing.get_context("spawn")
    openers = [context.Process(target=open_and_create, args=(tracking_uri, f"e{n}")) for n in range(OPENERS)]
    for process in openers:
        process.start()
    for process in openers:
        process.join(timeout=120)
    assert [p.exitcode for p in openers] == [0] * OPENERS
    names = {e.name for e in MlflowClient(tracking_uri).search_experiments()}
    assert {f"e{n}" for n in range(OPENERS)} <= names
