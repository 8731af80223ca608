"""The store: studies, trials, the event stream and deployments (SQLAlchemy).

SQLite by default (WAL, so the server and the study drivers write side by side),
PostgreSQL when scaled out; `tests/unit/test_store.py` is the contract both pass. Every
write that must go with another is one transaction, and on SQLite a write transaction
takes the write lock at its start, so the checks it reads stay true until it commits.
State changes follow `STUDY_TRANSITIONS` and are conditional updates, so a late writer
never overwrites a study that has already ended.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from anneal.errors import Conflict, FailedPrecondition, NotFound
from anneal.spec import Autoscaling, StudySpec
from anneal.types import (
    STUDY_TRANSITIONS,
    TERMINAL_STUDY_STATES,
    Deployment,
    DeploymentState,
    EventKind,
    ModelVersion,
    Study,
    StudyEvent,
    StudyState,
    Trial,
    TrialState,
)
from cluster.store.engine import WRITE, create_engine
from cluster.store.schema import ACTIVE_STATES, deployments, events, metadata, studies, trials
from cluster.store.upgrade import upgrade

StateT = TypeVar("StateT", StudyState, TrialState)


def now() -> datetime:
    return datetime.now(timezone.utc)


def new_study_id() -> str:
    return "st-" + secrets.token_hex(6)


def _utc(moment: datetime) -> datetime:
    # SQLite hands datetimes back naive; they were written in UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


class Store:
    """Owner of study, trial, event and deployment records."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_engine(url)
        self._writes = self.engine.execution_options(**{WRITE: True})
        metadata.create_all(self._writes)
        upgrade(self._writes)

    def close(self) -> None:
        self.engine.dispose()

    # Tune pickles its callbacks with the experiment state: a store travels as its URL.
    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"])  # type: ignore[misc]

    # ------------------------------------------------------------ studies

    def create_study(self, spec: StudySpec, study_id: str | None = None, *, owner: str = "") -> Study:
        """Records a PENDING study of `owner`; refuses a name that an active study of theirs holds."""
        study_id = study_id or new_study_id()
        moment = now()
        with self._writes.begin() as conn:
            active = conn.execute(
                sa.select(studies.c.study_id).where(
                    studies.c.owner == owner,
                    studies.c.name == spec.name,
                    studies.c.state.notin_([s.value for s in TERMINAL_STUDY_STATES]),
                )
            ).first()
            if active is not None:
                raise Conflict(f"study name {spec.name!r} is in use by active study {active.study_id}")
            try:
                conn.execute(
                    studies.insert().values(
                        study_id=study_id,
                        owner=owner,
                        name=spec.name,
                        spec=spec.model_dump_json(by_alias=True),
                        state=StudyState.PENDING.value,
                        ray_job_id="",
                        created_at=moment,
                        updated_at=moment,
                    )
                )
            except sa.exc.IntegrityError:
                raise Conflict(f"study name {spec.name!r} is in use by an active study") from None
        return self.get_study(study_id)

    def get_study(self, study_id: str) -> Study:
        with self.engine.connect() as conn:
            row = conn.execute(studies.select().where(studies.c.study_id == study_id)).first()
            if row is None:
                raise NotFound(f"no study {study_id!r}")
            trial_rows = conn.execute(
                trials.select().where(trials.c.study_id == study_id).order_by(trials.c.number)
            ).all()
        return _study_from_row(row, [_trial_from_row(t) for t in trial_rows])

    def list_studies(self, owner: str | None = None) -> list[Study]:
        """Every study, oldest first; only `owner`'s when given."""
        query = sa.select(studies.c.study_id).order_by(studies.c.created_at)
        if owner is not None:
            query = query.where(studies.c.owner == owner)
        with self.engine.connect() as conn:
            ids = conn.execute(query).scalars().all()
        return [self.get_study(study_id) for study_id in ids]

    def active_specs(self, owner: str) -> list[StudySpec]:
        """The specs of `owner`'s pending and running studies (what their quotas count)."""
        query = sa.select(studies.c.spec).where(studies.c.owner == owner, studies.c.state.in_(ACTIVE_STATES))
        with self.engine.connect() as conn:
            return [StudySpec.model_validate_json(text) for text in conn.execute(query).scalars()]

    def study_for_job(self, job_id: str, state: StudyState | None = None) -> str | None:
        """The study handed to the Ray job `job_id` (in `state`, when given), if there is one."""
        query = sa.select(studies.c.study_id).where(studies.c.ray_job_id == job_id)
        if state is not None:
            query = query.where(studies.c.state == state.value)
        with self.engine.connect() as conn:
            found: str | None = conn.execute(query.limit(1)).scalar()
        return found

    def driven_studies(self) -> list[tuple[str, StudyState, str, int]]:
        """(study id, state, Ray job id, driver restarts) of every active study handed to a job."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(studies.c.study_id, studies.c.state, studies.c.ray_job_id, studies.c.driver_restarts).where(
                    studies.c.state.in_(ACTIVE_STATES), studies.c.ray_job_id != ""
                )
            ).all()
        return [(row.study_id, StudyState(row.state), row.ray_job_id, row.driver_restarts) for row in rows]

    def claim_driver(self, study_id: str, dead_job_id: str, new_job_id: str) -> bool:
        """Hands an active study from the job `dead_job_id` to `new_job_id`, counting a driver
        restart. False when the study moved on meanwhile (another claim, an end, a cancel)."""
        with self._writes.begin() as conn:
            result = conn.execute(
                studies.update()
                .where(
                    studies.c.study_id == study_id,
                    studies.c.ray_job_id == dead_job_id,
                    studies.c.state.in_(ACTIVE_STATES),
                )
                .values(ray_job_id=new_job_id, driver_restarts=studies.c.driver_restarts + 1, updated_at=now())
            )
        return bool(result.rowcount == 1)

    def state_of(self, study_id: str) -> StudyState:
        with self.engine.connect() as conn:
            state = conn.execute(sa.select(studies.c.state).where(studies.c.study_id == study_id)).scalar()
        if state is None:
            raise NotFound(f"no study {study_id!r}")
        return StudyState(state)

    def count_studies(self, states: Iterable[StudyState]) -> int:
        with self.engine.connect() as conn:
            count: int = conn.execute(
                sa.select(sa.func.count()).select_from(studies).where(studies.c.state.in_([s.value for s in states]))
            ).scalar_one()
        return count

    def studies_by_state(self) -> dict[StudyState, int]:
        """How many studies are in each state, every state listed (one grouped query)."""
        return _by_state(self.engine, studies, StudyState)

    def update_study(self, study_id: str, **values: Any) -> None:
        if "best_test_metrics" in values:
            values["best_test_metrics"] = json.dumps(values["best_test_metrics"])
        with self._writes.begin() as conn:
            result = conn.execute(
                studies.update().where(studies.c.study_id == study_id).values(updated_at=now(), **values)
            )
            if result.rowcount == 0:
                raise NotFound(f"no study {study_id!r}")

    def transition(
        self, study_id: str, allowed_from: Iterable[StudyState], to: StudyState, *, message: str = "", **values: Any
    ) -> bool:
        """Moves the study to `to` if it is in one of `allowed_from`, with its event, in one transaction.

        Returns False (changing nothing) when the study was elsewhere, e.g. already cancelled.
        Raises FailedPrecondition for a move `STUDY_TRANSITIONS` does not allow.
        """
        allowed_from = list(allowed_from)
        illegal = [state for state in allowed_from if to not in STUDY_TRANSITIONS[state]]
        if illegal:
            moves = ", ".join(f"{state.value} -> {to.value}" for state in illegal)
            raise FailedPrecondition(f"a study cannot move {moves}")
        if "best_test_metrics" in values:
            values["best_test_metrics"] = json.dumps(values["best_test_metrics"])
        moment = now()
        with self._writes.begin() as conn:
            result = conn.execute(
                studies.update()
                .where(studies.c.study_id == study_id, studies.c.state.in_([s.value for s in allowed_from]))
                .values(state=to.value, updated_at=moment, **values)
            )
            if result.rowcount == 0:
                return False
            if to.is_terminal:
                conn.execute(
                    trials.update()
                    .where(
                        trials.c.study_id == study_id,
                        trials.c.state.in_([state.value for state in TrialState if not state.is_terminal]),
                    )
                    .values(state=TrialState.CANCELLED.value)
                )
            kind = EventKind.STUDY_ENDED if to.is_terminal else EventKind.STUDY_STARTED
            self._add_event(
                conn, study_id, kind, moment, study_state=to.value, message=message or values.get("error", "")
            )
        return True

    # ------------------------------------------------------------ trials

    def record_trial(self, study_id: str, trial: Trial, kind: EventKind) -> None:
        """Upserts the trial and appends its event, unless the study has already ended."""
        self.record_trials(study_id, [(trial, kind, now())])

    def record_trials(
        self,
        study_id: str,
        updates: Sequence[tuple[Trial, EventKind, datetime]],
        *,
        through: tuple[str, int] | None = None,
    ) -> None:
        """Upserts trials and appends their events, in order and in one transaction,
        unless the study has already ended. `through`, (a record stream, the sequence of its
        last record among `updates`), becomes the study's watermark in the same transaction."""
        with self._writes.begin() as conn:
            state = conn.execute(sa.select(studies.c.state).where(studies.c.study_id == study_id)).scalar()
            if state is None:
                raise NotFound(f"no study {study_id!r}")
            if StudyState(state).is_terminal:
                return
            for trial, kind, moment in updates:
                self._upsert_trial(conn, study_id, trial)
                self._add_event(conn, study_id, kind, moment, trial_id=trial.trial_id)
            if through is not None:
                stream, sequence = through
                conn.execute(
                    studies.update()
                    .where(studies.c.study_id == study_id)
                    .values(recorded_stream=stream, recorded_through=sequence)
                )

    def recorded_through(self, study_id: str, stream: str) -> int:
        """The last sequence of record stream `stream` the study's trials and events hold; 0
        when its watermark is another stream's (or none)."""
        query = sa.select(studies.c.recorded_through).where(
            studies.c.study_id == study_id, studies.c.recorded_stream == stream
        )
        with self.engine.connect() as conn:
            sequence: int | None = conn.execute(query).scalar()
        return sequence or 0

    def trials_by_state(self) -> dict[TrialState, int]:
        """How many trials of every study are in each state, every state listed: RUNNING ones
        have started and not ended, the others ended that way."""
        return _by_state(self.engine, trials, TrialState)

    def _upsert_trial(self, conn: Connection, study_id: str, trial: Trial) -> None:
        values = {
            "state": trial.state.value,
            "config": json.dumps(trial.config),
            "metrics": json.dumps(trial.metrics),
            "epochs": trial.epochs,
            "mlflow_run_id": trial.mlflow_run_id,
            "error": trial.error,
        }
        updated = conn.execute(
            trials.update().where(trials.c.study_id == study_id, trials.c.trial_id == trial.trial_id).values(**values)
        )
        if updated.rowcount == 0:
            count = conn.execute(
                sa.select(sa.func.count()).select_from(trials).where(trials.c.study_id == study_id)
            ).scalar_one()
            conn.execute(trials.insert().values(study_id=study_id, trial_id=trial.trial_id, number=count, **values))

    # ------------------------------------------------------------ events

    def _add_event(self, conn: Connection, study_id: str, kind: EventKind, moment: datetime, **values: Any) -> None:
        conn.execute(events.insert().values(study_id=study_id, kind=kind.value, time=moment, **values))

    def events_after(self, study_id: str, after_sequence: int, limit: int = 500) -> list[StudyEvent]:
        """Events of the study with a larger sequence number, oldest first, each with its trial as it is now."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                events.select()
                .where(events.c.study_id == study_id, events.c.sequence > after_sequence)
                .order_by(events.c.sequence)
                .limit(limit)
            ).all()
            trial_ids = {row.trial_id for row in rows if row.trial_id}
            trial_rows = (
                conn.execute(
                    trials.select().where(trials.c.study_id == study_id, trials.c.trial_id.in_(trial_ids))
                ).all()
                if trial_ids
                else []
            )
        by_id = {row.trial_id: _trial_from_row(row) for row in trial_rows}
        return [
            StudyEvent(
                sequence=row.sequence,
                study_id=row.study_id,
                kind=EventKind(row.kind),
                time=_utc(row.time),
                trial=by_id.get(row.trial_id),
                study_state=StudyState(row.study_state) if row.study_state else None,
                message=row.message,
            )
            for row in rows
        ]

    # ------------------------------------------------------------ deployments

    def put_deployment(self, deployment: Deployment) -> None:
        values = _deployment_values(deployment)
        with self._writes.begin() as conn:
            updated = conn.execute(
                deployments.update()
                .where(deployments.c.owner == deployment.owner, deployments.c.name == deployment.name)
                .values(**values)
            )
            if updated.rowcount == 0:
                conn.execute(deployments.insert().values(**values))

    def replace_deployment(self, deployment: Deployment, expected: Deployment | None) -> bool:
        """Writes `deployment` only while the stored record is still `expected` (the same state
        and time), or absent when that is None; False when another writer came first. Two
        rollouts of one deployment, or a rollout and an undeploy, cannot both go ahead."""
        values = _deployment_values(deployment)
        try:
            with self._writes.begin() as conn:
                if expected is None:
                    conn.execute(deployments.insert().values(**values))
                    return True
                updated = conn.execute(
                    deployments.update()
                    .where(
                        deployments.c.owner == deployment.owner,
                        deployments.c.name == deployment.name,
                        deployments.c.state == expected.state.value,
                        deployments.c.updated_at == expected.updated_at.astimezone(timezone.utc),
                    )
                    .values(**values)
                )
                return bool(updated.rowcount == 1)
        except sa.exc.IntegrityError:  # another writer inserted it first
            return False

    def get_deployment(self, name: str, owner: str = "") -> Deployment:
        query = deployments.select().where(deployments.c.owner == owner, deployments.c.name == name)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFound(f"no deployment {name!r}")
        return _deployment_from_row(row)

    def list_deployments(self, owner: str | None = None) -> list[Deployment]:
        """Every deployment not deleted, by owner and name; only `owner`'s when given."""
        query = deployments.select().where(deployments.c.state != DeploymentState.DELETED.value)
        if owner is not None:
            query = query.where(deployments.c.owner == owner)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(deployments.c.owner, deployments.c.name)).all()
        return [_deployment_from_row(row) for row in rows]


