"""The versions of a deployment: which model it serves and which it served before, rolled out on
Ray Serve without a gap, recorded in the store, and named in the MLflow registry.

Every model a deployment serves is a version of its own registered model, named like its Serve
application (`<owner>.<name>`; a study deployed under its own name registered its model there
already). Its aliases follow each change: `champion` on the version served, `previous` on the
one before. The server (Deploy, Rollback, DeleteDeployment) and a study's driver
(`deploy.auto`) share this code.
"""

from __future__ import annotations

import logging
import time

from mlflow.exceptions import MlflowException

from anneal.errors import FailedPrecondition, NotFound
from anneal.settings import Settings
from anneal.spec import DeployPolicy
from anneal.types import Deployment, DeploymentState, ModelVersion, Study, StudyState
from cluster.serving.deploy import (
    GONE,
    Applications,
    app_name,
    delete_app,
    route_for,
    run_model,
    serve_report,
)
from cluster.serving.package import check_model_package
from cluster.store.store import Store, now
from cluster.tracking.registry import ModelRegistry

log = logging.getLogger("anneal.deploy")
LIVE_STATES = (DeploymentState.RUNNING, DeploymentState.DEPLOYING)
# A DEPLOYING record older than this was left by a process that died mid-rollout: it no
# longer holds the next rollout or undeploy off.
STALE_ROLLOUT_S = 600.0
# How long a Deploy, Rollback or undeploy waits for a rollout under way to end before it is
# refused: a Deploy just after a study's deploy.auto simply follows it.
ROLLOUT_WAIT_S = 120.0


def study_version(study: Study) -> ModelVersion:
    """The best model of a study that succeeded."""
    if study.state is not StudyState.SUCCEEDED or not study.model_uri:
        raise FailedPrecondition(
            f"study {study.study_id} is {study.state.value}; only a SUCCEEDED study can be deployed"
        )
    return ModelVersion(
        study_id=study.study_id,
        registered_model=study.registered_model,
        version=study.registered_model_version,
        model_uri=study.model_uri,
        trial_id=study.best_trial.trial_id if study.best_trial else "",
    )


def deploy_study(store: Store, settings: Settings, study_id: str) -> Deployment:
    """Serves the study's best model as its owner's deployment named after the study, with the
    study's deploy policy (`deploy.auto`)."""
    study = store.get_study(study_id)
    return roll_out(store, settings, study.owner, study.name, study_version(study), study.spec.deploy)


def roll_out(
    store: Store, settings: Settings, owner: str, name: str, version: ModelVersion, policy: DeployPolicy
) -> Deployment:
    """Serves `version` as `owner`'s deployment `name`: a new one, or the one running rolled over
    to it, its old replicas answering until the new ones do; what it served becomes `previous`.
    A model that does not load safely is refused before Serve is touched, and so is a rollout
    while another of the same deployment is under way."""
    check_model_package(version.model_uri, settings.mlflow_tracking_uri)
    stored = _after_rollout_under_way(store, owner, name)
    current = stored if stored is not None and stored.state in LIVE_STATES else None
    if current is not None and current.state is DeploymentState.DEPLOYING and not _stale(current):
        raise FailedPrecondition(f"a rollout of deployment {name} is under way; deploy again once it has ended")
    registry = ModelRegistry(settings.mlflow_tracking_uri)
    version = _as_version_of(registry, version, app_name(owner, name), current)
    deployment = Deployment(
        owner=owner,
        name=name,
        study_id=version.study_id,
        state=DeploymentState.DEPLOYING,
        replicas=policy.least_replicas(),
        route=route_for(owner, name),
        model_uri=version.model_uri,
        updated_at=now(),
        max_batch_size=policy.max_batch_size,
        registered_model=version.registered_model,
        model_version=version.version,
        trial_id=version.trial_id,
        previous=_previous(current, version),
        autoscaling=policy.autoscaling(),
    )
    if not store.replace_deployment(deployment, stored):
        raise FailedPrecondition(f"deployment {name} changed as this Deploy began; deploy again")
    try:
        run_model(owner, name, version.model_uri, settings.mlflow_tracking_uri, policy, settings.serve_http_port)
    except Exception as error:
        _after_failed_rollout(store, settings, deployment, current, error)
        raise
    running = deployment.model_copy(update={"state": DeploymentState.RUNNING, "updated_at": now()})
    store.put_deployment(running)
    _name_versions(registry, running)
    return running


def roll_back(store: Store, settings: Settings, owner: str, name: str) -> Deployment:
    """Serves the deployment's previous version again, with its scaling as it is."""
    current = live_deployment(store, owner, name)
    if current is None:
        raise NotFound(f"no deployment {name!r}")
    if current.previous is None:
        raise FailedPrecondition(f"deployment {name} has served no other version to roll back to")
    return roll_out(store, settings, owner, name, current.previous, policy_of(current))


def undeploy(store: Store, settings: Settings, owner: str, name: str) -> Deployment:
    """Removes the deployment's Serve application (its replicas' CPUs are free when this returns)
    and records it DELETED; its registered versions stay, without aliases."""
    current = _live(_after_rollout_under_way(store, owner, name), failed_too=True)
    if current is None:
        raise NotFound(f"no deployment {name!r}")
    if current.state is DeploymentState.DEPLOYING and not _stale(current):
        raise FailedPrecondition(f"a rollout of deployment {name} is under way; undeploy once it has ended")
    deleted = current.model_copy(update={"state": DeploymentState.DELETED, "updated_at": now(), "error": ""})
    if not store.replace_deployment(deleted, current):
        raise FailedPrecondition(f"deployment {name} changed as this undeploy began; undeploy again")
    delete_app(owner, name)
    if current.registered_model:
        try:
            ModelRegistry(settings.mlflow_tracking_uri).drop_names(current.registered_model)
        except MlflowException:
            log.warning("could not drop the aliases of %s", current.registered_model, exc_info=True)
    return deleted


