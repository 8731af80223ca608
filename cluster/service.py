"""The domain of the service: what each RPC does, in plain Python (no gRPC here)."""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence

from anneal.errors import FailedPrecondition, InvalidSpec, NotFound, Unavailable
from anneal.settings import Settings
from anneal.spec import StudySpec
from anneal.types import Deployment, DeploymentState, EventKind, Prediction, Study, StudyEvent, StudyState
from cluster.batching import Answers, PredictBatcher
from cluster.jobs import JobLauncher, job_id_for
from cluster.serving import deploy_model, route_for
from cluster.store import Store, now
from trainers.registry import check_spec

log = logging.getLogger("anneal.service")

PREDICT_TIMEOUT_S = 30.0
# Waits between sends of a Predict whose replica was lost: growing to the last, then steady.
PREDICT_RETRY_WAITS_S = (0.05, 0.1, 0.2, 0.5, 1.0)
DRIVER_KEEPER_INTERVAL_S = 1.0
MAX_PREDICT_ROWS = 10_000


def check_rows(rows: Sequence[Sequence[float]]) -> None:
    """Rows of one width and finite values only: a NaN or an infinity would come back as a
    confident-looking label. (The model checks the width against its own features.)"""
    width = len(rows[0])
    for index, row in enumerate(rows):
        if len(row) != width:
            raise InvalidSpec.field(f"rows[{index}]", f"has {len(row)} values; rows[0] has {width}")
        if not all(math.isfinite(value) for value in row):
            raise InvalidSpec.field(f"rows[{index}]", "holds a NaN or an infinite value")


def retry_lost_replicas(send: Callable[[float], Answers], timeout_s: float, name: str) -> Answers:
    """Sends a Predict with `send(timeout_s)`, again whenever its replica was lost (it died, or
    Serve was replacing it), until `timeout_s` runs out. Predicting twice changes nothing, so
    a repeat is safe; Serve routes it to a live replica, or to the replacement once it is up."""
    from ray.exceptions import RayActorError
    from ray.serve.exceptions import DeploymentUnavailableError, ReplicaUnavailableError

    deadline = time.monotonic() + timeout_s
    for attempt in itertools.count():
        try:
            return send(max(deadline - time.monotonic(), 0.001))
        except (RayActorError, ReplicaUnavailableError, DeploymentUnavailableError) as error:
            wait_s = PREDICT_RETRY_WAITS_S[min(attempt, len(PREDICT_RETRY_WAITS_S) - 1)]
            if time.monotonic() + wait_s >= deadline:
                raise
            log.warning("a replica of %s was lost (%s); sending the call again", name, type(error).__name__)
            time.sleep(wait_s)
    raise AssertionError("unreachable")


def deploy_study(
    store: Store, settings: Settings, study_id: str, replicas: int = 0, max_batch_size: int = 0
) -> Deployment:
    """Serves the study's best model as the Serve application named after the study."""
    study = store.get_study(study_id)
    if study.state is not StudyState.SUCCEEDED or not study.model_uri:
        raise FailedPrecondition(f"study {study_id} is {study.state.value}; only a SUCCEEDED study can be deployed")
    replicas = replicas or study.spec.deploy.replicas
    deployment = Deployment(
        name=study.name,
        study_id=study_id,
        state=DeploymentState.DEPLOYING,
        replicas=replicas,
        route=route_for(study.name),
        model_uri=study.model_uri,
        updated_at=now(),
        max_batch_size=max_batch_size or study.spec.deploy.max_batch_size,
    )
    store.put_deployment(deployment)
    try:
        deploy_model(study.name, study.model_uri, settings.mlflow_tracking_uri, replicas, settings.serve_http_port)
    except Exception as error:
        store.put_deployment(deployment.model_copy(update={"state": DeploymentState.FAILED, "error": repr(error)}))
        raise
    running = deployment.model_copy(update={"state": DeploymentState.RUNNING, "updated_at": now()})
    store.put_deployment(running)
    return running


