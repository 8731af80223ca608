"""The audit log: one JSON line per state-changing call, over a real gRPC server on loopback
(its interceptor, servicer and tokens file as `anneal serve` has them; the Jobs API faked, no Ray)."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import grpc
import pytest

from anneal.client import Client
from anneal.errors import NotFound, Unauthenticated
from anneal.settings import Settings
from anneal.spec import StudySpec
from cluster.server.audit import AuditLog
from cluster.server.main import start_server
from cluster.server.principals import add_principal, tokens_path
from cluster.server.security import server_security
from cluster.server.service import AnnealService
from cluster.store.store import Store
from tests.unit.fakes import FakeJobs


@contextmanager
def serving(settings: Settings, store: Store, jobs: FakeJobs) -> Iterator[str]:
    """A gRPC server of `settings` (principals from its tokens file) on a free loopback port;
    yields its address."""
    service = AnnealService.build(settings, store, jobs)
    server = start_server(service, "127.0.0.1:0", server_security(settings), tend_drivers=False)
    try:
        yield f"127.0.0.1:{server.port}"
    finally:
        server.stop(grace_s=0)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.load(home=tmp_path, grpc_address="127.0.0.1:0")


def audit_lines(settings: Settings) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (settings.home / "audit.log").read_text().splitlines()]


def test_each_state_changing_call_is_one_line_and_nothing_else_is(
    settings: Settings, store: Store, jobs: FakeJobs, minimal_data: dict[str, Any]
) -> None:
    path = tokens_path(settings)
    alice, bob = add_principal(path, "alice"), add_principal(path, "bob")
    spec = StudySpec.parse(minimal_data)
    with serving(settings, store, jobs) as address:
        with Client(address, token=alice) as client:
            study = client.create_study(spec)
            client.get_study(study.study_id)
            client.list_studies()
        with Client(address, token=bob) as client, pytest.raises(NotFound):
            client.cancel_study(study.study_id)
        with Client(address, token="not-a-token") as stranger, pytest.raises(Unauthenticated):
            stranger.cancel_study(study.study_id)  # no principal: refused before it is a call of anyone's
    created, refused = audit_lines(settings)
    assert set(created) == {"time", "principal", "rpc", "study_name", "study_id", "code", "peer"}
    assert created["principal"] == "alice" and created["rpc"] == "CreateStudy" and created["code"] == "OK"
    assert (created["study_name"], created["study_id"]) == (spec.name, study.study_id)
    assert created["peer"].startswith("ipv4:127.0.0.1:")
    when = datetime.fromisoformat(created["time"])
    assert when.tzinfo is not None and abs((datetime.now(timezone.utc) - when).total_seconds()) < 60
    assert {k: refused[k] for k in ("principal", "rpc", "study_id", "code")} == {
        "principal": "bob",
        "rpc": "CancelStudy",
        "study_id": study.study_id,
        "code": "NOT_FOUND",
    }
    text = (settings.home / "audit.log").read_text()
    assert alice not in text and bob not in text and "val_accuracy" not in text  # no token, no spec
    assert stat.S_IMODE((settings.home / "audit.log").stat().st_mode) == 0o600


def test_deployment_calls_name_the_deployment(
    settings: Settings, store: Store, jobs: FakeJobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = add_principal(tokens_path(settings), "alice")
    with serving(settings, store, jobs) as address, Client(address, token=alice) as client:
        for call in (client.rollback, client.delete_deployment):
            with pytest.raises(NotFound):
                call("nowhere")
        with pytest.raises(NotFound):
            client.deploy("st-000000000000", name="mine")
        with pytest.raises(NotFound):
            client.predict("nowhere", [[0.0]])  # not audited
    lines = audit_lines(settings)
    assert [(line["rpc"], line.get("deployment"), line["code"]) for line in lines] == [
        ("Rollback", "nowhere", "NOT_FOUND"),
        ("DeleteDeployment", "nowhere", "NOT_FOUND"),
        ("Deploy", "mine", "NOT_FOUND"),
    ]
    assert lines[2]["study_id"] == "st-000000000000"


def test_a_line_cannot_be_forged_or_grow_without_bound(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.log", clock=lambda: datetime(2030, 1, 2, 3, 4, 5, 6000, tzinfo=timezone.utc))
    forged = 'x"}\n{"principal": "root", "rpc": "CreateStudy'
    audit.record(principal="alice", rpc="CancelStudy", code=grpc.StatusCode.OK, peer="p", study_id=forged)
    audit.record(principal="alice", rpc="CancelStudy", code=grpc.StatusCode.OK, peer="p", study_id="s" * 100_000)
    first, second = (tmp_path / "audit.log").read_text().splitlines()
    assert json.loads(first)["study_id"] == forged
    assert json.loads(first)["time"] == "2030-01-02T03:04:05.006Z"
    assert len(json.loads(second)["study_id"]) == 257  # cut, and marked so


def test_an_audit_log_others_can_read_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    path.write_text("")
    path.chmod(0o644)
    AuditLog(path).record(principal="alice", rpc="CreateStudy", code=grpc.StatusCode.OK, peer="p")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
