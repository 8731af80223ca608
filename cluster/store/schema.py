"""The store's tables: studies, trials, the event stream and deployments."""

from __future__ import annotations

import sqlalchemy as sa

from anneal.types import StudyState

metadata = sa.MetaData()
ACTIVE_STATES = [StudyState.PENDING.value, StudyState.RUNNING.value]

studies = sa.Table(
    "studies",
    metadata,
    sa.Column("study_id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False, index=True),
    sa.Column("spec", sa.Text, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("ray_job_id", sa.String(128), nullable=False, default=""),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("best_trial_id", sa.String(128), nullable=False, default=""),
    sa.Column("best_test_metrics", sa.Text, nullable=False, default="{}"),
    sa.Column("mlflow_experiment_id", sa.String(64), nullable=False, default=""),
    sa.Column("mlflow_run_id", sa.String(64), nullable=False, default=""),
    sa.Column("model_uri", sa.Text, nullable=False, default=""),
    sa.Column("registered_model", sa.String(256), nullable=False, default=""),
    sa.Column("registered_model_version", sa.Integer, nullable=False, default=0),
    sa.Column("error", sa.Text, nullable=False, default=""),
    # Drivers the server started again after the study's driver died (`claim_driver`).
    sa.Column("driver_restarts", sa.Integer, nullable=False, default=0, server_default="0"),
    sa.Column("warm_start_trials", sa.Integer, nullable=False, default=0, server_default="0"),
    # The principal that created the study; names are unique per owner.
    sa.Column("owner", sa.String(64), nullable=False, default="", server_default="", index=True),
    # The trial writer's watermark: its driver's record stream and the last of that stream's
    # records the trials and events hold. A writer that replaces a dead one is sent again
    # what was not confirmed, and skips records up to here (`Store.record_trials`).
    sa.Column("recorded_stream", sa.String(32), nullable=False, default="", server_default=""),
    sa.Column("recorded_through", sa.Integer, nullable=False, default=0, server_default="0"),
    # Two active studies of one owner never share a name, even when two creates race.
    sa.Index(
        "active_study_owner_name",
        "owner",
        "name",
        unique=True,
        sqlite_where=sa.text(f"state IN {tuple(ACTIVE_STATES)}"),
        postgresql_where=sa.text(f"state IN {tuple(ACTIVE_STATES)}"),
    ),
)

trials = sa.Table(
    "trials",
    metadata,
    sa.Column("study_id", sa.String(64), sa.ForeignKey("studies.study_id"), primary_key=True),
    sa.Column("trial_id", sa.String(128), primary_key=True),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("config", sa.Text, nullable=False, default="{}"),
    sa.Column("metrics", sa.Text, nullable=False, default="{}"),
    sa.Column("epochs", sa.Integer, nullable=False, default=0),
    sa.Column("mlflow_run_id", sa.String(64), nullable=False, default=""),
    sa.Column("error", sa.Text, nullable=False, default=""),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("sequence", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("study_id", sa.String(64), sa.ForeignKey("studies.study_id"), nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("trial_id", sa.String(128), nullable=False, default=""),
    sa.Column("study_state", sa.String(16), nullable=False, default=""),
    sa.Column("message", sa.Text, nullable=False, default=""),
)

deployments = sa.Table(
    "deployments",
    metadata,
    sa.Column("owner", sa.String(64), primary_key=True, default="", server_default=""),
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("study_id", sa.String(64), sa.ForeignKey("studies.study_id"), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("replicas", sa.Integer, nullable=False),
    sa.Column("route", sa.String(256), nullable=False),
    sa.Column("model_uri", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("error", sa.Text, nullable=False, default=""),
    sa.Column("max_batch_size", sa.Integer, nullable=False, default=1),
    sa.Column("registered_model", sa.String(256), nullable=False, default="", server_default=""),
    sa.Column("model_version", sa.Integer, nullable=False, default=0, server_default="0"),
    sa.Column("trial_id", sa.String(128), nullable=False, default="", server_default=""),
    # JSON: the ModelVersion served before (Rollback's target), and the autoscaling; "" for none.
    sa.Column("previous", sa.Text, nullable=False, default="", server_default=""),
    sa.Column("autoscaling", sa.Text, nullable=False, default="", server_default=""),
)
