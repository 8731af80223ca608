"""`anneal up` / `anneal down`: the embedded setup on one machine.

`up` starts a Ray head (its own temp dir and ports, all on loopback, token
authentication on) and the gRPC server, each in its own session (`cluster.local.sessions`),
and records their process ids under ANNEAL_HOME. `down` stops exactly those sessions.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from anneal.settings import CLUSTER_FILE, Settings
from cluster.environment import child_env
from cluster.local.sessions import group_alive, spawn, stop_group
from cluster.server.privatefile import tighten

LOOPBACK = "127.0.0.1"
START_TIMEOUT_S = 120.0
# The server drains its calls within its 5 s grace period. Ray's daemons (GCS, raylet, Serve's
# actors) do not exit on SIGTERM within seconds, and nothing of anneal's lives only in them,
# so they get SIGKILL sooner.
SERVER_STOP_S = 30.0
RAY_STOP_S = 5.0
TAIL_LINES = 20  # of a log, in the error of a process that exited during start-up


@dataclass
class LocalCluster:
    ray_pid: int
    server_pid: int
    ray_address: str
    ray_dashboard_url: str
    grpc_address: str
    serve_http_port: int
    ray_temp_dir: str
    metrics_port: int = 0  # the server's Prometheus endpoint; 0 in a file written before it had one


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports (all held open while they are picked)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((LOOPBACK, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def ray_temp_dir(home: Path) -> str:
    # Ray's socket paths must stay under the 107-byte limit: keep the dir short.
    digest = hashlib.sha256(str(home).encode()).hexdigest()[:10]
    return os.path.join(tempfile.gettempdir(), f"anneal-ray-{digest}")


def read_cluster(home: Path) -> LocalCluster | None:
    path = home / CLUSTER_FILE
    if not path.exists():
        return None
    return LocalCluster(**json.loads(path.read_text()))


def up(settings: Settings, *, log: Callable[[str], object] = print) -> LocalCluster:
    """Starts Ray and the gRPC server unless this ANNEAL_HOME has them running already."""
    home = settings.home
    home.mkdir(mode=0o700, parents=True, exist_ok=True)  # its tokens and stores are the user's alone
    existing = read_cluster(home)
    if existing and group_alive(existing.ray_pid) and group_alive(existing.server_pid):
        log(f"already up: gRPC {existing.grpc_address}, Ray dashboard {existing.ray_dashboard_url}")
        return existing
    if existing:
        down(settings, log=log)
    from cluster.server.security import server_security

    server_security(settings)  # an address the server would refuse fails here, before Ray starts
    cluster, configured, dashboard_port = plan_cluster(settings)
    cluster.ray_pid = start_ray(configured, cluster, dashboard_port, log)
    _write(home, cluster)
    log(f"starting the anneal gRPC server at {cluster.grpc_address}")
    server = [sys.executable, "-m", "cluster.local.cli", "serve", "--reflection"]
    server_log = StartLog.before_start(home / "logs" / "server.log")
    cluster.server_pid = spawn(server, child_env(configured), server_log.path)
    _write(home, cluster)
    if settings.tls_cert_file:  # the health check would need the server's CA and a client certificate
        _wait_for_port(cluster.grpc_address, cluster.server_pid, server_log)
    else:
        _wait_for_health(cluster.grpc_address, cluster.server_pid, server_log)
    return cluster


def start_ray(settings: Settings, cluster: LocalCluster, dashboard_port: int, log: Callable[[str], object]) -> int:
    """Starts the Ray head with `settings` in its environment (its jobs inherit them); returns its session id."""
    env = child_env(settings, secrets=False)
    ensure_ray_token(env)
    log(f"starting Ray head at {cluster.ray_address} (dashboard {cluster.ray_dashboard_url})")
    (settings.home / "logs").mkdir(parents=True, exist_ok=True)
    command = _ray_start_command(cluster, settings.num_cpus, settings.num_gpus, dashboard_port)
    if settings.object_store_mb:
        command.append(f"--object-store-memory={settings.object_store_mb * 1024 * 1024}")
    ray_log = StartLog.before_start(settings.home / "logs" / "ray.log")
    pid = spawn(command, env, ray_log.path)
    try:
        _wait_for_ray(cluster.ray_dashboard_url, pid, ray_log)
    except BaseException:
        stop_group(pid, RAY_STOP_S)
        raise
    return pid


def plan_cluster(settings: Settings) -> tuple[LocalCluster, Settings, int]:
    """Free loopback ports for a new local cluster, and the settings that point at it."""
    gcs_port, dashboard_port = free_port(), free_port()
    serve_port = _port_or_free(settings.serve_http_port)
    metrics_port = _port_or_free(settings.metrics_port)
    host, _, grpc_port = settings.grpc_address.rpartition(":")
    grpc_address = settings.grpc_address
    if int(grpc_port) == 0 or not port_is_free(int(grpc_port)):
        grpc_address = f"{host}:{free_port()}"
    cluster = LocalCluster(
        ray_pid=0,
        server_pid=0,
        ray_address=f"{LOOPBACK}:{gcs_port}",
        ray_dashboard_url=f"http://{LOOPBACK}:{dashboard_port}",
        grpc_address=grpc_address,
        serve_http_port=serve_port,
        ray_temp_dir=ray_temp_dir(settings.home),
        metrics_port=metrics_port,
    )
    configured = settings.model_copy(
        update={
            "ray_address": cluster.ray_address,
            "ray_dashboard_url": cluster.ray_dashboard_url,
            "grpc_address": grpc_address,
            "serve_http_port": serve_port,
            "metrics_port": metrics_port,
        }
    )
    return cluster, configured, dashboard_port


def _port_or_free(wanted: int) -> int:
    """`wanted` when it is set and free on loopback, else a free port."""
    return wanted if wanted and port_is_free(wanted) else free_port()


def ensure_ray_token(env: dict[str, str]) -> None:
    """Token authentication stays on: creates Ray's local token (~/.ray/auth_token) if there is
    none yet, and keeps it readable by its owner only. It stays where Ray looks by default, so
    every `ray` command, Ray job and script of this user finds it with nothing set."""
    path = ray_token_path(env)
    if path is None:
        return  # the token is in the environment itself
    if not (path.is_file() and path.stat().st_size):
        ray = os.path.join(os.path.dirname(sys.executable), "ray")
        # Ray writes a new token with a plain open(), as the umask lets it (0644 as a rule): with
        # 077 it is private from its first byte on (a new ~/.ray 0700), not after a chmod.
        subprocess.run([ray, "get-auth-token", "--generate"], env=env, check=True, capture_output=True, umask=0o077)
    tighten(path, "Ray's token")  # one made before, by Ray or by hand


def ray_token_path(env: Mapping[str, str]) -> Path | None:
    """The file Ray's token loader reads in `env`: RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token
    under env's HOME; None when the token is RAY_AUTH_TOKEN itself."""
    if env.get("RAY_AUTH_TOKEN"):
        return None
    if env.get("RAY_AUTH_TOKEN_PATH"):
        return Path(env["RAY_AUTH_TOKEN_PATH"])
    home = env.get("HOME")
    return (Path(home) if home else Path.home()) / ".ray" / "auth_token"


