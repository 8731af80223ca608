"""The quadratic test trainer: its known loss, and the crashes it injects for fault-tolerance tests."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.test_trainer import FakeContext, trained
from trainers.datasets import load_splits
from trainers.quadratic import InjectedCrash, QuadraticTrainer, loss_at

IRIS = load_splits("iris", 0.2, 0.2, 0)


def run(config: dict[str, Any], resume_from: dict[str, Any] | None = None) -> FakeContext:
    return trained(QuadraticTrainer(), config, IRIS, resume_from=resume_from)


def test_reports_its_loss_every_epoch() -> None:
    context = run({"epochs": 3, "x": 0.3, "y": 0.0})
    assert [m["loss"] for m in context.metrics] == [pytest.approx(loss_at(0.3, 0.0))] * 3
    assert [c["epoch"] for c in context.checkpoints] == [1, 2, 3]


def test_crashes_once_after_reporting_the_epoch_then_resumes_past_it() -> None:
    config = {"epochs": 4, "crash_at_epoch": 2, "crashes": 1}
    crashed = FakeContext(config, IRIS)
    with pytest.raises(InjectedCrash, match="crash 1 of 1 after epoch 2"):
        QuadraticTrainer().train(crashed)
    assert len(crashed.metrics) == 2
    last = crashed.checkpoints[-1]
    assert (last["epoch"], last["crashed"]) == (2, 1)
    resumed = run(config, resume_from=last)
    assert [c["epoch"] for c in resumed.checkpoints] == [3, 4]


def test_crashes_again_until_it_has_crashed_as_often_as_asked() -> None:
    config = {"epochs": 5, "crash_at_epoch": 2, "crashes": 2}
    first = FakeContext(config, IRIS)
    with pytest.raises(InjectedCrash):
        QuadraticTrainer().train(first)
    second = FakeContext(config, IRIS, first.checkpoints[-1])
    with pytest.raises(InjectedCrash, match="crash 2 of 2 after epoch 3"):
        QuadraticTrainer().train(second)
    assert [c["epoch"] for c in run(config, resume_from=second.checkpoints[-1]).checkpoints] == [4, 5]
