"""Deploying a model to Ray Serve: the application of an owner's deployment, its route, and the
deploy of a study's best model that the server (Deploy) and a driver (deploy.auto) share."""

from __future__ import annotations

from ray import serve

from anneal.errors import FailedPrecondition
from anneal.settings import Settings
from anneal.types import Deployment, DeploymentState, StudyState
from cluster.serving.package import check_model_package
from cluster.serving.replica import ModelServer
from cluster.store.store import Store, now


def app_name(owner: str, name: str) -> str:
    """The Serve application of `owner`'s deployment `name` (names are unique per owner; neither
    holds a dot)."""
    return f"{owner}.{name}" if owner else name


def route_for(owner: str, name: str) -> str:
    return f"/models/{owner}/{name}" if owner else f"/models/{name}"


def deploy_study(
    store: Store, settings: Settings, study_id: str, replicas: int = 0, max_batch_size: int = 0
) -> Deployment:
    """Serves the study's best model as its owner's deployment named after the study. A model
    package that does not load is refused before the running version is touched."""
    study = store.get_study(study_id)
    if study.state is not StudyState.SUCCEEDED or not study.model_uri:
        raise FailedPrecondition(f"study {study_id} is {study.state.value}; only a SUCCEEDED study can be deployed")
    replicas = replicas or study.spec.deploy.replicas
    deployment = Deployment(
        owner=study.owner,
        name=study.name,
        study_id=study_id,
        state=DeploymentState.DEPLOYING,
        replicas=replicas,
        route=route_for(study.owner, study.name),
        model_uri=study.model_uri,
        updated_at=now(),
        max_batch_size=max_batch_size or study.spec.deploy.max_batch_size,
    )
    check_model_package(study.model_uri, settings.mlflow_tracking_uri)
    store.put_deployment(deployment)
    try:
        deploy_model(
            study.owner, study.name, study.model_uri, settings.mlflow_tracking_uri, replicas, settings.serve_http_port
        )
    except Exception as error:
        store.put_deployment(deployment.model_copy(update={"state": DeploymentState.FAILED, "error": repr(error)}))
        raise
    running = deployment.model_copy(update={"state": DeploymentState.RUNNING, "updated_at": now()})
    store.put_deployment(running)
    return running


def deploy_model(owner: str, name: str, model_uri: str, tracking_uri: str, replicas: int, http_port: int) -> str:
    """Starts (or updates) the Serve application of `owner`'s `name`; returns once it is running."""
    serve.start(http_options={"host": "127.0.0.1", "port": http_port})
    app = ModelServer.options(num_replicas=replicas).bind(model_uri, tracking_uri)  # type: ignore[attr-defined]
    serve.run(app, name=app_name(owner, name), route_prefix=route_for(owner, name))
    return route_for(owner, name)
