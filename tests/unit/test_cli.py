"""The client commands print what the server answered: `anneal predict`, one JSON answer per row."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Any

import pytest
from rich.console import Console

from anneal import cli
from anneal.types import Prediction, TrainerDescription
from trainers.registry import describe


class FakeClient:
    """Answers Predict with the predictions it was given, recording the rows it was sent."""

    def __init__(self, predictions: list[Prediction]) -> None:
        self.predictions = predictions
        self.calls: list[tuple[str, Sequence[Sequence[float]]]] = []

    def __enter__(self) -> FakeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def predict(self, deployment: str, rows: Sequence[Sequence[float]]) -> list[Prediction]:
        self.calls.append((deployment, rows))
        return self.predictions


def run_predict(monkeypatch: pytest.MonkeyPatch, predictions: list[Prediction], rows: str) -> tuple[Any, FakeClient]:
    """Runs `anneal predict m ROWS` against a fake client; returns the printed JSON and the client."""
    client = FakeClient(predictions)
    printed = io.StringIO()
    monkeypatch.setattr(cli, "_client", lambda args: client)
    monkeypatch.setattr(cli, "out", Console(file=printed, width=200))
    assert cli.main(["predict", "m", rows]) == 0
    return json.loads(printed.getvalue()), client


def test_predict_prints_a_classification_row_as_label_and_probabilities(monkeypatch: pytest.MonkeyPatch) -> None:
    printed, client = run_predict(monkeypatch, [Prediction(label=1, probabilities=[0.25, 0.75])], "[[1, 2]]")
    assert printed == [{"label": 1, "probabilities": [0.25, 0.75]}]  # as before regression existed
    assert client.calls == [("m", [[1, 2]])]


def test_predict_prints_a_regression_row_as_its_values(monkeypatch: pytest.MonkeyPatch) -> None:
    predictions = [Prediction(values=[151.25]), Prediction(values=[-2.5, 3.0])]
    printed, _ = run_predict(monkeypatch, predictions, "[[1, 2], [3, 4]]")
    assert printed == [{"values": [151.25]}, {"values": [-2.5, 3.0]}]


class TrainersClient(FakeClient):
    def __init__(self, trainers: list[TrainerDescription]) -> None:
        super().__init__([])
        self.trainers = trainers

    def list_trainers(self) -> list[TrainerDescription]:
        return self.trainers


def run_trainers(monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str]:
    broken = TrainerDescription(name="broken", available=False, error="ImportError: no cv2", source="broken 0.1")
    printed = io.StringIO()
    monkeypatch.setattr(cli, "_client", lambda args: TrainersClient([*describe(), broken]))
    monkeypatch.setattr(cli, "out", Console(file=printed, width=400))
    code = cli.main(["trainers", *args])
    return code, printed.getvalue()


def test_trainers_lists_each_trainer_and_shows_a_broken_one_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    code, printed = run_trainers(monkeypatch)
    assert code == 0
    lines = {line.split("│")[1].strip(): line for line in printed.splitlines() if line.count("│") > 2}
    assert "classification" in lines["mlp_classifier"] and "val_accuracy" in lines["mlp_classifier"]
    assert "regression" in lines["mlp_regressor"] and "rows" in lines["mlp_regressor"]
    assert "unavailable" in lines["broken"] and "ImportError: no cv2" in lines["broken"]


def test_trainers_name_shows_each_parameter_with_its_default(monkeypatch: pytest.MonkeyPatch) -> None:
    code, printed = run_trainers(monkeypatch, "mlp_classifier")
    assert code == 0
    assert "Learning rate." in printed and "0.001" in printed and "epochs parameter" in printed
    code, printed = run_trainers(monkeypatch, "broken")
    assert code == 0 and "unavailable" in printed and "no cv2" in printed
    code, printed = run_trainers(monkeypatch, "nope")
    assert code == 1 and "mlp_classifier" in printed
