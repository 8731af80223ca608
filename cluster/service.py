"""The domain of the service: what each RPC does, in plain Python (no gRPC here)."""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence

from anneal.errors import FailedPrecondition, FieldError, InvalidSpec, NotFound, ResourceExhausted, Unavailable
from anneal.settings import Settings
from anneal.spec import StudySpec
from anneal.types import Deployment, DeploymentState, EventKind, Prediction, Study, StudyEvent, StudyState
from cluster.auth import Principal
from cluster.batching import Answers, PredictBatcher
from cluster.jobs import JobLauncher, job_id_for
from cluster.serving import app_name, check_model_package, deploy_model, route_for
from cluster.store import Store, now
from trainers.registry import check_spec

log = logging.getLogger("anneal.service")

PREDICT_TIMEOUT_S = 30.0
# Waits between sends of a Predict whose replica was lost: growing to the last, then steady.
PREDICT_RETRY_WAITS_S = (0.05, 0.1, 0.2, 0.5, 1.0)
DRIVER_KEEPER_INTERVAL_S = 1.0
MAX_BATCH_SIZE = 4096  # as the spec's deploy.max_batch_size
# Ids and names the service makes or accepts; anything else names nothing that exists.
ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")


def check_rows(rows: Sequence[Sequence[float]]) -> None:
    """Rows of one width and finite values only: a NaN or an infinity would come back as a
    confident-looking label. (The model checks the width against its own features.)"""
    width = len(rows[0])
    for index, row in enumerate(rows):
        if len(row) != width:
            raise InvalidSpec.field(f"rows[{index}]", f"has {len(row)} values; rows[0] has {width}")
        if not all(math.isfinite(value) for value in row):
            raise InvalidSpec.field(f"rows[{index}]", "holds a NaN or an infinite value")


def check_spec_limits(spec: StudySpec, settings: Settings) -> None:
    """The sizes a server accepts of one study, each named by its field."""
    errors = []
    space = spec.search_space
    if len(space) > settings.max_search_space_params:
        errors.append(
            FieldError("search_space", f"tunes {len(space)} parameters; at most {settings.max_search_space_params}")
        )
    for name, domain in space.items():
        if domain.categorical is not None and len(domain.categorical) > settings.max_categorical_choices:
            message = f"has {len(domain.categorical)} choices; at most {settings.max_categorical_choices}"
            errors.append(FieldError(f"search_space.{name}.categorical", message))
    if spec.budget.max_trials > settings.max_trials:
        errors.append(FieldError("budget.max_trials", f"is {spec.budget.max_trials}; at most {settings.max_trials}"))
    if spec.deploy.replicas > settings.max_replicas:
        errors.append(FieldError("deploy.replicas", f"is {spec.deploy.replicas}; at most {settings.max_replicas}"))
    if errors:
        raise InvalidSpec(errors)


def check_spec_size(size_bytes: int, settings: Settings) -> None:
    if size_bytes > settings.max_spec_bytes:
        raise InvalidSpec.field("spec", f"is {size_bytes} bytes encoded; at most {settings.max_spec_bytes}")


