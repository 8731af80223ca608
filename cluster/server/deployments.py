"""The deployment domain: what Deploy and GetDeployment do, for a principal."""

from __future__ import annotations

from anneal.settings import Settings
from anneal.types import Deployment
from cluster.server.access import deployment_key, stored_deployment
from cluster.server.limits import check_deploy_request
from cluster.server.predict import PredictRouter
from cluster.server.principals import Principal
from cluster.server.studies import Studies
from cluster.serving.deploy import deploy_study
from cluster.store.store import Store


class Deployments:
    """Serves a study's best model as its owner's deployment; Predict's routes follow (`routes`)."""

    def __init__(self, settings: Settings, store: Store, studies: Studies, routes: PredictRouter) -> None:
        self.settings = settings
        self.store = store
        self.studies = studies
        self.routes = routes

    def deploy(self, study_id: str, principal: Principal, replicas: int = 0, max_batch_size: int = 0) -> Deployment:
        check_deploy_request(replicas, max_batch_size, self.settings)
        self.studies.get_study(study_id, principal)  # NotFound for a study the caller does not see
        deployment = deploy_study(self.store, self.settings, study_id, replicas, max_batch_size)
        self.routes.forget((deployment.owner, deployment.name))
        return deployment

    def get_deployment(self, name: str, principal: Principal) -> Deployment:
        return stored_deployment(self.store, deployment_key(name, principal), name)
