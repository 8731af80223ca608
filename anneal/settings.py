"""One settings object for every anneal process.

Read from flags (passed as overrides), `ANNEAL_*` environment variables, and the
file `anneal up` writes under `ANNEAL_HOME` (`cluster.json`: where the running
local cluster listens). Nothing else in anneal reads the environment; this
object is passed down explicitly.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

CLUSTER_FILE = "cluster.json"
# The development token a server with no tokens configured writes under home, and clients on this machine send.
DEV_TOKEN_FILE = "dev-token"
# Settings that stay out of Ray, whose job environments the Jobs API shows.
SECRET_FIELDS = frozenset({"token", "tokens"})
SECRET_ENV = frozenset(f"ANNEAL_{name.upper()}" for name in SECRET_FIELDS)
# Tracking URIs MLflow serves through its REST client: a server with an artifact store of its own.
TRACKING_SERVER_SCHEMES = frozenset({"http", "https", "databricks"})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ANNEAL_", extra="ignore")

    home: Path = Field(Path.home() / ".anneal", description="Where the embedded setup keeps its state.")
    grpc_address: str = Field("127.0.0.1:50051", description="Where the gRPC server listens / clients connect.")
    store_url: str = Field("", description="SQLAlchemy URL of the store; default SQLite under home.")
    mlflow_tracking_uri: str = Field("", description="MLflow tracking URI; default SQLite under home.")
    mlflow_artifact_root: str = Field(
        "",
        description="Where MLflow keeps each study's artifacts (the model package), under <root>/<study id>. "
        "Default: the tracking server's own artifact store when mlflow_tracking_uri names a server (http, https "
        "or databricks; run `mlflow server --serve-artifacts` so every node reaches it through the server), else "
        "home/mlartifacts, which only this node reaches.",
    )
    tune_storage: str = Field("", description="Ray Tune storage path; default home/experiments.")
    ray_address: str = Field("", description="GCS address of the Ray cluster (host:port).")
    ray_dashboard_url: str = Field("", description="Ray dashboard / Jobs API URL.")
    serve_http_port: int = Field(8000, description="Port of Ray Serve's HTTP proxy (loopback).")
    metrics_port: int = Field(
        50052,
        ge=0,
        le=65535,
        description="Port of the server's Prometheus metrics (HTTP, /metrics, no authentication); 0 picks a free one.",
    )
    metrics_host: str = Field(
        "127.0.0.1",
        description="Where the metrics endpoint listens; loopback unless set (it answers anyone who reaches it).",
    )
    reflection: bool = Field(False, description="Serve gRPC reflection.")
    num_cpus: int = Field(0, ge=0, description="CPUs the local Ray head offers; 0 means all.")
    num_gpus: int = Field(
        -1, ge=-1, description="GPUs the local Ray head offers; -1 means those it finds. More than it has are logical."
    )
    object_store_mb: int = Field(
        0,
        ge=0,
        description="Shared memory of the local Ray head's object store, in MiB; 0 leaves Ray's default (30% of "
        "the memory). Table datasets stream through it, so it bounds their memory, not their size.",
    )
    standby_drivers: int = Field(
        1,
        ge=0,
        description="Study drivers the server keeps started and idle, so a new study skips a Ray job's start-up.",
    )
    driver_restarts: int = Field(
        3,
        ge=0,
        description="How often the server starts a study's driver again, resuming the study from Tune's last "
        "snapshot, after the driver died (killed, its node or the cluster lost); past that the study fails.",
    )
    warm_trial_workers: int = Field(
        8,
        ge=0,
        description="Trial worker processes a standby driver starts ahead of its study, one per CPU, its own node "
        "first, with torch and the trainers imported, so trials skip a worker's start-up; 0 turns it off.",
    )

    # -- access (SECURITY.md)
    tokens_file: str = Field(
        "",
        description="JSON file of principals with the SHA-256 of their tokens (`anneal token add` writes it); "
        "default home/tokens.json when it exists. With neither it nor `tokens`, the server makes a local "
        "development token (home/dev-token, mode 0600) for one admin principal, and listens on loopback only.",
    )
    tokens: str = Field("", description="More principals, as the JSON the tokens file holds (ANNEAL_TOKENS).")
    token: str = Field(
        "",
        repr=False,
        description="The bearer token a client sends; default home/dev-token when it exists and the "
        "server's address is loopback.",
    )
    tls_cert_file: str = Field("", description="This side's certificate chain (PEM): the server's, or a client's.")
    tls_key_file: str = Field("", description="The private key (PEM) of tls_cert_file.")
    tls_ca_file: str = Field(
        "",
        description="CA certificates (PEM) that verify the other side. On a client: the server's CA. On the "
        "server: setting it requires every client to present a certificate it signed (mutual TLS).",
    )
    insecure: bool = Field(
        False,
        description="Let the server listen on a non-loopback address without TLS and configured tokens "
        "(it logs a warning). Never needed on loopback.",
    )
    audit_file: str = Field(
        "",
        description="Where the server appends its audit log: one JSON line per state-changing call (who, what, "
        "which study or deployment, the status code, when), created with mode 0600; default home/audit.log.",
    )
    data_roots: list[str] = Field(
        default_factory=list,
        description="Directories a spec's dataset.path may read from (JSON list in ANNEAL_DATA_ROOTS); "
        "default [home/data].",
    )
    # -- limits, each answered with INVALID_ARGUMENT or RESOURCE_EXHAUSTED and a message
    max_request_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="Largest gRPC request the server reads.")
    max_spec_bytes: int = Field(64 * 1024, ge=1024, description="Largest study spec, in its wire encoding.")
    max_search_space_params: int = Field(32, ge=1, description="Most parameters one search space tunes.")
    max_categorical_choices: int = Field(256, ge=2, description="Most choices of one categorical parameter.")
    max_trials: int = Field(10_000, ge=1, description="Largest budget.max_trials of one study.")
    max_predict_rows: int = Field(10_000, ge=1, description="Most rows in one Predict call.")
    max_replicas: int = Field(8, ge=1, description="Most Serve replicas of one deployment.")
    max_watch_streams: int = Field(8, ge=1, description="Open WatchStudy streams per principal.")
    max_concurrent_studies: int = Field(
        8, ge=0, description="Default quota: pending or running studies per principal (a principal may set its own)."
    )
    max_concurrent_trials: int = Field(
        32,
        ge=0,
        description="Default quota: the sum of budget.max_concurrent_trials over a principal's pending or "
        "running studies (a principal may set its own).",
    )

    @classmethod
    def load(cls, **overrides: Any) -> Settings:
        """Environment, then the running cluster's file, then explicit overrides (flags)."""
        given = {key: value for key, value in overrides.items() if value is not None}
        settings = cls(**given)
        cluster_file = settings.home / CLUSTER_FILE
        if cluster_file.exists():
            recorded = json.loads(cluster_file.read_text())
            for key in ("grpc_address", "ray_address", "ray_dashboard_url", "serve_http_port", "metrics_port"):
                if key not in given and key not in settings.model_fields_set and key in recorded:
                    setattr(settings, key, recorded[key])
        return settings.with_defaults()

    def with_defaults(self) -> Settings:
        home = self.home.expanduser().resolve()
        tracking_uri = self.mlflow_tracking_uri or f"sqlite:///{home / 'mlflow.db'}"
        return self.model_copy(
            update={
                "home": home,
                "store_url": self.store_url or f"sqlite:///{home / 'anneal.db'}",
                "mlflow_tracking_uri": tracking_uri,
                "mlflow_artifact_root": self.mlflow_artifact_root or default_artifact_root(home, tracking_uri),
                "tune_storage": self.tune_storage or str(home / "experiments"),
                "data_roots": self.data_roots or [str(home / "data")],
            }
        )

    def to_env(self, *, secrets: bool = False) -> dict[str, str]:
        """The settings as `ANNEAL_*` variables, to hand to a child process; without `secrets`
        (Ray, whose job environments the Jobs API shows), the client token and the principals stay out."""
        values = self.model_dump(mode="json", exclude=None if secrets else set(SECRET_FIELDS))
        return {f"ANNEAL_{key.upper()}": _env_value(value) for key, value in values.items()}


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def is_tracking_server(tracking_uri: str) -> bool:
    """Whether MLflow reaches `tracking_uri` through a tracking server's REST API (http, https,
    databricks or databricks://profile) rather than opening a database or folder itself."""
    scheme = tracking_uri.strip().partition(":")[0].lower()
    return scheme in TRACKING_SERVER_SCHEMES


def default_artifact_root(home: Path, tracking_uri: str) -> str:
    """Where artifacts go when no root is set: "" (each experiment takes the tracking server's
    default, which every node reaches through the server) for a server; else a folder under
    home, since a database or folder tracking store has no artifact store of its own."""
    return "" if is_tracking_server(tracking_uri) else str(home / "mlartifacts")


def is_loopback(address: str) -> bool:
    """Whether `host:port` names this machine only (127.0.0.0/8, ::1, localhost); a wildcard
    such as 0.0.0.0 or a host name is not."""
    host = address.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
