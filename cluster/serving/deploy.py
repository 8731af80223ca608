"""Ray Serve's side of a deployment: the application of an owner's deployment and its route, a
model version run on it (a rollout starts the new replicas before the old ones stop), what Serve
reports of it, and its removal."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ray import serve

from anneal.spec import DeployPolicy
from cluster.serving.replica import ModelServer

SERVE_DEPLOYMENT = "ModelServer"
# A rollout starts every new replica before any old one stops. Serve's default stops old
# replicas first, which leaves a deployment of one replica with none while the new model loads.
ROLLOUT_SURGE_PERCENT = 100
# Handles tell Serve's autoscaler their requests in flight every `metrics_interval_s` (10 s
# by default; Ray 2.60's handles read it from here, though Serve marks it deprecated), and
# it averages over `look_back_period_s` (30 s): a load step would go unseen for that long.
METRICS_INTERVAL_S = 1.0
LOOK_BACK_PERIOD_S = 5.0
GONE = "NOT_FOUND"  # the status of an application Serve does not have


def app_name(owner: str, name: str) -> str:
    """The Serve application of `owner`'s deployment `name` (names are unique per owner; neither
    holds a dot)."""
    return f"{owner}.{name}" if owner else name


def route_for(owner: str, name: str) -> str:
    return f"/models/{owner}/{name}" if owner else f"/models/{name}"


def run_model(owner: str, name: str, model_uri: str, tracking_uri: str, policy: DeployPolicy, http_port: int) -> None:
    """Serves `model_uri` as `owner`'s `name`, starting the application or rolling it over to
    this model; returns once Serve reports it running."""
    serve.start(http_options={"host": "127.0.0.1", "port": http_port})
    options = {"max_surge_percent": ROLLOUT_SURGE_PERCENT, **scaling_options(policy)}
    app = ModelServer.options(**options).bind(model_uri, tracking_uri)  # type: ignore[attr-defined]
    serve.run(app, name=app_name(owner, name), route_prefix=route_for(owner, name))


def scaling_options(policy: DeployPolicy) -> dict[str, Any]:
    """A fixed number of replicas, or Serve's autoscaling (which refuses a number with it)."""
    scaling = policy.autoscaling()
    if scaling is None:
        return {"num_replicas": policy.replicas}
    timing = {"metrics_interval_s": METRICS_INTERVAL_S, "look_back_period_s": LOOK_BACK_PERIOD_S}
    return {"autoscaling_config": {**scaling.model_dump(), **timing}}


@dataclass(frozen=True)
class ServeReport:
    """What Serve says of a deployment's application now."""

    status: str  # ApplicationStatus (RUNNING, DEPLOYING, UNHEALTHY, ...), or GONE
    message: str
    running: int  # replicas running
    wanted: int  # replicas Serve aims for: the fixed number or autoscaling's current target


Applications = dict[str, dict[str, Any]]  # the Serve controller's details of each application, by name


def serve_applications() -> Applications | None:
    """What the Serve controller reports of each application, by name; None in a process not
    connected to Ray (the server always is), which asks nothing."""
    import ray

    if not ray.is_initialized():
        return None
    # `serve.status()` reads the same details, less each deployment's target replicas.
    client = serve.context._get_global_client(raise_if_no_controller_running=False)
    details: dict[str, Any] = client.get_serve_details() if client is not None else {}
    return details.get("applications", {})


def serve_report(owner: str, name: str, applications: Applications | None = None) -> ServeReport:
    """What Serve reports of the application of `owner`'s `name`: from `applications`, else
    asked of the controller."""
    if applications is None:
        applications = serve_applications()
    if applications is None:
        return ServeReport("", "", 0, 0)
    app = applications.get(app_name(owner, name))
    if app is None:
        return ServeReport(GONE, "its Serve application is gone", 0, 0)
    deployment = app.get("deployments", {}).get(SERVE_DEPLOYMENT, {})
    running = sum(1 for replica in deployment.get("replicas", []) if replica.get("state") == "RUNNING")
    message = app.get("message") or deployment.get("message") or ""
    status = app.get("status", "")
    status = str(getattr(status, "value", status))  # Serve's details hold its status enums
    return ServeReport(status, message, running, int(deployment.get("target_num_replicas", 0)))


def delete_app(owner: str, name: str) -> None:
    """Removes the application, if Serve has it; returns once its replicas are gone (their CPUs
    free)."""
    if app_name(owner, name) in serve.status().applications:
        serve.delete(app_name(owner, name))
