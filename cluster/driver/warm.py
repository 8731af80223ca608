"""Warm trial workers: Ray worker processes started before a study, with a trial's imports done.

Every Ray Tune trial actor takes a fresh worker process, and a fresh process pays, before
its first epoch, for importing Ray Tune and torch and for torch's lazy import of
torch._dynamo at the first optimiser: seconds of CPU per concurrent trial, in every study,
on the cores the trials train on. A standby driver has its idle time to spare, so it asks
each node's raylet to start worker processes for its Ray job ahead of time (the raylet's
PrestartWorkers call, which Ray exposes to Python only internally). The jobs the server
submits name `cluster.trial.warm.warm_worker` as their worker set-up hook, so each such
process imports what a trial needs and then waits idle; Tune's trial actors are placed on
them and start in milliseconds. When the call is refused (another Ray version), trials
start cold, as before.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from cluster.trial.trainenv import serialize

log = logging.getLogger("anneal.warm")

PRESTART_TIMEOUT_S = 10.0


def plan_warm_workers(nodes: list[dict[str, Any]], local_node_id: str, limit: int) -> list[tuple[str, int]]:
    """(raylet address, workers) for up to `limit` warm workers, one per CPU, on the alive
    nodes with CPUs: the driver's own node first, where the embedded setup runs its trials."""
    alive = [n for n in nodes if n.get("Alive") and int(n.get("Resources", {}).get("CPU", 0)) >= 1]
    alive.sort(key=lambda n: n.get("NodeID") != local_node_id)
    plan: list[tuple[str, int]] = []
    for node in alive:
        count = min(int(node["Resources"]["CPU"]), limit - sum(c for _, c in plan))
        if count < 1:
            break
        plan.append((raylet_address(node), count))
    return plan


def raylet_address(node: dict[str, Any]) -> str:
    """Where a node's raylet listens, from its entry in `ray.nodes()`."""
    return f"{node['NodeManagerAddress']}:{node['NodeManagerPort']}"


@contextmanager
def _node_manager(address: str) -> Iterator[Any]:
    """A gRPC stub of the raylet at `address` (its node manager service)."""
    from ray._private.grpc_utils import init_grpc_channel
    from ray.core.generated import node_manager_pb2_grpc

    with init_grpc_channel(address) as channel:
        yield node_manager_pb2_grpc.NodeManagerServiceStub(channel)


def prestart_trial_workers(limit: int, keep_alive_s: float) -> int:
    """Asks the raylets for up to `limit` idle workers for this driver's job (`plan_warm_workers`),
    each kept `keep_alive_s` until a trial takes it. Returns how many were asked for."""
    import ray

    context = ray.get_runtime_context()
    environment = serialize(trial_runtime_env())
    asked = 0
    for address, count in plan_warm_workers(ray.nodes(), context.get_node_id(), limit):
        if prestart_workers(address, environment, count, keep_alive_s):
            asked += count
        else:
            log.warning("the raylet at %s did not start warm trial workers; trials there start cold", address)
    return asked


def prestart_workers(address: str, runtime_env: str, count: int, keep_alive_s: float) -> bool:
    """Asks the raylet at `address` to start `count` worker processes of this driver's job with
    the serialized `runtime_env`, kept idle up to `keep_alive_s`. The raylet starts no more at
    once than its start-up concurrency (its node's CPUs, at most its cores) and drops the rest.
    False when it refused."""
    import ray
    from ray.core.generated import common_pb2, node_manager_pb2, runtime_environment_pb2

    request = node_manager_pb2.PrestartWorkersRequest(
        language=common_pb2.Language.PYTHON,
        job_id=bytes.fromhex(ray.get_runtime_context().get_job_id()),
        # The raylet hands an idle worker only to a task of the same job and the same runtime environment.
        runtime_env_info=runtime_environment_pb2.RuntimeEnvInfo(serialized_runtime_env=runtime_env),
        keep_alive_duration_secs=int(keep_alive_s),
        num_workers=count,
    )
    try:
        with _node_manager(address) as raylet:
            raylet.PrestartWorkers(request, timeout=PRESTART_TIMEOUT_S)
    except Exception:
        return False
    return True


def registered_workers(address: str) -> int | None:
    """How many worker processes of this driver's job the raylet at `address` has registered
    (started ones it counts as started only once they have); None when it did not answer."""
    import ray
    from ray.core.generated import node_manager_pb2

    job_id = bytes.fromhex(ray.get_runtime_context().get_job_id())
    try:
        with _node_manager(address) as raylet:
            stats = raylet.GetNodeStats(
                node_manager_pb2.GetNodeStatsRequest(include_memory_info=False), timeout=PRESTART_TIMEOUT_S
            )
    except Exception:
        return None
    return sum(1 for worker in stats.core_workers_stats if worker.job_id == job_id)


def trial_runtime_env() -> dict[str, object]:
    """The runtime environment Ray gives Tune's trial actors in this driver's job: the job's
    environment with the env_vars Tune sets on its trainables merged in
    (`ray.tune.execution.class_cache`). Serialized (`serialize`), the raylet matches idle
    workers to tasks by its exact text."""
    import ray
    from ray.tune.execution.class_cache import DEFAULT_ENV_VARS, ENV_VARS_TO_PROPAGATE

    # Tune copies these from the driver's own environment into every trainable's.
    tune_env_vars = {**DEFAULT_ENV_VARS, **{k: os.environ[k] for k in ENV_VARS_TO_PROPAGATE if k in os.environ}}
    core_worker = ray._private.worker.global_worker.core_worker  # type: ignore[attr-defined]
    job: dict[str, object] = json.loads(core_worker.get_current_runtime_env() or "{}")
    job_env_vars = job.get("env_vars")
    return {**job, "env_vars": {**(job_env_vars if isinstance(job_env_vars, dict) else {}), **tune_env_vars}}
