"""What every process anneal starts on the cluster shares: the environment it hands to its
children and Ray jobs, and its connection to Ray."""

from __future__ import annotations

import logging
import os
import sys

from anneal.settings import SECRET_ENV, Settings

# Ray's usage stats and MLflow's telemetry phone home by default; anneal's processes do not.
NO_TELEMETRY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_DISABLE_TELEMETRY": "true"}
# The clusters anneal starts and talks to keep Ray's token authentication on.
RAY_TOKEN_ENV = {"RAY_AUTH_MODE": "token"}
# Ray Train, inside data-parallel trials (it hands these on to its controller): the controller
# looks at its workers every 0.25 s, not every 2 s, so a trial's start and end are seen sooner;
# and it starts no preemption watcher, one more actor process per trial for a feature anneal
# does not use.
RAY_TRAIN_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.25", "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0"}


def child_env(settings: Settings, *, secrets: bool = True) -> dict[str, str]:
    """The environment of the processes `anneal up` starts: the venv first on PATH, settings, Ray
    token auth. Without `secrets` (Ray, whose workers and jobs inherit it), no anneal token or principal."""
    env = {k: v for k, v in os.environ.items() if secrets or k not in SECRET_ENV}
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    env.update(settings.to_env(secrets=secrets))
    env.update(RAY_TOKEN_ENV)
    env.update(NO_TELEMETRY_ENV)
    return env


def job_env(settings: Settings) -> dict[str, str]:
    """The environment variables of a study driver's Ray job: the settings without secrets
    (the Jobs API shows a job's environment), Ray token auth, no telemetry, Ray Train's pace.
    Every setting is named, empty ones too: a job inherits the environment its cluster was
    started with (perhaps another server's settings), and an empty `ANNEAL_MLFLOW_ARTIFACT_ROOT`
    (a tracking server's own artifact store) must replace that cluster's folder, not fall back
    to it."""
    return {**settings.to_env(), **RAY_TOKEN_ENV, **NO_TELEMETRY_ENV, **RAY_TRAIN_ENV}


def connect_ray(settings: Settings) -> None:
    """Joins the settings' Ray cluster (a driver job joins its own), once per process."""
    import ray

    if not ray.is_initialized():
        ray.init(address=settings.ray_address or "auto", log_to_driver=False, logging_level=logging.WARNING)