def _ray_start_command(cluster: LocalCluster, num_cpus: int, num_gpus: int, dashboard_port: int) -> list[str]:
    ray = os.path.join(os.path.dirname(sys.executable), "ray")
    client, agent_http, agent_grpc, runtime_env_agent, metrics = free_ports(5)
    command = [
        ray, "start", "--head", "--block",
        f"--port={cluster.ray_address.rsplit(':', 1)[1]}",
        f"--node-ip-address={LOOPBACK}",
        f"--dashboard-host={LOOPBACK}",
        f"--dashboard-port={dashboard_port}",
        f"--ray-client-server-port={client}",
        # Ray's fixed defaults for these would clash with another cluster on this machine
        # (another ANNEAL_HOME, a user's own Ray): its head would start with no job agent.
        f"--dashboard-agent-listen-port={agent_http}",
        f"--dashboard-agent-grpc-port={agent_grpc}",
        f"--runtime-env-agent-port={runtime_env_agent}",
        f"--metrics-export-port={metrics}",
        f"--temp-dir={cluster.ray_temp_dir}",
        "--include-dashboard=true",
        "--disable-usage-stats",
    ]  # fmt: skip
    if num_cpus:
        command.append(f"--num-cpus={num_cpus}")
    if num_gpus >= 0:
        command.append(f"--num-gpus={num_gpus}")
    return command


