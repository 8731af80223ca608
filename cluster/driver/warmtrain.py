"""Warm Ray Train processes for a study's data-parallel trials.

Each data-parallel trial starts its own Ray Train processes: a controller and its helpers
(`CONTROL_PROCESSES`) and one worker per rank. Started cold, each pays a Python start and its
torch and Ray Train imports, one after another along the trial's start: on a 2-core machine
about 10 s before the first step. The driver asks the raylet of its own node for them ahead of
time, in the environments Train's processes will carry (`cluster.trial.trainenv`); the job's
set-up hook imports what each needs, and a trial then finds them started and imported.

The driver keeps ready as many sets as trials can run at once and are still to come. The trials
that start with the study, and a failed trial that Tune starts again at once, start before a set
asked for then could be up (each process needs seconds of CPU for its imports): they start cold,
and no set is asked for them. Every other trial start takes a set, and one more is asked for
while trials are still to come. The raylet starts no more processes at once than its start-up
concurrency (its CPUs, at most its cores) and drops the rest of a request, so the requests go
one batch at a time, from a thread of their own, each once the raylet has registered the
processes of the one before. A trial's workers run where its placement group lands: on
another node they start cold. The first data-parallel trial on a cluster also starts Ray's
autoscaling coordinator (Ray Data's, which Train's controller starts, detached, in the
controller's environment): while the cluster has none, a driver's first set holds one more
control process for it.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from ray import tune

from cluster.driver.warm import prestart_workers, raylet_address, registered_workers, trial_runtime_env
from cluster.trial.trainenv import CONTROL_PROCESSES, TrainEnvironments, control_env_vars, train_environments

log = logging.getLogger("anneal.warm")

# How long a batch of processes may take to register before the next is asked for anyway.
REGISTER_TIMEOUT_S = 15.0
POLL_S = 0.2
# How long an unused warm process waits for a trial before the raylet may end it.
KEEP_ALIVE_S = 600.0
# Ray's cluster-wide autoscaling coordinator (Ray Data's; Train's controller starts it), as Ray
# names the detached actor.
COORDINATOR = ("AutoscalingCoordinator", "AutoscalingCoordinator")  # (name, namespace)


def coordinator_missing() -> bool:
    """True when the cluster has no autoscaling coordinator yet."""
    import ray

    name, namespace = COORDINATOR
    try:
        ray.get_actor(name, namespace=namespace)
    except ValueError:  # Ray's answer for a name no live actor holds
        return True
    except Exception:  # cannot tell: count no process for it
        return False
    return False


class Raylet(Protocol):
    concurrency: int  # processes it starts at once

    def prestart(self, runtime_env: str, count: int) -> bool:
        """Asks for `count` processes with a serialized runtime environment; False when refused."""

    def registered(self) -> int | None:
        """The job's processes the raylet has registered; None when it does not say."""


