"""Early stopping with several objectives: asynchronous successive halving whose rungs keep
trials by non-dominated rank (MO-ASHA, Schmucker et al. 2021), not by one objective alone.

The rungs are ASHA's own (grace_period × reduction_factor^k below max_t), so a trial's
decision epochs (`cluster.driver.tuning.decision_epochs`) are the same. When a trial reaches
a rung, it joins the points recorded there, which are ranked by Pareto front and, within a
front, by crowding distance (spread-out points first, as NSGA-II does); it goes on when it
ranks within the top 1/reduction_factor of them (rounded up), as ASHA's quantile rule keeps
the top 1/reduction_factor of one objective.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from anneal.pareto import Point, oriented, ranked
from anneal.spec import Objective


def asha_rungs(max_t: int, grace_period: int, reduction_factor: int) -> list[int]:
    """The epochs where ASHA decides, lowest first: those Ray's ASHA makes, grace_period ×
    reduction_factor^k, as many as fit below max_t by its own count."""
    count = int(math.log(max_t / grace_period) / math.log(reduction_factor) + 1)
    return [grace_period * reduction_factor**k for k in range(count)]


class ParetoASHA(FIFOScheduler):
    def __init__(
        self,
        goals: Sequence[Objective],
        *,
        time_attr: str,
        max_t: int,
        grace_period: int,
        reduction_factor: int,
    ) -> None:
        super().__init__()
        self.goals = list(goals)
        self.time_attr = time_attr
        self.max_t = max_t
        self.reduction_factor = reduction_factor
        # Highest first, as a trial is decided at the highest rung it has reached.
        self.rungs: list[tuple[int, dict[str, Point]]] = [
            (milestone, {}) for milestone in reversed(asha_rungs(max_t, grace_period, reduction_factor))
        ]

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> str:
        return self.decide(trial.trial_id, result)

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> None:
        # A trial's last result counts at its rung too, as in Ray's ASHA.
        self.decide(trial.trial_id, result)

    def decide(self, trial_id: str, result: dict[str, Any]) -> str:
        point = oriented(result, self.goals)
        if self.time_attr not in result or point is None:
            return TrialScheduler.CONTINUE
        epoch = result[self.time_attr]
        if epoch >= self.max_t:
            return TrialScheduler.STOP
        for milestone, recorded in self.rungs:
            if epoch < milestone or trial_id in recorded:
                continue
            promoted = self.promoted(point, list(recorded.values()))
            recorded[trial_id] = point
            return TrialScheduler.CONTINUE if promoted else TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def promoted(self, point: Point, recorded: list[Point]) -> bool:
        """Whether `point` ranks within the top 1/reduction_factor of the rung with it (the
        first trial at a rung always goes on)."""
        if not recorded:
            return True
        everyone = [*recorded, point]
        keep = math.ceil(len(everyone) / self.reduction_factor)
        return len(everyone) - 1 in ranked(everyone)[:keep]

    def debug_string(self) -> str:
        return "ParetoASHA: " + " | ".join(f"epoch {m}: {len(r)} trials" for m, r in self.rungs)
