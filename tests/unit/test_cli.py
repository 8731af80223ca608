"""The client commands print what the server answered: `anneal predict`, one JSON answer per row."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Any

import pytest
from rich.console import Console

from anneal import cli
from anneal.types import Prediction


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