# What Ray Serve reports of a deployment when it is read; never stored.
LIVE_DEPLOYMENT_FIELDS = ("replicas_running", "replicas_wanted", "serve_status", "serve_message")


def _deployment_values(deployment: Deployment) -> dict[str, Any]:
    values = deployment.model_dump(mode="python", exclude=set(LIVE_DEPLOYMENT_FIELDS))
    values["state"] = deployment.state.value
    values["updated_at"] = deployment.updated_at.astimezone(timezone.utc)  # SQLite keeps no offset
    values["previous"] = deployment.previous.model_dump_json() if deployment.previous else ""
    values["autoscaling"] = deployment.autoscaling.model_dump_json() if deployment.autoscaling else ""
    return values


def _deployment_from_row(row: Any) -> Deployment:
    return Deployment(
        owner=row.owner,
        name=row.name,
        study_id=row.study_id,
        state=DeploymentState(row.state),
        replicas=row.replicas,
        route=row.route,
        model_uri=row.model_uri,
        updated_at=_utc(row.updated_at),
        error=row.error,
        max_batch_size=row.max_batch_size,
        registered_model=row.registered_model,
        model_version=row.model_version,
        trial_id=row.trial_id,
        previous=ModelVersion.model_validate_json(row.previous) if row.previous else None,
        autoscaling=Autoscaling.model_validate_json(row.autoscaling) if row.autoscaling else None,
    )


