"""Faults of the whole local cluster, on a cluster of the tests' own (`anneal up` under a
home of their own), so the session's shared cluster is not disturbed:

- `anneal down` mid-study, then `anneal up`: the new server finds the study RUNNING with
  its driver's job unknown to the new cluster, and resumes it from Tune's storage;
- a worker node killed while it runs a trial: the trial goes on from its checkpoint on
  another node, and the study completes.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from anneal import Client, StudyState, TrialState
from anneal.settings import Settings
from anneal.types import EventKind
from cluster.environment import child_env
from cluster.local.cluster import RAY_STOP_S, LocalCluster, down, up
from cluster.local.sessions import group_alive, session_members, stop_group
from cluster.store.store import Store
from tests.integration.test_driver_restart import (
    EPOCHS,
    TRIALS,
    assert_one_mlflow_run_per_trial_with_every_epoch_once,
    resumable_spec,
    wait_for,
    wait_for_mid_study,
)

pytestmark = pytest.mark.integration

END_S = 240.0
NODE_START_S = 60.0
NODE_TEST_EPOCHS = 40
# Twice the driver-restart test's epochs: `anneal down` takes seconds under load, and the
# study must still be running when the cluster goes (with 6 it once ended first).
RESTART_EPOCHS = 2 * EPOCHS


@pytest.fixture(scope="module")
def own_home() -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix="anneal-it-own-"))
    try:
        yield home
    finally:
        down(own_settings(home), log=lambda _: None)
        shutil.rmtree(home, ignore_errors=True)


def own_settings(home: Path) -> Settings:
    # No standby driver: its start-up would compete with the study for the two cores.
    return Settings.load(home=home, grpc_address="127.0.0.1:0", serve_http_port=0, standby_drivers=0)


def own_client(settings: Settings, cluster: LocalCluster) -> Client:
    """A client of the test's own server, with the development token it made under home."""
    return Client.from_settings(settings.model_copy(update={"grpc_address": cluster.grpc_address}))


def test_a_study_resumes_when_the_whole_local_cluster_restarts(own_home: Path) -> None:
    settings = own_settings(own_home)
    cluster = up(settings, log=lambda _: None)
    with own_client(settings, cluster) as client:
        study_id = client.create_study(resumable_spec("it-cluster-restart", RESTART_EPOCHS)).study_id

        wait_for_mid_study(client, study_id, ended=2, timeout_s=180)
        before = client.get_study(study_id)
    down(settings, log=lambda _: None)
    left = Store(settings.store_url).get_study(study_id)
    assert left.state is StudyState.RUNNING, "a cluster going down is not the study's end"

    restarted_at = time.monotonic()
    cluster = up(own_settings(own_home), log=lambda _: None)
    with own_client(settings, cluster) as client:
        wait_for(lambda: client.get_study(study_id).state.is_terminal, END_S, "the resumed study to end")
        study = client.get_study(study_id)
        events = list(client.watch_study(study_id))
    print(f"the study ended {time.monotonic() - restarted_at:.1f} s after `anneal up`")

    assert study.state is StudyState.SUCCEEDED, study.error
    assert study.ray_job_id == f"anneal-{study_id}-r1"
    assert len(study.trials) == TRIALS
    assert all(t.state is TrialState.COMPLETED and t.epochs == RESTART_EPOCHS for t in study.trials)
    starts = Counter(e.trial.trial_id for e in events if e.kind is EventKind.TRIAL_STARTED and e.trial)
    for trial in before.trials:
        if trial.state.is_terminal:
            assert starts[trial.trial_id] == 1, f"trial {trial.trial_id} ran again"
    assert_one_mlflow_run_per_trial_with_every_epoch_once(settings.mlflow_tracking_uri, study, RESTART_EPOCHS)


