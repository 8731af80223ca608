"""Every access rule over the real gRPC server, mutual TLS and bearer tokens: two principals
(alice, bob), an admin, and callers with no token, a wrong token or no certificate."""

from __future__ import annotations

import ipaddress
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import timezone
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from anneal import Client, StudySpec, StudyState
from anneal.errors import InvalidSpec, NotFound, ResourceExhausted
from anneal.settings import Settings
from anneal.types import Deployment, DeploymentState
from anneal.v1 import anneal_pb2 as pb
from anneal.v1.anneal_pb2_grpc import AnnealServiceStub
from cluster.server.main import start_server
from cluster.server.security import server_security
from cluster.store.store import Store, now
from tests.integration.conftest import WATCH_STREAMS, Stack

pytestmark = pytest.mark.integration

SERVICE = "/anneal.v1.AnnealService/"
EVERY_CALL = {
    "CreateStudy": pb.CreateStudyRequest(),
    "GetStudy": pb.GetStudyRequest(study_id="st-0"),
    "ListStudies": pb.ListStudiesRequest(),
    "CancelStudy": pb.CancelStudyRequest(study_id="st-0"),
    "Deploy": pb.DeployRequest(study_id="st-0"),
    "GetDeployment": pb.GetDeploymentRequest(name="x"),
    "Rollback": pb.RollbackRequest(name="x"),
    "DeleteDeployment": pb.DeleteDeploymentRequest(name="x"),
    "ListDeployments": pb.ListDeploymentsRequest(),
    "Predict": pb.PredictRequest(deployment="x"),
    "ListTrainers": pb.ListTrainersRequest(),
}


def quick_spec(name: str, **changes: object) -> StudySpec:
    data: dict[str, object] = {
        "name": name,
        "trainer": "quadratic",
        "dataset": {"name": "iris"},
        "params": {"epochs": 200, "seconds_per_epoch": 0.1},
        "search_space": {"x": {"float": {"low": -1.0, "high": 1.0}}},
        "objective": {"metric": "loss", "mode": "min"},
        "budget": {"max_trials": 1, "max_concurrent_trials": 1},
    }
    data.update(changes)
    return StudySpec.parse(data)


def credentials(stack: Stack, *, stranger: bool) -> grpc.ChannelCredentials:
    """TLS without a client certificate, or with one of a CA the server does not trust."""
    tls = stack.certificates
    return grpc.ssl_channel_credentials(
        root_certificates=Path(tls.ca).read_bytes(),
        private_key=Path(tls.stranger.key).read_bytes() if stranger else None,
        certificate_chain=Path(tls.stranger.cert).read_bytes() if stranger else None,
    )


def call(channel: grpc.Channel, method: str, metadata: tuple[tuple[str, str], ...] = ()) -> grpc.StatusCode:
    request = EVERY_CALL[method]
    send = channel.unary_unary(SERVICE + method, request_serializer=type(request).SerializeToString)
    try:
        send(request, timeout=10, metadata=metadata)
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


@pytest.fixture(scope="module")
def alices_study(stack: Stack) -> Iterator[str]:
    """A running study of alice's, cancelled after the module."""
    with stack.client("alice") as client:
        study = client.create_study(quick_spec("it-access"))
        yield study.study_id
        client.cancel_study(study.study_id)


def test_without_a_valid_token_every_method_but_health_is_unauthenticated(stack: Stack) -> None:
    with stack.channel() as channel:
        for metadata in ((), (("authorization", "Bearer wrong"),), (("authorization", stack.tokens["alice"]),)):
            codes = {method: call(channel, method, metadata) for method in EVERY_CALL}
            assert set(codes.values()) == {grpc.StatusCode.UNAUTHENTICATED}, codes
        watch = AnnealServiceStub(channel).WatchStudy(pb.WatchStudyRequest(study_id="st-0"), timeout=10)
        with pytest.raises(grpc.RpcError) as refused:
            next(watch)
        assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("caller", ["plaintext", "no client certificate", "a certificate of another CA"])
def test_the_server_speaks_only_mutual_tls(stack: Stack, caller: str) -> None:
    if caller == "plaintext":
        channel = grpc.insecure_channel(stack.address)
    else:
        channel = grpc.secure_channel(stack.address, credentials(stack, stranger="another" in caller))
    with channel:
        code = call(channel, "ListStudies", stack.metadata("alice"))
    assert code is grpc.StatusCode.UNAVAILABLE


def test_a_server_with_tls_alone_serves_clients_without_certificates(stack: Stack, tmp_path: Path) -> None:
    """TLS and the tokens from settings, as `anneal serve` builds them, on the session's service."""
    tls = stack.certificates
    settings = Settings.load(
        home=tmp_path,
        grpc_address="127.0.0.1:0",
        tokens=stack.settings.tokens,
        tls_cert_file=tls.server.cert,
        tls_key_file=tls.server.key,
    )
    security = server_security(settings)
    assert security.credentials is not None and not security.mutual_tls
    server = start_server(stack.service, settings.grpc_address, security, tend_drivers=False)
    try:
        address = f"127.0.0.1:{server.port}"
        with Client(address, token=stack.tokens["bob"], ca_file=tls.ca) as bob:
            assert all(s.owner == "bob" for s in bob.list_studies())
        with grpc.insecure_channel(address) as plaintext:
            assert call(plaintext, "ListStudies", stack.metadata("bob")) is grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(grace_s=0)


def test_another_principals_study_is_not_found(stack: Stack, alices_study: str) -> None:
    with stack.client("bob") as bob:
        for attempt in (bob.get_study, bob.cancel_study, bob.deploy):
            with pytest.raises(NotFound, match=alices_study):
                attempt(alices_study)
        with pytest.raises(NotFound):
            next(bob.watch_study(alices_study))
        assert alices_study not in {s.study_id for s in bob.list_studies()}
    with stack.client("alice") as alice:
        assert alice.get_study(alices_study).owner == "alice"
        assert alices_study in {s.study_id for s in alice.list_studies()}


