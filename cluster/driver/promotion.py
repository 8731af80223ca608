"""Promotion-type ASHA (Li et al. 2020, "A System for Massively Parallel Hyperparameter Tuning",
Algorithm 2): a trial that reaches a rung waits there, paused at its rung checkpoint, until it
ranks in the top 1/reduction_factor of the trials recorded at that rung; meanwhile the study's
free slots go to promotable trials first, then to new ones.

Ray's `ASHAScheduler` is the stopping kind: a trial goes on from a rung unless it ranks below
the top 1/reduction_factor of those already recorded there, so the first trials at each rung
are compared with nothing and run to their end. Here nothing goes on for being first.

The study's slots are kept here and not by Tune's `ConcurrencyLimiter`, which counts a paused
trial as running (two paused trials would starve a study of two slots): the searcher asks
`admits_new_trial` before each suggestion (`cluster.driver.tuning.AdoptingOptunaSearch`).

Once no new trial can start, paused trials are promoted by the looser rule that Ray's ASHA
applies, the top ⌈n/reduction_factor⌉ of their rung, highest rung first; the rest are stopped
when nothing runs any more. A trial whose rung result carried no checkpoint cannot be paused, and
is decided as Ray's ASHA decides.
"""

from __future__ import annotations

import math
from collections.abc import Container
from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from cluster.driver.paretoasha import asha_rungs
from cluster.trial.context import CHECKPOINTED


class PromotionASHA(FIFOScheduler):
    def __init__(
        self,
        metric: str,
        mode: str,
        *,
        time_attr: str,
        max_t: int,
        grace_period: int,
        reduction_factor: int,
        slots: int,
    ) -> None:
        super().__init__()
        self.objective = metric
        self.sign = 1.0 if mode == "max" else -1.0
        self.time_attr = time_attr
        self.reduction_factor = reduction_factor
        self.slots = slots
        # Where trials may wait: ASHA's rungs below max_t (a trial ends at max_t on its own).
        self.rungs = [rung for rung in asha_rungs(max_t, grace_period, reduction_factor) if rung < max_t]
        self.recorded: dict[int, dict[str, float]] = {rung: {} for rung in self.rungs}  # higher is better
        self.promoted: dict[int, set[str]] = {rung: set() for rung in self.rungs}
        self.paused: dict[str, int] = {}  # trial id -> the rung it waits at
        self.live: set[str] = set()  # added and not ended: running, about to run, or paused

    # ------------------------------------------------------------------ Tune's hooks

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        # A restored Tuner adds the trials that ended before, too.
        if trial.status not in (Trial.TERMINATED, Trial.ERROR):
            self.live.add(trial.trial_id)

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> str:
        return self.decide(trial.trial_id, result)

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> None:
        self._forget(trial.trial_id)

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        self._forget(trial.trial_id)

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        self._forget(trial.trial_id)

    def choose_trial_to_run(self, tune_controller: Any) -> Trial | None:
        """A promotable paused trial when a slot is free, else a pending one. Once no new trial
        can start, paused trials are promoted by the looser rule, and stopped when none is left
        to promote and nothing runs."""
        if self.running() >= self.slots:
            return None
        trials = tune_controller.get_trials()
        pending = [trial for trial in trials if trial.status == Trial.PENDING]
        # Paused in Tune, not only here: a trial is still saving its pause for a step or two.
        waiting = {trial.trial_id: trial for trial in trials if trial.status == Trial.PAUSED}
        ending = not pending and tune_controller.search_alg.is_finished()
        promotion = self.next_promotion(ending, among=waiting)
        if promotion is not None:
            trial_id, rung = promotion
            del self.paused[trial_id]
            self.promoted[rung].add(trial_id)
            return waiting[trial_id]
        if pending:
            return pending[0]
        if ending and self.running() == 0:
            for trial_id in [trial_id for trial_id in self.paused if trial_id in waiting]:
                tune_controller.stop_trial(waiting[trial_id])
        return None

    def debug_string(self) -> str:
        counts = " | ".join(f"epoch {rung}: {len(self.recorded[rung])} trials" for rung in self.rungs)
        return f"PromotionASHA: {counts}; {len(self.paused)} paused"

    # ------------------------------------------------------------------ the rule

    def admits_new_trial(self) -> bool:
        """Whether a new trial may start: a slot is free and no paused trial is owed it."""
        return self.running() < self.slots and self.next_promotion(ending=False) is None

    def running(self) -> int:
        """Trials that hold or are about to hold a slot: the live ones not paused."""
        return len(self.live) - len(self.paused)

    def decide(self, trial_id: str, result: dict[str, Any]) -> str:
        """At the highest rung the result has reached and the trial has no record at: go on when
        the trial ranks in the top ⌊n/reduction_factor⌋ there; else wait, paused, when it left a
        checkpoint at that rung; else (it cannot wait) go on only within Ray's looser top."""
        epoch, value = result.get(self.time_attr), result.get(self.objective)
        if epoch is None or value is None:
            return TrialScheduler.CONTINUE
        reached = [rung for rung in self.rungs if rung <= epoch and trial_id not in self.recorded[rung]]
        if not reached:
            return TrialScheduler.CONTINUE
        rung = reached[-1]
        self.recorded[rung][trial_id] = self.sign * float(value)
        if self.ranks_within(rung, trial_id, ending=False):
            self.promoted[rung].add(trial_id)
            return TrialScheduler.CONTINUE
        if epoch == rung and result.get(CHECKPOINTED):
            self.paused[trial_id] = rung
            return TrialScheduler.PAUSE
        return TrialScheduler.CONTINUE if self.ranks_within(rung, trial_id, ending=True) else TrialScheduler.STOP

    def next_promotion(self, ending: bool, among: Container[str] | None = None) -> tuple[str, int] | None:
        """(trial id, rung) of the paused trial to resume next (of those `among`, when given):
        from the highest rung down, the best that ranks within its rung's top (the looser top
        when `ending`); None when none does."""
        for rung in reversed(self.rungs):
            waiting = [
                trial_id for trial_id, at in self.paused.items() if at == rung and (among is None or trial_id in among)
            ]
            for trial_id in sorted(waiting, key=self.recorded[rung].__getitem__, reverse=True):
                if self.ranks_within(rung, trial_id, ending):
                    return trial_id, rung
        return None

    def ranks_within(self, rung: int, trial_id: str, ending: bool) -> bool:
        """Whether the trial is among the top ⌊n/reduction_factor⌋ recorded at the rung (⌈…⌉ when
        `ending`, as Ray's ASHA keeps) and has not gone on from it already."""
        recorded = self.recorded[rung]
        share = len(recorded) / self.reduction_factor
        top = sorted(recorded, key=recorded.__getitem__, reverse=True)[: math.ceil(share) if ending else int(share)]
        return trial_id in top and trial_id not in self.promoted[rung]

    def _forget(self, trial_id: str) -> None:
        self.live.discard(trial_id)
        self.paused.pop(trial_id, None)
