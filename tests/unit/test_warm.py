"""Where a standby driver asks for warm trial workers."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from cluster.driver.warm import plan_warm_workers


def node(node_id: str, cpus: float, alive: bool = True) -> dict[str, Any]:
    return {
        "NodeID": node_id,
        "Alive": alive,
        "Resources": {"CPU": cpus} if cpus else {},
        "NodeManagerAddress": f"10.0.0.{node_id}",
        "NodeManagerPort": 7000,
    }


def test_one_worker_per_cpu_on_the_drivers_own_node_first() -> None:
    nodes = [node("1", 4), node("2", 2)]
    assert plan_warm_workers(nodes, local_node_id="2", limit=8) == [("10.0.0.2:7000", 2), ("10.0.0.1:7000", 4)]


def test_the_limit_caps_the_workers_across_nodes() -> None:
    nodes = [node("1", 4), node("2", 4), node("3", 4)]
    assert plan_warm_workers(nodes, local_node_id="1", limit=6) == [("10.0.0.1:7000", 4), ("10.0.0.2:7000", 2)]


def test_dead_nodes_and_nodes_without_cpus_get_none() -> None:
    nodes = [node("1", 0), node("2", 8, alive=False), node("3", 1.5)]
    assert plan_warm_workers(nodes, local_node_id="1", limit=8) == [("10.0.0.3:7000", 1)]


def test_no_limit_no_workers() -> None:
    assert plan_warm_workers([node("1", 2)], local_node_id="1", limit=0) == []


def test_a_warmed_worker_has_a_trials_imports_and_no_cuda() -> None:
    check = (
        "import sys, torch; from cluster.trial.warm import warm_worker; warm_worker(); "
        "print(all(m in sys.modules for m in ('torch._dynamo', 'cluster.trial.function', 'trainers.mlp')), "
        "torch.cuda.is_initialized())"
    )
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.split() == ["True", "False"]
