"""Predict routing: rows checked at the door, then sent through a batcher to the deployment's
Serve handle, again when a replica was lost, until the call's deadline."""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from anneal.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from anneal.settings import Settings
from anneal.types import Deployment, DeploymentState, Prediction, Tensor
from cluster.server.access import DeploymentKey, deployment_key, stored_deployment
from cluster.server.batching import Answers, PredictBatcher
from cluster.server.principals import Principal
from cluster.serving.deploy import app_name
from cluster.serving.replica import RowsRefused
from cluster.store.store import Store
from trainers.registry import registered

log = logging.getLogger("anneal.predict")

PREDICT_TIMEOUT_S = 30.0
# A route is checked against the stored deployment this often: a study's driver that rolled
# the deployment over (deploy.auto) cannot tell this server's routes to go.
ROUTE_CHECK_S = 2.0
MAX_BATCHES_IN_FLIGHT = 64
# Waits between sends of a Predict whose replica was lost: growing to the last, then steady.
PREDICT_RETRY_WAITS_S = (0.05, 0.1, 0.2, 0.5, 1.0)
# Batches up to this many rows and values go to a replica over Serve's direct gRPC channel,
# which skips a Ray task's hops (about 1 ms a call here) but carries messages of at most
# 4 MiB each way; larger ones go as Ray tasks, through the object store.
DIRECT_MAX_ROWS = 256
DIRECT_MAX_VALUES = 65_536


def check_rows(rows: Sequence[Sequence[float]], field: str = "rows") -> None:
    """Rows of one width and finite values only: a NaN or an infinity would come back as a
    confident-looking label. (The model checks the width against its own features.)"""
    width = len(rows[0])
    for index, row in enumerate(rows):
        if len(row) != width:
            raise InvalidArgument.field(f"{field}[{index}]", f"has {len(row)} values; {field}[0] has {width}")
        if not all(math.isfinite(value) for value in row):
            raise InvalidArgument.field(f"{field}[{index}]", "holds a NaN or an infinite value")


def rows_of_tensors(tensors: Sequence[Tensor], input_shape: tuple[int, ...] | None) -> list[list[float]]:
    """Each tensor as the flat row its model takes, when it has the model's input shape and as
    many values as that shape holds; `None` when the shape is not known here (a trainer the
    server does not list), which leaves the model to check the row's width."""
    if input_shape == ():
        raise InvalidArgument.field("tensors", "this model takes rows of numbers; send rows")
    for index, tensor in enumerate(tensors):
        if input_shape is not None and tuple(tensor.shape) != input_shape:
            given, taken = _shape_text(tensor.shape), _shape_text(input_shape)
            raise InvalidArgument.field(f"tensors[{index}]", f"has shape {given}; the model takes {taken}")
        holds = math.prod(tensor.shape) if all(dimension > 0 for dimension in tensor.shape) else 0
        if len(tensor.values) != holds:
            shape = _shape_text(tensor.shape)
            raise InvalidArgument.field(
                f"tensors[{index}]", f"has {len(tensor.values)} values; its shape {shape} holds {holds}"
            )
    return [list(tensor.values) for tensor in tensors]


def _shape_text(shape: Sequence[int]) -> str:
    return "×".join(map(str, shape)) or "()"


def ask(handle: Any, rows: list[list[float]], timeout_s: float) -> Answers:
    """The replica's answers to `rows` through a Serve handle. The replica's RowsRefused comes
    back as itself over Serve's direct gRPC channel, and as a RayTaskError that is one too when
    sent as a Ray task; either way it is raised with the model's message alone."""
    try:
        return cast(Answers, handle.predict.remote(rows).result(timeout_s=timeout_s))
    except RowsRefused as refused:
        raise RowsRefused(str(getattr(refused, "cause", refused))) from None


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


def fits_direct(rows: Sequence[Sequence[float]]) -> bool:
    """Whether a batch is small enough for Serve's direct gRPC channel to a replica (and its
    answers too: a few values per row)."""
    return len(rows) <= DIRECT_MAX_ROWS and sum(map(len, rows)) <= DIRECT_MAX_VALUES


def batches_in_flight(deployment: Deployment) -> int:
    """How many merged batches Predict keeps on their way to a deployment at once: what its
    replicas take at autoscaling's target (Serve scales on the requests in flight, so fewer
    would never let it add a replica), or two per fixed replica; two at the least."""
    scaling = deployment.autoscaling
    if scaling is not None:
        wanted = math.ceil(scaling.max_replicas * scaling.target_ongoing_requests)
    else:
        wanted = 2 * deployment.replicas
    return min(max(2, wanted), MAX_BATCHES_IN_FLIGHT)