class TrainWarmer(tune.Callback):
    """Keeps Ray Train's processes warm for the data-parallel trials of one study."""

    def __init__(
        self,
        workers: int,
        concurrent: int,
        raylet: Raylet | None = None,
        environments: TrainEnvironments | None = None,
        register_timeout_s: float = REGISTER_TIMEOUT_S,
        needs_coordinator: Callable[[], bool] = coordinator_missing,
    ) -> None:
        self.workers = workers  # per trial
        self.concurrent = max(1, concurrent)  # trials at once
        self._raylet = raylet  # the local raylet's, once asked
        self._environments = environments  # this job's, once asked
        self._register_timeout_s = register_timeout_s
        self._needs_coordinator: Callable[[], bool] | None = needs_coordinator  # until the first set
        self._ready = 0  # sets asked for that no trial has taken yet
        self._to_come: int | None = None  # trial starts that will find a set up, once known
        self._immediate = 0  # trial starts due before a set asked for now could be up
        self._requests: queue.Queue[tuple[str, int]] = queue.Queue()
        self._pending = 0  # requests queued or under way
        self._idle = threading.Condition()
        self._thread: threading.Thread | None = None

    # Tune pickles its callbacks with the experiment state: only the plan travels.
    def __getstate__(self) -> dict[str, Any]:
        return {"workers": self.workers, "concurrent": self.concurrent}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["workers"], state["concurrent"])  # type: ignore[misc]

    def prepare(self, trials: int, immediately: int) -> None:
        """Asks now for the sets of `trials` trial starts still to come, of which the first
        `immediately` come before a set could be up."""
        self._immediate = min(immediately, trials)
        self._to_come = trials - self._immediate
        self._top_up()

    def setup(
        self, stop: Any = None, num_samples: int | None = None, total_num_samples: int | None = None, **info: Any
    ) -> None:
        if self._to_come is None and total_num_samples is not None:
            self.prepare(total_num_samples, immediately=self.concurrent)

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        if self._immediate > 0:
            self._immediate -= 1
        else:
            self._ready = max(0, self._ready - 1)
            self._to_come = None if self._to_come is None else max(0, self._to_come - 1)
        self._top_up()

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        """A failed trial will start again from its checkpoint, at once."""
        self._immediate += 1

    def settle(self, timeout_s: float) -> bool:
        """Waits until every set asked for has been requested from the raylet; True when it has."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout_s)

    def _top_up(self) -> None:
        wanted = self.concurrent if self._to_come is None else min(self.concurrent, self._to_come)
        if self._ready >= wanted:
            return
        if self._environments is None:
            self._environments = train_environments(trial_runtime_env(), control_env_vars())
        environments = self._environments
        extra = self._for_coordinator()  # asks Ray's GCS: not under the lock `settle` waits on
        with self._idle:
            for index in range(wanted - self._ready):
                self._requests.put((environments.control, CONTROL_PROCESSES + (extra if index == 0 else 0)))
                self._requests.put((environments.worker, self.workers))
                self._pending += 2
        self._ready = wanted
        if self._thread is None:
            self._thread = threading.Thread(target=self._pace, name="anneal-warm-train", daemon=True)
            self._thread.start()

    def _for_coordinator(self) -> int:
        """The extra control process of this warmer's first set when the cluster's autoscaling
        coordinator is still to be started (by the first data-parallel trial on it); else none."""
        needs, self._needs_coordinator = self._needs_coordinator, None
        return 1 if needs is not None and needs() else 0

    def _pace(self) -> None:
        raylet = self._raylet or LocalRaylet()
        while True:
            runtime_env, count = self._requests.get()
            while count > 0:
                batch = min(count, raylet.concurrency)
                before = raylet.registered()
                if not raylet.prestart(runtime_env, batch):
                    log.warning("the raylet started no warm Ray Train processes; data-parallel trials start cold")
                    break
                count -= batch
                self._wait_registered(raylet, None if before is None else before + batch)
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()

    def _wait_registered(self, raylet: Raylet, target: int | None) -> None:
        deadline = time.monotonic() + self._register_timeout_s
        while time.monotonic() < deadline:
            registered = raylet.registered()
            if target is None or registered is None or registered >= target:
                return
            time.sleep(POLL_S)


class LocalRaylet:
    """The raylet of the driver's own node, where Train places its controller."""

    def __init__(self) -> None:
        import ray

        node_id = ray.get_runtime_context().get_node_id()
        node = next(n for n in ray.nodes() if n["NodeID"] == node_id)
        self.address = raylet_address(node)
        # Ray gives a raylet its node's CPUs, at most the machine's cores.
        self.concurrency = max(1, min(os.cpu_count() or 1, int(node.get("Resources", {}).get("CPU", 1))))

    def prestart(self, runtime_env: str, count: int) -> bool:
        return prestart_workers(self.address, runtime_env, count, KEEP_ALIVE_S)

    def registered(self) -> int | None:
        return registered_workers(self.address)
