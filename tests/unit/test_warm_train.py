"""Warm Ray Train processes: the environments they are asked for, and how many, when."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import threading
from dataclasses import dataclass, field

from cluster.driver.warmtrain import TrainWarmer
from cluster.trial.trainenv import (
    CONTROL_PROCESSES,
    TRAIN_CONTROL_MARKER,
    WORKER_ENV_VARS,
    TrainEnvironments,
    train_environments,
)

# A trial's environment as Ray writes it in a study driver's job.
TRIAL_ENV: dict[str, object] = {
    "env_vars": {"ANNEAL_HOME": "/srv/anneal", "PL_DISABLE_FORK": "1"},
    "worker_process_setup_hook": "cluster.trial.warm.warm_worker",
}
CONTROL_VARS = {TRAIN_CONTROL_MARKER: "0", "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.25"}
ENVS = TrainEnvironments(control="control-env", worker="worker-env")


def test_control_processes_carry_the_trials_environment_with_trains_variables_merged_in() -> None:
    control = train_environments(TRIAL_ENV, CONTROL_VARS).control
    # As Ray writes a merged environment: sorted keys, no spaces; the raylet matches this text.
    assert control == (
        '{"env_vars":{"ANNEAL_HOME":"/srv/anneal","PL_DISABLE_FORK":"1",'
        '"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S":"0.25","RAY_WARN_BLOCKING_GET_INSIDE_ASYNC":"0"},'
        '"worker_process_setup_hook":"cluster.trial.warm.warm_worker"}'
    )


def test_workers_carry_the_control_environment_and_the_worker_marker() -> None:
    environments = train_environments(TRIAL_ENV, CONTROL_VARS)
    control, worker = json.loads(environments.control), json.loads(environments.worker)
    assert worker == {**control, "env_vars": {**control["env_vars"], **WORKER_ENV_VARS}}


def test_a_control_process_is_warmed_without_a_trials_imports() -> None:
    check = (
        "import sys; from cluster.trial.warm import warm_worker; warm_worker(); "
        "print('ray.train.v2._internal.execution.controller.controller' in sys.modules, "
        "'cluster.trial.function' in sys.modules)"
    )
    env = {TRAIN_CONTROL_MARKER: "0", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120, env=env)
    assert done.stdout.split() == ["True", "False"], done.stderr


@dataclass
class FakeRaylet:
    """Registers what it is asked for at once; records each request."""

    concurrency: int = 2
    asked: list[tuple[str, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def prestart(self, runtime_env: str, count: int) -> bool:
        with self.lock:
            self.asked.append((runtime_env, count))
        return True

    def registered(self) -> int | None:
        with self.lock:
            return sum(count for _, count in self.asked)

    def processes(self) -> dict[str, int]:
        totals = {"control-env": 0, "worker-env": 0}
        for runtime_env, count in self.asked:
            totals[runtime_env] += count
        return totals


class Trial:
    def __init__(self, trial_id: str) -> None:
        self.trial_id = trial_id


def warmer(workers: int, concurrent: int, coordinator_up: bool = True) -> tuple[TrainWarmer, FakeRaylet]:
    raylet = FakeRaylet()
    needs_coordinator = lambda: not coordinator_up  # noqa: E731
    return TrainWarmer(workers, concurrent, raylet, ENVS, needs_coordinator=needs_coordinator), raylet


def test_a_study_asks_at_its_start_for_the_trials_after_the_first_one_set_per_concurrent_trial() -> None:
    warm, raylet = warmer(workers=3, concurrent=2)
    warm.setup(total_num_samples=10)
    assert warm.settle(5)
    assert raylet.processes() == {"control-env": 2 * CONTROL_PROCESSES, "worker-env": 2 * 3}
    assert max(count for _, count in raylet.asked) <= raylet.concurrency


def test_a_study_whose_trials_all_start_with_it_asks_for_none() -> None:
    warm, raylet = warmer(workers=2, concurrent=2)
    warm.setup(total_num_samples=2)
    for trial_id in ("a", "b"):
        warm.on_trial_start(0, [], Trial(trial_id))
    assert warm.settle(5)
    assert raylet.asked == []


def test_each_later_trial_start_replaces_the_set_it_took_while_trials_are_to_come() -> None:
    warm, raylet = warmer(workers=2, concurrent=1)
    warm.setup(total_num_samples=4)
    for trial_id in ("a", "b", "c", "d"):
        warm.on_trial_start(0, [], Trial(trial_id))
    assert warm.settle(5)
    # One set for b at the start, one for c when b starts, one for d when c starts.
    assert raylet.processes() == {"control-env": 3 * CONTROL_PROCESSES, "worker-env": 3 * 2}


def test_a_retried_trial_starts_at_once_and_takes_no_set() -> None:
    warm, raylet = warmer(workers=2, concurrent=1)
    warm.setup(total_num_samples=2)
    warm.on_trial_start(0, [], Trial("a"))
    warm.on_trial_recover(0, [], Trial("a"))
    warm.on_trial_start(0, [], Trial("a"))  # its retry: b's set is still there for b
    warm.on_trial_start(0, [], Trial("b"))
    assert warm.settle(5)
    assert raylet.processes()["control-env"] == CONTROL_PROCESSES


def test_a_prepared_warmer_asks_nothing_more_when_tune_sets_it_up() -> None:
    warm, raylet = warmer(workers=2, concurrent=1)
    warm.prepare(trials=1, immediately=0)
    warm.setup(total_num_samples=1)
    warm.on_trial_start(0, [], Trial("a"))
    assert warm.settle(5)
    assert raylet.processes() == {"control-env": CONTROL_PROCESSES, "worker-env": 2}


def test_the_first_set_on_a_cluster_without_trains_coordinator_holds_one_more_control_process() -> None:
    warm, raylet = warmer(workers=2, concurrent=2, coordinator_up=False)
    warm.setup(total_num_samples=10)
    assert warm.settle(5)
    # The first trial's controller starts the cluster's coordinator in one of them.
    assert raylet.processes() == {"control-env": 2 * CONTROL_PROCESSES + 1, "worker-env": 2 * 2}


def test_only_the_plan_goes_into_tunes_snapshot() -> None:
    warm, _ = warmer(workers=4, concurrent=2)
    restored = pickle.loads(pickle.dumps(warm))
    assert (restored.workers, restored.concurrent) == (4, 2)
