"""A deployment's lifecycle under load: a newer study rolled out and rolled back while four
callers send Predict without one failed call, the registry's aliases following; a registered
version deployed by name; GetDeployment saying what Serve reports; autoscaling up under load
and back down idle; and DeleteDeployment freeing the replicas' CPUs."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import ray
from mlflow.tracking import MlflowClient

from anneal import Client, NotFound, Prediction, Study, StudySpec, StudyState
from anneal.types import Deployment, DeploymentState
from tests.integration.conftest import Stack, remove_serve_app
from tests.integration.test_driver_restart import wait_for

pytestmark = pytest.mark.integration

NAME = "it-roll"
CALLERS = 4
ROW = [0.1, 0.2, 0.3, 0.4]
FREE_S = 10.0  # an undeployed deployment's replicas give their CPUs back within this


def iris_spec(seed: int) -> StudySpec:
    """Two quick trials; the seed picks their learning rates, so each study's model (and each
    trial's) answers differently."""
    return StudySpec.parse(
        {
            "name": NAME,
            "trainer": "mlp_classifier",
            "dataset": {"name": "iris"},
            "params": {"epochs": 2, "hidden_size": 8},
            "search_space": {"lr": {"float": {"low": 1.0e-3, "high": 0.3, "log": True}}},
            "objective": {"metric": "val_accuracy", "mode": "max"},
            "search": {"sampler": "random", "seed": seed},
            "budget": {"max_trials": 2, "max_concurrent_trials": 2},
        }
    )


@dataclass(frozen=True)
class Versions:
    old: Study
    new: Study


@pytest.fixture(scope="module")
def versions(stack: Stack) -> Iterator[Versions]:
    """Two studies of one name, one after the other: versions 1 and 2 of alice's model."""
    with stack.client() as client:
        done = [client.wait_for_study(client.create_study(iris_spec(seed)).study_id) for seed in (0, 1)]
    assert all(study.state is StudyState.SUCCEEDED for study in done), [study.error for study in done]
    assert [study.registered_model_version for study in done] == [1, 2]
    yield Versions(*done)
    for name in (NAME, "it-autoscale"):
        remove_serve_app(stack, name)


@dataclass
class Callers:
    """Threads calling Predict with one row until stopped, each keeping its answers in order with
    the time each call started."""

    client: Client
    answers: list[list[tuple[float, list[Prediction]]]] = field(default_factory=list)
    failures: list[BaseException] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Callers:
        self.threads = [threading.Thread(target=self._call, args=(i,), daemon=True) for i in range(CALLERS)]
        self.answers = [[] for _ in range(CALLERS)]
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)

    def _call(self, index: int) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                self.answers[index].append((started, self.client.predict(NAME, [ROW])))
            except Exception as error:  # a failed call is what this test counts
                self.failures.append(error)

    def since(self, moment: float) -> list[list[list[Prediction]]]:
        return [[answer for at, answer in answers if at > moment] for answers in self.answers]


def _aliases(stack: Stack) -> dict[str, int]:
    return MlflowClient(stack.settings.mlflow_tracking_uri).get_registered_model(f"alice.{NAME}").aliases


def test_rollout_and_rollback_under_load_fail_no_call(stack: Stack, versions: Versions) -> None:
    with stack.client() as client:
        first = client.deploy(versions.old.study_id)
        old_answer = client.predict(NAME, [ROW])
        assert (first.model_version, first.previous) == (1, None)
        with Callers(stack.client(timeout_s=60)) as callers:
            time.sleep(1)
            rolled = client.deploy(versions.new.study_id)  # the same name: a rollout
            rolled_at = time.monotonic()
            new_answer = client.predict(NAME, [ROW])
            time.sleep(2)
            rollback_at = time.monotonic()
            back = client.rollback(NAME)
            back_at = time.monotonic()
            time.sleep(2)
        assert callers.failures == []
        assert _which(new_answer, old_answer, new_answer) == "new"  # apart beyond batching's last bits
        _switched_and_stayed(callers, rolled_at, rollback_at, back_at, old_answer, new_answer)
        assert (rolled.model_version, rolled.previous and rolled.previous.version) == (2, 1)
        assert rolled.study_id == versions.new.study_id and rolled.previous.study_id == versions.old.study_id
        assert (back.model_version, back.previous and back.previous.version) == (1, 2)
        assert _aliases(stack) == {"champion": 1, "previous": 2}

        shown = client.get_deployment(NAME)
        assert shown.state is DeploymentState.RUNNING and shown.serve_status == "RUNNING"
        assert (shown.replicas_running, shown.replicas_wanted) == (1, 1)
        assert shown.previous is not None and shown.previous.version == 2

        # A registered version, named as MLflow names it, rolls the deployment forward again.
        forward = client.deploy(model=f"alice.{NAME}", version=2)
        assert (forward.model_version, forward.previous and forward.previous.version) == (2, 1)
        # Alone, not batched with other callers' rows: the same model, but not the same last bits.
        assert _which(client.predict(NAME, [ROW]), old_answer, new_answer) == "new"
        assert _aliases(stack) == {"champion": 2, "previous": 1}
        again = client.deploy(versions.new.study_id)  # the version it serves: in place, previous kept
        assert (again.model_version, again.previous and again.previous.version) == (2, 1)
        assert _aliases(stack) == {"champion": 2, "previous": 1}
        assert NAME in {d.name for d in client.list_deployments()}


