"""Upgrades: a store an older anneal made, brought up to this one's tables in place."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from cluster.store.schema import deployments, metadata, studies


def upgrade(engine: Engine) -> None:
    """Brings a store an older anneal made up to this one's tables: missing columns (each has
    a default) and indexes are added, and deployments are re-keyed by owner and name. Costs
    one look at the schema when nothing is missing."""
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        missing = _missing_columns(inspector)
        indexes = {i["name"] for t in metadata.sorted_tables for i in inspector.get_indexes(t.name)}
        rekey = inspector.get_pk_constraint(deployments.name)["constrained_columns"] == ["name"]
    wanted = {i.name for t in metadata.sorted_tables for i in t.indexes}
    if not missing and not rekey and wanted <= indexes and "active_study_name" not in indexes:
        return
    with engine.begin() as conn:
        for table_name, column in missing:
            conn.execute(sa.text(_add_column_statement(table_name, column, engine)))
        # The older index kept active study names unique across owners.
        conn.execute(sa.text("DROP INDEX IF EXISTS active_study_name"))
        if rekey:
            _rekey_deployments(conn)
        for table in metadata.sorted_tables:
            for index in table.indexes:
                index.create(conn, checkfirst=True)


def _missing_columns(inspector: Any) -> list[tuple[str, sa.Column[Any]]]:
    found = []
    for table in metadata.sorted_tables:
        present = {column["name"] for column in inspector.get_columns(table.name)}
        found += [(table.name, column) for column in table.columns if column.name not in present]
    return found


def _rekey_deployments(conn: Connection) -> None:
    """Deployments keyed by name alone become keyed by (owner, name): a new table, the rows
    copied over, the old one dropped (neither SQLite nor a portable ALTER changes a key)."""
    scratch = sa.MetaData()
    studies.to_metadata(scratch)
    rekeyed = deployments.to_metadata(scratch, name="deployments_rekeyed")
    rekeyed.create(conn)
    columns = ", ".join(f'"{c.name}"' for c in deployments.columns)
    conn.execute(sa.text(f"INSERT INTO deployments_rekeyed ({columns}) SELECT {columns} FROM deployments"))
    conn.execute(sa.text("DROP TABLE deployments"))
    conn.execute(sa.text("ALTER TABLE deployments_rekeyed RENAME TO deployments"))


def _add_column_statement(table: str, column: sa.Column[Any], engine: Engine) -> str:
    kind = column.type.compile(dialect=engine.dialect)
    default = getattr(column.server_default, "arg", None)
    clause = f" NOT NULL DEFAULT '{default}'" if isinstance(default, str) else ""
    return f'ALTER TABLE {table} ADD COLUMN "{column.name}" {kind}{clause}'
