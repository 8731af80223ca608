"""Shared fixtures of the unit tests: the example spec, as a file, as data and as a model;
and store URLs on every backend the store supports."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from anneal.spec import StudySpec
from cluster.store.store import Store
from tests import postgres
from tests.unit.fakes import FakeJobs
from tests.unit.helpers import EXAMPLE

BACKENDS = ["sqlite", "postgresql"]

MINIMAL: dict[str, Any] = {
    "name": "iris-mlp",
    "trainer": "mlp_classifier",
    "dataset": {"name": "iris"},
    "search_space": {"lr": {"float": {"low": 0.001, "high": 0.1}}},
    "objective": {"metric": "val_accuracy", "mode": "max"},
}


@pytest.fixture
def example_data() -> dict[str, Any]:
    """examples/digits.yaml as plain data, fresh for each test to mutate."""
    data: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    return data


@pytest.fixture
def minimal_data() -> dict[str, Any]:
    """The smallest valid spec: everything with a default left out."""
    return copy.deepcopy(MINIMAL)


@pytest.fixture
def example_spec() -> StudySpec:
    return StudySpec.load(EXAMPLE)


@pytest.fixture
def jobs() -> FakeJobs:
    return FakeJobs()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A SQLite store of the test's own (the store's contract tests run on every backend)."""
    store = Store(f"sqlite:///{tmp_path / 'anneal.db'}")
    yield store
    store.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL server for the session, or a skip that says how to get one."""
    if not postgres.available():
        pytest.skip(postgres.HOW_TO_RUN)
    with postgres.server() as url:
        yield url


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty store database on each backend: a SQLite file, a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'anneal.db'}"
        return
    server_url: str = request.getfixturevalue("postgres_server")
    with postgres.fresh_database(server_url) as url:
        yield url
