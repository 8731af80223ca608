"""The runtime environments of a data-parallel trial's Ray Train processes.

A Ray worker process serves only tasks of its own job and runtime environment, matched by the
exact serialized text. To start Train's processes warm (`cluster.driver.warmtrain`) the driver
asks the raylet ahead of time for processes with the text Train's own will carry:

- control: the Train controller, which Train starts with its propagated variables beside the
  trial's environment, and what it starts without an environment of its own (the
  placement-group cleaner, the synchronization actor, and the first time on a cluster Ray's
  autoscaling coordinator). The trial's hand-over channel is given the same environment, so
  it is one of them.
- worker: the Train workers, which add `WORKER_ENV_VARS` (`RunConfig.worker_runtime_env`), so
  that the set-up hook (`cluster.trial.warm`) imports torch and the trainers in them only.

Ray merges a child's env_vars into its parent's and writes the result as JSON with sorted keys
and no spaces; the texts below are built the same way.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

# Train sets this on its controller (and so on everything the controller starts); a process
# with it and without the worker marker is one of Train's control processes.
TRAIN_CONTROL_MARKER = "RAY_WARN_BLOCKING_GET_INSIDE_ASYNC"
TRAIN_CONTROL_MARKER_VALUE = "0"  # Train's default for it
WORKER_ENV_VARS = {"ANNEAL_TRAIN_WORKER": "1"}

# A data-parallel trial's processes beside its N workers: the controller, the placement-group
# cleaner, the synchronization actor and the hand-over channel (no dataset manager: the trial
# gives Train no datasets, `cluster.trial.dataparallel.TrialTorchTrainer`).
CONTROL_PROCESSES = 4


def control_env_vars() -> dict[str, str]:
    """The variables Train adds to a controller's environment, read from this process's
    environment as Train reads them (`get_env_vars_to_propagate`)."""
    from ray.train.v2._internal.constants import get_env_vars_to_propagate

    return {TRAIN_CONTROL_MARKER: TRAIN_CONTROL_MARKER_VALUE, **get_env_vars_to_propagate()}


def is_control_process() -> bool:
    return TRAIN_CONTROL_MARKER in os.environ and not any(k in os.environ for k in WORKER_ENV_VARS)


@dataclass(frozen=True)
class TrainEnvironments:
    control: str  # serialized, as the raylet matches it
    worker: str


def train_environments(trial_env: dict[str, object], control_vars: dict[str, str]) -> TrainEnvironments:
    """The serialized environments of Train's processes in a trial whose environment is `trial_env`."""
    control = _with_env_vars(trial_env, control_vars)
    return TrainEnvironments(
        control=serialize(control),
        worker=serialize(_with_env_vars(control, WORKER_ENV_VARS)),
    )


def serialize(runtime_env: dict[str, object]) -> str:
    return json.dumps(runtime_env, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _with_env_vars(runtime_env: dict[str, object], env_vars: dict[str, str]) -> dict[str, object]:
    own = runtime_env.get("env_vars")
    return {**runtime_env, "env_vars": {**(own if isinstance(own, dict) else {}), **env_vars}}
