"""The example trainer package on the real cluster, every step as the guide (docs/trainers.md)
gives it: installed with its command (the session's cluster runs with it, see conftest), found
through its entry point and listed, a study of image tensors submitted from the command line,
deployed and answering tensors, and the package shipped with one study as a Ray job."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from anneal import StudySpec, StudyState
from anneal.errors import InvalidArgument
from anneal.types import DeploymentState
from tests.guide import blocks, shell_commands
from tests.integration.conftest import REPO, Stack, pyfunc_answers
from trainers.registry import check_spec

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent


def guide_command(start: str) -> str:
    (command,) = [c for c in shell_commands() if c.startswith(start)]
    return command


def anneal_cli(stack: Stack, command: str) -> str:
    """Runs one of the guide's `anneal` commands as alice, over the session's mutual TLS."""
    tls = stack.certificates
    env = {
        **os.environ,
        "ANNEAL_GRPC_ADDRESS": stack.address,
        "ANNEAL_TOKEN": stack.tokens["alice"],
        "ANNEAL_TLS_CA_FILE": tls.ca,
        "ANNEAL_TLS_CERT_FILE": tls.client.cert,
        "ANNEAL_TLS_KEY_FILE": tls.client.key,
    }
    argv = [str(BIN / "anneal"), *shlex.split(command)[1:]]
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{command}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    return done.stdout


def test_the_installed_package_is_listed_from_its_entry_point(stack: Stack) -> None:
    assert stack.installed_with == guide_command("pip install ")
    with stack.client() as client:
        cnn = {t.name: t for t in client.list_trainers()}["small_cnn"]
    assert cnn.available and cnn.input_shape == (1, 8, 8) and "channels" in [p.name for p in cnn.parameters]
    assert cnn.source == "anneal-cnn 0.1.0, entry point small_cnn = anneal_cnn.info:SMALL_CNN"
    listed = anneal_cli(stack, guide_command("anneal trainers "))
    assert "small_cnn" in listed and "input 1×8×8 tensor" in listed and "Filters of the first convolution" in listed
    # The guide's study of the digits as images passes every check the server makes.
    check_spec(StudySpec.load(REPO / "examples" / "anneal-cnn" / "digits-images.yaml"))


def test_a_study_of_images_trains_deploys_and_answers_tensors(stack: Stack, serve_apps: list[str]) -> None:
    (write_table,) = [b for b in blocks() if b.language == "python" and "digit-images.parquet" in b.text]
    root = Path(stack.settings.data_roots[0])
    root.mkdir(parents=True, exist_ok=True)
    here = os.getcwd()
    os.chdir(root)  # the block writes its table where it runs: here, a data root of the server
    try:
        exec(compile(write_table.text, "docs/trainers.md", "exec"), {})
    finally:
        os.chdir(here)
    serve_apps.append("digit-images")
    watched = anneal_cli(stack, guide_command("anneal submit "))
    assert "SUCCEEDED" in watched
    with stack.client() as client:
        study = next(s for s in client.list_studies() if s.name == "digit-images")
        assert study.state is StudyState.SUCCEEDED and study.best_test_metrics["test_accuracy"] > 0.8
        deadline = time.monotonic() + 120
        while client.get_deployment("digit-images").state is not DeploymentState.RUNNING:
            assert time.monotonic() < deadline, "the study's model was not deployed"
            time.sleep(1)
        answers = json.loads(anneal_cli(stack, guide_command("anneal predict ")))
        assert [a["label"] for a in answers] == [0, 1] and len(answers[0]["probabilities"]) == 10
        images = json.loads((REPO / "examples" / "anneal-cnn" / "images.json").read_text())
        as_rows = client.predict("digit-images", [[v for row in image[0] for v in row] for image in images])
        assert [p.label for p in as_rows] == [0, 1]
        answers = pyfunc_answers(stack, study.registered_model, study.registered_model_version, images)
        assert [a["label"] for a in answers] == [p.label for p in as_rows]
        assert [a["probabilities"] for a in answers] == [pytest.approx(p.probabilities, rel=1e-5) for p in as_rows]
        with pytest.raises(InvalidArgument) as caught:
            client.predict_tensors("digit-images", [images[0], [[1.0, 2.0], [3.0, 4.0]]])
        assert str(caught.value).startswith("tensors[1]: has shape 2×2; the model takes 1×8×8")


def test_the_package_shipped_with_a_ray_job(stack: Stack) -> None:
    command = shlex.split(guide_command("RAY_AUTH_MODE=token ray job submit "))[1:]
    command[command.index("--address") + 1] = stack.settings.ray_dashboard_url
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    done = subprocess.run(
        [str(BIN / "ray"), *command[1:]], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "SUCCEEDED" in done.stdout
