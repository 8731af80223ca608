"""Shared fixtures of the unit tests: the example spec, as a file, as data and as a model."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from anneal.spec import StudySpec
from tests.unit.helpers import EXAMPLE

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