def _switched_and_stayed(
    callers: Callers, rolled_at: float, rollback_at: float, back_at: float, old: list[Prediction], new: list[Prediction]
) -> None:
    """Each caller's answers go from old to new once (the rollout) and back once (the rollback),
    never flickering; a call started after Deploy (Rollback) returned has the new (old) answer."""
    for answers in callers.answers:
        sequence = [_which(answer, old, new) for _, answer in answers]
        switches = [(a, b) for a, b in zip(sequence, sequence[1:], strict=False) if a != b]
        assert switches == [("old", "new"), ("new", "old")], switches
        assert all(
            _which(answer, old, new) == "new" for started, answer in answers if rolled_at < started < rollback_at
        )
        assert all(_which(answer, old, new) == "old" for started, answer in answers if started > back_at)
    assert all(callers.since(back_at)), "a caller made no call after the rollback"


def _which(answer: list[Prediction], old: list[Prediction], new: list[Prediction]) -> str:
    """Which model gave `answer`: calls batched together differ from one alone in the last bits."""
    for label, model in (("old", old), ("new", new)):
        if answer[0].probabilities == pytest.approx(model[0].probabilities, abs=1e-5):
            return label
    return "other"


def test_a_chosen_trial_of_a_study_is_deployed(stack: Stack, versions: Versions) -> None:
    study = versions.new
    assert study.best_trial is not None
    (other,) = [t for t in study.trials if t.trial_id != study.best_trial.trial_id]
    with stack.client() as client:
        chosen = client.deploy(study.study_id, name="it-trial", trial_id=other.trial_id)
        try:
            assert chosen.trial_id == other.trial_id and chosen.study_id == study.study_id
            assert chosen.registered_model == "alice.it-trial" and chosen.model_version == 1
            answer = client.predict("it-trial", [ROW])
            best = client.deploy(study.study_id, name="it-trial")  # the best trial: a rollout
            assert best.trial_id == study.best_trial.trial_id
            assert best.previous is not None and best.previous.trial_id == other.trial_id
            assert client.predict("it-trial", [ROW]) != answer
        finally:
            client.delete_deployment("it-trial")
    mlflow = MlflowClient(stack.settings.mlflow_tracking_uri)
    logged = mlflow.search_logged_models(experiment_ids=[study.mlflow_experiment_id])
    assert sorted(m.tags["anneal.trial_id"] for m in logged) == sorted(t.trial_id for t in study.trials)
    with stack.client() as client, pytest.raises(NotFound, match="has no trial"):
        client.deploy(study.study_id, name="it-trial", trial_id="nosuchtrial")


def test_a_deployment_whose_serve_application_is_gone_says_so_and_undeploy_frees_its_cpus(
    stack: Stack, versions: Versions
) -> None:
    with stack.client() as client:
        idle_cpus = _free_cpus(stack)
        client.deploy(versions.new.study_id, name="it-gone")
        assert _free_cpus(stack) < idle_cpus
        remove_serve_app(stack, "it-gone")  # as if the cluster had lost it
        gone = client.get_deployment("it-gone")
        assert gone.state is DeploymentState.UNHEALTHY and gone.serve_status == "NOT_FOUND"
        assert "gone" in gone.serve_message

        client.deploy(versions.new.study_id, name="it-gone")
        started = time.monotonic()
        deleted = client.delete_deployment("it-gone")
        assert deleted.state is DeploymentState.DELETED
        wait_for(lambda: _free_cpus(stack) >= idle_cpus, FREE_S - (time.monotonic() - started), "CPUs freed")
        with pytest.raises(NotFound):
            client.predict("it-gone", [ROW])
        assert client.get_deployment("it-gone").state is DeploymentState.DELETED
        assert "it-gone" not in {d.name for d in client.list_deployments()}
        with pytest.raises(NotFound):
            client.delete_deployment("it-gone")
        registry = MlflowClient(stack.settings.mlflow_tracking_uri)
        assert registry.get_registered_model("alice.it-gone").aliases == {}
        fresh = client.deploy(versions.new.study_id, name="it-gone")  # a new start: nothing before it
        assert fresh.state is DeploymentState.RUNNING and fresh.previous is None
        assert client.delete_deployment("it-gone").state is DeploymentState.DELETED


def _free_cpus(stack: Stack) -> float:
    if not ray.is_initialized():
        ray.init(address=stack.settings.ray_address, log_to_driver=False)
    return float(ray.available_resources().get("CPU", 0.0))


def test_autoscaling_adds_a_replica_under_load_and_removes_it_idle(stack: Stack, versions: Versions) -> None:
    name = "it-autoscale"
    with stack.client() as client:
        deployment = client.deploy(
            versions.old.study_id,
            max_batch_size=1,  # each call its own request, so load is requests in flight
            name=name,
            min_replicas=1,
            max_replicas=2,
            target_ongoing_requests=1,
            upscale_delay_s=1,
            downscale_delay_s=2,
        )
        assert deployment.autoscaling is not None and deployment.replicas == 1
        stop = threading.Event()
        loader = stack.client(timeout_s=60)

        def call() -> None:
            while not stop.is_set():
                loader.predict(name, [ROW])

        threads = [threading.Thread(target=call, daemon=True) for _ in range(8)]
        for thread in threads:
            thread.start()
        try:
            wait_for(lambda: _running(client, name) >= 2, 60, "a second replica under load")
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
        wait_for(lambda: _running(client, name) == 1, 60, "back to one replica, idle")


def _running(client: Client, name: str) -> int:
    shown: Deployment = client.get_deployment(name)
    return shown.replicas_running
