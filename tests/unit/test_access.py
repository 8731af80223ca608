"""Who sees what, quotas and limits, in the domain: two principals and an admin, no gRPC, no Ray.

Over gRPC and TLS the same rules are tested in tests/integration/test_access.py.
"""

from __future__ import annotations

import copy
import re
from datetime import timezone
from pathlib import Path
from typing import Any

import pytest

from anneal.errors import InvalidArgument, InvalidSpec, NotFound, ResourceExhausted
from anneal.settings import Settings
from anneal.spec import StudySpec
from anneal.types import Deployment, DeploymentState, StudyState
from cluster.server.limits import StreamSlots
from cluster.server.service import AnnealService
from cluster.serving.deploy import ServeReport
from cluster.store.store import Store, now
from tests.unit.fakes import FakeJobs
from tests.unit.helpers import principal

ALICE, BOB, ADMIN = principal("alice"), principal("bob"), principal("root", admin=True)


def make_service(tmp_path: Path, store: Store, jobs: FakeJobs, **settings: Any) -> AnnealService:
    return AnnealService.build(Settings.load(home=tmp_path, **settings), store, jobs)


@pytest.fixture
def service(tmp_path: Path, store: Store, jobs: FakeJobs, monkeypatch: pytest.MonkeyPatch) -> AnnealService:
    # No Ray here (a whole-suite run may have left this process connected to the session's
    # cluster): what Serve reports of a deployment is nothing.
    nothing = ServeReport("", "", 0, 0)
    monkeypatch.setattr("cluster.serving.rollout.serve_report", lambda owner, name, applications=None: nothing)
    return make_service(tmp_path, store, jobs)


def spec(data: dict[str, Any], **changes: Any) -> StudySpec:
    changed = copy.deepcopy(data)
    changed.update(changes)
    return StudySpec.parse(changed)


def test_a_principal_sees_only_its_own_studies(service: AnnealService, example_data: dict[str, Any]) -> None:
    mine = service.studies.create_study(spec(example_data), ALICE)
    assert mine.owner == "alice"
    for call in (service.studies.get_study, service.studies.cancel_study):
        with pytest.raises(NotFound, match=f"no study '{mine.study_id}'"):
            call(mine.study_id, BOB)
    with pytest.raises(NotFound):
        next(service.studies.watch_study(mine.study_id, BOB))
    with pytest.raises(NotFound):
        service.deployments.deploy(BOB, study_id=mine.study_id)
    put_deployment(service.store, "alice", mine.study_id)  # it exists: only access hides it
    for call in (service.deployments.rollback, service.deployments.delete):
        with pytest.raises(NotFound):
            call("alice/digits-mlp", BOB)
    assert service.studies.list_studies(BOB) == []
    assert [s.study_id for s in service.studies.list_studies(ALICE)] == [mine.study_id]
    assert service.studies.get_study(mine.study_id, ALICE).state is StudyState.PENDING


def test_what_another_owns_looks_like_what_does_not_exist(service: AnnealService, example_data: dict[str, Any]) -> None:
    mine = service.studies.create_study(spec(example_data), ALICE)
    with pytest.raises(NotFound) as hidden:
        service.studies.get_study(mine.study_id, BOB)
    with pytest.raises(NotFound) as missing:
        service.studies.get_study("st-000000000000", BOB)
    assert str(hidden.value) == str(missing.value).replace("st-000000000000", mine.study_id)


def test_an_admin_sees_and_acts_on_everything(
    service: AnnealService, jobs: FakeJobs, example_data: dict[str, Any]
) -> None:
    alices = service.studies.create_study(spec(example_data), ALICE)
    bobs = service.studies.create_study(spec(example_data), BOB)  # one name, two owners
    assert {s.study_id for s in service.studies.list_studies(ADMIN)} == {alices.study_id, bobs.study_id}
    assert service.studies.get_study(bobs.study_id, ADMIN).owner == "bob"
    assert service.studies.cancel_study(bobs.study_id, ADMIN).state is StudyState.CANCELLED
    assert jobs.stopped == [f"job-{bobs.study_id}"]


def put_deployment(store: Store, owner: str, study_id: str, name: str = "digits-mlp") -> Deployment:
    deployment = Deployment(
        owner=owner,
        name=name,
        study_id=study_id,
        state=DeploymentState.RUNNING,
        replicas=1,
        route=f"/models/{owner}/{name}",
        model_uri="/nowhere/model",
        updated_at=now().astimezone(timezone.utc),
    )
    store.put_deployment(deployment)
    return deployment