class PredictRouter:
    """Predict for a principal, through one batcher per deployment, kept until it fails or Deploy
    replaces the deployment (`forget`).

    Looking up the deployment and its handle per call costs a store query and a Serve
    controller round trip, more than the prediction.
    """

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self._routes: dict[DeploymentKey, Route] = {}
        self._making = threading.Lock()

    def predict(
        self, name: str, rows: Sequence[Sequence[float]], principal: Principal, tensors: Sequence[Tensor] = ()
    ) -> list[Prediction]:
        """Each example's answer: `rows` of numbers, or `tensors` of the model's input shape."""
        key = deployment_key(name, principal)
        field, count = ("tensors", len(tensors)) if tensors else ("rows", len(rows))
        if rows and tensors:
            raise InvalidArgument.field("tensors", "send rows or tensors, not both")
        if not count:
            raise InvalidArgument.field("rows", "send at least one row")
        if count > self.settings.max_predict_rows:
            raise InvalidArgument.field(
                field, f"has {count} {field}; at most {self.settings.max_predict_rows} per call"
            )
        route = self._route(key, name)
        if tensors:
            rows = rows_of_tensors(tensors, route.input_shape)
        check_rows(rows, field)
        try:
            answers = route.batcher.predict([list(r) for r in rows], timeout_s=PREDICT_TIMEOUT_S)
        except TimeoutError:
            self.forget(key)
            raise Unavailable(f"deployment {name} did not answer within {PREDICT_TIMEOUT_S:.0f} s") from None
        except RowsRefused as error:
            raise InvalidArgument.field(field, str(error)) from None
        except Exception:
            self.forget(key)  # the next call looks the deployment up afresh
            raise
        return answers

    def known_deployment(self, name: str, principal: Principal) -> DeploymentKey | None:
        """(owner, name) of the stored deployment `name` names for the principal, or None when
        there is none. A deployment Predict has a route to is known without asking the store."""
        try:
            key = deployment_key(name, principal)
            if key not in self._routes:
                stored_deployment(self.store, key, name)
        except NotFound:
            return None
        return key

    def forget(self, key: DeploymentKey) -> None:
        """Drops the deployment's route: the next call looks it up afresh. Calls under way
        through it finish, and its batcher's threads end."""
        route = self._routes.pop(key, None)
        if route is not None:
            route.batcher.close()

    def _route(self, key: DeploymentKey, name: str) -> Route:
        """The batcher in front of the deployment's Serve handle, looked up once and then kept."""
        route = self._routes.get(key)
        if route is not None and not self._changed(route, key, name):
            return route
        # One at a time: calls that race here would each initialise the app's Serve handle,
        # and every router made so reports its own load to Serve's autoscaler under the one
        # handle id, the idle ones hiding the busy one's.
        with self._making:
            route = self._routes.get(key)
            if route is None:
                route = self._new_route(key, name)
                self._routes[key] = route
            return route

    def _new_route(self, key: DeploymentKey, name: str) -> Route:
        deployment = stored_deployment(self.store, key, name)
        if deployment.state is DeploymentState.DELETED:
            raise NotFound(f"deployment {name} was deleted")
        # DEPLOYING: a rollout, whose old replicas answer until the new ones do.
        if deployment.state not in (DeploymentState.RUNNING, DeploymentState.DEPLOYING):
            raise FailedPrecondition(f"deployment {name} is {deployment.state.value}")
        from ray import serve
        from ray.serve.exceptions import RayServeException

        try:
            by_task = serve.get_app_handle(app_name(*key))
        except RayServeException as error:
            raise NotFound(f"deployment {name} is not running in Ray Serve: {error}") from None
        direct = by_task.options(_by_reference=False)

        def call(rows: list[list[float]]) -> Answers:
            handle = direct if fits_direct(rows) else by_task
            return retry_lost_replicas(lambda timeout_s: ask(handle, rows, timeout_s), PREDICT_TIMEOUT_S, name)

        batcher = PredictBatcher(call, deployment.max_batch_size, dispatchers=batches_in_flight(deployment))
        return Route(batcher, self._input_shape(deployment.study_id), deployment.updated_at, time.monotonic())

    def _changed(self, route: Route, key: DeploymentKey, name: str) -> bool:
        """Whether the stored deployment changed since the route was made (asked every
        ROUTE_CHECK_S); a changed one's route is dropped."""
        if time.monotonic() - route.checked_at < ROUTE_CHECK_S:
            return False
        route.checked_at = time.monotonic()
        if stored_deployment(self.store, key, name).updated_at == route.updated_at:
            return False
        self.forget(key)
        return True

    def _input_shape(self, study_id: str) -> tuple[int, ...] | None:
        """The input shape of the deployed study's trainer; None for one the server does not list."""
        info = registered().get(self.store.get_study(study_id).spec.trainer)
        return info.input_shape if info is not None else None


@dataclass
class Route:
    batcher: PredictBatcher
    input_shape: tuple[int, ...] | None  # the model's, to check tensors against
    updated_at: datetime | None = None  # the stored deployment's, when the route was made
    checked_at: float = field(default_factory=time.monotonic)  # when last compared with the store
