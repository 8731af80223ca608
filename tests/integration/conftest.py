"""One local Ray cluster for the whole integration session, and a real gRPC server on port 0
with its metrics endpoint on another free loopback port.

The Ray head is started the way `anneal up` starts it (own temp dir, loopback
ports, token authentication on) under a temporary ANNEAL_HOME, and stopped at
the end of the session: only the processes this session started are stopped.
The server speaks mutual TLS and knows four principals: alice, bob, admin and fuzz.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from anneal import Client, StudySpec
from anneal.settings import Settings
from cluster.local.cluster import RAY_STOP_S, LocalCluster, plan_cluster, start_ray
from cluster.local.sessions import stop_group
from cluster.server.main import RunningServer, build_service, start_server
from cluster.server.principals import Principal, TokensFile, hash_token, new_token
from cluster.server.security import server_security
from cluster.server.service import AnnealService
from tests.guide import shell_commands
from tests.tls import Certificates, make_certificates
from trainers.registry import catalog

REPO = Path(__file__).resolve().parents[2]
WATCH_STREAMS = 4  # per principal, lower than the default so the limit is cheap to reach
# Logical GPUs on a CPU-only machine: Ray places trials on them and gives out their ids, so
# fractional-GPU packing is tested here; the CPU build of torch keeps the work on the CPU.
TEST_GPUS = 2
# A small object store: a table dataset several times its size must stream through it.
OBJECT_STORE_MB = 256
PRINCIPALS: dict[str, dict[str, Any]] = {
    "alice": {},
    "bob": {"max_concurrent_studies": 1, "max_concurrent_trials": 2},  # quotas are tested with him
    "admin": {"admin": True},
    "fuzz": {"max_concurrent_studies": 0},  # a valid spec it sends starts nothing
}


@dataclass
class Stack:
    settings: Settings  # tokens in `settings.tokens`; no TLS, for the `anneal serve` processes tests start
    cluster: LocalCluster
    server: RunningServer
    address: str
    tokens: dict[str, str]  # principal -> token
    certificates: Certificates
    service: AnnealService
    installed_with: str  # the guide's command that installed the example trainer package

    @property
    def metrics_port(self) -> int:
        """Where the session's server answers Prometheus scrapes (HTTP, 127.0.0.1)."""
        assert self.server.metrics is not None
        return self.server.metrics.port

    def channel(self) -> grpc.Channel:
        """A raw mutual-TLS channel to the session's server; calls need `metadata(...)`."""
        tls = self.certificates
        credentials = grpc.ssl_channel_credentials(
            Path(tls.ca).read_bytes(), Path(tls.client.key).read_bytes(), Path(tls.client.cert).read_bytes()
        )
        return grpc.secure_channel(self.address, credentials)

    def metadata(self, principal: str = "alice") -> tuple[tuple[str, str]]:
        return (("authorization", f"Bearer {self.tokens[principal]}"),)

    def client(self, principal: str = "alice", address: str = "", **changes: float) -> Client:
        """A client of the session's mutual-TLS server (or, with `address`, of a plaintext one)."""
        token = self.tokens[principal]
        if address:
            return Client(address, token=token, **changes)
        tls = self.certificates
        return Client(
            self.address, token=token, ca_file=tls.ca, cert_file=tls.client.cert, key_file=tls.client.key, **changes
        )


def _principals() -> tuple[dict[str, str], str]:
    tokens = {name: new_token() for name in PRINCIPALS}
    listed = [Principal(name=n, token_sha256=hash_token(tokens[n]), **extra) for n, extra in PRINCIPALS.items()]
    return tokens, TokensFile(principals=listed).model_dump_json()