def test_an_admin_sees_every_principals_studies(stack: Stack, alices_study: str) -> None:
    with stack.client("admin") as admin:
        assert admin.get_study(alices_study).owner == "alice"
        assert alices_study in {s.study_id for s in admin.list_studies()}
        next(admin.watch_study(alices_study))


def test_another_principals_deployment_is_not_found(stack: Stack, alices_study: str) -> None:
    record = Deployment(
        owner="alice",
        name="it-access",
        study_id=alices_study,
        state=DeploymentState.FAILED,
        replicas=1,
        route="/models/alice/it-access",
        model_uri="/nowhere",
        updated_at=now().astimezone(timezone.utc),
        error="never deployed",
    )
    Store(stack.settings.store_url).put_deployment(record)
    with stack.client("bob") as bob:
        for name in ("it-access", "alice/it-access"):
            with pytest.raises(NotFound, match=f"no deployment '{name}'"):
                bob.get_deployment(name)
            with pytest.raises(NotFound, match=f"no deployment '{name}'"):
                bob.predict(name, [[0.0]])
            for call in (bob.rollback, bob.delete_deployment):
                with pytest.raises(NotFound, match=f"no deployment '{name}'"):
                    call(name)
        assert "it-access" not in {d.name for d in bob.list_deployments()}
    with stack.client("alice") as alice:
        assert alice.get_deployment("it-access") == record
    with stack.client("admin") as admin:
        assert admin.get_deployment("alice/it-access") == record
        assert ("alice", "it-access") in {(d.owner, d.name) for d in admin.list_deployments()}


def test_quotas_answer_resource_exhausted(stack: Stack) -> None:
    with stack.client("bob") as bob:
        with pytest.raises(ResourceExhausted, match="budget.max_concurrent_trials"):
            bob.create_study(quick_spec("it-quota-wide", budget={"max_trials": 3, "max_concurrent_trials": 3}))
        first = bob.create_study(quick_spec("it-quota-1"))
        try:
            with pytest.raises(ResourceExhausted, match="bob has 1 pending or running studies; the quota is 1"):
                bob.create_study(quick_spec("it-quota-2"))
        finally:
            bob.cancel_study(first.study_id)
        assert bob.get_study(first.study_id).state is StudyState.CANCELLED


def test_watch_streams_are_limited_per_principal(stack: Stack, alices_study: str) -> None:
    with stack.channel() as channel:
        stub = AnnealServiceStub(channel)
        metadata = stack.metadata("alice")
        request = pb.WatchStudyRequest(study_id=alices_study)
        streams = [stub.WatchStudy(request, metadata=metadata) for _ in range(WATCH_STREAMS)]
        for stream in streams:
            next(stream)  # each holds its slot on the server
        with pytest.raises(grpc.RpcError) as refused:
            next(stub.WatchStudy(request, metadata=metadata, timeout=5))
        assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        admins = stack.metadata("admin")
        assert next(stub.WatchStudy(request, metadata=admins, timeout=5)).study_id == alices_study
        streams[0].cancel()
        deadline = time.monotonic() + 10
        while True:  # the server notices the cancel and frees the slot
            try:
                next(stub.WatchStudy(request, metadata=metadata, timeout=5))
                break
            except grpc.RpcError as error:
                assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED and time.monotonic() < deadline
                time.sleep(0.2)
        for stream in streams:
            stream.cancel()


def test_a_trainer_is_named_from_the_registry_only(stack: Stack) -> None:
    with stack.client("alice") as alice:
        with pytest.raises(InvalidSpec, match="trainer: unknown trainer 'os:system'"):
            alice.create_study(quick_spec("it-import", trainer="os:system"))


@pytest.mark.parametrize("path", ["../../etc/passwd", "/etc/passwd", "http://example.com/x.csv", "s3://b/x.csv"])
def test_a_dataset_path_outside_the_data_roots_is_refused(stack: Stack, path: str) -> None:
    with stack.client("alice") as alice, pytest.raises(InvalidSpec, match="dataset.path"):
        alice.create_study(quick_spec("it-path", dataset={"name": "mine", "path": path}))


def listening_hosts(port: int) -> set[str]:
    """The addresses sockets listen on at `port`, from /proc/net/tcp and tcp6."""
    hosts = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                packed = bytes.fromhex(address)
                # /proc prints each 32-bit word in host (little-endian) order
                words = b"".join(packed[i : i + 4][::-1] for i in range(0, width // 2, 4))
                ip = ipaddress.ip_address(words)
                mapped = getattr(ip, "ipv4_mapped", None)
                hosts.add(str(mapped or ip))
    return hosts


def test_the_embedded_setup_listens_on_loopback_and_keeps_ray_token_auth(stack: Stack) -> None:
    settings = stack.settings
    dashboard = urllib.parse.urlsplit(settings.ray_dashboard_url)
    assert listening_hosts(dashboard.port or 0) == {"127.0.0.1"}  # the dashboard and its Jobs API
    assert listening_hosts(settings.serve_http_port) == {"127.0.0.1"}
    assert listening_hosts(stack.server.port) == {"127.0.0.1"}
    assert settings.mlflow_tracking_uri.startswith("sqlite:///")  # MLflow is a file: no port at all
    with pytest.raises(urllib.error.HTTPError) as refused:  # no Ray token, no job submission
        urllib.request.urlopen(f"{settings.ray_dashboard_url}/api/jobs/", timeout=10)
    assert refused.value.code in (401, 403)
