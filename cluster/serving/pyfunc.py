"""anneal's model as an MLflow pyfunc: the model package (`package`) saved as an MLflow Model
from code, with a signature and an input example, so `mlflow.pyfunc.load_model` and `mlflow
models serve` answer what Predict answers.

The model's code is `mlflow_model.py`, which only builds `AnnealPyfunc`; the package travels
as the model's one artifact, weights as tensors. Nothing is pickled. anneal itself (the
server, each Serve replica) never runs the model's code file: it reads the package out of
the model (`package.package_of`) with the package's own safe loader.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel, PythonModelContext
from mlflow.types.schema import Array, ColSpec, Schema, TensorSpec

from cluster.serving.package import PACKAGE_ARTIFACT, LoadedModel
from trainers.contract import Task

CODE_FILE = Path(__file__).with_name("mlflow_model.py")


class AnnealPyfunc(PythonModel):  # type: ignore[misc]
    """Predicts like a Serve replica: one row per example, a label and class probabilities
    (classification) or the values (regression)."""

    def load_context(self, context: PythonModelContext) -> None:
        self.loaded = LoadedModel(Path(context.artifacts[PACKAGE_ARTIFACT]))

    # `model_input` has no type hint: MLflow would read one as a schema of its own.
    def predict(self, context: PythonModelContext, model_input, params: dict[str, Any] | None = None) -> pd.DataFrame:  # type: ignore[no-untyped-def]
        batch = np.asarray(model_input.to_numpy() if isinstance(model_input, pd.DataFrame) else model_input)
        rows = batch.reshape(len(batch), -1).astype(np.float32).tolist()
        return answers_frame(self.loaded.predict(rows), self.loaded.task)


def answers_frame(predictions: list[Any], task: Task) -> pd.DataFrame:
    if task is Task.REGRESSION:
        return pd.DataFrame({"values": [p.values for p in predictions]})
    return pd.DataFrame(
        {"label": [p.label for p in predictions], "probabilities": [p.probabilities for p in predictions]}
    )


def signature(task: Task, example_shape: tuple[int, ...]) -> ModelSignature:
    """Batches of float32 examples of `example_shape` in; one row of answers per example out."""
    inputs = Schema([TensorSpec(np.dtype(np.float32), (-1, *example_shape))])
    if task is Task.REGRESSION:
        outputs = Schema([ColSpec(Array("double"), "values")])
    else:
        outputs = Schema([ColSpec("long", "label"), ColSpec(Array("double"), "probabilities")])
    return ModelSignature(inputs=inputs, outputs=outputs)


def save_mlflow_model(target: Path, loaded: LoadedModel, package: Path, requirements: list[str]) -> None:
    """Saves the model package at `package` (`loaded` from it) as an MLflow Model (from code) at
    `target`."""
    import mlflow.pyfunc

    example_shape = loaded.input_shape or (loaded.shape.n_features,)
    mlflow.pyfunc.save_model(
        str(target),
        python_model=str(CODE_FILE),
        artifacts={PACKAGE_ARTIFACT: str(package)},
        signature=signature(loaded.task, example_shape),
        # Two examples: a batch of more than one is what the signature's -1 means.
        input_example=np.zeros((2, *example_shape), dtype=np.float32),
        pip_requirements=requirements,
    )
    # Saving loads the model once to check the example; that leaves compiled code beside it.
    shutil.rmtree(target / "__pycache__", ignore_errors=True)


def model_requirements() -> list[str]:
    """What loading the model needs: anneal (its code), and the torch and MLflow it was saved with."""
    from importlib.metadata import version

    return [f"anneal=={version('anneal')}", f"torch=={version('torch')}", f"mlflow=={version('mlflow')}"]
