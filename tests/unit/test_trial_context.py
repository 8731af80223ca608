"""The trial's context inside Tune: what a checkpoint holds, and which checkpoint a trial of
a resumed study goes on from (Tune's, or the newer one it carried over the resume)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from ray import tune

from cluster.trial import context as trial
from cluster.trial.context import CHECKPOINT_FILE, EPOCH, FINAL, HISTORY, METRICS, TuneTrainContext
from trainers.datasets import load_splits


def save(directory: Path, epoch: int, *, final: bool = False) -> str:
    directory.mkdir(parents=True)
    history = [{"loss": 1.0 / step, EPOCH: step} for step in range(1, epoch + 1)]
    saved = {"state": {"w": torch.tensor([float(epoch)])}, EPOCH: epoch, METRICS: {"loss": 1.0 / epoch}}
    torch.save({**saved, FINAL: final, HISTORY: history}, directory / CHECKPOINT_FILE)
    return str(directory)


def context_with(monkeypatch: pytest.MonkeyPatch, tune_checkpoint: str | None, carried: str = "") -> TuneTrainContext:
    checkpoint: Any = tune.Checkpoint.from_directory(tune_checkpoint) if tune_checkpoint else None
    monkeypatch.setattr(trial.tune, "get_checkpoint", lambda: checkpoint)
    iris = load_splits("iris", 0.2, 0.2, 0)
    return TuneTrainContext(
        {}, iris, torch.device("cpu"), num_threads=1, checkpoint_interval_s=0, carried_checkpoint=carried
    )


def test_the_newer_of_tunes_and_the_carried_checkpoint_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    older, newer = save(tmp_path / "a", 2), save(tmp_path / "b", 4)
    state = context_with(monkeypatch, older, carried=newer).load_checkpoint()
    assert state is not None and float(state["w"]) == 4.0
    state = context_with(monkeypatch, newer, carried=older).load_checkpoint()
    assert state is not None and float(state["w"]) == 4.0


def test_a_checkpoint_tune_deleted_after_its_snapshot_is_passed_over(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    carried = save(tmp_path / "carried", 3)
    state = context_with(monkeypatch, str(tmp_path / "deleted"), carried=carried).load_checkpoint()
    assert state is not None and float(state["w"]) == 3.0


def test_no_checkpoint_means_a_fresh_start(monkeypatch: pytest.MonkeyPatch) -> None:
    assert context_with(monkeypatch, None).load_checkpoint() is None


def test_the_next_report_after_a_resume_carries_every_earlier_epoch(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    reported: list[dict[str, Any]] = []
    context = context_with(monkeypatch, save(tmp_path / "c", 2))
    monkeypatch.setattr(trial.tune, "report", lambda result, checkpoint=None: reported.append(result))
    context.load_checkpoint()
    context.report({"loss": 0.3}, final=True)
    assert [epoch[EPOCH] for epoch in reported[0][HISTORY]] == [1, 2, 3]  # the writer keeps each once
    assert reported[0][EPOCH] == 3


def test_a_resumed_data_parallel_trial_hands_over_every_epoch_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Workers hand their epochs to the trial's context; after a resume, the first hand-over
    carries the epochs from the checkpoint too, and the next checkpoint's history holds each once."""
    reported: list[tuple[dict[str, Any], Any]] = []
    context = context_with(monkeypatch, save(tmp_path / "d", 2))

    def report(result: dict[str, Any], checkpoint: Any = None) -> None:  # its directory goes once reported
        reported.append((result, checkpoint and trial.load_checkpoint_file(checkpoint)))

    monkeypatch.setattr(trial.tune, "report", report)
    assert context.load_checkpoint() is not None and context.epoch == 2
    context.hand_over([{"loss": 0.3, EPOCH: 3}], None, final=False)
    context.hand_over([{"loss": 0.2, EPOCH: 4}], {"w": torch.tensor([4.0])}, final=True)
    assert [[e[EPOCH] for e in result[HISTORY]] for result, _ in reported] == [[1, 2, 3], [4]]
    saved = reported[-1][1]
    assert [e[EPOCH] for e in saved[HISTORY]] == [1, 2, 3, 4] and saved[FINAL] and saved[EPOCH] == 4
