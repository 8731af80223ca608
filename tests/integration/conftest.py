"""One local Ray cluster for the whole integration session, and a real gRPC server on port 0.

The Ray head is started the way `anneal up` starts it (own temp dir, loopback
ports, token authentication on) under a temporary ANNEAL_HOME, and stopped at
the end of the session: only the processes this session started are stopped.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from anneal import Client, StudySpec
from anneal.settings import Settings
from cluster.local import RAY_STOP_S, LocalCluster, plan_cluster, start_ray, stop_group
from cluster.server import RunningServer, build_service, start_server

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Stack:
    settings: Settings
    cluster: LocalCluster
    server: RunningServer
    address: str

    def client(self) -> Client:
        return Client(self.address)


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    home = Path(tempfile.mkdtemp(prefix="anneal-it-"))
    base = Settings.load(home=home, grpc_address="127.0.0.1:0", serve_http_port=0)
    cluster, settings, dashboard_port = plan_cluster(base)
    cluster.ray_pid = start_ray(settings, cluster, dashboard_port, log=lambda _: None)
    server = None
    try:
        server = start_server(build_service(settings), "127.0.0.1:0", reflection_on=True)
        yield Stack(settings, cluster, server, f"127.0.0.1:{server.port}")
    finally:
        if server is not None:
            server.stop(grace_s=1)
        import ray

        ray.shutdown()
        stop_group(cluster.ray_pid, RAY_STOP_S)
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(cluster.ray_temp_dir, ignore_errors=True)


def remove_serve_app(stack: Stack, name: str) -> None:
    """Deletes a test's Serve application: each replica holds CPU the later tests' trials need."""
    import ray
    from ray import serve

    if not ray.is_initialized():
        ray.init(address=stack.settings.ray_address, log_to_driver=False)
    serve.delete(name)


@pytest.fixture
def serve_apps(stack: Stack) -> Iterator[list[str]]:
    """Names of Serve applications the test deploys, deleted after it."""
    names: list[str] = []
    yield names
    for name in names:
        remove_serve_app(stack, name)


def small_spec(name: str, **changes: object) -> StudySpec:
    """digits, 4 trials of 4 epochs, 2 at a time: a real study that ends in seconds."""
    data = StudySpec.load(REPO / "examples" / "digits.yaml").to_dict()
    data.update(
        name=name,
        params={"epochs": 4, "batch_size": 64},
        scheduler={"none": {}},
        budget={"max_trials": 4, "max_concurrent_trials": 2},
    )
    data.update(changes)
    return StudySpec.parse(data)
