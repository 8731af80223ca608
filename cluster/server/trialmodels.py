"""A chosen trial's model, made deployable on Deploy: its last checkpoint (in the study's Tune
storage) packaged like the best model, logged by the study's MLflow run and registered as a
new version of the study's model.

The study must have succeeded: its best model's package gives the data's shape, which every
trial of the study shares. A trial's checkpoint lives in the folder Tune named after its Tune
trial id, or, for a trial a resumed driver adopted, in a folder whose parameters name it. A
trial deployed before is not packaged again: its logged model says which version it became.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

from mlflow.entities import LoggedModel

from anneal.errors import FailedPrecondition, NotFound
from anneal.settings import Settings
from anneal.types import ModelVersion, Study, Trial, TrialState
from cluster.serving.deploy import app_name
from cluster.serving.package import LoadedModel, load_from_mlflow, write_model_package
from cluster.serving.pyfunc import model_requirements, save_mlflow_model
from cluster.tracking.registry import ModelRegistry
from cluster.tracking.tracker import MlflowTracker
from cluster.trial.context import load_checkpoint_directory
from cluster.trial.function import ADOPTED_AS
from trainers.contract import DataShape
from trainers.registry import resolve

CHECKPOINT_DIR = re.compile(r"checkpoint_(\d+)")


def trial_version(settings: Settings, study: Study, trial_id: str) -> ModelVersion:
    """A registered version of the study's model holding trial `trial_id`'s model; the one made
    for it before, when there is one."""
    trial = next((t for t in study.trials if t.trial_id == trial_id), None)
    if trial is None:
        raise NotFound(f"study {study.study_id} has no trial {trial_id!r}")
    if trial.state not in (TrialState.COMPLETED, TrialState.STOPPED_EARLY):
        raise FailedPrecondition(f"trial {trial_id} is {trial.state.value}; only a trial that finished can be deployed")
    name = app_name(study.owner, study.name)
    made = ModelRegistry(settings.mlflow_tracking_uri).find_logged(study.mlflow_experiment_id, trial_id)
    if made is not None:
        logged, version = made
    else:
        logged, version = _log_trial_model(settings, study, trial, name)
    return ModelVersion(
        study_id=study.study_id,
        registered_model=name,
        version=version,
        model_uri=logged.artifact_location,
        trial_id=trial_id,
    )


def _log_trial_model(settings: Settings, study: Study, trial: Trial, name: str) -> tuple[LoggedModel, int]:
    """Packages the trial's last checkpoint, logs it by the study's run and registers it."""
    info = resolve(study.spec.trainer)
    checkpoint = last_checkpoint(Path(settings.tune_storage) / study.study_id, trial.trial_id)
    try:
        weights = info.load().model_state(load_checkpoint_directory(str(checkpoint))["state"])
    except Exception as error:
        raise FailedPrecondition(f"trial {trial.trial_id}'s checkpoint {checkpoint} does not load: {error!r}") from None
    with tempfile.TemporaryDirectory(prefix="anneal-trial-model-") as scratch:
        package = Path(scratch) / "package"
        config = {**study.spec.params, **trial.config}
        write_model_package(package, study.spec.trainer, info.task, config, _shape_of(settings, study), weights)
        model_dir = Path(scratch) / "mlflow-model"
        save_mlflow_model(model_dir, LoadedModel(package, info), package, model_requirements())
        tracker = MlflowTracker(settings.mlflow_tracking_uri, settings.mlflow_artifact_root)
        tracker.resume_study(study.mlflow_experiment_id, study.mlflow_run_id)
        logged = tracker.log_model(trial.trial_id, model_dir)
        return logged, tracker.register(name, logged)


def last_checkpoint(experiment: Path, trial_id: str) -> Path:
    """The newest checkpoint of the trial in the study's Tune storage: of the folder a resumed
    driver adopted it into when there is one (it went on from the first folder's checkpoint),
    else of the folder Tune named after it."""
    folders = [d for d in sorted(experiment.glob("*/")) if _is_trial_dir(d, trial_id)]
    folders.sort(key=lambda d: f"_{trial_id}_" in d.name)  # adopted folders first
    for trial_dir in folders:
        checkpoints = [(int(m.group(1)), p) for p in trial_dir.iterdir() if (m := CHECKPOINT_DIR.fullmatch(p.name))]
        if checkpoints:
            return max(checkpoints)[1]
    raise FailedPrecondition(
        f"trial {trial_id} left no checkpoint in the study's Tune storage ({experiment}) that this server reads"
    )


def _is_trial_dir(trial_dir: Path, trial_id: str) -> bool:
    if f"_{trial_id}_" in trial_dir.name:
        return True
    params = trial_dir / "params.json"
    try:
        return params.exists() and json.loads(params.read_text()).get(ADOPTED_AS) == trial_id
    except (OSError, ValueError):
        return False


def _shape_of(settings: Settings, study: Study) -> DataShape:
    """The data's shape, from the study's best model (every trial of the study shares it)."""
    if not study.model_uri:
        raise FailedPrecondition(f"study {study.study_id} has no best model; only a SUCCEEDED study's trials deploy")
    return load_from_mlflow(study.model_uri, settings.mlflow_tracking_uri).shape
