"""The one stand-in for Ray's Jobs API in the unit tests (the real one runs in tests/integration).

It answers the `Jobs` protocol the server's domain and driver keeper use, and records what
they asked of it.
"""

from __future__ import annotations

from collections.abc import Callable

from cluster.server.jobs import STANDBY_PREFIX, Jobs


class FakeJobs(Jobs):
    """`gone` lists the jobs that have ended (a test adds to it); `driving`, the jobs given a study."""

    def __init__(self) -> None:
        self.submitted: list[str] = []  # study ids, in order
        self.stopped: list[str] = []  # job ids
        self.restarts: list[tuple[str, str, bool]] = []  # (study id, job id, resume)
        self.standby: str | None = None
        self.standbys_started = 0
        self.gone: set[str] = set()
        self.driving: set[str] = set()
        self.resources: dict[str, float] = {"CPU": 4.0}  # the cluster's, as `capacity` answers

    def submit(self, study_id: str) -> str:
        self.submitted.append(study_id)
        job_id = f"job-{study_id}"
        self.driving.add(job_id)
        return job_id

    def submit_restart(self, study_id: str, job_id: str, *, resume: bool) -> str:
        self.restarts.append((study_id, job_id, resume))
        self.driving.add(job_id)
        return job_id

    def stop(self, job_id: str) -> None:
        self.stopped.append(job_id)

    def is_gone(self, job_id: str) -> bool:
        return job_id in self.gone

    def last_words(self, job_id: str) -> str:
        return "FAILED: killed"

    def capacity(self) -> dict[str, float]:
        return dict(self.resources)

    def drivers_running(self) -> bool:
        return bool(self.driving - self.gone)

    def wants_standby(self) -> bool:
        return self.standby is None or self.standby in self.gone

    def start_standby(self) -> str:
        self.standbys_started += 1
        self.standby = f"{STANDBY_PREFIX}{self.standbys_started}"
        return self.standby

    def stop_standby(self) -> None:
        self.standby = None

    def adopt_standby(self, holds_study: Callable[[str], bool]) -> str | None:
        return None
