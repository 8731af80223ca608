"""What a trial writer finds already recorded when it starts on a study.

A writer that starts on a study may follow one that died: its driver's (a resumed study), or
its own driver's previous writer, whose unconfirmed records come again. That writer may have
done half a batch: MLflow written and the store not, or a child run created whose id never
reached the store. So a new writer reads what is there before it writes anything:

- the store's watermark for the driver's record stream: the last record whose transaction
  committed, so records up to it are skipped (no trial row or event twice);
- every child run of the study's parent run, found by its `anneal.trial_id` tag, so no trial
  gets a second run; which of them ended and which have their params;
- each open run's last logged step per metric, so no epoch is logged twice or skipped (an
  ended run holds every epoch: its metrics are logged before it is ended).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the writer process imports MLflow itself, once it has started
    from cluster.store.store import Store
    from cluster.tracking.tracker import MlflowTracker

RUNNING = "RUNNING"  # MLflow's status of a run not ended


@dataclass
class Recorded:
    through: int = 0  # the store holds the stream's records up to this sequence
    runs: dict[str, str] = field(default_factory=dict)  # trial id -> MLflow run id
    ended: set[str] = field(default_factory=set)  # trial ids whose run has ended
    with_params: set[str] = field(default_factory=set)  # run ids whose params are logged
    # Trial id -> metric -> the last step MLflow holds of it.
    logged_steps: dict[str, dict[str, int]] = field(default_factory=dict)


def find_recorded(store: Store, tracker: MlflowTracker, study_id: str, stream: str) -> Recorded:
    """What the store and the study's MLflow runs hold now (the tracker is on the study's parent run)."""
    recorded = Recorded(through=store.recorded_through(study_id, stream))
    for run in tracker.trial_runs():  # oldest first: a trial keeps its first run
        trial_id = run.data.tags["anneal.trial_id"]
        if trial_id in recorded.runs:
            continue
        run_id = run.info.run_id
        recorded.runs[trial_id] = run_id
        if run.data.params:
            recorded.with_params.add(run_id)
        if run.info.status != RUNNING:
            recorded.ended.add(trial_id)
        elif run.data.metrics:
            recorded.logged_steps[trial_id] = tracker.last_steps(run_id)
    return recorded