def test_deployments_are_seen_by_their_owner_and_admins(
    service: AnnealService, store: Store, example_data: dict[str, Any]
) -> None:
    study = service.studies.create_study(spec(example_data), ALICE)
    alices = put_deployment(store, "alice", study.study_id)
    assert service.deployments.get_deployment("digits-mlp", ALICE) == alices
    assert service.deployments.get_deployment("alice/digits-mlp", ADMIN) == alices
    for name in ("digits-mlp", "alice/digits-mlp"):
        with pytest.raises(NotFound, match=f"no deployment '{name}'"):
            service.deployments.get_deployment(name, BOB)
        with pytest.raises(NotFound, match=f"no deployment '{name}'"):
            service.predictions.predict(name, [[0.0]], BOB)
    bobs = put_deployment(store, "bob", study.study_id)  # the same name, another owner's
    assert service.deployments.get_deployment("digits-mlp", BOB) == bobs
    assert service.deployments.get_deployment("digits-mlp", ALICE) == alices


@pytest.mark.parametrize("name", ["", "../x", "a/b/c", "x" * 300, "Bad\x00Name", "alice/"])
def test_malformed_names_are_simply_not_found(service: AnnealService, name: str) -> None:
    with pytest.raises(NotFound):
        service.deployments.get_deployment(name, ADMIN)
    with pytest.raises(NotFound):
        service.studies.get_study(name, ADMIN)


def test_the_study_quota_counts_pending_and_running_studies(
    tmp_path: Path, store: Store, jobs: FakeJobs, example_data: dict[str, Any]
) -> None:
    service = make_service(tmp_path, store, jobs, max_concurrent_studies=2)
    first = service.studies.create_study(spec(example_data, name="a"), ALICE)
    service.studies.create_study(spec(example_data, name="b"), ALICE)
    with pytest.raises(ResourceExhausted, match="alice has 2 pending or running studies; the quota is 2"):
        service.studies.create_study(spec(example_data, name="c"), ALICE)
    assert len(jobs.submitted) == 2 and len(service.studies.list_studies(ALICE)) == 2
    service.studies.create_study(spec(example_data, name="c"), BOB)  # quotas are per principal
    service.studies.cancel_study(first.study_id, ALICE)
    service.studies.create_study(spec(example_data, name="c"), ALICE)


def test_the_trial_quota_sums_concurrent_trials(
    tmp_path: Path, store: Store, jobs: FakeJobs, example_data: dict[str, Any]
) -> None:
    service = make_service(tmp_path, store, jobs, max_concurrent_trials=5)
    budget = {"max_trials": 8, "max_concurrent_trials": 3}
    service.studies.create_study(spec(example_data, name="a", budget=budget), ALICE)
    with pytest.raises(ResourceExhausted, match="may run 5 trials at once; 3 are taken"):
        service.studies.create_study(spec(example_data, name="b", budget=budget), ALICE)
    own = principal("alice", max_concurrent_trials=6)  # a principal's own quota wins
    service.studies.create_study(spec(example_data, name="b", budget=budget), own)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"budget": {"max_trials": 10_001}}, "budget.max_trials"),
        ({"search_space": {f"p{i}": {"float": {"low": 0, "high": 1}} for i in range(33)}}, "search_space"),
        ({"search_space": {"optimizer": {"categorical": list(range(257))}}}, "search_space.optimizer.categorical"),
        ({"deploy": {"replicas": 9}}, "deploy.replicas"),
    ],
)
def test_specs_over_the_limits_are_refused_by_field(
    service: AnnealService, jobs: FakeJobs, example_data: dict[str, Any], changes: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidSpec) as refused:
        service.studies.create_study(spec(example_data, **changes), ALICE)
    assert field in [e.path for e in refused.value.errors]
    assert jobs.submitted == []


@pytest.mark.parametrize(
    ("resources", "shown"),
    [
        (
            {"workers": 3, "cpu": 2},
            "3 worker(s) × 2 CPU and 0 GPU = 6 CPU and 0 GPU; the cluster holds 4 CPU and 1 GPU",
        ),
        ({"workers": 2, "cpu": 1, "gpu": 1}, "= 2 CPU and 2 GPU; the cluster holds 4 CPU and 1 GPU"),
        ({"cpu": 0.5, "gpu": 2}, "= 0.5 CPU and 2 GPU"),
    ],
)
def test_a_trial_larger_than_the_cluster_is_refused_naming_resources(
    service: AnnealService, jobs: FakeJobs, example_data: dict[str, Any], resources: dict[str, Any], shown: str
) -> None:
    jobs.resources = {"CPU": 4.0, "GPU": 1.0}
    with pytest.raises(InvalidSpec) as refused:
        service.studies.create_study(spec(example_data, resources=resources), ALICE)
    [error] = refused.value.errors
    assert error.path == "resources" and shown in error.message
    assert jobs.submitted == []
    fits = service.studies.create_study(spec(example_data, resources={"workers": 2, "cpu": 2, "gpu": 0}), ALICE)
    assert fits.spec.resources.workers == 2 and len(jobs.submitted) == 1