class AnnealService:
    def __init__(self, settings: Settings, store: Store, jobs: JobLauncher) -> None:
        self.settings = settings
        self.store = store
        self.jobs = jobs
        self._routes: dict[str, PredictBatcher] = {}

    # ------------------------------------------------------------ studies

    def create_study(self, spec: StudySpec) -> Study:
        check_spec(spec)
        study = self.store.create_study(spec)
        try:
            job_id = self.jobs.submit(study.study_id)
        except Exception as error:
            self.store.transition(
                study.study_id, [StudyState.PENDING], StudyState.FAILED, error=f"could not submit the Ray job: {error}"
            )
            raise Unavailable(f"could not submit the study to Ray: {error}") from error
        self.store.update_study(study.study_id, ray_job_id=job_id)
        return self.store.get_study(study.study_id)

    def get_study(self, study_id: str) -> Study:
        return self.store.get_study(study_id)

    def list_studies(self) -> list[Study]:
        return self.store.list_studies()

    def watch_study(
        self,
        study_id: str,
        after_sequence: int = 0,
        *,
        poll_s: float = 0.25,
        stopped: Callable[[], bool] = lambda: False,
    ) -> Iterator[StudyEvent]:
        """The study's events in order, until its STUDY_ENDED event (or until `stopped()`)."""
        self.store.get_study(study_id)  # NotFound before the stream starts
        cursor = after_sequence
        while not stopped():
            batch = self.store.events_after(study_id, cursor)
            for event in batch:
                cursor = event.sequence
                yield event
                if event.kind is EventKind.STUDY_ENDED:
                    return
            if not batch:
                time.sleep(poll_s)

    def cancel_study(self, study_id: str) -> Study:
        """Stops a pending or running study; cancelling a cancelled study is harmless."""
        study = self.store.get_study(study_id)
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

    # ------------------------------------------------------------ study drivers

    def keep_drivers(self, stop: threading.Event, interval_s: float = DRIVER_KEEPER_INTERVAL_S) -> None:
        """Runs `tend_drivers` every `interval_s` until `stop` is set (the server's keeper thread)."""
        try:
            self.jobs.adopt_standby(lambda job_id: self.store.study_for_job(job_id) is not None)
        except Exception:
            log.exception("could not list the cluster's jobs to adopt a standby driver")
        while not stop.wait(interval_s):
            try:
                self.tend_drivers()
            except Exception:
                log.exception("the study driver keeper failed a pass; it tries again")

    def tend_drivers(self) -> None:
        """Starts a new driver for every active study whose driver's job is gone, and starts a
        standby when none is up. Only while no study or study driver runs: its start-up would
        slow them."""
        for study_id, state, job_id, restarts in self.store.driven_studies():
            if self.jobs.is_gone(job_id):
                self._restart_driver(study_id, state, job_id, restarts)
        busy = self.store.count_studies([StudyState.PENDING, StudyState.RUNNING]) or self.jobs.drivers_running()
        if not busy and self.jobs.wants_standby():
            self.jobs.start_standby()

    def _restart_driver(self, study_id: str, state: StudyState, dead_job_id: str, restarts: int) -> None:
        """A RUNNING study resumes from Tune's last snapshot; a PENDING one (its driver, or the
        standby handed it, ended before it started) starts. Past `driver_restarts`, it fails."""
        if restarts >= self.settings.driver_restarts:
            reason = (
                f"the study driver ended {restarts + 1} times before the study did; "
                f"the last, Ray job {dead_job_id}, {self.jobs.last_words(dead_job_id)}"
            )
            self.store.transition(study_id, [state], StudyState.FAILED, error=reason)
            log.error("study %s failed: %s", study_id, reason)
            return
        new_job_id = job_id_for(study_id, restarts + 1)
        if not self.store.claim_driver(study_id, dead_job_id, new_job_id):
            return
        log.warning(
            "the driver of %s study %s (Ray job %s) is gone; submitting %s",
            state.value,
            study_id,
            dead_job_id,
            new_job_id,
        )
        self.jobs.submit_restart(study_id, new_job_id, resume=state is StudyState.RUNNING)

    # ------------------------------------------------------------ serving

    def deploy(self, study_id: str, replicas: int = 0, max_batch_size: int = 0) -> Deployment:
        if replicas < 0:
            raise InvalidSpec.field("replicas", "must be >= 0")
        if max_batch_size < 0:
            raise InvalidSpec.field("max_batch_size", "must be >= 0")
        deployment = deploy_study(self.store, self.settings, study_id, replicas, max_batch_size)
        self._routes.pop(deployment.name, None)
        return deployment

    def get_deployment(self, name: str) -> Deployment:
        return self.store.get_deployment(name)

    def predict(self, name: str, rows: Sequence[Sequence[float]]) -> list[Prediction]:
        if not rows:
            raise InvalidSpec.field("rows", "send at least one row")
        if len(rows) > MAX_PREDICT_ROWS:
            raise InvalidSpec.field("rows", f"at most {MAX_PREDICT_ROWS} rows per call")
        check_rows(rows)
        from ray.exceptions import RayTaskError

        try:
            answers = self._route(name).predict([list(r) for r in rows], timeout_s=PREDICT_TIMEOUT_S)
        except RayTaskError as error:
            if isinstance(error.cause, ValueError | TypeError):
                raise InvalidSpec.field("rows", str(error.cause)) from None
            self._routes.pop(name, None)
            raise
        except Exception:
            self._routes.pop(name, None)  # the next call looks the deployment up afresh
            raise
        return [Prediction(label=label, probabilities=probabilities) for label, probabilities in answers]

    def _route(self, name: str) -> PredictBatcher:
        """The batcher in front of the deployment's Serve handle, looked up once and then kept.

        Looking up the deployment and its handle per call costs a store query and a Serve
        controller round trip, more than the prediction; Deploy drops the cached route.
        """
        route = self._routes.get(name)
        if route is not None:
            return route
        deployment = self.store.get_deployment(name)
        if deployment.state is not DeploymentState.RUNNING:
            raise FailedPrecondition(f"deployment {name} is {deployment.state.value}")
        from ray import serve
        from ray.serve.exceptions import RayServeException

        try:
            handle = serve.get_app_handle(name)
        except RayServeException as error:
            raise NotFound(f"deployment {name} is not running in Ray Serve: {error}") from None

        def call(rows: list[list[float]]) -> list[tuple[int, list[float]]]:
            return retry_lost_replicas(
                lambda timeout_s: handle.predict.remote(rows).result(timeout_s=timeout_s), PREDICT_TIMEOUT_S, name
            )

        route = PredictBatcher(call, deployment.max_batch_size)
        self._routes[name] = route
        return route
