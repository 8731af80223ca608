"""When to start the next standby driver after one ended without a study.

A standby that fails at start-up (a broken environment, a store it cannot reach, a package
missing on the cluster) would otherwise be started again every few seconds forever, each try
costing a Ray job's start-up on the cores trials use. So each failure in a row doubles the
wait before the next try; past `limit` failures the server gives standbys up for a long pause,
says why, and runs studies on jobs of their own (which report their own errors) until a try
after the pause succeeds. A standby that started and waited, or was handed a study, clears
the count.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger("anneal.jobs")

FIRST_WAIT_S = 2.0
LONGEST_WAIT_S = 60.0
FAILURES_BEFORE_PAUSE = 5
PAUSE_S = 600.0


@dataclass
class StandbyRetry:
    first_wait_s: float = FIRST_WAIT_S
    longest_wait_s: float = LONGEST_WAIT_S
    limit: int = FAILURES_BEFORE_PAUSE
    pause_s: float = PAUSE_S
    failures: int = 0  # in a row
    next_try_at: float = 0.0  # on the monotonic clock

    def may_start(self, now: float) -> bool:
        return now >= self.next_try_at

    def failed(self, now: float, job_id: str, why: str) -> None:
        """A standby ended without a study and not of its own accord: wait longer before the next."""
        self.failures += 1
        if self.failures >= self.limit:
            self.next_try_at = now + self.pause_s
            log.error(
                "%d standby drivers in a row failed to start; studies run on Ray jobs of their own, and a "
                "standby is tried again in %.0f s. The last, %s: %s",
                self.failures,
                self.pause_s,
                job_id,
                why,
            )
            return
        wait = min(self.longest_wait_s, self.first_wait_s * 2 ** (self.failures - 1))
        self.next_try_at = now + wait
        log.warning("standby driver %s failed to start (%s); the next is tried in %.0f s", job_id, why, wait)

    def succeeded(self) -> None:
        """A standby was up and well: the cause, if there was one, is gone."""
        if self.failures:
            log.info("a standby driver started after %d failures in a row", self.failures)
        self.failures = 0
        self.next_try_at = 0.0
