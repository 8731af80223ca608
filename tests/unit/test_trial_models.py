"""Finding a chosen trial's last checkpoint in a study's Tune storage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from anneal.errors import FailedPrecondition
from cluster.server.trialmodels import last_checkpoint
from cluster.trial.function import ADOPTED_AS


def _trial_dir(experiment: Path, name: str, checkpoints: list[int], params: dict[str, str] | None = None) -> Path:
    trial = experiment / name
    for index in checkpoints:
        (trial / f"checkpoint_{index:06d}").mkdir(parents=True)
    trial.mkdir(parents=True, exist_ok=True)
    if params is not None:
        (trial / "params.json").write_text(json.dumps(params))
    return trial


def test_the_newest_checkpoint_of_the_trials_folder(tmp_path: Path) -> None:
    _trial_dir(tmp_path, "run_trial_aaaa1111_1_lr=0.01_2026-12-01", [0, 1])
    mine = _trial_dir(tmp_path, "run_trial_bbbb2222_2_lr=0.1_2026-12-01", [0, 2, 10])
    assert last_checkpoint(tmp_path, "bbbb2222") == mine / "checkpoint_000010"


def test_a_trial_a_resumed_driver_adopted_is_found_by_its_parameters(tmp_path: Path) -> None:
    adopted = _trial_dir(tmp_path, "run_trial_cccc3333_1_lr=0.01_2026-12-02", [3], {ADOPTED_AS: "aaaa1111"})
    assert last_checkpoint(tmp_path, "aaaa1111") == adopted / "checkpoint_000003"


@pytest.mark.parametrize("checkpoints", [[], None])
def test_a_trial_without_a_checkpoint_here_is_refused(tmp_path: Path, checkpoints: list[int] | None) -> None:
    if checkpoints is not None:
        _trial_dir(tmp_path, "run_trial_dddd4444_1_x=1_2026-12-01", checkpoints)
    with pytest.raises(FailedPrecondition, match="left no checkpoint"):
        last_checkpoint(tmp_path, "dddd4444")


def test_an_adopted_trials_folder_wins_over_the_folder_it_began_in(tmp_path: Path) -> None:
    _trial_dir(tmp_path, "run_trial_aaaa1111_1_lr=0.01_2026-12-01", [0, 1, 7])
    adopted = _trial_dir(tmp_path, "run_trial_ffff0000_1_lr=0.01_2026-12-02", [2], {ADOPTED_AS: "aaaa1111"})
    assert last_checkpoint(tmp_path, "aaaa1111") == adopted / "checkpoint_000002"
