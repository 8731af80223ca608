"""MLflow: one experiment per study, a parent run for the study, a child run per trial, the
best model as an MLflow Model logged by the parent run, and a registered model version."""

from __future__ import annotations

import fcntl
import json
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import LoggedModel, LoggedModelOutput, LoggedModelStatus, Metric, Param, Run, RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

MODEL_ARTIFACT_PATH = "model"
MAX_PARAMS_PER_BATCH = 100
RUNS_PER_PAGE = 1000


def _param_value(value: Any) -> str:
    return str(value)[:6000]


@contextmanager
def _schema_lock(tracking_uri: str) -> Iterator[None]:
    """Holds a lock file beside a SQLite tracking database. Opening MLflow's store migrates
    a fresh database's schema, and two processes migrating one file at once break each
    other (the server, a driver and its writer process all open it)."""
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix) or tracking_uri == f"{prefix}:memory:":
        yield
        return
    database = Path(tracking_uri[len(prefix) :])
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{database}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def open_client(tracking_uri: str) -> MlflowClient:
    """An MLflow client. Creating it opens the tracking store, which migrates a fresh
    SQLite database: under `_schema_lock`, so concurrent first opens take turns."""
    with _schema_lock(tracking_uri):
        return MlflowClient(tracking_uri=tracking_uri)


