"""The server's units, built once: the study and deployment domain, Predict routing and the
driver keeper, over one store and one Jobs launcher. The servicer calls them; the keeper
runs on a thread of its own."""

from __future__ import annotations

from dataclasses import dataclass

from anneal.settings import Settings
from cluster.server.deployments import Deployments
from cluster.server.jobs import Jobs
from cluster.server.keeper import DriverKeeper
from cluster.server.predict import PredictRouter
from cluster.server.studies import Studies
from cluster.store.store import Store


@dataclass(frozen=True)
class AnnealService:
    settings: Settings
    store: Store
    jobs: Jobs
    studies: Studies
    deployments: Deployments
    predictions: PredictRouter
    keeper: DriverKeeper

    @classmethod
    def build(cls, settings: Settings, store: Store, jobs: Jobs) -> AnnealService:
        studies = Studies(settings, store, jobs)
        predictions = PredictRouter(settings, store)
        deployments = Deployments(settings, store, studies, predictions)
        keeper = DriverKeeper(settings, store, jobs)
        return cls(settings, store, jobs, studies, deployments, predictions, keeper)