def install_trainer_package(site: Path) -> str:
    """Installs the example trainer package with the guide's command into `site`, which every
    process of the session's cluster (and this one, which runs the server) imports from: the
    guide installs into the cluster's environment, and the developer's stays as it was."""
    (command,) = [c for c in shell_commands() if c.startswith("pip install ")]
    here = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]
    subprocess.run([*here, "--target", str(site), *shlex.split(command)[2:]], cwd=REPO, check=True)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    sys.path.insert(0, str(site))
    catalog.cache_clear()
    return command


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    home = Path(tempfile.mkdtemp(prefix="anneal-it-"))
    installed = install_trainer_package(home / "site")
    tokens, listed = _principals()
    certificates = make_certificates(home / "tls")
    base = Settings.load(
        home=home,
        grpc_address="127.0.0.1:0",
        serve_http_port=0,
        tokens=listed,
        max_watch_streams=WATCH_STREAMS,
        num_gpus=TEST_GPUS,
        object_store_mb=OBJECT_STORE_MB,
    )
    cluster, settings, dashboard_port = plan_cluster(base)
    # Every server a test starts, this one's included, picks a free port for its metrics.
    settings = settings.model_copy(update={"metrics_port": 0})
    cluster.ray_pid = start_ray(settings, cluster, dashboard_port, log=lambda _: None)
    server = None
    try:
        tls = {"tls_cert_file": certificates.server.cert, "tls_key_file": certificates.server.key}
        security = server_security(settings.model_copy(update={**tls, "tls_ca_file": certificates.ca}))
        assert security.mutual_tls
        service = build_service(settings)
        metrics_address = (settings.metrics_host, settings.metrics_port)
        server = start_server(service, "127.0.0.1:0", security, reflection_on=True, metrics_address=metrics_address)
        address = f"127.0.0.1:{server.port}"
        yield Stack(settings, cluster, server, address, tokens, certificates, service, installed)
    finally:
        if server is not None:
            server.stop(grace_s=1)
        import ray

        ray.shutdown()
        stop_group(cluster.ray_pid, RAY_STOP_S)
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(cluster.ray_temp_dir, ignore_errors=True)


def settings_beside(stack: Stack, home: Path, **changes: Any) -> Settings:
    """Settings of another anneal server on the session's Ray cluster, Serve and principals: its
    own home, under which its store, MLflow and Tune storage lie unless `changes` name others."""
    own: dict[str, Any] = {
        "home": home,
        "store_url": "",
        "mlflow_tracking_uri": "",
        "mlflow_artifact_root": "",
        "tune_storage": "",
        "data_roots": [],
    }
    return stack.settings.model_copy(update={**own, **changes}).with_defaults()


@contextmanager
def server_beside(settings: Settings) -> Iterator[str]:
    """Another plaintext loopback server on the session's cluster, with `settings`; yields its
    address. It keeps no standby driver (its keeper does not run): each of its studies gets a Ray
    job of its own, so nothing of it outlives its studies."""
    settings.home.mkdir(mode=0o700, parents=True, exist_ok=True)  # as `anneal up` makes it
    service = build_service(settings)
    server = start_server(service, "127.0.0.1:0", server_security(settings), tend_drivers=False)
    try:
        yield f"127.0.0.1:{server.port}"
    finally:
        server.stop(grace_s=1)


def remove_serve_app(stack: Stack, name: str, owner: str = "alice") -> None:
    """Deletes a test's Serve application: each replica holds CPU the later tests' trials need."""
    import ray
    from ray import serve

    from cluster.serving.deploy import app_name

    if not ray.is_initialized():
        ray.init(address=stack.settings.ray_address, log_to_driver=False)
    serve.delete(app_name(owner, name))


@pytest.fixture
def serve_apps(stack: Stack) -> Iterator[list[str]]:
    """Names of alice's deployments the test makes, whose Serve applications are deleted after it."""
    names: list[str] = []
    yield names
    for name in names:
        remove_serve_app(stack, name)


PYFUNC_PREDICT = """
import json, sys
import mlflow, numpy as np
model = mlflow.pyfunc.load_model(sys.argv[1])
examples = np.asarray(json.load(sys.stdin), dtype=np.float32)
records = model.predict(examples).to_dict(orient="records")
print(json.dumps(records, default=lambda value: value.tolist()))  # numpy values, exactly
"""


def pyfunc_answers(stack: Stack, model: str, version: int, examples: list[Any]) -> list[dict[str, Any]]:
    """What `mlflow.pyfunc.load_model("models:/<model>/<version>")` answers for `examples`, in a
    fresh process that knows only the tracking URI (and refuses pickles, as anneal does). The
    session's PYTHONPATH holds the example trainer package, as a user's environment would."""
    import json

    environment = {
        **os.environ,
        "MLFLOW_TRACKING_URI": stack.settings.mlflow_tracking_uri,
        "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false",
    }
    done = subprocess.run(
        [sys.executable, "-c", PYFUNC_PREDICT, f"models:/{model}/{version}"],
        input=json.dumps(examples),
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answers: list[dict[str, Any]] = json.loads(done.stdout.strip().splitlines()[-1])
    return answers


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
