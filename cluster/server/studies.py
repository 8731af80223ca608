"""The study domain: what CreateStudy, GetStudy, ListStudies, WatchStudy and CancelStudy do, in
plain Python (no gRPC here), for a principal (`cluster.server.access`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

from anneal.errors import FailedPrecondition, InvalidSpec, NotFound, ResourceExhausted, Unavailable
from anneal.settings import Settings
from anneal.spec import Objective, StudySpec
from anneal.types import EventKind, Study, StudyEvent, StudyState, Trial, pareto_front
from cluster.server.access import ID_PATTERN
from cluster.server.jobs import Jobs
from cluster.server.limits import StreamSlots, check_capacity, check_spec_limits
from cluster.server.principals import Principal
from cluster.store.store import Store
from trainers.registry import check_spec


class Studies:
    """Creates studies (each one a Ray job that drives it), shows, follows and cancels them."""

    def __init__(self, settings: Settings, store: Store, jobs: Jobs) -> None:
        self.settings = settings
        self.store = store
        self.jobs = jobs
        self._admission = threading.Lock()  # one quota check and create at a time
        self._watches = StreamSlots(settings.max_watch_streams)

    def create_study(self, spec: StudySpec, principal: Principal) -> Study:
        check_spec_limits(spec, self.settings)
        check_spec(spec, data_roots=self.settings.data_roots)
        check_capacity(spec, self.jobs.capacity())
        self._check_warm_start(spec, principal)
        with self._admission:
            self._check_quotas(spec, principal)
            study = self.store.create_study(spec, owner=principal.name)
        try:
            job_id = self.jobs.submit(study.study_id)
        except Exception as error:
            self.store.transition(
                study.study_id, [StudyState.PENDING], StudyState.FAILED, error=f"could not submit the Ray job: {error}"
            )
            raise Unavailable(f"could not submit the study to Ray: {error}") from error
        self.store.update_study(study.study_id, ray_job_id=job_id)
        return self.store.get_study(study.study_id)

    def _check_warm_start(self, spec: StudySpec, principal: Principal) -> None:
        """Each study to warm-start from is the caller's own (another's is NotFound, an admin's
        included) and can teach this one's sampler: the same objective, the same domain for
        each parameter both tune."""
        errors = []
        for index, study_id in enumerate(spec.search.warm_start):
            earlier = self.get_study(study_id, principal)
            if earlier.owner != principal.name:
                raise NotFound(f"no study {study_id!r}")
            errors += spec.warm_start_errors(earlier.spec, index)
        if errors:
            raise InvalidSpec(errors)

    def _check_quotas(self, spec: StudySpec, principal: Principal) -> None:
        active = self.store.active_specs(principal.name)
        studies = _quota(principal.max_concurrent_studies, self.settings.max_concurrent_studies)
        if len(active) + 1 > studies:
            raise ResourceExhausted(
                f"{principal.name} has {len(active)} pending or running studies; the quota is {studies}"
            )
        trials = _quota(principal.max_concurrent_trials, self.settings.max_concurrent_trials)
        running = sum(s.budget.max_concurrent_trials for s in active)
        if running + spec.budget.max_concurrent_trials > trials:
            raise ResourceExhausted(
                f"{principal.name}'s studies may run {trials} trials at once; {running} are taken and this "
                f"study asks for {spec.budget.max_concurrent_trials} (budget.max_concurrent_trials)"
            )

    def get_study(self, study_id: str, principal: Principal) -> Study:
        if not ID_PATTERN.fullmatch(study_id):
            raise NotFound(f"no study {study_id!r}")
        study = self.store.get_study(study_id)
        if not principal.sees(study.owner):
            raise NotFound(f"no study {study_id!r}")
        return study

    def list_studies(self, principal: Principal) -> list[Study]:
        return self.store.list_studies(owner=None if principal.admin else principal.name)

    def watch_study(
        self,
        study_id: str,
        principal: Principal,
        after_sequence: int = 0,
        *,
        poll_s: float = 0.25,
        stopped: Callable[[], bool] = lambda: False,
    ) -> Iterator[StudyEvent]:
        """The study's events in order, until its STUDY_ENDED event (or until `stopped()`)."""
        study = self.get_study(study_id, principal)  # NotFound before the stream starts
        front = ParetoFront(study.spec.goals) if study.spec.is_multi_objective() else None
        with self._watches.hold(principal.name):
            cursor = after_sequence
            if front is not None:
                self._seed_front(front, study_id, after_sequence)
            while not stopped():
                ended = self.store.state_of(study_id).is_terminal  # read first: its last events precede it
                batch = self.store.events_after(study_id, cursor)
                for event in batch:
                    cursor = event.sequence
                    yield front.mark(event) if front is not None else event
                    if event.kind is EventKind.STUDY_ENDED:
                        return
                if not batch:
                    if ended:  # a watch from past the study's last event
                        return
                    time.sleep(poll_s)

    def _seed_front(self, front: ParetoFront, study_id: str, before_sequence: int) -> None:
        """Teaches `front` the trials that ended before a watch that starts mid-study."""
        cursor = 0
        while cursor < before_sequence:
            batch = [event for event in self.store.events_after(study_id, cursor) if event.sequence <= before_sequence]
            if not batch:
                return
            for event in batch:
                front.mark(event)
            cursor = batch[-1].sequence

    def open_watch_streams(self) -> int:
        return self._watches.total()

    def cancel_study(self, study_id: str, principal: Principal) -> Study:
        """Stops a pending or running study; cancelling a cancelled study is harmless."""
        study = self.get_study(study_id, principal)
        if study.state is StudyState.CANCELLED:
            return study
        moved = self.store.transition(
            study_id, [StudyState.PENDING, StudyState.RUNNING], StudyState.CANCELLED, message="cancelled by request"
        )
        if not moved:
            current = self.store.get_study(study_id)
            if current.state is StudyState.CANCELLED:
                return current
            raise FailedPrecondition(f"study {study_id} already ended {current.state.value}")
        self.jobs.stop(study.ray_job_id)
        return self.store.get_study(study_id)


class ParetoFront:
    """A watch's running Pareto front: the trials ended so far, so each TRIAL_ENDED and the
    STUDY_ENDED event carry the front as it stood then."""

    def __init__(self, goals: list[Objective]) -> None:
        self.goals = goals
        self.ended: dict[str, Trial] = {}

    def mark(self, event: StudyEvent) -> StudyEvent:
        if event.kind is EventKind.TRIAL_ENDED and event.trial is not None:
            self.ended[event.trial.trial_id] = event.trial
        elif event.kind is not EventKind.STUDY_ENDED:
            return event
        front = [trial.trial_id for trial in pareto_front(list(self.ended.values()), self.goals)]
        return event.model_copy(update={"pareto_front": front})


def _quota(own: int | None, default: int) -> int:
    return default if own is None else own