class StreamSlots:
    """Open streams per principal, at most `limit` each."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: Counter[str] = Counter()
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def hold(self, owner: str) -> Iterator[None]:
        with self._lock:
            if self._open[owner] >= self.limit:
                raise ResourceExhausted(f"{owner} has {self.limit} WatchStudy streams open, the most allowed")
            self._open[owner] += 1
        try:
            yield
        finally:
            with self._lock:
                self._open[owner] -= 1


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
    """Serves the study's best model as its owner's deployment named after the study. A model
    package that does not load is refused before the running version is touched."""
    study = store.get_study(study_id)
    if study.state is not StudyState.SUCCEEDED or not study.model_uri:
        raise FailedPrecondition(f"study {study_id} is {study.state.value}; only a SUCCEEDED study can be deployed")
    replicas = replicas or study.spec.deploy.replicas
    deployment = Deployment(
        owner=study.owner,
        name=study.name,
        study_id=study_id,
        state=DeploymentState.DEPLOYING,
        replicas=replicas,
        route=route_for(study.owner, study.name),
        model_uri=study.model_uri,
        updated_at=now(),
        max_batch_size=max_batch_size or study.spec.deploy.max_batch_size,
    )
    check_model_package(study.model_uri, settings.mlflow_tracking_uri)
    store.put_deployment(deployment)
    try:
        deploy_model(
            study.owner, study.name, study.model_uri, settings.mlflow_tracking_uri, replicas, settings.serve_http_port
        )
    except Exception as error:
        store.put_deployment(deployment.model_copy(update={"state": DeploymentState.FAILED, "error": repr(error)}))
        raise
    running = deployment.model_copy(update={"state": DeploymentState.RUNNING, "updated_at": now()})
    store.put_deployment(running)
    return running


class AnnealService:
    """Every call acts for a principal: it sees and changes only what it owns (an admin, all);
    what it may not see answers NotFound, as if it did not exist."""

    def __init__(self, settings: Settings, store: Store, jobs: JobLauncher) -> None:
        self.settings = settings
        self.store = store
        self.jobs = jobs
        self._routes: dict[tuple[str, str], PredictBatcher] = {}
        self._admission = threading.Lock()  # one quota check and create at a time
        self._watches = StreamSlots(settings.max_watch_streams)

    # ------------------------------------------------------------ studies

    def create_study(self, spec: StudySpec, principal: Principal) -> Study:
        check_spec_limits(spec, self.settings)
        check_spec(spec, data_roots=self.settings.data_roots)
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
        self.get_study(study_id, principal)  # NotFound before the stream starts
        with self._watches.hold(principal.name):
            cursor = after_sequence
            while not stopped():
                ended = self.store.state_of(study_id).is_terminal  # read first: its last events precede it
                batch = self.store.events_after(study_id, cursor)
                for event in batch:
                    cursor = event.sequence
                    yield event
                    if event.kind is EventKind.STUDY_ENDED:
                        return
                if not batch:
                    if ended:  # a watch from past the study's last event
                        return
                    time.sleep(poll_s)

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

    def deploy(self, study_id: str, principal: Principal, replicas: int = 0, max_batch_size: int = 0) -> Deployment:
        if not 0 <= replicas <= self.settings.max_replicas:
            raise InvalidSpec.field("replicas", f"must be between 0 and {self.settings.max_replicas}")
        if not 0 <= max_batch_size <= MAX_BATCH_SIZE:
            raise InvalidSpec.field("max_batch_size", f"must be between 0 and {MAX_BATCH_SIZE}")
        self.get_study(study_id, principal)
        deployment = deploy_study(self.store, self.settings, study_id, replicas, max_batch_size)
        self._routes.pop((deployment.owner, deployment.name), None)
        return deployment

    def _deployment_key(self, name: str, principal: Principal) -> tuple[str, str]:
        """(owner, name) of the deployment `name` (the caller's own) or `owner/name` names."""
        owner, _, plain = name.rpartition("/")
        owner = owner or principal.name
        if not ID_PATTERN.fullmatch(plain) or not ID_PATTERN.fullmatch(owner) or not principal.sees(owner):
            raise NotFound(f"no deployment {name!r}")
        return owner, plain

    def get_deployment(self, name: str, principal: Principal) -> Deployment:
        return self._stored_deployment(self._deployment_key(name, principal), name)

    def _stored_deployment(self, key: tuple[str, str], name: str) -> Deployment:
        """The stored deployment of `key`; NotFound names it as the caller did."""
        owner, plain = key
        try:
            return self.store.get_deployment(plain, owner)
        except NotFound:
            raise NotFound(f"no deployment {name!r}") from None

    def predict(self, name: str, rows: Sequence[Sequence[float]], principal: Principal) -> list[Prediction]:
        key = self._deployment_key(name, principal)
        if not rows:
            raise InvalidSpec.field("rows", "send at least one row")
        if len(rows) > self.settings.max_predict_rows:
            raise InvalidSpec.field("rows", f"has {len(rows)} rows; at most {self.settings.max_predict_rows} per call")
        check_rows(rows)
        from ray.exceptions import RayTaskError

        try:
            answers = self._route(key, name).predict([list(r) for r in rows], timeout_s=PREDICT_TIMEOUT_S)
        except TimeoutError:
            self._routes.pop(key, None)
            raise Unavailable(f"deployment {name} did not answer within {PREDICT_TIMEOUT_S:.0f} s") from None
        except RayTaskError as error:
            if isinstance(error.cause, ValueError | TypeError):
                raise InvalidSpec.field("rows", str(error.cause)) from None
            self._routes.pop(key, None)
            raise
        except Exception:
            self._routes.pop(key, None)  # the next call looks the deployment up afresh
            raise
        return [Prediction(label=label, probabilities=probabilities) for label, probabilities in answers]

    def _route(self, key: tuple[str, str], name: str) -> PredictBatcher:
        """The batcher in front of the deployment's Serve handle, looked up once and then kept.

        Looking up the deployment and its handle per call costs a store query and a Serve
        controller round trip, more than the prediction; Deploy drops the cached route.
        """
        route = self._routes.get(key)
        if route is not None:
            return route
        deployment = self._stored_deployment(key, name)
        if deployment.state is not DeploymentState.RUNNING:
            raise FailedPrecondition(f"deployment {name} is {deployment.state.value}")
        from ray import serve
        from ray.serve.exceptions import RayServeException

        try:
            handle = serve.get_app_handle(app_name(*key))
        except RayServeException as error:
            raise NotFound(f"deployment {name} is not running in Ray Serve: {error}") from None

        def call(rows: list[list[float]]) -> list[tuple[int, list[float]]]:
            return retry_lost_replicas(
                lambda timeout_s: handle.predict.remote(rows).result(timeout_s=timeout_s), PREDICT_TIMEOUT_S, name
            )

        route = PredictBatcher(call, deployment.max_batch_size)
        self._routes[key] = route
        return route


def _quota(own: int | None, default: int) -> int:
    return default if own is None else own
