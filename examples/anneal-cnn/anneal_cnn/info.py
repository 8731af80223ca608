"""The registry entry of `small_cnn`. The server imports this module to list and check
specs, so it stays light: no torch here, the trainer's code is named by `target`."""

from trainers import ParamInfo, Task, TrainerInfo

SMALL_CNN = TrainerInfo(
    name="small_cnn",
    target="anneal_cnn.trainer:SmallCNNTrainer",
    description="A small convolutional net for 8x8 grey images: scikit-learn's digits, "
    "or a table whose image column holds 64 numbers a row.",
    metrics=frozenset({"val_accuracy", "val_loss", "train_loss"}),
    datasets=frozenset({"digits"}),
    params={
        "epochs": ParamInfo(8, "Passes over the training images."),
        "batch_size": ParamInfo(64, "Images per optimiser step, over all of a trial's workers."),
        "lr": ParamInfo(3e-3, "Learning rate of Adam."),
        "channels": ParamInfo(16, "Filters of the first convolution; the second has twice as many."),
        "seed": ParamInfo(0, "Seed of initialisation and shuffling."),
    },
    epochs_param="epochs",
    task=Task.CLASSIFICATION,
    input_shape=(1, 8, 8),
)


def small_cnn() -> TrainerInfo:
    """For `anneal run` with `trainer: anneal_cnn.info:small_cnn`, without installing the package."""
    return SMALL_CNN
