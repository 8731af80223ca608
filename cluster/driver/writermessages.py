"""What the study driver and its trial writer process send each other (`cluster.driver.writer`
sends, `cluster.driver.writerprocess` answers): records, the study, flushes, and the writer's
confirmations."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from anneal.types import EventKind, Trial
from cluster.store.store import now


@dataclass
class Record:
    """One thing that happened to a trial, as the callback saw it."""

    kind: EventKind
    trial: Trial
    time: datetime = field(default_factory=now)  # also each metric's MLflow timestamp: a record sent again is the same
    params: dict[str, Any] = field(default_factory=dict)  # TRIAL_STARTED: what the child run logs
    # TRIAL_RESULT: every epoch the result carries, (epoch, metrics), for MLflow's histories.
    history: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    mlflow_status: str = ""  # TRIAL_ENDED: FINISHED, FAILED or KILLED
    sequence: int = 0  # its number in the driver's stream, from 1 (`Outbox`)


@dataclass
class Start:
    """Which study the writer records into, and the driver's record stream (the store's watermark names it)."""

    study_id: str
    experiment_id: str
    parent_run_id: str
    stream: str


@dataclass
class Flush:
    """Write everything before this, then answer; end the open runs with `end_open_runs`."""

    token: int
    end_open_runs: str = ""


@dataclass(frozen=True)
class Confirmed:
    """The writer's answer to a batch: the store holds every record up to `sequence`."""

    sequence: int


@dataclass(frozen=True)
class Flushed:
    """The writer's answer to a Flush: everything before it is written, or the first failure."""

    token: int
    failure: str