def test_deploy_refuses_more_replicas_than_the_limit(service: AnnealService, example_data: dict[str, Any]) -> None:
    study = service.studies.create_study(spec(example_data), ALICE)
    service.store.transition(study.study_id, [StudyState.PENDING], StudyState.RUNNING)
    service.store.transition(study.study_id, [StudyState.RUNNING], StudyState.SUCCEEDED, model_uri="/nowhere")
    for overrides, refusal in [
        ({"replicas": 2**31 - 1}, "replicas: is 2147483647; at most 8"),
        ({"max_replicas": 9}, "max_replicas: is 9; at most 8"),
        ({"max_batch_size": 5000}, "max_batch_size: "),
        ({"replicas": -1}, "replicas: "),
        ({"min_replicas": 3, "max_replicas": 2}, "min_replicas: must be <= max_replicas"),
        ({"target_ongoing_requests": 2.0}, "max_replicas: is needed with target_ongoing_requests"),
    ]:
        with pytest.raises(InvalidArgument, match=re.escape(refusal)) as refused:
            service.deployments.deploy(ALICE, study_id=study.study_id, overrides=overrides)
        assert type(refused.value) is InvalidArgument  # Deploy's arguments are not a spec
    with pytest.raises(InvalidArgument, match="name: must be lower-case"):
        service.deployments.deploy(ALICE, study_id=study.study_id, name="Bad.Name")
    with pytest.raises(InvalidArgument, match="model: name a study_id or a registered model, not both"):
        service.deployments.deploy(ALICE, study_id=study.study_id, model="alice.x", version=1)
    with pytest.raises(NotFound, match="no registered model 'bob.x'"):
        service.deployments.deploy(ALICE, model="bob.x", version=1)


def test_a_watch_from_past_an_ended_studys_last_event_ends(
    service: AnnealService, example_data: dict[str, Any]
) -> None:
    study = service.studies.create_study(spec(example_data), ALICE)
    service.studies.cancel_study(study.study_id, ALICE)
    events = list(service.studies.watch_study(study.study_id, ALICE, poll_s=0.01))
    assert list(service.studies.watch_study(study.study_id, ALICE, events[-1].sequence + 100, poll_s=0.01)) == []


def test_predict_refuses_more_rows_than_the_limit(
    tmp_path: Path, store: Store, jobs: FakeJobs, example_data: dict[str, Any]
) -> None:
    service = make_service(tmp_path, store, jobs, max_predict_rows=3)
    with pytest.raises(InvalidArgument, match="rows: has 4 rows; at most 3 per call") as refused:
        service.predictions.predict("digits-mlp", [[0.0]] * 4, ALICE)
    assert type(refused.value) is InvalidArgument


def test_watch_streams_are_limited_per_principal(service: AnnealService, example_data: dict[str, Any]) -> None:
    study = service.studies.create_study(spec(example_data), ALICE)
    service.store.transition(study.study_id, [StudyState.PENDING], StudyState.RUNNING)
    open_streams = []
    for _ in range(service.settings.max_watch_streams):
        stream = service.studies.watch_study(study.study_id, ALICE, poll_s=0.01, stopped=lambda: False)
        next(stream)  # the STUDY_STARTED event: the stream holds its slot
        open_streams.append(stream)
    with pytest.raises(ResourceExhausted, match="WatchStudy streams"):
        next(service.studies.watch_study(study.study_id, ALICE))
    admins = service.studies.watch_study(study.study_id, ADMIN)  # another principal's slots are its own
    assert next(admins).study_id == study.study_id
    open_streams.pop().close()  # a closed stream gives its slot back
    assert next(service.studies.watch_study(study.study_id, ALICE)).study_id == study.study_id


def test_stream_slots_count_per_owner() -> None:
    slots = StreamSlots(limit=1)
    with slots.hold("alice"), slots.hold("bob"):
        with pytest.raises(ResourceExhausted):
            with slots.hold("alice"):
                pass
    with slots.hold("alice"):
        pass
