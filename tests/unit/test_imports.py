"""What importing a module does: the client side pulls in none of the server's heavy dependencies,
and a benchmark leaves Ray's token authentication on."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.unit.helpers import ROOT

# The server's dependencies (its extra), which a client machine may lack.
HEAVY = ("ray", "torch", "mlflow", "optuna", "sklearn", "prometheus_client")

# trainers.registry is read by the server to validate specs; it too must not load torch or sklearn.
# cluster.local.cli is where the `anneal` command enters, for the client's commands too.
LIGHT_MODULES = ("anneal", "anneal.cli", "trainers.registry", "cluster.local.cli")

PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
watched = json.loads(sys.argv[2])
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in watched)))
"""


def probe(module: str, watched: tuple[str, ...]) -> subprocess.Popen[str]:
    """A fresh interpreter that imports `module` and prints which `watched` packages it loaded."""
    return subprocess.Popen(
        [sys.executable, "-c", PROBE, module, json.dumps(watched)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def result(process: subprocess.Popen[str]) -> list[str]:
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    found: list[str] = json.loads(out)
    return found


@pytest.fixture(scope="module")
def loaded() -> dict[str, list[str]]:
    """Heavy packages loaded by each light module; the interpreters run side by side."""
    processes = {module: probe(module, HEAVY) for module in LIGHT_MODULES}
    return {module: result(process) for module, process in processes.items()}


@pytest.mark.parametrize("module", LIGHT_MODULES)
def test_import_is_light(loaded: dict[str, list[str]], module: str) -> None:
    assert loaded[module] == [], f"`import {module}` loads {loaded[module]}"


def test_the_probe_sees_what_is_imported() -> None:
    # A cheap check that the probe would notice a dependency (importing torch here would take seconds).
    assert "yaml" in result(probe("anneal", ("yaml",)))


def test_trial_actor_code_leaves_driver_packages_out() -> None:
    # Every trial actor imports cluster.trial.function when it starts, on the cores the trials train on.
    driver_only = ("optuna", "mlflow", "sqlalchemy", "sklearn")
    assert result(probe("cluster.trial.function", driver_only)) == []


# Every module `make bench` runs, as `python -m` runs it: first in a fresh interpreter.
BENCHMARK_MODULES = ("benchmarks", "benchmarks.data_parallel", "benchmarks.streaming", "benchmarks.search")

AUTH_PROBE = """
import importlib, sys
importlib.import_module(sys.argv[1])
from ray._private.authentication.authentication_utils import is_token_auth_enabled
print(is_token_auth_enabled())
"""


@pytest.mark.parametrize("module", BENCHMARK_MODULES)
def test_a_benchmark_run_from_a_plain_shell_keeps_rays_token_authentication(module: str) -> None:
    # Ray reads its mode when first imported; a benchmark importing ray before `cluster` set the
    # mode would find its token-authenticated cluster refusing it.
    env = {name: value for name, value in os.environ.items() if name != "RAY_AUTH_MODE"}
    done = subprocess.run(
        [sys.executable, "-c", AUTH_PROBE, module], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
