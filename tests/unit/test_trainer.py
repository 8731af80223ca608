"""The built-in MLP trainers and the dataset splits, run on CPU in a local context."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
import torch

from trainers.builtins import MLP_CLASSIFIER, MLP_REGRESSOR
from trainers.contract import Splits, Trainer
from trainers.datasets import CLASSIFICATION_DATASETS, DATASETS, load_splits
from trainers.mlp import MLPClassifierTrainer, MLPRegressorTrainer
from trainers.scores import regression_scores
from trainers.workercontext import LocalContext

EPOCHS = 4
CONFIG: dict[str, Any] = {"epochs": EPOCHS, "hidden_size": 8, "batch_size": 16, "lr": 0.01, "seed": 3}


class FakeContext(LocalContext):
    """A one-worker context that keeps every report and every checkpoint, each through
    torch.save as on the cluster."""

    def __init__(
        self, config: Mapping[str, Any], data: Splits, resume_from: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(config, data, "cpu", **kwargs)
        self.resume_from = resume_from
        self.metrics: list[dict[str, float]] = []
        self.checkpoints: list[dict[str, Any]] = []

    def report(
        self, metrics: Mapping[str, float], checkpoint: Mapping[str, Any] | None = None, *, final: bool = False
    ) -> None:
        self.metrics.append(dict(metrics))
        if checkpoint is not None:
            buffer = io.BytesIO()
            torch.save(dict(checkpoint), buffer)
            buffer.seek(0)
            self.checkpoints.append(torch.load(buffer, weights_only=True))


def trained(trainer: Trainer, config: Mapping[str, Any], data: Splits, **kwargs: Any) -> FakeContext:
    context = FakeContext(config, data, **kwargs)
    trainer.train(context)
    return context


@pytest.fixture(scope="module")
def iris() -> Splits:
    return load_splits("iris", 0.2, 0.2, 0)


@pytest.fixture(scope="module")
def full_run(iris: Splits) -> FakeContext:
    return trained(MLPClassifierTrainer(), CONFIG, iris)


# ------------------------------------------------------------------ training


def test_reports_every_metric_every_epoch(full_run: FakeContext) -> None:
    assert len(full_run.metrics) == EPOCHS
    for metrics in full_run.metrics:
        assert set(metrics) == {"val_accuracy", "val_loss", "train_loss", "num_parameters"}
        assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values())
        assert 0.0 <= metrics["val_accuracy"] <= 1.0
        assert metrics["val_loss"] > 0 and metrics["train_loss"] > 0


def test_reports_what_the_registry_promises(full_run: FakeContext) -> None:
    # check_spec accepts an objective metric only if it is in this set.
    assert set(full_run.metrics[0]) == MLP_CLASSIFIER.metrics


def test_checkpoint_every_epoch(full_run: FakeContext) -> None:
    assert [c["epoch"] for c in full_run.checkpoints] == list(range(1, EPOCHS + 1))
    assert {"model", "optimizer", "epoch"} <= set(full_run.checkpoints[0])


def test_training_lowers_the_loss(full_run: FakeContext) -> None:
    assert full_run.metrics[-1]["train_loss"] < full_run.metrics[0]["train_loss"]


@pytest.mark.parametrize("resume_after", [1, EPOCHS - 1])
def test_resume_continues_where_it_stopped(iris: Splits, full_run: FakeContext, resume_after: int) -> None:
    context = trained(MLPClassifierTrainer(), CONFIG, iris, resume_from=full_run.checkpoints[resume_after - 1])
    assert [c["epoch"] for c in context.checkpoints] == list(range(resume_after + 1, EPOCHS + 1))
    assert context.metrics == full_run.metrics[resume_after:]
    resumed, uninterrupted = context.checkpoints[-1]["model"], full_run.checkpoints[-1]["model"]
    assert resumed.keys() == uninterrupted.keys()
    for name in resumed:
        assert torch.equal(resumed[name], uninterrupted[name]), name


def test_resume_from_the_last_epoch_reports_nothing(iris: Splits, full_run: FakeContext) -> None:
    context = trained(MLPClassifierTrainer(), CONFIG, iris, resume_from=full_run.checkpoints[-1])
    assert context.metrics == []


def test_sgd_and_more_layers(iris: Splits) -> None:
    config = {**CONFIG, "epochs": 1, "optimizer": "sgd", "num_layers": 2, "dropout": 0.1}
    assert len(trained(MLPClassifierTrainer(), config, iris).metrics) == 1


def test_unknown_optimizer_is_refused(iris: Splits) -> None:
    with pytest.raises(ValueError, match="adam or sgd"):
        trained(MLPClassifierTrainer(), {**CONFIG, "optimizer": "lbfgs"}, iris)


# ------------------------------------------------------------------ serving side


def test_rebuilt_model_predicts_like_the_trained_one(iris: Splits, full_run: FakeContext) -> None:
    trainer = MLPClassifierTrainer()
    model = trainer.build_model(CONFIG, iris.shape)
    model.load_state_dict(trainer.model_state(full_run.checkpoints[-1]))
    probabilities = trainer.predict(model, torch.from_numpy(iris.x_val))
    assert probabilities.shape == (len(iris.x_val), iris.shape.n_outputs)
    assert bool((probabilities >= 0).all())
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(len(iris.x_val)), atol=1e-5)
    accuracy = float((probabilities.argmax(dim=1) == torch.from_numpy(iris.y_val)).float().mean())
    assert accuracy == pytest.approx(full_run.metrics[-1]["val_accuracy"])


def test_build_model_follows_the_config(iris: Splits) -> None:
    model = MLPClassifierTrainer().build_model({"num_layers": 3, "hidden_size": 5}, iris.shape)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(4, 5), (5, 5), (5, 5), (5, 3)]


# ------------------------------------------------------------------ datasets

# Rows and (features, classes) of scikit-learn's bundled datasets.
SIZES = {"iris": (150, 4, 3), "wine": (178, 13, 3), "breast_cancer": (569, 30, 2), "digits": (1797, 64, 10)}


def test_every_registered_dataset_is_covered() -> None:
    assert set(SIZES) == CLASSIFICATION_DATASETS and DATASETS == CLASSIFICATION_DATASETS | {"diabetes"}


@pytest.mark.parametrize("name", sorted(SIZES))
def test_split_sizes_follow_the_fractions(name: str) -> None:
    rows, features, classes = SIZES[name]
    splits = load_splits(name, 0.2, 0.1, 0)
    sizes = (len(splits.x_train), len(splits.x_val), len(splits.x_test))
    assert sum(sizes) == rows
    assert abs(sizes[1] - 0.2 * rows) <= 1
    assert abs(sizes[2] - 0.1 * rows) <= 1
    assert [len(y) for y in (splits.y_train, splits.y_val, splits.y_test)] == list(sizes)
    assert (splits.shape.n_features, splits.shape.n_outputs) == (features, classes)
    assert splits.x_train.dtype == np.float32 and splits.y_train.dtype == np.int64


def test_no_test_rows_when_test_fraction_is_zero() -> None:
    splits = load_splits("wine", 0.25, 0.0, 0)
    assert len(splits.x_test) == 0 and len(splits.y_test) == 0
    assert len(splits.x_train) + len(splits.x_val) == 178
    assert abs(len(splits.x_val) - 0.25 * 178) <= 1


def test_splits_are_deterministic() -> None:
    uncached = load_splits.__wrapped__  # bypass the per-process cache
    first, second = uncached("wine", 0.2, 0.2, 5), uncached("wine", 0.2, 0.2, 5)
    for field in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert np.array_equal(getattr(first, field), getattr(second, field)), field


def test_split_seed_changes_the_split() -> None:
    assert not np.array_equal(load_splits("wine", 0.2, 0.2, 0).x_val, load_splits("wine", 0.2, 0.2, 1).x_val)


def test_splits_are_disjoint() -> None:
    splits = load_splits("breast_cancer", 0.2, 0.2, 0)  # its rows are all distinct
    parts = [{row.tobytes() for row in x} for x in (splits.x_train, splits.x_val, splits.x_test)]
    assert sum(len(p) for p in parts) == 569
    assert len(set().union(*parts)) == 569


def test_unknown_dataset() -> None:
    with pytest.raises(KeyError, match="mnist"):
        load_splits("mnist", 0.2, 0.2, 0)


# ------------------------------------------------------------------ regression

REGRESSOR_CONFIG: dict[str, Any] = {"epochs": 30, "hidden_size": 16, "batch_size": 32, "lr": 0.01, "seed": 0}


@pytest.fixture(scope="module")
def diabetes() -> Splits:
    return load_splits("diabetes", 0.2, 0.2, 0)


@pytest.fixture(scope="module")
def regressor_run(diabetes: Splits) -> FakeContext:
    return trained(MLPRegressorTrainer(), REGRESSOR_CONFIG, diabetes)


def test_diabetes_is_a_regression_dataset(diabetes: Splits) -> None:
    assert (diabetes.shape.n_features, diabetes.shape.n_outputs) == (10, 1)
    assert len(diabetes.y_train) + len(diabetes.y_val) + len(diabetes.y_test) == 442
    assert diabetes.y_train.dtype == np.float32 and diabetes.y_train.min() >= 25


def test_the_regressor_reports_what_the_registry_promises(regressor_run: FakeContext) -> None:
    assert all(set(metrics) == MLP_REGRESSOR.metrics for metrics in regressor_run.metrics)
    assert len(regressor_run.metrics) == REGRESSOR_CONFIG["epochs"]


def test_the_regressor_learns_the_target(regressor_run: FakeContext) -> None:
    first, last = regressor_run.metrics[0], regressor_run.metrics[-1]
    assert last["val_rmse"] < first["val_rmse"]
    assert last["val_r2"] > 0.3  # the diabetes target is noisy: linear models reach about 0.45


def test_the_rebuilt_regressor_predicts_values_in_the_targets_units(
    diabetes: Splits, regressor_run: FakeContext
) -> None:
    trainer = MLPRegressorTrainer()
    model = trainer.build_model(REGRESSOR_CONFIG, diabetes.shape)
    model.load_state_dict(trainer.model_state(regressor_run.checkpoints[-1]))
    values = trainer.predict(model, torch.from_numpy(diabetes.x_val))
    assert values.shape == (len(diabetes.x_val), 1)
    scores = regression_scores(values.numpy(), diabetes.y_val, "val_")
    assert scores["val_rmse"] == pytest.approx(regressor_run.metrics[-1]["val_rmse"], rel=1e-4)


def test_weights_of_the_first_mlp_classifier_still_load(iris: Splits, full_run: FakeContext) -> None:
    """Packages written before the contract's second version hold one flat Sequential's weights."""
    trainer = MLPClassifierTrainer()
    state = trainer.model_state(full_run.checkpoints[-1])
    flat = {"0.mean": state["features.mean"], "0.scale": state["features.scale"]}
    flat.update(
        {
            f"{int(key.split('.')[1]) + 1}.{key.split('.')[2]}": value
            for key, value in state.items()
            if key.startswith("body.")
        }
    )
    model = trainer.build_model(CONFIG, iris.shape)
    model.load_state_dict(flat)
    rows = torch.from_numpy(iris.x_val)
    expected = trainer.build_model(CONFIG, iris.shape)
    expected.load_state_dict(state)
    assert torch.equal(trainer.predict(model, rows), trainer.predict(expected, rows))
