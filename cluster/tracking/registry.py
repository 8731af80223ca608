"""The MLflow model registry as deployments use it: a registered version looked up, a version
copied into a deployment's own registered model, and the aliases that name what a deployment
serves (`champion`) and served before (`previous`)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import mlflow
from mlflow.entities import LoggedModel
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

from anneal.errors import FailedPrecondition, NotFound
from cluster.tracking.tracker import open_client

CHAMPION = "champion"  # the version a deployment serves
PREVIOUS = "previous"  # the version it served before, which Rollback returns to
MISSING = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")  # what MLflow answers for a name it lacks


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: int
    model_uri: str  # where its files are
    study_id: str  # the study whose run logged it; "" when anneal did not


class ModelRegistry:
    def __init__(self, tracking_uri: str) -> None:
        self.client = open_client(tracking_uri)
        # MLflow's registry resolves a models:/ source through the process's global tracking
        # URI, not this client's (copying a version does); every anneal process uses one MLflow.
        mlflow.set_tracking_uri(tracking_uri)

    def find(self, name: str, version: int) -> RegisteredVersion:
        """The registered `version` of `name`; NotFound when either is missing, or when the run
        that logged it is gone."""
        try:
            found = self.client.get_model_version(name, str(version))
            model_uri = self.client.get_model_version_download_uri(name, str(version))
            study_id = self.client.get_run(found.run_id).data.tags.get("anneal.study_id", "") if found.run_id else ""
        except MlflowException as error:
            if error.error_code not in MISSING:
                raise
            raise NotFound(f"no version {version} of registered model {name!r}") from None
        return RegisteredVersion(name, version, model_uri, study_id)

    def copy(self, name: str, version: int, into: str) -> int:
        """A new version of registered model `into` (made if missing) with the files of `name`'s
        `version`: a deployment's registered model holds every version it served."""
        try:
            copied = self.client.copy_model_version(f"models:/{name}/{version}", into)
        except MlflowException as error:
            if error.error_code not in MISSING:
                raise
            raise FailedPrecondition(f"version {version} of {name!r} cannot be copied into {into!r}: {error}") from None
        return int(copied.version)

    def find_logged(self, experiment_id: str, trial_id: str) -> tuple[LoggedModel, int] | None:
        """The model a trial's run logged before and the version it was registered as, if any."""
        logged = self.client.search_logged_models(
            experiment_ids=[experiment_id], filter_string=f"tags.`anneal.trial_id` = '{trial_id}'"
        )
        for model in logged:
            versions = json.loads(model.tags.get(MLFLOW_MODEL_VERSIONS, "[]"))
            if versions:
                return model, int(versions[-1]["version"])
        return None

    def name_versions(self, name: str, champion: int, previous: int) -> None:
        """Points `champion` at the version served and `previous` at the one before (0: none)."""
        self.client.set_registered_model_alias(name, CHAMPION, str(champion))
        if previous:
            self.client.set_registered_model_alias(name, PREVIOUS, str(previous))
        else:
            self._drop_alias(name, PREVIOUS)

    def drop_names(self, name: str) -> None:
        """Nothing is served: neither alias points anywhere."""
        for alias in (CHAMPION, PREVIOUS):
            self._drop_alias(name, alias)

    def _drop_alias(self, name: str, alias: str) -> None:
        try:
            self.client.delete_registered_model_alias(name, alias)
        except MlflowException as error:
            if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
