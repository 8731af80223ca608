"""Predict routing: rows checked at the door, then sent through a batcher to the deployment's
Serve handle, again when a replica was lost, until the call's deadline."""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable, Sequence

from anneal.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from anneal.settings import Settings
from anneal.types import DeploymentState, Prediction
from cluster.server.access import DeploymentKey, deployment_key, stored_deployment
from cluster.server.batching import Answers, PredictBatcher
from cluster.server.principals import Principal
from cluster.serving.deploy import app_name
from cluster.store.store import Store

log = logging.getLogger("anneal.predict")

PREDICT_TIMEOUT_S = 30.0
# Waits between sends of a Predict whose replica was lost: growing to the last, then steady.
PREDICT_RETRY_WAITS_S = (0.05, 0.1, 0.2, 0.5, 1.0)


def check_rows(rows: Sequence[Sequence[float]]) -> None:
    """Rows of one width and finite values only: a NaN or an infinity would come back as a
    confident-looking label. (The model checks the width against its own features.)"""
    width = len(rows[0])
    for index, row in enumerate(rows):
        if len(row) != width:
            raise InvalidArgument.field(f"rows[{index}]", f"has {len(row)} values; rows[0] has {width}")
        if not all(math.isfinite(value) for value in row):
            raise InvalidArgument.field(f"rows[{index}]", "holds a NaN or an infinite value")


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


class PredictRouter:
    """Predict for a principal, through one batcher per deployment, kept until it fails or Deploy
    replaces the deployment (`forget`).

    Looking up the deployment and its handle per call costs a store query and a Serve
    controller round trip, more than the prediction.
    """

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self._routes: dict[DeploymentKey, PredictBatcher] = {}

    def predict(self, name: str, rows: Sequence[Sequence[float]], principal: Principal) -> list[Prediction]:
        key = deployment_key(name, principal)
        if not rows:
            raise InvalidArgument.field("rows", "send at least one row")
        if len(rows) > self.settings.max_predict_rows:
            raise InvalidArgument.field(
                "rows", f"has {len(rows)} rows; at most {self.settings.max_predict_rows} per call"
            )
        check_rows(rows)
        from ray.exceptions import RayTaskError

        try:
            answers = self._route(key, name).predict([list(r) for r in rows], timeout_s=PREDICT_TIMEOUT_S)
        except TimeoutError:
            self.forget(key)
            raise Unavailable(f"deployment {name} did not answer within {PREDICT_TIMEOUT_S:.0f} s") from None
        except RayTaskError as error:
            if isinstance(error.cause, ValueError | TypeError):
                raise InvalidArgument.field("rows", str(error.cause)) from None
            self.forget(key)
            raise
        except Exception:
            self.forget(key)  # the next call looks the deployment up afresh
            raise
        return answers

    def forget(self, key: DeploymentKey) -> None:
        """Drops the deployment's route: the next call looks it up afresh."""
        self._routes.pop(key, None)

    def _route(self, key: DeploymentKey, name: str) -> PredictBatcher:
        """The batcher in front of the deployment's Serve handle, looked up once and then kept."""
        route = self._routes.get(key)
        if route is not None:
            return route
        deployment = stored_deployment(self.store, key, name)
        if deployment.state is not DeploymentState.RUNNING:
            raise FailedPrecondition(f"deployment {name} is {deployment.state.value}")
        from ray import serve
        from ray.serve.exceptions import RayServeException

        try:
            handle = serve.get_app_handle(app_name(*key))
        except RayServeException as error:
            raise NotFound(f"deployment {name} is not running in Ray Serve: {error}") from None

        def call(rows: list[list[float]]) -> Answers:
            return retry_lost_replicas(
                lambda timeout_s: handle.predict.remote(rows).result(timeout_s=timeout_s), PREDICT_TIMEOUT_S, name
            )

        route = PredictBatcher(call, deployment.max_batch_size)
        self._routes[key] = route
        return route
