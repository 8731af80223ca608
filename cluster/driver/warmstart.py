"""Warm starts: the completed trials of earlier studies (`search.warm_start`), handed to a new
study's sampler before its first suggestion. They are learnt, not run again; the study records
how many it learnt."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from anneal.spec import StudySpec
from anneal.types import TrialState
from cluster.store.store import Store


@dataclass(frozen=True)
class EarlierTrial:
    """A completed trial of an earlier study: the parameters it shares with this study's space
    (same domains, checked when the study was created) and its objectives' values, in order."""

    study_id: str
    params: dict[str, Any]
    values: tuple[float, ...]


def earlier_trials(store: Store, spec: StudySpec) -> list[EarlierTrial]:
    """The completed trials of the studies the spec warm-starts from, in their order."""
    metrics = [goal.metric for goal in spec.goals]
    found = []
    for study_id in spec.search.warm_start:
        earlier = store.get_study(study_id)
        shared = spec.warm_parameters(earlier.spec)
        for trial in earlier.trials:
            if trial.state is not TrialState.COMPLETED or any(metric not in trial.metrics for metric in metrics):
                continue
            if all(name in trial.config for name in shared):
                params = {name: trial.config[name] for name in shared}
                found.append(EarlierTrial(study_id, params, tuple(float(trial.metrics[m]) for m in metrics)))
    return found
