"""The tuning itself: a new Tuner, or the one Tune's last snapshot restores, run to its end with
every trial recorded by the writer."""

from __future__ import annotations

import logging
import os

import ray
from ray import tune

from cluster.driver.recording import TrialRecorder
from cluster.driver.resume import plan_resume, snapshot_trial_ids
from cluster.driver.studyrun import StudyRun
from cluster.driver.tuning import build_tuner, concurrent_trials, planned_epochs, restore_tuner
from cluster.driver.warmstart import EarlierTrial, earlier_trials
from cluster.driver.warmtrain import TrainWarmer


class _NoMetricFilesWarning(logging.Filter):
    """Drops Tune's end-of-run warning that it could not read each trial's result files: the
    study turns Tune's result loggers off (its writer records every epoch), and Tune's summary
    still looks for their files. A user reads one such line per trial as an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Failed to fetch metrics for")


logging.getLogger("ray.tune.analysis.experiment_analysis").addFilter(_NoMetricFilesWarning())
log = logging.getLogger("anneal.driver")


def fit(run: StudyRun) -> list[tune.Result]:
    """Runs every trial of the study; returns each trial's result."""
    # The writer finds a resumed study's runs itself, as it does after replacing a dead writer.
    run.writer.start(run.study_id, run.tracker.experiment_id, run.tracker.parent_run_id)
    recorder = TrialRecorder(
        run.writer, run.spec.params, planned_epochs(run.spec, run.info) or 0, run.spec.resources.workers
    )
    callbacks: list[tune.Callback] = [recorder, *train_warmers(run)]
    if run.resumed:
        tuner = _resumed_tuner(run, recorder, callbacks)
    else:
        tuner = build_tuner(
            run.spec,
            run.info,
            experiment_name=run.study_id,
            storage_path=run.settings.tune_storage,
            callbacks=callbacks,
            earlier=_warm_start(run),
            data_roots=run.settings.data_roots,
        )
    grid = tuner.fit()
    return [grid[i] for i in range(len(grid))]


def _warm_start(run: StudyRun) -> list[EarlierTrial]:
    """The completed trials of the studies this one warm-starts from, their count recorded on
    the study (a Tune snapshot holds them once learnt, so a restored Tuner asks for none)."""
    earlier = earlier_trials(run.store, run.spec)
    if run.spec.search.warm_start:
        run.store.update_study(run.study_id, warm_start_trials=len(earlier))
        log.info("the sampler learns %d completed trials of %s first", len(earlier), run.spec.search.warm_start)
    return earlier


def train_warmers(run: StudyRun) -> list[tune.Callback]:
    """A data-parallel study's warm Ray Train processes, unless warm workers are turned off:
    asked for before Tune starts, for the trials after those that start with the study."""
    spec = run.spec
    if spec.resources.workers == 1 or not run.settings.warm_trial_workers:
        return []
    concurrent = concurrent_trials(spec, ray.cluster_resources())
    warmer = TrainWarmer(spec.resources.workers, concurrent)
    warmer.prepare(trials=spec.budget.max_trials, immediately=concurrent)
    return [warmer]


def _resumed_tuner(run: StudyRun, recorder: TrialRecorder, callbacks: list[tune.Callback]) -> tune.Tuner:
    """The Tuner of a study whose driver died: restored from Tune's last snapshot, which the
    store's records complete (`cluster.driver.resume`); a new one when Tune never took a snapshot.
    A restored Tuner keeps the callbacks of its snapshot."""
    settings, study = run.settings, run.study
    experiment_dir = os.path.join(settings.tune_storage, study.study_id)
    snapshot = snapshot_trial_ids(experiment_dir)
    plan = plan_resume(study, experiment_dir, snapshot)
    if snapshot is None or not tune.Tuner.can_restore(experiment_dir):
        recorder.resume(run.writer, study.trials)
        return build_tuner(
            study.spec,
            run.info,
            experiment_name=study.study_id,
            storage_path=settings.tune_storage,
            callbacks=callbacks,
            carried=plan.carried,
            adoptions=plan.adoptions,
            earlier=_warm_start(run),
            data_roots=settings.data_roots,
        )
    tuner, callbacks = restore_tuner(
        study.spec, run.info, experiment_dir, plan.carried, plan.adoptions, data_roots=settings.data_roots
    )
    restored = [callback for callback in callbacks if isinstance(callback, TrialRecorder)]
    if len(restored) != 1:
        raise RuntimeError(f"Tune's snapshot of {study.study_id} holds {len(restored)} trial recorders, not one")
    restored[0].resume(run.writer, study.trials)
    return tuner