def _write(home: Path, cluster: LocalCluster) -> None:
    path = home / CLUSTER_FILE
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(asdict(cluster), indent=2))
    temporary.replace(path)


@dataclass(frozen=True)
class StartLog:
    """What a process `up` starts writes to its log: the file's end when it started (each start
    appends to the file), so an error can quote this start's own lines."""

    path: Path
    offset: int

    @classmethod
    def before_start(cls, path: Path) -> StartLog:
        return cls(path, path.stat().st_size if path.exists() else 0)

    def exited(self, what: str) -> RuntimeError:
        """The error for `what` exiting during start-up, with the last lines it wrote."""
        try:
            with open(self.path, "rb") as log_file:
                log_file.seek(self.offset)
                written = log_file.read().decode(errors="replace").strip().splitlines()
        except OSError:
            written = []
        tail = "\n".join(written[-TAIL_LINES:]) or "(it wrote nothing)"
        return RuntimeError(f"{what} exited during start-up; the end of {self.path}:\n{tail}")


def _wait_for_ray(dashboard_url: str, pid: int, ray_log: StartLog) -> None:
    from ray.job_submission import JobSubmissionClient

    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if not group_alive(pid):
            raise ray_log.exited("the Ray head")
        try:
            JobSubmissionClient(dashboard_url).list_jobs()
            return
        except Exception as error:
            if time.monotonic() > deadline:
                raise TimeoutError(f"Ray did not come up within {START_TIMEOUT_S:.0f} s: {error}") from None
            time.sleep(1.0)


def _wait_for_server(ready: Callable[[], bool], pid: int, server_log: StartLog) -> None:
    """Until `ready()`; fails when the server's process group ends or START_TIMEOUT_S passes."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if not group_alive(pid):
            raise server_log.exited("the anneal server")
        if ready():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the anneal server did not answer within {START_TIMEOUT_S:.0f} s")
        time.sleep(0.5)


def _wait_for_health(address: str, pid: int, server_log: StartLog) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)

        def serving() -> bool:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
            except grpc.RpcError:
                return False
            return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

        _wait_for_server(serving, pid, server_log)


def _wait_for_port(address: str, pid: int, server_log: StartLog) -> None:
    host, _, port = address.rpartition(":")

    def listening() -> bool:
        try:
            socket.create_connection((host.strip("[]") or LOOPBACK, int(port)), timeout=2).close()
        except OSError:
            return False
        return True

    _wait_for_server(listening, pid, server_log)


def down(settings: Settings, *, log: Callable[[str], object] = print) -> None:
    """Stops the server, then Ray, that `up` started for this ANNEAL_HOME."""
    cluster = read_cluster(settings.home)
    if cluster is None:
        log("nothing to stop")
        return
    for name, pid, timeout_s in (
        ("anneal server", cluster.server_pid, SERVER_STOP_S),
        ("Ray head", cluster.ray_pid, RAY_STOP_S),
    ):
        if pid and group_alive(pid):
            log(f"stopping {name} (session {pid})")
            stop_group(pid, timeout_s)
    (settings.home / CLUSTER_FILE).unlink(missing_ok=True)
