"""Deploy puts the best model on Ray Serve; Predict and the HTTP route answer with the study's accuracy."""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from anneal import Client, Deployment, FailedPrecondition, InvalidArgument, NotFound, Study, StudyState
from anneal.types import DeploymentState
from cluster.serving.package import WEIGHTS_FILE, package_of
from tests.integration.conftest import Stack, pyfunc_answers, small_spec
from trainers.datasets import load_splits

pytestmark = pytest.mark.integration


def _wait_for_deployment(client: Client, name: str, timeout_s: float = 120) -> Deployment:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            deployment = client.get_deployment(name)
            if deployment.state is not DeploymentState.DEPLOYING:
                return deployment
        except NotFound:
            pass
        assert time.monotonic() < deadline, f"{name} was not deployed within {timeout_s} s"
        time.sleep(0.5)


def test_deploy_and_predict_match_the_reported_accuracy(stack: Stack, serve_apps: list[str]) -> None:
    spec = small_spec("it-serve", deploy={"auto": True, "replicas": 1})
    serve_apps.append("it-serve")
    with stack.client() as client:
        study = client.wait_for_study(client.create_study(spec).study_id, timeout_s=600)
        assert study.state is StudyState.SUCCEEDED, study.error
        auto = _wait_for_deployment(client, "it-serve")  # deploy.auto: the driver deployed it
        assert auto.state is DeploymentState.RUNNING and auto.study_id == study.study_id

        deployment = client.deploy(study.study_id)  # deploying again updates in place
        assert deployment.state is DeploymentState.RUNNING
        assert deployment.route == "/models/alice/it-serve" and deployment.owner == "alice"
        assert client.get_deployment("it-serve") == deployment

        d = spec.dataset
        data = load_splits(d.name, d.validation_fraction, d.test_fraction, d.split_seed)
        predictions = client.predict("it-serve", data.x_test.tolist())
        assert len(predictions) == len(data.y_test)
        assert all(abs(sum(p.probabilities) - 1) < 1e-4 for p in predictions)
        served = sum(p.label == y for p, y in zip(predictions, data.y_test.tolist(), strict=True)) / len(predictions)
        assert served == pytest.approx(study.best_test_metrics["test_accuracy"], abs=0.02)
        # The registered MLflow Model answers what Predict answers: the same labels, and the same
        # probabilities but for float32 rounding (another process sums with other threads).
        answers = pyfunc_answers(stack, study.registered_model, study.registered_model_version, data.x_test.tolist())
        assert [a["label"] for a in answers] == [p.label for p in predictions]
        assert [a["probabilities"] for a in answers] == [pytest.approx(p.probabilities, rel=1e-5) for p in predictions]

        # Bad rows are bad arguments, not a bad spec: the client raises InvalidArgument itself.
        with pytest.raises(InvalidArgument, match="rows") as caught:
            client.predict("it-serve", [[1.0, 2.0]])
        assert type(caught.value) is InvalidArgument
        with pytest.raises(InvalidArgument, match="rows") as caught:
            client.predict("it-serve", [])
        assert type(caught.value) is InvalidArgument
        with pytest.raises(InvalidArgument, match=r"rows\[1\].*NaN") as caught:
            client.predict("it-serve", [data.x_test[0].tolist(), [float("nan")] * data.x_test.shape[1]])
        assert type(caught.value) is InvalidArgument

        tampered_model_is_refused_and_the_running_one_serves_on(client, study, deployment, data.x_test[:5].tolist())

    url = f"http://127.0.0.1:{stack.settings.serve_http_port}{deployment.route}"
    body = json.dumps({"rows": data.x_test[:3].tolist()}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    assert [p["label"] for p in answer["predictions"]] == [p.label for p in predictions[:3]]


class Payload:
    """A pickle that runs a shell command when it is loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def tampered_model_is_refused_and_the_running_one_serves_on(
    client: Client, study: Study, deployment: Deployment, rows: list[list[float]]
) -> None:
    weights = package_of(Path(study.model_uri.removeprefix("file://"))) / WEIGHTS_FILE
    marker = weights.parent / "payload-ran"
    torch.save({"layers.0.weight": Payload(marker)}, weights)
    before = client.predict(deployment.name, rows)

    armed = weights.with_name("armed-copy.pt")  # the payload is live: an unsafe load runs it
    shutil.copy(weights, armed)
    torch.load(armed, weights_only=False)
    assert marker.exists()
    marker.unlink()

    with pytest.raises(FailedPrecondition, match="does not load safely"):
        client.deploy(study.study_id)
    assert not marker.exists(), "the server unpickled the payload"
    assert client.get_deployment(deployment.name) == deployment
    assert client.predict(deployment.name, rows) == before


def test_unknown_deployment_is_not_found(stack: Stack) -> None:
    with stack.client() as client:
        with pytest.raises(NotFound):
            client.get_deployment("no-such-model")
        with pytest.raises(NotFound):
            client.predict("no-such-model", [[0.0]])


def test_deploying_an_unfinished_study_is_refused(stack: Stack) -> None:
    with stack.client() as client:
        study = client.create_study(small_spec("it-unfinished"))
        try:
            with pytest.raises(FailedPrecondition):
                client.deploy(study.study_id)
        finally:
            client.cancel_study(study.study_id)
