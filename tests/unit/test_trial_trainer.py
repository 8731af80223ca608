"""A data-parallel trial's TorchTrainer starts Ray Data's dataset manager only for datasets it
is given: a trial gives it none, and the manager, an actor of its own, started cold beside the
training workers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray.train.v2._internal.callbacks import DatasetsCallback
from ray.train.v2.api.config import RunConfig, ScalingConfig

from cluster.trial.dataparallel import TrialTorchTrainer


def callback_types(tmp_path: Path, datasets: dict[str, Any] | None) -> set[type]:
    trainer = TrialTorchTrainer(
        lambda: None,
        scaling_config=ScalingConfig(num_workers=2),
        run_config=RunConfig(name="trial", storage_path=str(tmp_path)),
        datasets=datasets,
    )
    return {type(callback) for callback in trainer._create_default_callbacks()}


def test_a_trial_without_datasets_gets_no_dataset_manager(tmp_path: Path) -> None:
    kinds = callback_types(tmp_path, None)
    assert DatasetsCallback not in kinds
    assert len(kinds) >= 3  # Train's own set-up (accelerators, the backend, placement groups) stays


def test_a_trainer_given_datasets_keeps_it(tmp_path: Path) -> None:
    assert DatasetsCallback in callback_types(tmp_path, {"train": lambda: None})