class MlflowTracker:
    """What the study driver writes to MLflow. Not thread-safe; the Tune loop calls it serially."""

    def __init__(self, tracking_uri: str, artifact_root: str) -> None:
        """`artifact_root` "" leaves each study's artifacts where the tracking store puts them by
        default: a tracking server's own artifact store (`mlflow-artifacts:/...` with
        `--serve-artifacts`), reached through the server from any node."""
        self.tracking_uri = tracking_uri
        self.artifact_root = artifact_root
        self.client = open_client(tracking_uri)
        self.experiment_id = ""
        self.parent_run_id = ""

    def open_store(self) -> None:
        """Makes a first call to the tracking store now (a tracking server's connection, a
        SQLite database's first query) rather than on the first write."""
        self.client.search_experiments(max_results=1)

    # Tune pickles its callbacks with the experiment state: no live client inside.
    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "client"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.client = open_client(self.tracking_uri)

    def start_study(self, study_id: str, name: str, spec_yaml: str, fixed_params: Mapping[str, Any]) -> None:
        experiment_name = f"{name}/{study_id}"
        found = self.client.get_experiment_by_name(experiment_name)
        if found is not None:
            self.experiment_id = found.experiment_id
        else:
            self.experiment_id = self.client.create_experiment(
                experiment_name,
                artifact_location=self.artifact_location(study_id),
                tags={"anneal.study_id": study_id, "anneal.study_name": name},
            )
        run = self.client.create_run(
            self.experiment_id,
            run_name=name,
            tags={"anneal.study_id": study_id, "anneal.kind": "study"},
        )
        self.parent_run_id = run.info.run_id
        self._log_params(self.parent_run_id, fixed_params)
        self.client.log_text(self.parent_run_id, spec_yaml, "study.yaml")

    def artifact_location(self, study_id: str) -> str | None:
        """The study's experiment's artifact location: under the root, or None for the store's default."""
        return f"{self.artifact_root}/{study_id}" if self.artifact_root else None

    def start_trial(self, trial_id: str) -> str:
        """A child run for the trial; its params go with its first metrics (`log_batch`)."""
        run = self.client.create_run(
            self.experiment_id,
            run_name=trial_id,
            tags={"mlflow.parentRunId": self.parent_run_id, "anneal.trial_id": trial_id, "anneal.kind": "trial"},
        )
        return run.info.run_id

    def last_step(self, run_id: str) -> int:
        """The largest step any metric of the run was logged at; 0 for none."""
        keys = self.client.get_run(run_id).data.metrics
        steps = (m.step for key in keys for m in self.client.get_metric_history(run_id, key))
        return max(steps, default=0)

    def last_steps(self, run_id: str) -> dict[str, int]:
        """The largest step each metric of the run was logged at."""
        keys = self.client.get_run(run_id).data.metrics
        return {key: max((m.step for m in self.client.get_metric_history(run_id, key)), default=0) for key in keys}

    def trial_runs(self) -> list[Run]:
        """Every child run of the study's parent run, oldest first: with the runs the store
        names, those a writer created and died before the store learnt of."""
        query = f"tags.`mlflow.parentRunId` = '{self.parent_run_id}' and tags.`anneal.kind` = 'trial'"
        found: list[Run] = []
        page_token = None
        while True:
            page = self.client.search_runs(
                [self.experiment_id],
                filter_string=query,
                max_results=RUNS_PER_PAGE,
                order_by=["attributes.start_time ASC"],
                page_token=page_token,
            )
            found += page
            page_token = page.token
            if not page_token:
                return found

    def end_open_trial_runs(self, status: str) -> list[str]:
        """Ends every child run of the study's parent run that is still RUNNING with `status`
        (what a study's end leaves of trials cut short); returns their trial ids."""
        open_runs = [run for run in self.trial_runs() if run.info.status == RunStatus.to_string(RunStatus.RUNNING)]
        for run in open_runs:
            self.client.set_terminated(run.info.run_id, status)
        return [run.data.tags.get("anneal.trial_id", run.info.run_id) for run in open_runs]

    def resume_study(self, experiment_id: str, parent_run_id: str) -> None:
        """Goes on recording into the study's experiment and parent run (a resumed study)."""
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id

    def log_batch(self, run_id: str, params: Mapping[str, Any], metrics: list[tuple[str, float, int, int]]) -> None:
        """One MLflow call: params as text, metrics as (key, value, timestamp ms, step)."""
        self.client.log_batch(
            run_id,
            metrics=[Metric(key, float(value), stamp, step) for key, value, stamp, step in metrics],
            params=[Param(k, _param_value(v)) for k, v in params.items()],
        )

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int) -> None:
        stamp = int(time.time() * 1000)
        self.log_batch(run_id, {}, [(k, v, stamp, step) for k, v in metrics.items()])

    def end_run(self, run_id: str, status: str, error: str = "") -> None:
        if error:
            self.client.set_tag(run_id, "anneal.error", error[:5000])
        self.client.set_terminated(run_id, status)

    def log_artifacts(self, run_id: str, directory: Path, artifact_path: str) -> None:
        """Logs every file under `directory` as an artifact of the run, under `artifact_path`."""
        self.client.log_artifacts(run_id, str(directory), artifact_path)

    def log_best(self, trial_id: str, model_dir: Path, metrics: Mapping[str, float]) -> LoggedModel:
        """Logs the best model, an MLflow Model saved at `model_dir`, as a model of the study's
        parent run (with the held-out `metrics` on the run)."""
        self.client.set_tag(self.parent_run_id, "anneal.best_trial_id", trial_id)
        if metrics:
            self.log_metrics(self.parent_run_id, metrics, step=0)
        return self.log_model(trial_id, model_dir)

    def log_model(self, trial_id: str, model_dir: Path) -> LoggedModel:
        """Logs trial `trial_id`'s model, an MLflow Model saved at `model_dir`, as a model of the
        study's parent run."""
        model = self.client.create_logged_model(
            self.experiment_id,
            name=MODEL_ARTIFACT_PATH,
            source_run_id=self.parent_run_id,
            tags={"anneal.trial_id": trial_id},
            model_type="anneal",
        )
        self.client.log_outputs(self.parent_run_id, [LoggedModelOutput(model.model_id, step=0)])
        self.client.log_model_artifacts(model.model_id, str(model_dir))
        return self.client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)

    def register(self, name: str, model: LoggedModel) -> int:
        """A new version of the registered model `name` for the logged `model`."""
        try:
            self.client.create_registered_model(name, tags={"anneal": "true"})
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        # MLflow's registry looks a models:/ source up through the process's global tracking URI,
        # not this client's; every anneal process records into the one MLflow its settings name.
        mlflow.set_tracking_uri(self.tracking_uri)
        version = self.client.create_model_version(
            name, source=f"models:/{model.model_id}", run_id=self.parent_run_id, model_id=model.model_id
        )
        # The link the MLflow UI shows on the logged model, as `mlflow.register_model` makes it.
        self.client.set_logged_model_tags(
            model.model_id, {MLFLOW_MODEL_VERSIONS: json.dumps([{"name": name, "version": version.version}])}
        )
        return int(version.version)

    def _log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        items = [Param(k, _param_value(v)) for k, v in params.items()]
        for start in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(run_id, params=items[start : start + MAX_PARAMS_PER_BATCH])