def _after_rollout_under_way(store: Store, owner: str, name: str) -> Deployment | None:
    """The stored deployment once a rollout under way (a driver's deploy.auto, another Deploy)
    has ended, waiting up to ROLLOUT_WAIT_S for it."""
    deadline = time.monotonic() + ROLLOUT_WAIT_S
    while True:
        stored = _stored(store, owner, name)
        under_way = stored is not None and stored.state is DeploymentState.DEPLOYING and not _stale(stored)
        if not under_way or time.monotonic() > deadline:
            return stored
        time.sleep(0.25)


def _stored(store: Store, owner: str, name: str) -> Deployment | None:
    try:
        return store.get_deployment(name, owner)
    except NotFound:
        return None


def _stale(deployment: Deployment) -> bool:
    """A DEPLOYING record this old belongs to a rollout whose process died mid-way."""
    return (now() - deployment.updated_at).total_seconds() > STALE_ROLLOUT_S


def live_deployment(store: Store, owner: str, name: str, failed_too: bool = False) -> Deployment | None:
    """The deployment as recorded, unless there is none or it was deleted (or, without
    `failed_too`, failed before it ever served)."""
    return _live(_stored(store, owner, name), failed_too)


def _live(deployment: Deployment | None, failed_too: bool = False) -> Deployment | None:
    if deployment is None:
        return None
    if deployment.state in LIVE_STATES or (failed_too and deployment.state is DeploymentState.FAILED):
        return deployment
    return None


def with_serve_report(deployment: Deployment, applications: Applications | None = None) -> Deployment:
    """The deployment with what Serve says of it now (in `applications`, else asked); one
    recorded running whose application is gone or unhealthy is UNHEALTHY."""
    if deployment.state not in LIVE_STATES:
        return deployment
    report = serve_report(deployment.owner, deployment.name, applications)
    state = deployment.state
    if state is DeploymentState.RUNNING and report.status in (GONE, "UNHEALTHY"):
        state = DeploymentState.UNHEALTHY
    return deployment.model_copy(
        update={
            "state": state,
            "serve_status": report.status,
            "serve_message": report.message,
            "replicas_running": report.running,
            "replicas_wanted": report.wanted,
        }
    )


def policy_of(deployment: Deployment) -> DeployPolicy:
    """The deploy policy a deployment runs with: its replicas or autoscaling, its batch size."""
    scaling = deployment.autoscaling
    if scaling is None:
        return DeployPolicy(replicas=deployment.replicas, max_batch_size=deployment.max_batch_size)
    return DeployPolicy(max_batch_size=deployment.max_batch_size, **scaling.model_dump())


def _as_version_of(
    registry: ModelRegistry, version: ModelVersion, registered_model: str, current: Deployment | None
) -> ModelVersion:
    """`version` as a version of the deployment's own registered model: the one it serves or
    served before when the files are the same, else copied there if it is another model's."""
    if current is not None:
        for known in (current.serving(), current.previous):
            if known is not None and known.model_uri == version.model_uri and known.registered_model:
                return known
    if version.registered_model == registered_model or not version.registered_model:
        return version
    copied = registry.copy(version.registered_model, version.version, registered_model)
    return version.model_copy(update={"registered_model": registered_model, "version": copied})


def _previous(current: Deployment | None, version: ModelVersion) -> ModelVersion | None:
    """What the deployment served before `version`: the version serving now, unless that is
    `version` itself (a deploy again in place) or a rollout that never finished, which keep
    the previous one."""
    if current is None:
        return None
    serving = current.serving()
    if serving.model_uri == version.model_uri or current.state is DeploymentState.DEPLOYING:
        return current.previous
    return serving


def _name_versions(registry: ModelRegistry, running: Deployment) -> None:
    """Points the registry's aliases at what runs. The rollout has happened: a registry that
    cannot be written to now is logged, not the caller's error."""
    if not running.registered_model or not running.model_version:
        return  # a model registered before versions were (an older store's record)
    previous = running.previous
    before = previous.version if previous is not None and previous.registered_model == running.registered_model else 0
    try:
        registry.name_versions(running.registered_model, running.model_version, before)
    except MlflowException:
        log.warning("could not point the aliases of %s at what it serves", running.registered_model, exc_info=True)


def _after_failed_rollout(
    store: Store, settings: Settings, deployment: Deployment, current: Deployment | None, error: Exception
) -> None:
    """A rollout that failed leaves the old replicas serving (Serve keeps them until new ones
    are healthy): the record goes back to the version running, with the error, and Serve's
    target goes back to it too, so a replica started later is not the failed version. A
    first deploy that failed is FAILED."""
    reason = f"the rollout of {deployment.registered_model} version {deployment.model_version} failed: {error!r}"
    log.warning("%s", reason)
    if current is None or current.state is not DeploymentState.RUNNING:
        store.put_deployment(deployment.model_copy(update={"state": DeploymentState.FAILED, "error": reason[:5000]}))
        return
    store.put_deployment(current.model_copy(update={"error": reason[:5000], "updated_at": now()}))
    try:
        uri, tracking = current.model_uri, settings.mlflow_tracking_uri
        run_model(current.owner, current.name, uri, tracking, policy_of(current), settings.serve_http_port)
    except Exception:
        log.warning("could not point %s back at the version it serves", current.name, exc_info=True)
