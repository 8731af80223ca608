"""How a data-parallel trial learns its Train controller's handle: from a callback that runs in
the controller. Kept apart from `cluster.trial.dataparallel` because the controller process
unpickles it: importing this module must not import the trial's own code (torch, Tune, trainers)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ray
from ray.train.v2._internal.execution.callback import ControllerCallback
from ray.util.queue import Queue


@dataclass(frozen=True)
class ControllerStarted:
    handle: Any  # the Train controller actor, which the trial aborts on its way out
    runtime_env: str  # the controller's, serialized: what its warm processes must carry


class AnnounceController(ControllerCallback):
    """Sends the trial function its Train controller's handle, from inside the controller."""

    def __init__(self, channel: Queue) -> None:
        self._channel = channel

    def after_controller_start(self, train_run_context: Any) -> None:
        context = ray.get_runtime_context()
        self._channel.put(ControllerStarted(context.current_actor, context.get_runtime_env_string()))
