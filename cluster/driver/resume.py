"""Resuming a study whose driver died: what Tune's last snapshot knows against the store.

Tune snapshots its experiment (trials, searcher, scheduler) every few seconds, not at
every trial's start and end: a snapshot on each would cost more than a short trial. So
when a driver dies, the store (written as things happen) knows more than the snapshot:

- a trial the snapshot holds unfinished may have ended since: it is *replayed*, its
  recorded end reported again without training, so Tune, the searcher and the
  scheduler learn it and it is not run again;
- a trial the snapshot never saw (started after it) is *adopted*: the searcher hands
  its config to the next trial Tune creates, which carries the trial's identity, so the
  study keeps exactly `max_trials` trials and one MLflow run each. An adopted trial that
  had ended is replayed; one that had not goes on from its newest checkpoint on disk.

A trial the snapshot holds unfinished and the store too simply resumes (Tune's restore),
from the newest of its checkpoints.
"""

from __future__ import annotations

import glob
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anneal.types import Study, TrialState
from cluster.trial.function import ADOPTED_AS, Carried

log = logging.getLogger("anneal.resume")

SNAPSHOT_PATTERN = "experiment_state-*.json"
CHECKPOINT_PATTERN = "checkpoint_*"


@dataclass
class ResumePlan:
    """What the resumed driver tells the trial function, the searcher and the recorder."""

    carried: dict[str, Carried] = field(default_factory=dict)  # anneal trial id -> what it brings
    adoptions: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (trial id, config), oldest first

    @property
    def replayed(self) -> set[str]:
        return {trial_id for trial_id, carried in self.carried.items() if carried.ended}


def snapshot_trial_ids(experiment_dir: str) -> set[str] | None:
    """The ids of the trials in Tune's newest experiment snapshot, or None without one."""
    snapshots = sorted(glob.glob(os.path.join(experiment_dir, SNAPSHOT_PATTERN)))
    if not snapshots:
        return None
    with open(snapshots[-1]) as handle:
        state = json.load(handle)
    ids = set()
    for trial_json, _ in state["trial_data"]:
        trial = json.loads(trial_json)
        config = trial.get("config")
        adopted = _adopted_id(config)
        ids.add(adopted or trial["trial_id"])
    return ids


def _adopted_id(config: Any) -> str:
    return str(config.get(ADOPTED_AS, "")) if isinstance(config, Mapping) else ""


def newest_checkpoint(experiment_dir: str, trial_id: str) -> str:
    """The trial's newest checkpoint directory under the experiment, or ''."""
    found: list[str] = []
    for trial_dir in glob.glob(os.path.join(experiment_dir, f"*_{glob.escape(trial_id)}_*")):
        found += glob.glob(os.path.join(trial_dir, CHECKPOINT_PATTERN))
    return max(found, key=lambda path: Path(path).name, default="")


def plan_resume(study: Study, experiment_dir: str, snapshot: set[str] | None) -> ResumePlan:
    """Compares the trials the store recorded with those Tune's snapshot holds."""
    plan = ResumePlan()
    known = snapshot or set()
    for trial in study.trials:  # in the order they started
        checkpoint = newest_checkpoint(experiment_dir, trial.trial_id)
        if trial.state.is_terminal and trial.state is not TrialState.CANCELLED:
            error = trial.error or "the trial failed" if trial.state is TrialState.ERROR else ""
            plan.carried[trial.trial_id] = Carried(checkpoint, True, dict(trial.metrics), trial.epochs, error)
        else:
            plan.carried[trial.trial_id] = Carried(checkpoint)
        if trial.trial_id not in known:
            plan.adoptions.append((trial.trial_id, dict(trial.config)))
    log.info(
        "resuming study %s: %d trials recorded, %d in Tune's snapshot, %d to adopt, %d ended",
        study.study_id,
        len(study.trials),
        len(known),
        len(plan.adoptions),
        len(plan.replayed),
    )
    return plan