def start_worker_node(settings: Settings, gcs_address: str) -> int:
    """`ray start` of a worker node with one CPU joining the cluster, in a session of its own;
    returns the session id. Its ports are free ones: the head already holds the defaults."""
    from cluster.local.cluster import free_ports

    agent_http, agent_grpc, runtime_env_agent, metrics = free_ports(4)
    ray = os.path.join(os.path.dirname(sys.executable), "ray")
    command = [
        ray, "start", "--block",
        f"--address={gcs_address}",
        "--node-ip-address=127.0.0.1",
        "--num-cpus=1",
        f"--dashboard-agent-listen-port={agent_http}",
        f"--dashboard-agent-grpc-port={agent_grpc}",
        f"--runtime-env-agent-port={runtime_env_agent}",
        f"--metrics-export-port={metrics}",
        "--disable-usage-stats",
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        env=child_env(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return process.pid


def alive_nodes(dashboard_url: str) -> list[dict[str, object]]:
    from ray.util.state import list_nodes

    return [node.__dict__ for node in list_nodes(address=dashboard_url, filters=[("state", "=", "ALIVE")])]


def kill_session(sid: int) -> None:
    for pid in session_members(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_trial_goes_on_from_its_checkpoint_when_its_node_dies(own_home: Path) -> None:
    settings = own_settings(own_home)
    cluster = up(settings, log=lambda _: None)
    nodes: list[int] = []
    try:
        for count in (2, 3):  # one at a time: two starting at once on one machine stall each other
            nodes.append(start_worker_node(settings, cluster.ray_address))
            wait_for(lambda n=count: len(alive_nodes(cluster.ray_dashboard_url)) == n, NODE_START_S, "a worker node")
        # Four trials at once on four CPUs (two on the head, one per worker node): each worker
        # node runs one. Trials last 10 s, so those on the head, which start first, still run
        # when those on the new nodes (no warm workers there) have checkpointed. A killed
        # node's trial is retried from its checkpoint elsewhere.
        spec = resumable_spec("it-node-lost", epochs=NODE_TEST_EPOCHS)
        spec = spec.model_copy(
            update={
                "budget": spec.budget.model_copy(update={"max_trials": 4, "max_concurrent_trials": 4}),
                "failure": spec.failure.model_copy(update={"max_retries": 2}),
            }
        )
        observed: dict[str, list[int]] = {}
        with own_client(settings, cluster) as client:
            study_id = client.create_study(spec).study_id

            def all_training() -> bool:
                trials = client.get_study(study_id).trials
                return len(trials) == 4 and all(t.state is TrialState.RUNNING and t.epochs >= 4 for t in trials)

            wait_for(all_training, 120, "four trials to train at once")
            kill_session(nodes[0])
            killed_at = time.monotonic()

            def ended() -> bool:
                study = client.get_study(study_id)
                for trial in study.trials:
                    observed.setdefault(trial.trial_id, []).append(trial.epochs)
                return study.state.is_terminal

            wait_for(ended, END_S, "the study to end after losing a node")
            study = client.get_study(study_id)
            events = list(client.watch_study(study_id))
        print(f"the study ended {time.monotonic() - killed_at:.1f} s after a worker node was killed")
    finally:
        for sid in nodes:
            stop_group(sid, RAY_STOP_S)

    assert study.state is StudyState.SUCCEEDED, study.error
    assert len(study.trials) == 4
    assert all(t.state is TrialState.COMPLETED and t.epochs == NODE_TEST_EPOCHS for t in study.trials)
    starts = Counter(e.trial.trial_id for e in events if e.kind is EventKind.TRIAL_STARTED and e.trial)
    restarted = [trial_id for trial_id, count in starts.items() if count > 1]
    assert restarted, "no trial was restarted after its node died"
    for trial_id in restarted:
        # Every trial had reported epoch 4 (with its checkpoint) when the node died; one
        # restarted from epoch 0 would have reported epoch 2 or so again.
        assert min(observed[trial_id]) >= 4, (trial_id, observed[trial_id])
    assert_one_mlflow_run_per_trial_with_every_epoch_once(settings.mlflow_tracking_uri, study, NODE_TEST_EPOCHS)
    assert not any(group_alive(sid) for sid in nodes)
