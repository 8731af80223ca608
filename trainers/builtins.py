"""The built-in trainers' registry entries: names, parameter tables, metrics and datasets.

Light on purpose: the registry reads these to validate a spec, and each trainer's own
module (which imports torch) reads its defaults here.
"""

from __future__ import annotations

from trainers.contract import ParamInfo, Task, TrainerInfo
from trainers.datasets import CLASSIFICATION_DATASETS, DATASETS, REGRESSION_DATASETS


def _mlp_params(epochs: int, lr: float) -> dict[str, ParamInfo]:
    return {
        "epochs": ParamInfo(epochs, "Passes over the training rows."),
        "batch_size": ParamInfo(32, "Rows per optimiser step, over all of a trial's workers together."),
        "lr": ParamInfo(lr, "Learning rate."),
        "hidden_size": ParamInfo(64, "Units per hidden layer."),
        "num_layers": ParamInfo(1, "Hidden layers."),
        "dropout": ParamInfo(0.0, "Dropout probability after each hidden layer."),
        "optimizer": ParamInfo("adam", "adam or sgd."),
        "momentum": ParamInfo(0.9, "Momentum of sgd."),
        "weight_decay": ParamInfo(0.0, "L2 penalty."),
        "seed": ParamInfo(0, "Seed of initialisation and shuffling."),
    }


MLP_CLASSIFIER = TrainerInfo(
    name="mlp_classifier",
    target="trainers.mlp:MLPClassifierTrainer",
    description="A PyTorch multi-layer perceptron for tabular classification, on one worker or data-parallel.",
    metrics=frozenset({"val_accuracy", "val_loss", "train_loss", "num_parameters"}),
    datasets=CLASSIFICATION_DATASETS,
    epochs_param="epochs",
    params=_mlp_params(epochs=20, lr=1e-3),
    task=Task.CLASSIFICATION,
)

MLP_REGRESSOR = TrainerInfo(
    name="mlp_regressor",
    target="trainers.mlp:MLPRegressorTrainer",
    description="A PyTorch multi-layer perceptron for tabular regression (one or more numeric targets), "
    "on one worker or data-parallel. Its loss is the mean squared error of standardised targets.",
    metrics=frozenset({"val_rmse", "val_r2", "val_loss", "train_loss", "num_parameters"}),
    datasets=REGRESSION_DATASETS,
    epochs_param="epochs",
    params=_mlp_params(epochs=50, lr=1e-2),
    task=Task.REGRESSION,
)

QUADRATIC = TrainerInfo(
    name="quadratic",
    target="trainers.quadratic:QuadraticTrainer",
    description="An analytic objective with no training, for tests and benchmarks of the machinery itself.",
    metrics=frozenset({"loss", "gpu_id", "world_size"}),
    datasets=DATASETS,
    epochs_param="epochs",
    params={
        "epochs": ParamInfo(1, "Reports to make, one per epoch."),
        "x": ParamInfo(0.0, "First coordinate; the loss is lowest at 0.3."),
        "y": ParamInfo(0.0, "Second coordinate; the loss is lowest at -0.2."),
        "seconds_per_epoch": ParamInfo(0.0, "Time each epoch sleeps, to stand in for work."),
        "crash_at_epoch": ParamInfo(
            0, "Fault injection: from this epoch on, the trial crashes right after an epoch's report; 0 never."
        ),
        "crashes": ParamInfo(1, "How many times in all the trial crashes, once it reaches crash_at_epoch."),
    },
)

BUILT_INS: dict[str, TrainerInfo] = {info.name: info for info in (MLP_CLASSIFIER, MLP_REGRESSOR, QUADRATIC)}