def _by_state(engine: sa.Engine, table: sa.Table, states: type[StateT]) -> dict[StateT, int]:
    """Rows of `table` per value of its state column, zero for the states no row is in."""
    query = sa.select(table.c.state, sa.func.count()).group_by(table.c.state)
    with engine.connect() as conn:
        counted = {state: count for state, count in conn.execute(query).tuples()}
    return {state: counted.get(state.value, 0) for state in states}


def _trial_from_row(row: Any) -> Trial:
    return Trial(
        trial_id=row.trial_id,
        state=TrialState(row.state),
        config=json.loads(row.config),
        metrics=json.loads(row.metrics),
        epochs=row.epochs,
        mlflow_run_id=row.mlflow_run_id,
        error=row.error,
    )


def _study_from_row(row: Any, trial_list: list[Trial]) -> Study:
    by_id: Mapping[str, Trial] = {t.trial_id: t for t in trial_list}
    return Study(
        study_id=row.study_id,
        name=row.name,
        spec=StudySpec.model_validate_json(row.spec),
        state=StudyState(row.state),
        ray_job_id=row.ray_job_id,
        created_at=_utc(row.created_at),
        updated_at=_utc(row.updated_at),
        trials=trial_list,
        best_trial=by_id.get(row.best_trial_id),
        best_test_metrics=json.loads(row.best_test_metrics),
        mlflow_experiment_id=row.mlflow_experiment_id,
        mlflow_run_id=row.mlflow_run_id,
        registered_model=row.registered_model,
        registered_model_version=row.registered_model_version,
        error=row.error,
        model_uri=row.model_uri,
        driver_restarts=row.driver_restarts,
        warm_start_trials=row.warm_start_trials,
        owner=row.owner,
    )
