"""The server's units, built once: the study and deployment domain, Predict routing, the
driver keeper, the metrics and the audit log, over one store and one Jobs launcher. The servicer calls
them; the keeper runs on a thread of its own."""

from __future__ import annotations

from dataclasses import dataclass

from anneal.settings import Settings
from cluster.server.audit import AuditLog, audit_path
from cluster.server.deployments import Deployments
from cluster.server.jobs import Jobs
from cluster.server.keeper import DriverKeeper
from cluster.server.metrics import ServerMetrics
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
    metrics: ServerMetrics
    audit: AuditLog

    @classmethod
    def build(cls, settings: Settings, store: Store, jobs: Jobs) -> AnnealService:
        studies = Studies(settings, store, jobs)
        predictions = PredictRouter(settings, store)
        deployments = Deployments(settings, store, studies, predictions)
        metrics = ServerMetrics(store, studies.open_watch_streams)
        keeper = DriverKeeper(settings, store, jobs, restarted=metrics.driver_restarted)
        audit = AuditLog(audit_path(settings))
        return cls(settings, store, jobs, studies, deployments, predictions, keeper, metrics, audit)
