"""The trainer registry with packages installed: entry points found, broken packages reported
as unavailable with their error, never hiding the others or raising."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from anneal.errors import InvalidSpec
from anneal.types import Task
from tests.plugins import installed, write_broken_package, write_distribution
from trainers.registry import BUILT_IN, catalog, describe, resolve

GOOD = """
from trainers import ParamInfo, TrainerInfo
from anneal.types import Task

INFO = TrainerInfo(
    name="tiny_cnn",
    target="tiny_cnn_impl:Trainer",
    description="A small convolutional net.",
    metrics=frozenset({"val_accuracy"}),
    datasets=frozenset(),
    params={"epochs": ParamInfo(3, "Passes."), "channels": ParamInfo(8, "Filters per layer.")},
    epochs_param="epochs",
    task=Task.CLASSIFICATION,
    input_shape=(1, 8, 8),
)
NOT_INFO = {"name": "dict_trainer"}
SHADOW = TrainerInfo(name="mlp_classifier", target="x:y", description="", metrics=frozenset(), datasets=frozenset())
BAD_NAME = TrainerInfo(name="Bad Name", target="x:y", description="", metrics=frozenset(), datasets=frozenset())
"""
EXITS = "raise SystemExit(3)\n"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    write_broken_package(tmp_path)
    write_distribution(
        tmp_path,
        "good_trainers",
        {
            "tiny_cnn": "good_trainers:INFO",
            "not_info": "good_trainers:NOT_INFO",
            "shadow": "good_trainers:SHADOW",
            "bad_name": "good_trainers:BAD_NAME",
            "exits": "exiting_trainers:INFO",
            "missing": "good_trainers:NO_SUCH_NAME",
        },
        {"good_trainers": GOOD, "exiting_trainers": EXITS},
    )
    return tmp_path


def test_a_package_trainer_is_registered_by_its_entry_point(site: Path) -> None:
    with installed(site):
        info = resolve("tiny_cnn")
        assert info.input_shape == (1, 8, 8)
        assert catalog().sources["tiny_cnn"] == "good_trainers 0.1, entry point tiny_cnn = good_trainers:INFO"
        assert catalog().sources["mlp_classifier"] == BUILT_IN


def test_broken_packages_are_unavailable_with_their_error(site: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "anneal.trainers"), installed(site):
        unavailable = {u.name: u.error for u in catalog().unavailable}
        assert set(registered_names()) >= {"mlp_classifier", "mlp_regressor", "quadratic", "tiny_cnn"}
    assert unavailable["broken"] == "ImportError: this trainer needs the package no_such_dependency"
    assert "is a dict, not a trainers.TrainerInfo" in unavailable["not_info"]
    assert "'mlp_classifier' is already registered by built-in" in unavailable["shadow"]
    assert "must be lower-case" in unavailable["bad_name"]
    assert unavailable["exits"] == "importing exiting_trainers:INFO called exit(3)"
    assert unavailable["missing"].startswith("AttributeError")
    assert len(unavailable) == 6
    for name in unavailable:
        assert any(name in record.getMessage() and "unavailable" in record.getMessage() for record in caplog.records)


def registered_names() -> list[str]:
    return list(catalog().trainers)


def test_a_spec_naming_an_unavailable_trainer_is_told_why(site: Path) -> None:
    with installed(site), pytest.raises(InvalidSpec) as caught:
        resolve("broken")
    assert [e.path for e in caught.value.errors] == ["trainer"]
    assert "unavailable on the server: ImportError: this trainer needs" in str(caught.value)


def test_describe_lists_what_a_spec_needs(site: Path) -> None:
    with installed(site):
        listed = describe()
    described = {d.name: d for d in listed}
    mlp = described["mlp_classifier"]
    assert mlp.task is Task.CLASSIFICATION and mlp.input_shape == () and mlp.available
    assert {p.name: p.default for p in mlp.parameters}["lr"] == 1e-3
    assert "val_accuracy" in mlp.metrics and "digits" in mlp.datasets and mlp.epochs_parameter == "epochs"
    cnn = described["tiny_cnn"]
    assert cnn.input_shape == (1, 8, 8) and [p.name for p in cnn.parameters] == ["epochs", "channels"]
    assert not described["broken"].available and described["broken"].source.startswith("anneal_broken_trainer 0.1")
    assert [d.available for d in listed][-6:] == [False] * 6  # the unavailable ones come last


def test_without_packages_only_the_built_ins() -> None:
    catalog.cache_clear()
    assert catalog().unavailable == () or all(u.name != "broken" for u in catalog().unavailable)
    assert {"mlp_classifier", "mlp_regressor", "quadratic"} <= set(catalog().trainers)
