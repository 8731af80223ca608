"""One driver's run of one study: what each step from its start to its end reads."""

from __future__ import annotations

from dataclasses import dataclass

from anneal.settings import Settings
from anneal.spec import StudySpec
from anneal.types import Study
from cluster.driver.writer import TrialWriter
from cluster.store.store import Store
from cluster.tracking.tracker import MlflowTracker
from trainers.contract import TrainerInfo


@dataclass(frozen=True)
class StudyRun:
    settings: Settings
    store: Store
    tracker: MlflowTracker  # on the study's experiment and parent run
    writer: TrialWriter
    study: Study  # as the store held it when this driver took the study
    info: TrainerInfo
    # The study's previous driver died: Tune's last snapshot goes on, completed from the store.
    resumed: bool
    # This process's parent when it started (for a Ray job, the job's process): once it is
    # gone, a failure is the cluster's, not the study's.
    supervisor: int

    @property
    def study_id(self) -> str:
        return self.study.study_id

    @property
    def spec(self) -> StudySpec:
        return self.study.spec
