"""The deployment domain: what Deploy, Rollback, DeleteDeployment, GetDeployment and
ListDeployments do, for a principal. Predict's routes follow each change (`routes`)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from anneal.errors import InvalidArgument, NotFound
from anneal.settings import Settings
from anneal.spec import NAME_PATTERN, DeployPolicy, field_errors
from anneal.types import Deployment, ModelVersion, Study
from cluster.server.access import ID_PATTERN, deployment_key, stored_deployment
from cluster.server.limits import check_deploy_policy
from cluster.server.predict import PredictRouter
from cluster.server.principals import Principal
from cluster.server.studies import Studies
from cluster.server.trialmodels import trial_version
from cluster.serving.deploy import serve_applications
from cluster.serving.rollout import roll_back, roll_out, study_version, undeploy, with_serve_report
from cluster.store.store import Store
from cluster.tracking.registry import ModelRegistry


class Deployments:
    """Serves models as a principal's deployments, one version at a time."""

    def __init__(self, settings: Settings, store: Store, studies: Studies, routes: PredictRouter) -> None:
        self.settings = settings
        self.store = store
        self.studies = studies
        self.routes = routes

    def deploy(
        self,
        principal: Principal,
        study_id: str = "",
        name: str = "",
        model: str = "",
        version: int = 0,
        overrides: dict[str, Any] | None = None,
        trial_id: str = "",
    ) -> Deployment:
        """Serves a study's best model (or the model of its trial `trial_id`), or a registered
        model version, as the deployment `name` (the study's name by default); a deployment
        serving there already rolls over to it."""
        chosen, study = self._chosen_version(principal, study_id, model, version)
        name = name or study.name
        if not _NAME.fullmatch(name):
            raise InvalidArgument.field("name", "must be lower-case letters, digits and dashes, at most 63")
        policy = _policy(study.spec.deploy, overrides or {})
        check_deploy_policy(policy, self.settings)
        if trial_id and trial_id != chosen.trial_id:  # checked first: packaging a trial writes to MLflow
            chosen = self._trial_version(study, trial_id, model)
        try:
            return with_serve_report(roll_out(self.store, self.settings, study.owner, name, chosen, policy))
        finally:
            self.routes.forget((study.owner, name))

    def rollback(self, name: str, principal: Principal) -> Deployment:
        owner, plain = deployment_key(name, principal)
        try:
            return with_serve_report(roll_back(self.store, self.settings, owner, plain))
        finally:
            self.routes.forget((owner, plain))

    def delete(self, name: str, principal: Principal) -> Deployment:
        owner, plain = deployment_key(name, principal)
        try:
            return undeploy(self.store, self.settings, owner, plain)
        finally:
            self.routes.forget((owner, plain))

    def get_deployment(self, name: str, principal: Principal) -> Deployment:
        return with_serve_report(stored_deployment(self.store, deployment_key(name, principal), name))

    def list_deployments(self, principal: Principal) -> list[Deployment]:
        listed = self.store.list_deployments(None if principal.admin else principal.name)
        applications = serve_applications()  # asked once for all of them
        return [with_serve_report(deployment, applications) for deployment in listed]

    def _chosen_version(
        self, principal: Principal, study_id: str, model: str, version: int
    ) -> tuple[ModelVersion, Study]:
        """The version a Deploy names, and the study that logged it."""
        if model and study_id:
            raise InvalidArgument.field("model", "name a study_id or a registered model, not both")
        if model:
            return self._registered_version(principal, model, version)
        if not study_id:
            raise InvalidArgument.field("study_id", "name a study, or a registered model and its version")
        study = self.studies.get_study(study_id, principal)  # NotFound for a study the caller does not see
        return study_version(study), study  # FailedPrecondition unless it succeeded

    def _trial_version(self, study: Study, trial_id: str, model: str) -> ModelVersion:
        if model:
            raise InvalidArgument.field("trial_id", "names a trial of study_id, not of a registered model")
        if not ID_PATTERN.fullmatch(trial_id):
            raise NotFound(f"study {study.study_id} has no trial {trial_id!r}")
        return trial_version(self.settings, study, trial_id)

    def _registered_version(self, principal: Principal, model: str, version: int) -> tuple[ModelVersion, Study]:
        """A version of a registered model of the caller's (`<owner>.<name>`) that an anneal study
        of the same owner logged; anything else is NotFound."""
        if version < 1:
            raise InvalidArgument.field("version", "must be >= 1 with a registered model")
        owner, dot, plain = model.partition(".")
        if not dot or not ID_PATTERN.fullmatch(owner) or not _NAME.fullmatch(plain) or not principal.sees(owner):
            raise NotFound(f"no registered model {model!r}")
        found = ModelRegistry(self.settings.mlflow_tracking_uri).find(model, version)
        study = self.store.get_study(found.study_id) if found.study_id else None
        if study is None or study.owner != owner:
            raise NotFound(f"no version {version} of registered model {model!r} that an anneal study of yours logged")
        uri = found.model_uri
        return ModelVersion(study_id=study.study_id, registered_model=model, version=version, model_uri=uri), study


_NAME = re.compile(NAME_PATTERN)


def _policy(spec_policy: DeployPolicy, overrides: dict[str, Any]) -> DeployPolicy:
    """The study's deploy policy with the request's fields in place; a bad one names its field."""
    try:
        return spec_policy.with_overrides(overrides)
    except ValidationError as error:
        raise InvalidArgument(field_errors(error)) from None
